/*
 * Peer sessions (session.c): listening, dialling, handshakes, HELLO,
 * keep-alives, and sending frames.
 *
 * Sessions are the bottom of the replicator's peer side: sync, state,
 * serving, the chain checks, clocks and transfers all send through
 * them, and they call none of those back.  What a session has to tell
 * goes through struct session_ops, which replicate.c fills.
 */
#ifndef KRAKEN_SESSION_H
#define KRAKEN_SESSION_H

#include "replicate_int.h"

/* The peer named ID, or NULL. */
struct peer *replicate_peer_by_id(struct replicate *r, const char *id);
/* Listens on ADDRESS:PORT (0: any free port).  0 or -errno. */
int session_listen(struct replicate *r, const char *address, uint16_t port);
/* Dials the peers due, keeps the sessions alive (pings, deadlines). */
void session_tick(struct replicate *r, int64_t now);
/* Reads on from sessions that stopped at their read budget. */
void session_read_more(struct replicate *r);
/* Sends what is queued; a failed connection is closed. */
void session_flush(struct session *s);
/* Frees the sessions closed during this turn. */
void sessions_reap(struct replicate *r);
void session_close(struct session *s, const char *why);
void session_update_poll(struct session *s);
int session_send(struct session *s, const struct wire_msg *m);
/* Writes what is queued now rather than on the loop's next turn, for a
 * caller about to spend a while on local work.  A failed connection is
 * left to its event handler, which closes it: closing here would pull
 * the peer out from under the caller. */
void session_send_now(struct session *s);

/* What sessions tell the layers above them (struct replicate's
 * session_ops).  Every hook runs on the loop thread. */
struct session_ops {
	/* HELLO flags this node adds to the ones every session sends. */
	uint32_t (*hello_flags)(struct replicate *r);
	/* S's peer is known (its HELLO checked): this node's vector goes
	 * out before anything else.  0, or S is closed. */
	int (*welcome)(struct session *s);
	/* S is OPEN with the peer that said H. */
	void (*opened)(struct session *s, const struct wire_hello *h);
	/* Frame M came on open session S.  0, or an error that closes S. */
	int (*frame)(struct session *s, const struct wire_msg *m);
	/* S may send: what waits is queued; *MORE when more is waiting than
	 * was queued.  0, or an error that closes S. */
	int (*writable)(struct session *s, bool *more);
	/* S's heartbeat at NOW; PINGED: a PING went out just now. */
	void (*heartbeat)(struct session *s, int64_t now, bool pinged);
	/* S closes; P is the peer whose open session it was, else NULL. */
	void (*closing)(struct session *s, struct peer *p);
	/* S is about to be freed. */
	void (*freeing)(struct session *s);
};

#endif
