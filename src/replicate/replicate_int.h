/* Internals shared by the replicator's source files. */
#ifndef KRAKEN_REPLICATE_INT_H
#define KRAKEN_REPLICATE_INT_H

#include "replicate.h"
#include "apply.h"
#include "disk.h"
#include "transfer.h"

#include "bucket.h"
#include "conn.h"
#include "hist.h"
#include "journal.h"
#include "strmap.h"
#include "wire.h"

#include <sys/socket.h>

typedef struct ssl_st SSL;

#define PEER_OUT_CAP (64u << 20)       /* bytes queued to one peer */
#define PEER_PUMP_LOW (4u << 20)       /* refill entries below this */
#define PEER_ENTRIES_BUDGET (1u << 20) /* payload of one ENTRIES frame */
/* Input read from one peer per turn of the loop: a burst of entries and
 * pushed files is ingested in slices, between which files are applied
 * and flushed, instead of all of it first. */
#define PEER_READ_BUDGET (1u << 20)
#define PEER_FETCH_WINDOW (16u << 20)  /* chunk bytes asked, not yet here */
#define PEER_PING_NS (2LL * 1000000000)
/* New origins one peer may bring per minute.  Each origin costs every
 * later version-vector and lag computation: 94,000 made-up ones sent in
 * a minute kept two nodes at full CPU, idle, for good.  A cluster has a
 * few per node (one per journal a node ever had), so a joining node
 * still learns a whole history's origins at once. */
#define SYNC_NEW_ORIGINS 64
#define SYNC_NEW_ORIGINS_NS (60LL * 1000000000)
/* Nothing heard for this long (five pings unanswered): the peer is shown
 * as not connected, though the session stays up to PEER_DEAD_NS. */
#define PEER_UNRESPONSIVE_NS (10LL * 1000000000)
/* Nothing heard for this long: the dialling side tries a second, fresh
 * connection beside the silent one, and the first to say HELLO replaces
 * it.  After a partition heals, TCP retransmits on the old connection
 * only when its backed-off timer fires (tens of seconds after a long
 * outage), while a new connection's first SYN goes at once.  A probe not
 * open within this time is given up and another one made. */
#define PEER_PROBE_NS (5LL * 1000000000)
/* Before its HELLO is accepted a connection is a stranger's (gate.c). */
#define GATE_FRAME_MAX (16u << 10)
#define GATE_DEADLINE_NS (10LL * 1000000000)
#define GATE_STRANGERS_MAX 64
#define GATE_PER_SOURCE_MAX 8
#define GATE_PAUSE_NS (1LL * 1000000000)
#define GATE_SOURCE_MAX 46          /* INET6_ADDRSTRLEN */
/* Generous: hashing or verifying a large file still runs on the loop
 * thread and can keep a healthy peer quiet for a while. */
#define PEER_DEAD_NS (60LL * 1000000000)
#define PEER_BACKOFF_MIN_MS 100
#define PEER_BACKOFF_MAX_MS 10000
#define PEER_ASKED_MAX 65536           /* chunk requests queued per peer */
#define PEER_ACKED_MAX 65536           /* origins kept of its ACKs */
/* GET_DELTA requests queued per peer, and their digests' bytes: twice
 * what a fetch window of chunks of PLAN_DELTA_MIN (8 KiB) could ask. */
#define PEER_DELTAS_MAX 4096
#define PEER_DELTA_BYTES_MAX (1u << 20)
#define PUSH_RECENT_NS (10LL * 1000000000)
#define SESSION_KEYS_SENT 64           /* past this, keys are sent again */
#define SESSION_REFUSED_MAX 16         /* refused origins kept per session */

enum session_state {
	SESSION_CONNECTING,       /* non-blocking connect under way */
	SESSION_HANDSHAKE,        /* transport (TLS) handshake */
	SESSION_HELLO,            /* HELLO sent, waiting for the peer's */
	SESSION_OPEN,             /* streaming */
};

struct peer;
struct serve_cache;
struct serve_delta;

/* One TCP connection; before HELLO it may not know its peer yet. */
struct session {
	struct replicate *r;
	struct peer *peer;        /* NULL until HELLO names a known node */
	struct conn *conn;
	int fd;
	bool outbound;
	enum session_state state;
	uint32_t polled;          /* events registered with the loop */
	int64_t last_rx_ns;
	int64_t last_ping_ns;     /* monotonic: the token of the last PING */
	int64_t last_ping_wall_ns;
	bool dead;                /* closed; freed at the end of the turn */
	bool probe;               /* dialled beside a silent open session */
	int64_t started_ns;
	char source[GATE_SOURCE_MAX];  /* inbound: the peer's address */
	bool read_more;           /* input left past the read budget */
	uint8_t (*asked)[CONTENT_HASH_LEN];  /* chunk requests not served */
	size_t asked_head, asked_n, asked_cap;
	/* GET_DELTA requests not served, oldest first (serve.c) */
	struct serve_delta *deltas, **deltas_tail;
	size_t deltas_n, deltas_bytes;
	struct serve_cache *serve;           /* serve.c; NULL until it serves */
	/* state.c: a state exchange being sent, or due; ACKs sent */
	struct state_tx *state_tx;
	bool state_wanted;
	bool state_refused;       /* the peer cannot take one: said once */
	int64_t state_served_ns;  /* when an exchange last went to it */
	bool state_ignored;       /* its exchange waits for another's */
	int64_t ack_ns;
	int64_t ack_change;       /* journal_last_change_id at the last ACK */
	uint64_t ack_gen;         /* the peer was sent our value of every
				   * origin touched up to this generation */
	/* chaincheck.c: keys sent ahead of what they signed; plain
	 * entries of a third node refused (said once) */
	uint8_t keys_sent[SESSION_KEYS_SENT][CONTENT_HASH_LEN];
	unsigned n_keys_sent;
	bool plain_refused;
	/* sync.c: origins whose entry the journal refused from this peer */
	char refused[SESSION_REFUSED_MAX][JOURNAL_ORIGIN_MAX];
	unsigned n_refused;
	/* sync.c: every origin the journal touched up to this generation
	 * went to the peer as far as it may (journal_vector_since); 0 when
	 * `sent` was reset, so every origin is looked at again */
	uint64_t pumped_gen;
	struct session *next;
};

struct peer {
	size_t slot;              /* index in replicate.peers */
	char id[65];
	char host[256];
	uint16_t port;
	bool dial;                /* our id sorts lower: we connect */
	bool knock;               /* dial once anyway (start-up, join) */
	struct session *session;  /* the open (or opening) session, or NULL */
	int64_t next_dial_ns;
	unsigned backoff_ms;
	int64_t last_seen_wall_ns;
	struct strmap sent;       /* origin -> (uint64_t *) seq it holds */
	/* origin -> (uint64_t *) seq it said it holds (HELLO, VECTOR, ACK):
	 * lag is counted from this, not from what was sent */
	struct strmap acked;
	uint64_t maps_changed;    /* sent or acked changed (sync.c) */
	/* sync_lag's last figures, and what they were counted from */
	struct {
		bool valid;
		uint64_t gen, maps;
		uint64_t entries, bytes, behind;
	} lag;
	/* Its own origin, from its HELLO: it holds every change of it, so
	 * those are never relayed back to it ("" when it did not say). */
	char own_origin[JOURNAL_ORIGIN_MAX];
	uint64_t fetch_inflight;  /* chunk bytes asked of it, not yet here */
	/* New origins it brought this minute (sync.c: SYNC_NEW_ORIGINS) */
	int64_t origins_since_ns;
	unsigned origins_new;
	bool changing;            /* its HELLO said it takes CHANGING */
	bool delta;               /* its HELLO said it answers GET_DELTA */
	bool state;               /* its HELLO said it takes STATE and ACK */
	bool vector_wait;         /* its vector comes in a VECTOR frame */
	bool clock;               /* its HELLO said it takes CLOCK */
	bool chain;               /* its HELLO said it takes CHAIN_ENTRIES */
	bool kept;                /* its HELLO said it answers ASK_KEPT */
	struct replicate_peer_status stats;
};

struct asks;
struct transfer;
struct syncer;
struct precopy;
struct state_tx;

struct replicate {
	struct journal *journal;
	struct loop *loop;
	char node_id[65];
	char cluster_id[256];
	char *root;
	int rootfd;               /* disk.c: O_PATH on root, on first use */
	int listen_fd;
	SSL_CTX *tls_server, *tls_client;
	struct keyring *keyring;  /* chaincheck.c */
	struct peer **peers;      /* stable addresses: sessions point here */
	size_t n_peers;
	struct session *sessions;
	void (*diverged)(void *arg, const char *volume, const char *path);
	void *diverged_arg;
	struct journal_versions *versions;  /* keep.c; NULL: none kept */
	bool keep_warned;             /* keep.c: a volume elsewhere, said */
	struct asks *asks;            /* ask.c: questions to peers */
	bool kicked;              /* new commits: pump and look for jobs */
	bool read_more;           /* a session has input left to read */
	struct apply_state apply;     /* apply.c */
	struct transfer_set xfer;     /* transfer.c, reuse.c, fetch.c,
				       * commit.c */
	struct bucket egress, ingress;
	int64_t serve_at;         /* when the egress bucket refills enough */
	struct scrub *scrub;
	struct offer **offers;        /* small files just read, serve.c */
	size_t n_offers;
	int64_t offers_sweep_ns;
	struct precopy *precopies;    /* precopy.c */
	int precopy_efd;              /* a copy finished; -1 until used */
	/* state.c: the one state exchange being received */
	struct {
		struct session *from;
		struct journal_ref *vector;
		size_t n;
		uint64_t count;
		/* origin -> uint64_t *: how far a checked signature of the
		 * origin goes (proven), and below the first head not taken
		 * (capped): what the vector is taken as (state.c) */
		struct strmap proven, capped;
		uint64_t seals;           /* SEALS entries received */
		uint64_t untaken;         /* heads without a proof, or past
					   * the clock bounds */
	} state_rx;
	uint64_t exchanges_served, exchanges_applied;
	int64_t max_clock_skew_ns;    /* clock.c; 0: never warned about */
	int64_t wall_correction_ns;   /* clock.c: added to our stamps */
	struct {
		int64_t resume_ns;    /* the listener is paused until then */
		uint64_t pauses, refused;
		unsigned said;        /* refusal reasons logged (gate.c) */
		struct sockaddr_storage source;  /* outbound connections' */
		socklen_t source_len;            /* 0: any address */
	} gate;
};

/* session.c */
/* Listens on ADDRESS:PORT (port 0: not at all).  0 or -errno. */
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
struct peer *replicate_peer_by_id(struct replicate *r, const char *id);

/* keep.c: a fetch job's file TMP (in DIRFD), complete and verified,
 * goes into the version store instead of the volume; the job is done. */
int keep_fetched(struct replicate *r, const struct journal_job *job,
		 int dirfd, const char *tmp);

/* ask.c: S's peer asks which versions are here, or answers that. */
int ask_on_question(struct session *s, const struct wire_ask_kept *a);
void ask_on_answer(struct session *s, const struct wire_kept *k);
/* Ends questions whose peers are gone or late; when the next is due. */
void ask_tick(struct replicate *r, int64_t now);
int64_t ask_deadline(const struct replicate *r);
void ask_free(struct replicate *r);

/* sync.c */
void sync_on_hello(struct session *s, const struct wire_hello *h);
int sync_on_frame(struct session *s, const struct wire_msg *m);
/* Queues entries the peer lacks; true when it stopped because the queue
 * was full and more is waiting. */
bool sync_pump(struct session *s);
void sync_lag(struct replicate *r, struct peer *p, uint64_t *entries,
	      uint64_t *bytes, uint64_t *behind);

/* S's peer holds what VEC says, no more: `sent` becomes VEC, and every
 * session to it looks at every origin again. */
void sync_sent_reset(struct session *s, const struct wire_vector *vec);
/* What the peer is known to hold of ORIGIN. */
uint64_t sync_sent_get(const struct peer *p, const char *origin);
/* Vectors kept as strmaps of origin -> (uint64_t *) seq. */
uint64_t sync_vec_get(const struct strmap *m, const char *origin);
void sync_vec_raise(struct strmap *m, const char *origin, uint64_t seq);
void sync_vec_clear(struct strmap *m);
/* P said it holds VEC (HELLO, VECTOR, ACK): what its lag counts from. */
void sync_acked(struct peer *p, const struct wire_vector *vec);

/* session.c */
/* HOST:PORT as a socket address.  0 or -EHOSTUNREACH. */
int session_resolve(const char *host, uint16_t port,
		    struct sockaddr_storage *ss, socklen_t *len);

/* clock.c */
/* A PING of S went out at monotonic NOW. */
void clock_on_ping(struct session *s, int64_t now);
/* S's peer pinged with TOKEN, and was answered PONG: CLOCK follows. */
int clock_answer(struct session *s, uint64_t token);
void clock_on_sample(struct session *s, const struct wire_clock *c);

/* chaincheck.c */
/* Loads the journal's keys into the ring and signs from now on. */
int chain_setup(struct replicate *r);
/* What to do with each entry of a CHAIN_ENTRIES frame. */
enum chain_take {
	CHAIN_SKIP,               /* not checked, or refused */
	CHAIN_TAKE,               /* checked; a segment end keeps its signature */
	CHAIN_TAKE_UNSIGNED,      /* checked through a later signature */
};
/* What to do with each entry of L (TAKE, one per entry), and whether
 * some came past a hole (GAP).  KR_EHOSTILE when the peer sent a forged
 * or broken chain: logged, the runs of other origins are still taken. */
int chain_check_entries(struct session *s, const struct wire_entry_list *l,
			uint8_t *take, bool *gap);
/* Whether plain (unchained) entry W may be taken from S's peer. */
bool chain_plain_allowed(struct session *s, const struct wire_entry *w);
/* Checks the runs of proven heads of a CHAIN_STATE frame; FN learns the
 * seq each run's signature covers.  KR_EHOSTILE (logged) when a proof
 * fails: the exchange is refused. */
typedef void (*chain_proven_fn)(void *arg, const char *origin, uint64_t seq);
int chain_check_state(struct session *s, const struct wire_entry_list *l,
		      chain_proven_fn fn, void *arg);
/* Checks one seal of SEALS: 0, or KR_EHOSTILE (logged). */
int chain_check_seal(struct session *s, const struct wire_seal *e);
void chain_on_key(struct session *s, const struct wire_key *k);
/* S is open: its peer's certificate (from SSL, NULL without TLS) is
 * the key of its own entries. */
void chain_on_connected(struct session *s, SSL *ssl);
/* Signs what waited for the sign interval once it is due. */
void chain_tick(struct replicate *r);
/* Sends the certificate of key ID unless S sent it already. */
int chain_send_key(struct session *s, const uint8_t id[CONTENT_HASH_LEN]);

/* keep.c: keeps DIRFD/NAME, the current version of VOLUME/PATH, before
 * a peer's change replaces or deletes it.  Never fails the job. */
void keep_replaced(struct replicate *r, int dirfd, const char *name,
		   const char *volume, const char *path);
/* A restore job (journal_job_restore) failed with ERR: true when it is
 * given up for good (no peer has the content), said in the log. */
bool keep_restore_failed(struct replicate *r, const struct journal_job *job,
			 int err);

/* gate.c */
/* The listener is bound to SS: outbound connections leave from its
 * address too, unless it is a wildcard. */
void gate_note_listen(struct replicate *r, const struct sockaddr_storage *ss,
		      socklen_t len);
void gate_bind_source(struct replicate *r, int fd, int family);
/* Whether inbound S comes from the address P is configured at. */
bool gate_from_peer(struct replicate *r, const struct session *s,
		    const struct peer *p);
/* Whether a connection from SS, accepted as FD, may wait for its HELLO;
 * its address as text into SOURCE (GATE_SOURCE_MAX bytes). */
bool gate_admit(struct replicate *r, const struct sockaddr_storage *ss,
		int fd, char *source);
/* accept(2) failed with ERR for lack of resources: pause the listener. */
void gate_pause(struct replicate *r, int err);
void gate_tick(struct replicate *r, int64_t now);
/* S has not said HELLO in time. */
bool gate_expired(const struct session *s, int64_t now);

/* state.c */
/* Sends this node's whole vector (after HELLO, to an identified peer). */
int state_send_vector(struct session *s);
/* V is what the peer of S holds: its acknowledgement. */
void state_on_vector(struct session *s, const struct wire_vector *v);
/* The peer's ORIGIN stands at FROM, below this node's floor: whether
 * an exchange is (now) due to it. */
bool state_want(struct session *s, const char *origin, uint64_t from);
/* Streams the exchange due or under way; true while it is not done. */
bool state_pump(struct session *s);
int state_on_frame(struct session *s, const struct wire_msg *m);
/* Sends an ACK when one is due. */
void state_tick(struct session *s, int64_t now);
/* S is closing: its exchanges, either way, end. */
void state_session_gone(struct session *s);

/* scrub.c */
int scrub_new(struct scrub **out);
void scrub_free(struct scrub *sc);
void scrub_tick(struct replicate *r, int64_t now);
/* Monotonic time of its next step or pass; INT64_MAX: none. */
int64_t scrub_deadline(const struct replicate *r);

/* serve.c: answers a GET_CHUNKLIST. */
int serve_chunklist(struct replicate *r, struct session *s,
		    const struct wire_get_chunklist *g);

/* precopy.c */
/* A peer is hashing a new version of C's file: copy the version held
 * here, if it is C's base, so the transfer to come finds it made. */
void precopy_on_changing(struct replicate *r, struct peer *p,
			 const struct wire_changing *c);
/* The copy of BASE at VOLUME/PATH for a transfer whose directory is
 * DIRFD: 1 with its temp file's name in TMP and descriptor in *FD, now
 * the caller's; -EINPROGRESS while it is still being made; 0 when there
 * is none to take (a failed or unusable one is dropped). */
int precopy_take(struct replicate *r, const char *volume, const char *path,
		 const uint8_t base[CONTENT_HASH_LEN], int dirfd,
		 char tmp[48], int *fd);
/* Entry E arrived: a copy made ahead for its path is not needed when E
 * brings no new content (a touch, a chmod, a delete). */
void precopy_on_entry(struct replicate *r, const struct wire_entry *e);
/* VOLUME/PATH got a version that did not need a copy: drop any. */
void precopy_drop(struct replicate *r, const char *volume, const char *path);
/* Drops copies nobody took for a while. */
void precopy_tick(struct replicate *r, int64_t now);
bool precopy_pending(const struct replicate *r);
/* Stops every copy, removes their temp files. */
void precopy_free_all(struct replicate *r);

/* serve.c */
/* Answers the chunks S asked for while its output has room. */
int serve_queue(struct replicate *r, struct session *s);
/* Queues a GET_DELTA and answers what it can; -ENOBUFS when S has more
 * waiting than a peer keeping to its fetch window could. */
int serve_ask_delta(struct replicate *r, struct session *s,
		    const struct wire_get_delta *g);
/* S has requests waiting. */
bool serve_pending(const struct session *s);
/* After an ENTRIES frame: sends C's content unasked when C is a recent
 * small file of this node (see serve.c). */
void serve_push(struct replicate *r, struct session *s,
		const char *volume, const char *path, uint64_t size,
		const uint8_t *hash);
/* Frees offers too old to be pushed (see serve.c). */
void serve_offers_expire(struct replicate *r, int64_t now);
/* Lets go of the file S last served from once it has been idle a while. */
void serve_idle(struct session *s, int64_t now);
/* Lets go of what serving S kept (the file last read, its index). */
void serve_release(struct session *s);

#endif
