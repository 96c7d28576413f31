/* Peer sessions (session.c): listening, dialling, handshakes, HELLO,
 * keep-alives, and sending frames. */
#ifndef KRAKEN_SESSION_H
#define KRAKEN_SESSION_H

#include "replicate_int.h"

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

/* HOST:PORT as a socket address.  0 or -EHOSTUNREACH. */
int session_resolve(const char *host, uint16_t port,
		    struct sockaddr_storage *ss, socklen_t *len);

#endif
