/*
 * Replication: peer sessions, journal-range catch-up, chunk transfer and
 * applying remote versions to disk.
 *
 * Topology: one TCP connection per pair of nodes, dialled by the node
 * whose id sorts lower, so both ends never race to build two.  After the
 * transport is up (TLS verified when configured) each side sends HELLO
 * with its node id, cluster id and version vector; from then on each side
 * streams, for every origin, the entries the other lacks, in seq order,
 * and keeps streaming as new entries are committed (push the metadata,
 * pull the content).  Content is fetched only for the versions the
 * journal asks to put on disk (its jobs), chunk by chunk, from local
 * files first and then from any peer holding the version.
 *
 * Owned by the event-loop thread, like the journal it reads and writes.
 */
#ifndef KRAKEN_REPLICATE_H
#define KRAKEN_REPLICATE_H

#include "content.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hist;
struct journal;
struct loop;
struct replicate;
struct keyring;
typedef struct ssl_ctx_st SSL_CTX;

struct replicate_peer_config {
	const char *id;
	const char *host;
	uint16_t port;
};

struct replicate_options {
	const char *node_id;
	const char *cluster_id;
	const char *listen_address;
	uint16_t port;
	const struct replicate_peer_config *peers;  /* the other nodes */
	size_t n_peers;
	const char *root;                           /* volume.root_path */
	uint64_t egress_bits_per_sec;               /* 0: unlimited */
	uint64_t ingress_bits_per_sec;
	SSL_CTX *tls_server;                        /* NULL: plain TCP */
	SSL_CTX *tls_client;
	/* Signs this node's chains and checks everyone's (keyring.h);
	 * required: one that verifies nothing in a plaintext cluster. */
	struct keyring *keyring;
	/* Called when the disk at VOLUME/PATH holds something the journal
	 * does not (a local write the watcher has not recorded yet): the
	 * watcher should look at it. */
	void (*diverged)(void *arg, const char *volume, const char *path);
	void *diverged_arg;
	/* A peer's clock off ours by more is warned about; 0: never. */
	int64_t max_clock_skew_ns;
	/* Where what a peer's change replaces or deletes here is kept
	 * (journal.h, versions); NULL: nothing is kept. */
	struct journal_versions *versions;
};

struct replicate_peer_status {
	char id[65];
	char address[300];
	bool connected;
	int64_t last_seen_ns;     /* wall clock; 0 never */
	uint64_t lag_entries;     /* entries we hold that it lacks */
	uint64_t lag_bytes;       /* their content size: what it must pull */
	uint64_t behind_entries;  /* entries it holds that we lack */
	bool rejoining;           /* its HELLO said it is learning the
				   * history itself (its journal is new) */
	uint64_t entries_in, entries_out;
	/* Its entries this node refused: forged or broken chains, entries
	 * it may not relay, hostile paths, clock values out of bounds. */
	uint64_t entries_refused;
	uint64_t bytes_in, bytes_out;
	uint64_t chunk_bytes_in;
	/* Its wall clock minus ours (clock.c), once measured. */
	bool clock_known;
	bool clock_skewed;        /* off by more than max_clock_skew */
	int64_t clock_offset_ns;
};

/* Binds the listening socket and registers with LOOP.  J and LOOP are
 * borrowed and must outlive the replicator. */
int replicate_new(struct journal *j, struct loop *loop,
		  const struct replicate_options *opt, struct replicate **out);
void replicate_free(struct replicate *r);

/* Replaces the set of peers (the other nodes) on a configuration reload:
 * new ids are dialled or accepted, removed ids are disconnected and
 * refused from then on, a changed address is redialled.  State of kept
 * peers (what they hold, counters) survives.  0 or -ENOMEM, in which case
 * nothing changed. */
int replicate_set_peers(struct replicate *r,
			const struct replicate_peer_config *peers, size_t n);

/* Bits per second, 0 for no limit; takes effect at once. */
void replicate_set_bandwidth(struct replicate *r, uint64_t egress_bps,
			     uint64_t ingress_bps);

/* The bytes of a small file of this node just hashed as C (one chunk):
 * kept a few seconds, so that pushing it to peers needs no new read. */
void replicate_offer(struct replicate *r, const struct content *c,
		     const void *data);

/* After a journal commit: announce new entries, look for new jobs. */
void replicate_kick(struct replicate *r);
/* This node starts hashing a new version of VOLUME/PATH (SIZE bytes),
 * whose journalled content is BASE: peers that hold BASE may start the
 * copy the new version will need (CHANGING, see wire.h). */
void replicate_changing(struct replicate *r, const char *volume,
			const char *path, const uint8_t base[CONTENT_HASH_LEN],
			uint64_t size);

/* Timers and apply work; call once per loop turn.  May record into the
 * journal; the caller commits. */
void replicate_tick(struct replicate *r);
int64_t replicate_next_deadline(struct replicate *r);

/* Fills up to MAX peers; returns how many peers there are. */
size_t replicate_peers(struct replicate *r, struct replicate_peer_status *out,
		       size_t max);
/* Jobs waiting for content or disk; *STUCK: how many of them keep
 * failing (journal.h, JOURNAL_JOB_STUCK). */
uint64_t replicate_backlog(struct replicate *r, uint64_t *stuck);
/* Remote versions put on disk since start. */
uint64_t replicate_applied(struct replicate *r);
/* Microseconds from a remote entry's arrival to its version being on
 * disk, for versions that arrived since start. */
const struct hist *replicate_apply_latency(struct replicate *r);
/* State exchanges sent to peers behind what this node compacted, and
 * received from peers, since start. */
void replicate_exchanges(const struct replicate *r, uint64_t *served,
			 uint64_t *applied);
/* Drops every session so that each starts again with HELLO and a full
 * exchange of version vectors. */
void replicate_resync(struct replicate *r);
/* Restores VOLUME/PATH in place as version REF, whose content this node
 * does not keep, from peers (keep.c): 0 once queued (the log says how
 * it ends), -EBUSY while another version of the path is being applied. */
struct journal_ref;
int replicate_restore(struct replicate *r, const char *volume,
		      const char *path, const struct journal_ref *ref);

/* Fetches version REF of VOLUME/PATH from peers into the version store
 * (keep.c), for a restore to a file: 0 once queued (the log says how it
 * ends), -EOPNOTSUPP when this node keeps no versions, -ENOENT when REF
 * is no such version. */
int replicate_fetch(struct replicate *r, const char *volume, const char *path,
		    const struct journal_ref *ref);

/* Versions asked about in one question (the wire's WIRE_MAX_ASK_KEPT). */
#define REPLICATE_ASK_MAX 256

/* What one peer said of the versions replicate_ask_kept asked about. */
enum replicate_kept_status {
	REPLICATE_KEPT_ASKED,       /* (only while the question is open) */
	REPLICATE_KEPT_ANSWERED,    /* here[] says which it has */
	REPLICATE_KEPT_OFFLINE,     /* not connected */
	REPLICATE_KEPT_SILENT,      /* asked; no answer in time */
	REPLICATE_KEPT_OLD,         /* its agent cannot be asked */
};

struct replicate_kept {
	char id[65];
	enum replicate_kept_status status;
	uint8_t here[REPLICATE_ASK_MAX];   /* 1: it has the i-th version */
};

/* The answers to a question: one per configured peer.  Loop thread. */
typedef void (*replicate_kept_fn)(void *arg, uint64_t cookie,
				  const struct replicate_kept *peers,
				  size_t n_peers);

/*
 * Asks every connected peer which of the N (1..REPLICATE_ASK_MAX)
 * versions HASHES of VOLUME/PATH it keeps (ask.c).  DONE is called once,
 * within about two seconds, with COOKIE; possibly before this returns
 * (no peer to wait for).  Never called after replicate_free.  0, -EINVAL,
 * -EBUSY (too many questions open) or -ENOMEM; DONE is not called then.
 */
int replicate_ask_kept(struct replicate *r, const char *volume,
		       const char *path,
		       const uint8_t (*hashes)[CONTENT_HASH_LEN], size_t n,
		       replicate_kept_fn done, void *arg, uint64_t cookie);
/* The scrub (scrub.c): a pass re-reads every file each PERIOD_MS (0: no
 * passes but those asked for); a pass now, at full pace. */
void replicate_scrub_period(struct replicate *r, uint64_t period_ms);
void replicate_scrub_request(struct replicate *r);
struct replicate_scrub_stats {
	uint64_t files, bytes;    /* checked since start */
	uint64_t damaged;         /* files found damaged by the scrub */
	uint64_t repaired;        /* damaged files made again from peers */
	uint64_t damaged_chunks;  /* reused chunks that did not check when a
				   * new version was made (reuse.c) */
	uint64_t passes;
	int64_t last_pass_ns;     /* wall clock; 0: none yet */
	bool running;
};
void replicate_scrub_stats(const struct replicate *r,
			   struct replicate_scrub_stats *out);

/* With HOLD, entries are pulled and served as usual but nothing is
 * written to the volumes (no job, no copy made ahead): a node learning
 * the cluster's history before it adopts its disk (journal_adopt).  Its
 * HELLO says so (WIRE_HELLO_REJOINING); released, every session starts
 * again so that peers learn it holds history now. */
void replicate_hold(struct replicate *r, bool hold);

#endif
