/*
 * The journal: every change this node knows, in one SQLite database (WAL).
 *
 * Identity.  A change is (origin, seq).  An origin is the node id plus a
 * random 64-bit epoch drawn when the journal file is created, printed
 * "vm1@1f2e3d4c5b6a7980"; a node whose journal is lost therefore starts a
 * new origin and never reuses a sequence number its peers hold.  seq counts
 * 1, 2, 3... per origin with no gaps; the Lamport clock is one more than
 * the largest Lamport value this journal has seen.
 *
 * Chain.  Each origin's changes form a hash chain that the origin signs
 * as they commit (chain.c): a peer can relay them, never forge them.
 *
 * Versions.  Every change row describes the whole version it creates
 * (mode with its type bits, owner, size, mtime, content hash or link
 * target), and names as its base the version it replaced on its origin.
 *
 * Batching.  journal_record_*() open a transaction on first use and add to
 * it; journal_flush() commits.  The agent flushes once per event-loop turn,
 * so a burst of file events costs one commit.  The database runs with
 * synchronous=NORMAL: a commit survives a killed process, and a power cut
 * can only lose the last commits, which the start-up scan re-records from
 * disk.  journal_sync() makes everything committed durable; code that
 * sends entries off the node calls it first, so no sequence number a peer
 * has seen can ever be lost.
 *
 * Threads.  A struct journal is used by one thread.  Readers on other
 * threads open their own (JOURNAL_READONLY), which WAL lets run beside the
 * writer.
 */
#ifndef KRAKEN_JOURNAL_H
#define KRAKEN_JOURNAL_H

#include "content.h"
#include "path.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct journal;

enum journal_op {
	JOURNAL_PUT = 1,          /* file content (and metadata) */
	JOURNAL_MKDIR,
	JOURNAL_SYMLINK,
	JOURNAL_DELETE,
	JOURNAL_META,             /* mode, owner or mtime; content unchanged */
	JOURNAL_VOLUME_CREATE,
	JOURNAL_VOLUME_REMOVE,
};

#define JOURNAL_ORIGIN_MAX 96     /* "node@16hex" and a NUL */

enum journal_open_flags {
	JOURNAL_READONLY = 1 << 0,
	/* Copy the WAL back into the database on a thread of its own, so
	 * the fsyncs of a checkpoint never land on a commit of this
	 * connection (the agent's event loop). */
	JOURNAL_BACKGROUND_CHECKPOINT = 1 << 1,
};

/* A path's state as this node's disk holds it. */
struct journal_state {
	uint32_t mode;            /* 0 when absent (deleted, never seen) */
	uint32_t uid, gid;
	uint64_t size;
	int64_t mtime_ns;
	uint64_t ino;
	int64_t ctime_ns;
	uint8_t hash[CONTENT_HASH_LEN];
	bool has_hash;
	char *target;             /* symlink target, owned by the holder */
};

struct journal_ref {
	char origin[JOURNAL_ORIGIN_MAX];
	uint64_t seq;
};

/* One change as read back; every pointer is borrowed for the callback. */
/* The largest Lamport value a change may carry.  A node's next change
 * takes one more than the largest it has seen, and SQLite keeps signed
 * 64-bit integers: an entry with 2^64-1 made the next change wrap to 0.
 * No cluster counts to 2^62 changes, so anything above is refused. */
#define JOURNAL_LAMPORT_MAX (UINT64_C(1) << 62)

/* Where a change stands in its origin's hash chain (chain.c). */
struct journal_chain {
	bool chained;             /* prev and digest are known */
	uint8_t prev[CONTENT_HASH_LEN];    /* chain hash of the previous one */
	uint8_t digest[CONTENT_HASH_LEN];  /* of this change's fields */
	bool seg_end;             /* a signature covers the chain up to here */
	uint8_t key_id[CONTENT_HASH_LEN];  /* the signing key; zeros: unsigned */
	const uint8_t *sig;       /* borrowed, like every pointer of a change */
	size_t sig_len;
	/* A head served in a state exchange (exchange_proof.c): the digests
	 * of the origin's changes after it, up to the next head of the
	 * proof or, with seg_end, to the signature, which is then at seq +
	 * n_after.  Without them elsewhere. */
	const uint8_t (*after)[CONTENT_HASH_LEN];
	size_t n_after;
};

struct journal_change {
	int64_t id;               /* local arrival order */
	struct journal_ref ref;
	uint64_t lamport;
	int64_t wall_ns;
	const char *volume;
	const char *path;
	enum journal_op op;
	uint32_t mode, uid, gid;
	uint64_t size;
	int64_t mtime_ns;
	bool has_hash;
	uint8_t hash[CONTENT_HASH_LEN];
	const char *target;
	const struct journal_ref *bases;
	size_t n_bases;
	struct journal_chain chain;
};

struct journal_filter {
	const char *volume;       /* NULL: any */
	const char *path_prefix;  /* NULL: any */
	const char *origin;       /* node id or full origin; NULL: any */
	int64_t since_ns, until_ns;  /* wall clock; 0: unbounded */
	enum journal_op op;       /* 0: any */
	int64_t limit;            /* 0: all */
	int64_t before_id;        /* 0: from the newest; paging cursor */
	bool oldest_first;
};

struct journal_info {
	char node_id[JOURNAL_ORIGIN_MAX];
	char origin[JOURNAL_ORIGIN_MAX];
	uint64_t own_seq;         /* last seq this origin issued */
	uint64_t lamport;
	uint64_t n_changes;
	uint64_t n_paths;         /* current, not deleted, volumes excluded */
	uint64_t n_volumes;
	uint64_t n_contents;
	uint64_t n_chunks;        /* chunk rows: a list kept as runs of another
				   * (chunks.c) has rows for its new chunks only */
	uint64_t journal_bytes;   /* the database file */
	uint64_t wal_bytes;       /* its write-ahead log, not yet copied in */
	int schema_version;
};

typedef int (*journal_change_fn)(void *arg, const struct journal_change *c);
typedef int (*journal_vector_fn)(void *arg, const char *origin,
				 uint64_t max_seq);
typedef int (*journal_state_fn)(void *arg, const char *volume,
				const char *path, const struct journal_state *s);

/*
 * Opens (creating when allowed) the journal at PATH for NODE_ID, applying
 * pending migrations.  A journal made for another node id is refused with
 * KR_EIDENTITY; one with a newer schema with KR_ESCHEMA.  NODE_ID may be
 * NULL with JOURNAL_READONLY.  On failure *errmsg (when non-NULL) gets a
 * malloc'd sentence for the user.  Returns 0 or a negative code.
 */
int journal_open(const char *path, const char *node_id, unsigned flags,
		 struct journal **out, char **errmsg);
/* Commits what is pending, then closes.  NULL is ignored. */
void journal_close(struct journal *j);

int journal_flush(struct journal *j);
int journal_sync(struct journal *j);
/* This node's own seqs up to this one are known to be durable. */
uint64_t journal_durable_seq(const struct journal *j);
/* Sizes in bytes of the database file and of its WAL (frames not yet
 * copied into it, and room kept for more); cheap: two stat calls. */
void journal_sizes(struct journal *j, uint64_t *db_bytes, uint64_t *wal_bytes);
/* "node@epoch" of this journal's own changes; borrowed. */
const char *journal_origin(const struct journal *j);
/* Changes recorded since the last successful flush. */
unsigned journal_pending(const struct journal *j);
/*
 * Runs the reads that follow in one read transaction (nothing to do
 * inside a batch of writes), until journal_read_end.  For many lookups
 * in a row: a transfer looks up every chunk of its list for a local
 * copy, 27,000 for a GiB, and a transaction for each took four times as
 * long.  A write in between ends it first.
 */
int journal_read_begin(struct journal *j);
void journal_read_end(struct journal *j);

/*
 * Local changes.  ST describes the new version (st_mode with type bits).
 * Each returns 0, or a negative code with nothing recorded.
 */
int journal_record_put(struct journal *j, const char *volume,
		       const char *path, const struct stat *st,
		       const struct content *content);
int journal_record_mkdir(struct journal *j, const char *volume,
			 const char *path, const struct stat *st);
int journal_record_symlink(struct journal *j, const char *volume,
			   const char *path, const struct stat *st,
			   const char *target);
int journal_record_meta(struct journal *j, const char *volume,
			const char *path, const struct stat *st);
int journal_record_delete(struct journal *j, const char *volume,
			  const char *path);
int journal_record_volume(struct journal *j, const char *volume, bool create,
			  const struct stat *st);

/* Refreshes the stat fields a scan compares, without a new change. */
int journal_touch_state(struct journal *j, const char *volume,
			const char *path, const struct stat *st);

/*
 * The current state of VOLUME/PATH into *out (release with
 * journal_state_release).  Returns 0, or -ENOENT when the journal has no
 * version of it (a deleted path returns 0 with mode 0).
 */
int journal_lookup(struct journal *j, const char *volume, const char *path,
		   struct journal_state *out);
void journal_state_release(struct journal_state *s);

/* Whether this node's disk holds anything under directory VOLUME/DIR,
 * as the journal knows it (a current version that is not a delete). */
bool journal_subtree_live(struct journal *j, const char *volume,
			  const char *dir);
/* Every current (not deleted) path of VOLUME, the volume root included
 * as "".  FN returning non-zero stops the walk and is returned. */
int journal_foreach_state(struct journal *j, const char *volume,
			  journal_state_fn fn, void *arg);
/* The first regular file after (VOLUME, PATH) in that order, with its
 * state: its volume into VOL_OUT, its path malloc'd into *PATH_OUT.  0,
 * -ENOENT past the last, or a negative code. */
int journal_next_file(struct journal *j, const char *volume, const char *path,
		      char *vol_out, size_t vcap, char **path_out,
		      struct journal_state *st);
/* The size of every regular file the volumes hold, as recorded. */
int journal_files_bytes(struct journal *j, uint64_t *out);
/* Every volume that currently exists, with its root's state. */
int journal_foreach_volume(struct journal *j, journal_state_fn fn, void *arg);

/* Queries. */
int journal_log(struct journal *j, const struct journal_filter *f,
		journal_change_fn fn, void *arg);
int journal_history(struct journal *j, const char *volume, const char *path,
		    journal_change_fn fn, void *arg);
/*
 * The version vector (vector.c): per origin the highest seq held, floors
 * included, sorted by origin; origins holding nothing are left out.
 * Served from memory: a read costs no query, however many origins.  A
 * read-write connection keeps it true from its own writes, so only the
 * one connection that changes the journal (the agent's) may read it so;
 * a read-only connection reads it again once another one committed.
 */
int journal_vector(struct journal *j, journal_vector_fn fn, void *arg);
/* The same as an array, malloc'd into *OUT (N entries; free it). */
int journal_vector_copy(struct journal *j, struct journal_ref **out,
			size_t *n);
/*
 * Generations: a counter bumped each time an origin is touched (its seq
 * rose, its own changes were signed, its floor rose) or the vector is
 * read again from the database (every origin then counts as touched).
 * journal_vector_gen is the current one; journal_vector_since calls FN
 * for every origin touched after GEN, in generation order, with its
 * value and generation, so that a reader that dealt with everything up
 * to a generation looks again only at what changed since.  FN may change
 * the journal (the walk is over a copy taken first); a non-zero return
 * stops the walk and is returned.
 */
typedef int (*journal_since_fn)(void *arg, const char *origin,
				uint64_t max_seq, uint64_t gen);
uint64_t journal_vector_gen(struct journal *j);
int journal_vector_since(struct journal *j, uint64_t gen,
			 journal_since_fn fn, void *arg);
int journal_info(struct journal *j, struct journal_info *out);
/*
 * Consistency check: SQLite's quick_check plus the journal's own
 * invariants (every origin's seqs gapless from 1).  Returns 0, or
 * KR_ECORRUPT with a malloc'd explanation in *why.
 */
int journal_check(struct journal *j, char **why);

/* ---- retention and compaction (compact.c) ----------------------------- */

struct journal_retention {
	int64_t retention_ns;     /* history younger than this always stays */
	int64_t pin_max_ns;       /* a peer silent this long holds nothing */
	int64_t now_ns;           /* wall clock, nanoseconds since the epoch */
};

struct journal_compact_stats {
	uint64_t examined;        /* old changes looked at */
	uint64_t changes;         /* superseded versions removed */
	uint64_t tombstones;      /* settled deletes removed, paths forgotten */
	uint64_t contents;        /* chunk lists no version needs any more */
	uint64_t pages_freed;     /* database pages given back to the disk */
	uint64_t retired;         /* old epochs retired (compact.c) */
	int64_t horizon_ns;       /* retention cut-off of this pass */
	int64_t elapsed_ns;
	/* Where the pass stands; zeroed to start one, then the steps'. */
	int phase;
	int64_t cursor_ns, cursor_id;
};

/* The cluster's other nodes, as configured: each holds compaction back
 * until it has acknowledged a change, or has been silent for
 * pin_max_ns.  A node new to the list counts as heard from NOW_NS.
 * Nodes no longer listed are forgotten with their acknowledgements. */
int journal_peers_set(struct journal *j, const char *const *ids, size_t n,
		      int64_t now_ns);
/* PEER reported (HELLO, VECTOR or ACK) holding every change of each
 * origin up to the seq given: its acknowledgement, kept across
 * restarts.  Acknowledgements never go down (a peer that lost its
 * journal says so by a new origin, not a lower seq). */
int journal_peer_report(struct journal *j, const char *peer,
			const struct journal_ref *vector, size_t n,
			int64_t now_ns);
/*
 * One step of a compaction pass: one transaction of at most about
 * BUDGET_MS, adding what it removed to *ST (start a pass with *ST
 * zeroed).  Returns 1 while the pass has more to examine, 0 when it is
 * over (freed pages then go back to the file system), or a negative
 * code.  Commits what was pending first.
 */
int journal_compact_step(struct journal *j, const struct journal_retention *r,
			 unsigned budget_ms, struct journal_compact_stats *st);
/* A whole pass, step after step. */
int journal_compact(struct journal *j, const struct journal_retention *r,
		    struct journal_compact_stats *st);
/* Wall time before which history was compacted (0: never). */
int journal_compacted_before(struct journal *j, int64_t *out_ns);
/* Whether ORIGIN is an old epoch of which this node holds nothing but
 * its floor, and PEER acknowledged it up to that floor: it needs nothing
 * of it, whether or not it still names it (compact.c, old epochs). */
bool journal_epoch_acked(struct journal *j, const char *peer,
			 const char *origin);
/* While held (a state exchange being served), compaction steps do
 * nothing.  DELTA is +1 or -1. */
void journal_compaction_hold(struct journal *j, int delta);

/* ---- kept versions (versions.c) --------------------------------------- */

/* The store of content that peers' changes replaced or deleted here (the
 * top of versions.c).  Opened on DIR, made when CREATE, which also
 * removes what a crash left unrecorded. */
struct journal_versions;

/* The store is ROOT/.krakenfs-versions, on the volumes' file system (a
 * hard link cannot leave it), where no volume can be named. */
#define JOURNAL_VERSIONS_DIR ".krakenfs-versions"

int journal_versions_open(struct journal *j, const char *dir, bool create,
			  struct journal_versions **out);
void journal_versions_close(struct journal_versions *v);
/* Keeps the regular file DIRFD/NAME, whose content is HASH of SIZE bytes
 * (the journal's current version of VOLUME/PATH), before it goes: 0, or
 * a negative code and nothing kept (-ESTALE: the file is not that). */
int journal_versions_keep(struct journal_versions *v, int dirfd,
			  const char *name, const uint8_t hash[CONTENT_HASH_LEN],
			  uint64_t size, const char *volume, const char *path,
			  int64_t now_ns);
/* A descriptor of the kept content HASH, or -ENOENT. */
int journal_versions_get(struct journal_versions *v,
			 const uint8_t hash[CONTENT_HASH_LEN]);
/* The store under ROOT (a volume.root_path) when one was made there,
 * opened without creating or cleaning anything; *OUT NULL when there is
 * none.  0 or a negative code. */
int journal_versions_find(struct journal *j, const char *root,
			  struct journal_versions **out);
/* Whether STORE has content HASH, whole (it may be NULL: none). */
bool journal_versions_has(struct journal_versions *store,
			  const uint8_t hash[CONTENT_HASH_LEN]);
/* Where version C's content is on this node: "live" (LIVE, the path's
 * current state or NULL, has it), "kept" (STORE has it), "not here", or
 * "-" when C has no content (a directory, symlink or delete). */
const char *journal_versions_where(struct journal_versions *store,
				   const struct journal_state *live,
				   const struct journal_change *c);
/* Bytes and count kept, and when the oldest was kept (0: none). */
int journal_versions_usage(struct journal_versions *v, uint64_t *bytes,
			   uint64_t *count, int64_t *oldest_ns);
/* The same from J's table alone, for VOLUME (NULL: every volume). */
int journal_versions_stats(struct journal *j, const char *volume,
			   uint64_t *bytes, uint64_t *count, int64_t *oldest_ns);
/* Measures what the versions kept since the last call cost on disk
 * (versions.disk; until then a version counts its size): cheap when
 * none was kept.  Once the replacing version is in place, not before.
 * The number of paths measured (their rows wait in the open batch), or
 * a negative code. */
int journal_versions_measure_fresh(struct journal_versions *v);
/* Removes what was kept before NOW_NS - KEEP_NS, then the oldest while
 * more than MAX_BYTES are kept; *REMOVED counts them. */
int journal_versions_prune(struct journal_versions *v, int64_t keep_ns,
			   uint64_t max_bytes, int64_t now_ns,
			   uint64_t *removed);

/* ---- restoring (restore.c) -------------------------------------------- */

enum journal_restore_status {
	JOURNAL_RESTORE_DONE,
	JOURNAL_RESTORE_NOT_YET,  /* no version by then: first_ns says when */
	JOURNAL_RESTORE_DELETED,  /* deleted then (ref, wall_ns: by whom) */
	JOURNAL_RESTORE_NOT_FILE, /* a directory or symlink then */
	JOURNAL_RESTORE_NOT_KEPT, /* its content is not kept on this node */
};

struct journal_restore_info {
	enum journal_restore_status status;
	bool found;               /* a version was current then: */
	struct journal_ref ref;
	int64_t wall_ns;
	uint32_t mode;
	uint64_t size;
	int64_t first_ns;         /* else: the first version's time, or 0 */
};

/* Writes VOLUME/PATH as it was at AT_NS (the top of restore.c) as NAME in
 * DIRFD: a new name (-EEXIST when taken) or, with REPLACE, over what is
 * there.  Content from STORE (may be NULL) or the live file under ROOT
 * (NULL: none).  0 with INFO->status saying whether it was written, or
 * a negative code. */
int journal_restore_file(struct journal *j, struct journal_versions *store,
			 const char *root, const char *volume, const char *path,
			 int64_t at_ns, int dirfd, const char *name,
			 bool replace, struct journal_restore_info *info);

/* VOLUME/PATH's version current at AT_NS (restore.c): found, and its
 * fields; target malloc'd for a symlink (free it). */
struct journal_version_at {
	bool found;
	struct journal_ref ref;
	int64_t wall_ns;
	uint32_t mode, uid, gid;  /* mode 0: deleted then */
	uint64_t size;
	int64_t mtime_ns;
	bool has_hash;
	uint8_t hash[CONTENT_HASH_LEN];
	char *target;
};

int journal_version_at(struct journal *j, const char *volume, const char *path,
		       int64_t at_ns, struct journal_version_at *out);
/* Every path of VOLUME the journal has a change of, parents before their
 * children (sorted). */
int journal_paths(struct journal *j, const char *volume,
		  int (*fn)(void *arg, const char *path), void *arg);

/* ---- state exchange (exchange.c) ------------------------------------- */

/*
 * A peer whose version vector is below what this node compacted cannot
 * be sent the missing range: it gets this node's vector and every head
 * instead.  Serving: journal_exchange_open takes both at one instant
 * (after committing what is pending); journal_exchange_next hands out
 * the heads in order.  Receiving: journal_exchange_begin, then each head
 * with journal_exchange_stage, then journal_exchange_apply, which in one
 * transaction makes this node's heads what a full history would have
 * made them (the top of exchange.c says why that is sound).
 */
struct journal_exchange;

int journal_exchange_open(struct journal *j, struct journal_exchange **out,
			  const struct journal_ref **vector, size_t *n);
/* Up to MAX heads to FN; 1 while more are left, 0 at the end.  Heads come
 * in (origin, seq) order.  A head this node can prove comes chained, with
 * its proof in its chain fields (journal_chain): a run of heads of one
 * segment links up, and its last one carries the signature.  The others
 * (changes from before their origin's chain began, or learned without a
 * proof) come unchained.  A run is never cut by MAX. */
int journal_exchange_next(struct journal *j, struct journal_exchange *x,
			  unsigned max, journal_change_fn fn, void *arg);
void journal_exchange_close(struct journal *j, struct journal_exchange *x);

/* The signature proving the sender's vector entry (ORIGIN, SEQ), when
 * this node holds one: 0, or -ENOENT. */
int journal_exchange_seal(struct journal *j, const char *origin, uint64_t seq,
			  uint8_t chain[CONTENT_HASH_LEN],
			  uint8_t key[CONTENT_HASH_LEN], uint8_t *sig,
			  size_t *sig_len);

int journal_exchange_begin(struct journal *j);
/* KR_EHOSTILE for an invalid entry, -E2BIG past the staging cap, -ERANGE
 * for a Lamport value or wall time past the bounds journal_add_remote
 * keeps.  A chained C must have been checked up to its signature by the
 * caller: its prev and digest are kept with it, and its proof (the
 * digests after it, and with seg_end the signature) is kept too, so this
 * node can prove it in turn. */
int journal_exchange_stage(struct journal *j, const struct journal_change *c);
/* Keeps a checked signature of ORIGIN's chain hash CHAIN at SEQ, staged
 * like a head (it proved the sender's vector entry). */
int journal_exchange_stage_seal(struct journal *j, const char *origin,
				uint64_t seq, const uint8_t chain[CONTENT_HASH_LEN],
				const uint8_t key[CONTENT_HASH_LEN],
				const uint8_t *sig, size_t sig_len);
/* Applies what was staged against the sender's VECTOR; the staging is
 * cleared either way.  *CHANGED gets the number of paths retargeted. */
int journal_exchange_apply(struct journal *j, const struct journal_ref *vector,
			   size_t n, uint64_t *changed);

/* Every change of ORIGIN with seq <= this is known here, held or
 * compacted (0: none compacted). */
uint64_t journal_floor(struct journal *j, const char *origin);

/* ---- Docker mount references (this node only) ------------------------- */

/* Each commits at once (they come from the API thread's connection). */
int journal_mount_add(struct journal *j, const char *volume, const char *id);
/* -ENOENT when that reference was not there. */
int journal_mount_remove(struct journal *j, const char *volume,
			 const char *id);
/* Number of references to VOLUME. */
int journal_mount_count(struct journal *j, const char *volume, uint64_t *out);
/* Every reference: FN(arg, volume, id, created_ns); non-zero stops. */
int journal_mounts(struct journal *j,
		   int (*fn)(void *arg, const char *volume, const char *id,
			     int64_t created_ns), void *arg);

/* Small key/value facts beside the journal (e.g. "volume_root"). */
int journal_meta_set(struct journal *j, const char *key, const char *value);
/* *out is malloc'd; -ENOENT when the key is absent. */
int journal_meta_get(struct journal *j, const char *key, char **out);

/* ---- adopting a disk the journal does not know (adopt.c) -------------- */

enum journal_adoption {
	JOURNAL_ADOPT_CURRENT,    /* the version the path must hold */
	JOURNAL_ADOPT_STALE,      /* an older version: its job replaces it */
	JOURNAL_ADOPT_NEW,        /* known nowhere, the path is free: record */
	JOURNAL_ADOPT_TAKEN,      /* known nowhere, another version holds the
				   * path: keep it as a conflict copy */
};

/*
 * The disk holds ST at VOLUME/PATH (HASH for a file, TARGET for a
 * symlink), which the journal has no current state for: after learning
 * the cluster's history, judges it against every version of the path
 * (adopt.c).  CURRENT and STALE set the path's current state (no change
 * is recorded) and retarget it; NEW and TAKEN change nothing.
 */
int journal_adopt(struct journal *j, const char *volume, const char *path,
		  const struct stat *st, const uint8_t *hash,
		  const char *target, enum journal_adoption *out);

/*
 * The disk holds ST at VOLUME/PATH (HASH for a file, TARGET for a
 * symlink; ST NULL: nothing), which is not the path's current state:
 * when it is the version the path's job puts, or one before it on that
 * line that arrived after the current state (a peer's version put in
 * place before a crash lost the commit saying so), the path is set to
 * hold it, retargeted, and *adopted is true.  Otherwise nothing changes
 * and the caller records the disk as this node's change (adopt.c).
 */
int journal_adopt_applied(struct journal *j, const char *volume,
			  const char *path, const struct stat *st,
			  const uint8_t *hash, const char *target,
			  bool *adopted);

/* ---- replication (replica.c) ------------------------------------------ */

enum journal_strategy { JOURNAL_TIMESTAMP, JOURNAL_LAMPORT };

/* This node's changes are stamped with its wall clock plus NS: the
 * cluster's time while this clock is known to be off (clock.c). */
void journal_set_wall_offset(struct journal *j, int64_t ns);

/* How concurrent versions are ordered (default timestamp). */
void journal_set_strategy(struct journal *j, enum journal_strategy s);
/* The most a remote change's Lamport value may exceed the largest this
 * journal has seen (0, the default: no bound); journal_add_remote refuses
 * one beyond it with KR_EHOSTILE.  A member whose entries jumped near
 * JOURNAL_LAMPORT_MAX would drag every node's clock there, and soon no
 * node could record a change; an honest clock runs ahead of ours by at
 * most the changes made while we did not talk. */
void journal_set_lamport_jump(struct journal *j, uint64_t max);

/* Whether ORIGIN ("node@epoch") is a change of the node NODE. */
bool journal_origin_of(const char *origin, const char *node);

/* The highest seq this journal holds for ORIGIN, 0 for none. */
uint64_t journal_have(struct journal *j, const char *origin);

/* Total content size of ORIGIN's changes with seq > AFTER. */
int journal_range_bytes(struct journal *j, const char *origin, uint64_t after,
			uint64_t *out);

/* Changes of ORIGIN with seq > AFTER, in seq order, at most LIMIT. */
int journal_entries_since(struct journal *j, const char *origin,
			  uint64_t after, unsigned limit, journal_change_fn fn,
			  void *arg);

/*
 * Adds a change pulled from a peer, inside the open batch, and decides
 * what the path's disk state must become (see jobs).  Returns 0 when
 * added, -EALREADY when held already, -EAGAIN when an earlier seq of its
 * origin is missing (the caller asks again from where it stands).
 * KR_EHOSTILE, with nothing stored, for an invalid change; -ERANGE for
 * one whose Lamport value is more than journal_set_lamport_jump's bound
 * above ours, or whose wall time is more than JOURNAL_WALL_AHEAD_MAX
 * ahead of our clock.
 */
/* A clock that is merely off is corrected or warned about (the
 * replicator's clock.c); a stamp a day ahead is refused until then. */
#define JOURNAL_WALL_AHEAD_MAX (24LL * 3600 * 1000000000)
int journal_add_remote(struct journal *j, const struct journal_change *c);
/* The newest change's id (local arrival order), 0 for none. */
int64_t journal_last_change_id(struct journal *j);

/* One version to make true on disk. */
struct journal_job {
	char volume[256];
	char *path;               /* where to write; owned */
	char *copy_of;            /* conflict copy: the contested path; owned */
	int64_t change;
	enum journal_op op;
	uint32_t mode, uid, gid;
	uint64_t size;
	int64_t mtime_ns;
	bool has_hash;
	uint8_t hash[CONTENT_HASH_LEN];
	char *target;             /* owned */
	struct journal_ref ref;
	unsigned attempts;
	unsigned failures;        /* failed attempts in a row */
	bool repair;              /* the disk damaged this very version:
				   * make it again (journal_job_repair) */
	bool fetch;               /* into the version store, not the volume
				   * (journal_job_fetch) */
	int64_t order;            /* place in the queue (journal_jobs) */
};

/* A job that failed this many times in a row is stuck: reported (with
 * its reason) and retried only every few minutes; no mount waits for it. */
#define JOURNAL_JOB_STUCK 5

/* Up to MAX jobs due now (a failing job waits: journal_job_fail), fewest
 * attempts first, then parents before children and deletes deepest
 * first, into OUT (release each with
 * journal_job_release).  AFTER, when not NULL, is the last job of the
 * previous page (it may be one of OUT): the queue is read in pages
 * without reading it twice.
 * Returns the count. */
int journal_jobs(struct journal *j, const struct journal_job *after,
		 struct journal_job *out, int max);
void journal_job_release(struct journal_job *job);
/* The job is on disk as ST says (NULL for a delete): it becomes the
 * path's current version; a conflict copy becomes a local put. */
int journal_job_done(struct journal *j, const struct journal_job *job,
		     const struct stat *st);
/* Whether JOB is still what the journal wants at its path: a transfer
 * started for it is stale once a newer version or a local change
 * retargeted the path. */
bool journal_job_wanted(struct journal *j, const struct journal_job *job);
/* Could not be done now, or was started: counted, so that jobs not yet
 * tried come first. */
int journal_job_defer(struct journal *j, const struct journal_job *job);
/* Failed, for REASON (words for the user): counted as an attempt and a
 * failure, and left alone for a while that grows once the job is stuck
 * (1 s, then from 2 s doubling up to 5 min). */
int journal_job_fail(struct journal *j, const struct journal_job *job,
		     const char *reason);
/* Restoring VOLUME/PATH in place as version REF (a regular file of that
 * path) whose content this node does not keep: a job that fetches it
 * from peers and then records it as this node's new version (jobs.c).
 * -EBUSY when the path has a job already, or REF is no such version. */
int journal_job_restore(struct journal *j, const char *volume,
			const char *path, const struct journal_ref *ref);
bool journal_job_is_restore(const struct journal_job *job);
/* Fetching version REF of VOLUME/PATH (a regular file) from peers into
 * the version store, for a restore to a file of content only peers keep
 * (jobs.c; schema 17).  0 once queued, or when it already is; -ENOENT
 * when REF is no such version. */
int journal_job_fetch(struct journal *j, const char *volume,
		      const char *path, const struct journal_ref *ref);
/* Whether content HASH of VOLUME is being fetched into the store. */
bool journal_job_fetching(struct journal *j, const char *volume,
			  const uint8_t hash[CONTENT_HASH_LEN]);
/* The name in its volume's root that a fetch job of content HASH holds
 * (no file is made there): ".krakenfs-fetch-" and 64 hex digits. */
#define JOURNAL_FETCH_PREFIX ".krakenfs-fetch-"
#define JOURNAL_FETCH_NAME_MAX (sizeof(JOURNAL_FETCH_PREFIX) + \
				2 * CONTENT_HASH_LEN)
void journal_fetch_name(const uint8_t hash[CONTENT_HASH_LEN],
			char out[JOURNAL_FETCH_NAME_MAX]);
/* The path of change ID (malloc'd into *OUT), or -ENOENT. */
int journal_change_path(struct journal *j, int64_t id, char **out);
/* Gives JOB up (a restore no peer can serve). */
int journal_job_cancel(struct journal *j, const struct journal_job *job);
/* Conflict copies still to be made of the version the disk holds at
 * VOLUME/PATH (a losing head: its bytes may be nowhere else, so nothing
 * may replace them before the copy exists). */
int journal_copies_pending(struct journal *j, const char *volume,
			   const char *path, uint64_t *out);
/* Wall time at which the next failing job is due (it may have passed),
 * or 0 when no job is failing. */
int journal_jobs_next_retry(struct journal *j, int64_t *out);
/* The file at VOLUME/PATH holds bytes that do not match its current
 * version (found by the scrub): a job makes that version again.  Nothing
 * when the path already has a job (it is being replaced anyway). */
int journal_job_repair(struct journal *j, const char *volume,
		       const char *path);
/* Every failing job is due now (a peer came that may hold what they
 * lacked). */
int journal_jobs_retry(struct journal *j);
/* Number of jobs waiting. */
int journal_job_count(struct journal *j, uint64_t *out);
/* Jobs of VOLUME (NULL: every volume) waiting, and how many of them are
 * stuck. */
int journal_job_counts(struct journal *j, const char *volume,
		       uint64_t *waiting, uint64_t *stuck);

/* A stuck job as reported; pointers are borrowed for the callback. */
struct journal_stuck_job {
	const char *volume, *path;
	const char *copy_of;      /* a conflict copy's contested path */
	const char *reason;
	unsigned failures;
	int64_t since_ns;         /* wall time of the first failure */
	int64_t retry_ns;         /* wall time of the next attempt */
};
typedef int (*journal_stuck_fn)(void *arg, const struct journal_stuck_job *s);
/* The stuck jobs, longest stuck first, at most LIMIT (0: all); a non-zero
 * return of FN stops the walk and is returned. */
int journal_jobs_stuck(struct journal *j, unsigned limit, journal_stuck_fn fn,
		       void *arg);

/* Content by hash: 0 with the chunk list, or -ENOENT when unknown. */
int journal_content_load(struct journal *j, const uint8_t *hash,
			 struct content *out);
/* Stores a chunk list learned from a peer (whole, verified by caller).
 * BASE, when not NULL, is the content it replaces on this node (an
 * edit's previous version): the list is then kept as runs of that one's
 * where they share chunks, so an edit costs space for what changed. */
int journal_content_store(struct journal *j, const struct content *c,
			  const uint8_t *base);
/*
 * A file of this node that held chunk HASH when last recorded: its
 * volume, path (malloc'd, caller frees), offset and length.  The caller
 * reads and verifies; the file may have moved on.  -ENOENT when none.
 */
int journal_chunk_source(struct journal *j, const uint8_t *hash,
			 char *volume, size_t vcap, char **path,
			 uint64_t *offset, uint32_t *len);
/* The same among the contents the version store keeps (versions.c):
 * which one (read it with journal_versions_get), and where in it. */
int journal_chunk_kept(struct journal *j, const uint8_t *hash,
		       uint8_t content[CONTENT_HASH_LEN], uint64_t *offset,
		       uint32_t *len);

/* One version that took part in a conflict. */
struct journal_conflict_version {
	struct journal_ref ref;
	uint64_t lamport;
	int64_t wall_ns;
	enum journal_op op;
	uint32_t mode;
	uint64_t size;
	bool has_hash;
	uint8_t hash[CONTENT_HASH_LEN];
	bool winner;              /* holds the path */
	char copy[PATH_REL_MAX + 1];  /* a loser's copy path, "" if none */
};

/* Concurrent versions of one path with different content. */
struct journal_conflict {
	const char *volume;
	const char *path;
	bool resolved;            /* a merge names them all */
	struct journal_ref merge; /* when resolved: the first merge */
	int64_t merge_wall_ns;
	const struct journal_conflict_version *versions;
	size_t n_versions;
};

typedef int (*journal_conflict_fn)(void *arg, const struct journal_conflict *c);

/* Every conflict of VOLUME (NULL: all), resolved ones oldest first, then
 * the unresolved ones.  Identical merges made by several nodes count once. */
int journal_conflicts(struct journal *j, const char *volume,
		      journal_conflict_fn fn, void *arg);

/* Deterministic conflict-copy name for a version of PATH made on NODE at
 * LAMPORT: "dir/name.conflict-NODE-LAMPORT.ext".  0 or -ENAMETOOLONG. */
int journal_conflict_name(const char *path, const char *origin,
			  uint64_t lamport, char *out, size_t cap);

const char *journal_op_name(enum journal_op op);
/* Parses a name from journal_op_name(); 0 when unknown. */
enum journal_op journal_op_parse(const char *name);

/* ---- the signed hash chain (chain.c) ---------------------------------- */

/* At most this many of a node's own changes between two signatures: a
 * segment always fits one frame, whatever its entries hold. */
#define JOURNAL_SEGMENT_MAX 128
#define JOURNAL_SIG_MAX 512
/* Bytes of the message a signature covers (journal_sig_message). */
#define JOURNAL_SIG_MSG_MAX (16 + 2 + JOURNAL_ORIGIN_MAX + 8 + \
			     CONTENT_HASH_LEN)

/* SHA-256 of C's canonical encoding: every field of the version, bases
 * sorted.  0 or -ENOMEM. */
int journal_entry_digest(const struct journal_change *c,
			 uint8_t out[CONTENT_HASH_LEN]);
/* The chain hash of a change: SHA-256(PREV || DIGEST). */
void journal_chain_link(const uint8_t prev[CONTENT_HASH_LEN],
			const uint8_t digest[CONTENT_HASH_LEN],
			uint8_t out[CONTENT_HASH_LEN]);
/* The prev of ORIGIN's first chained change when change SEQ is the one
 * before it and its chain hash is not known (0: the origin's start). */
void journal_chain_anchor(const char *origin, uint64_t seq,
			  uint8_t out[CONTENT_HASH_LEN]);
/* The bytes a signature of ORIGIN's chain hash CHAIN at SEQ covers, into
 * OUT (JOURNAL_SIG_MSG_MAX); returns their length. */
size_t journal_sig_message(const char *origin, uint64_t seq,
			   const uint8_t chain[CONTENT_HASH_LEN],
			   uint8_t out[JOURNAL_SIG_MSG_MAX]);
/*
 * What the next change of ORIGIN must name as its prev: 0 with *OUT set
 * (the anchor for an origin not seen yet), or -ENOENT when not known
 * here (after changes learned unchained: the next one is taken on its
 * signature alone).
 */
int journal_chain_expect(struct journal *j, const char *origin,
			 uint8_t out[CONTENT_HASH_LEN]);

/* Signs MSG (LEN bytes) into SIG (JOURNAL_SIG_MAX), its length into
 * *SIG_LEN; 0 or a negative code. */
typedef int (*journal_sign_fn)(void *arg, const uint8_t *msg, size_t len,
			       uint8_t *sig, size_t *sig_len);
/* From now on this node's changes are signed at the end of every
 * segment with the key KEY_ID.  Without a signer (a plaintext cluster)
 * segments end unsigned and their chains still hold.  Own segments that
 * ended unsigned are signed now, in the open batch. */
int journal_set_signer(struct journal *j,
		       const uint8_t key_id[CONTENT_HASH_LEN],
		       journal_sign_fn fn, void *arg);

/*
 * With an interval, a commit's own changes are chained at once but the
 * batch's end is signed at most once per NS (and at every
 * JOURNAL_SEGMENT_MAX changes): a burst of small files is a few
 * segments, not one per commit, so receivers check a few signatures.
 * Entries past journal_signed_seq() do not leave the node; the caller
 * signs them with journal_chain_sign_due() by journal_sign_deadline()
 * (0: nothing waits).  Default 0: every commit is signed.
 */
void journal_set_sign_interval(struct journal *j, int64_t ns);
uint64_t journal_signed_seq(const struct journal *j);
int64_t journal_sign_deadline(const struct journal *j);
/* Signs the chained tail when its deadline passed (or FORCE), in the
 * open batch: 1 when it signed, 0 when nothing was due, or a negative
 * code. */
int journal_chain_sign_due(struct journal *j, bool force);

/* Certificates of signing keys, kept to relay and to verify offline. */
int journal_key_put(struct journal *j, const uint8_t id[CONTENT_HASH_LEN],
		    const char *node, const uint8_t *der, size_t len);
typedef int (*journal_key_fn)(void *arg, const uint8_t *id, const char *node,
			      const uint8_t *der, size_t len);
int journal_keys(struct journal *j, journal_key_fn fn, void *arg);

/* Checks a signature: 0 when good, -ENOKEY for a key not known,
 * KR_EHOSTILE when it does not verify or the key is not ORIGIN's node's. */
typedef int (*journal_sig_check_fn)(void *arg, const char *origin,
				    uint64_t seq,
				    const uint8_t chain[CONTENT_HASH_LEN],
				    const uint8_t *key_id, const uint8_t *sig,
				    size_t sig_len);

/* What journal_verify_chain found of one origin. */
struct journal_chain_report {
	const char *origin;
	uint64_t changes;         /* held */
	uint64_t unchained;       /* held without a chain (see schema 12) */
	uint64_t skips;           /* compacted changes passed through */
	uint64_t segments;        /* signatures (or unsigned ends) checked */
	uint64_t unsigned_ends;   /* segment ends without a signature */
	uint64_t unknown_keys;    /* signatures by a key not known here */
	uint64_t bad;             /* problems; each was reported */
};
typedef int (*journal_chain_report_fn)(void *arg,
				       const struct journal_chain_report *r);
/* One problem: ORIGIN's change SEQ, WHY in words. */
typedef void (*journal_chain_problem_fn)(void *arg, const char *origin,
					 uint64_t seq, const char *why);

/*
 * Checks every origin's chain: each held change against its stored
 * digest, each link, each segment's chain hash against its signature
 * (through CHECK; NULL checks chains only).  Reports each problem and
 * then each origin.  0 when nothing was wrong, KR_ECORRUPT when
 * something was, or a negative code.
 */
int journal_verify_chain(struct journal *j, journal_sig_check_fn check,
			 void *check_arg, journal_chain_problem_fn problem,
			 journal_chain_report_fn report, void *arg);

#endif
