/* Internals shared by the replicator's source files. */
#ifndef KRAKEN_REPLICATE_INT_H
#define KRAKEN_REPLICATE_INT_H

#include "replicate.h"
#include "apply.h"
#include "disk.h"
#include "outcome.h"
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
struct session_ops;
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
	const struct session_ops *session_ops;  /* replicate.c */
	void (*diverged)(void *arg, const char *volume, const char *path);
	void *diverged_arg;
	struct journal_versions *versions;  /* keep.c; NULL: none kept */
	bool keep_warned;             /* keep.c: a volume elsewhere, said */
	struct asks *asks;            /* ask.c: questions to peers */
	bool kicked;              /* new commits: pump and look for jobs */
	bool read_more;           /* a session has input left to read */
	struct apply_state apply;     /* apply.c */
	struct outcome_state outcome; /* outcome.c */
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

#endif
