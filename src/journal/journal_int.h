/*
 * Internals shared by the journal's source files.  Only kjournal and the
 * white-box tests CMakeLists.txt names have src/journal on their include
 * path; everyone else sees src/journal/include (journal.h).
 */
#ifndef KRAKEN_JOURNAL_INT_H
#define KRAKEN_JOURNAL_INT_H

#include "journal.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>

enum journal_stmt_id {
	STMT_INSERT_CHANGE,
	STMT_INSERT_BASES,
	STMT_HEADS_DROP_BASES,
	STMT_HEADS_ADD,
	STMT_INSERT_CONTENT,
	STMT_INSERT_CHUNK,
	STMT_LOOKUP,
	STMT_CURRENT_REF,
	STMT_UPSERT_CURRENT,
	STMT_TOUCH_CURRENT,
	STMT_BASES_OF,
	STMT_SAVEPOINT,
	STMT_RELEASE,
	STMT_ROLLBACK_TO,
	STMT_COUNT
};

struct journal {
	sqlite3 *db;
	bool readonly;
	bool in_txn;
	bool in_read;             /* journal_read_begin's transaction */
	unsigned pending;         /* records since the last commit */
	int64_t origin_id;        /* row in origins for this node's epoch */
	uint64_t next_seq;
	uint64_t lamport;
	char node_id[JOURNAL_ORIGIN_MAX];
	char origin[JOURNAL_ORIGIN_MAX];
	enum journal_strategy strategy;
	uint64_t lamport_jump;    /* journal_set_lamport_jump; 0: no bound */
	int wal_fd;               /* for journal_sync, opened on first use */
	/* Background checkpoints: a thread with its own connection. */
	bool ckpt_running;
	bool ckpt_stop;
	bool ckpt_due;            /* woken by the WAL hook */
	atomic_bool ckpt_hold;    /* writer: begin no transaction now */
	pthread_cond_t ckpt_released;
	int ckpt_woken_at;        /* WAL frames when the hook last woke it */
	int wal_frames;           /* after the writer's last commit */
	unsigned ckpt_restarts;   /* RESTART checkpoints done */
	int page_size;
	pthread_t ckpt_thread;
	pthread_mutex_t ckpt_lock;
	pthread_cond_t ckpt_wake;
	char *path;
	int compaction_hold;      /* state exchanges being served */
	/* versions.c: a version was kept since fresh ones were measured */
	bool versions_fresh;
	uint64_t staged;          /* heads staged by a state exchange */
	uint64_t durable_seq;     /* own seqs up to here are on stable storage */
	/* The origin of the last remote entry added: its row and highest
	 * seq, so that the rest of a frame from it looks neither up again.
	 * Forgotten when a batch is rolled back (journal_load_counters). */
	struct {
		char origin[JOURNAL_ORIGIN_MAX];
		int64_t id;
		uint64_t have;
		bool valid;
		/* the chain hash at HAVE, when known (chain.c) */
		bool chain_known;
		uint8_t chain[CONTENT_HASH_LEN];
	} remote;
	/* Own changes up to here are chained (chain.c); the signer of
	 * their segments, none in a plaintext cluster. */
	int64_t wall_offset_ns;   /* added to the clock when stamping changes */
	uint64_t chained_seq;
	/* ...and signed up to here; the last batch end signed then
	 * (monotonic), at most once per sign_interval_ns */
	uint64_t signed_seq;
	int64_t signed_at_ns;
	int64_t sign_interval_ns;
	struct {
		uint8_t key_id[CONTENT_HASH_LEN];
		journal_sign_fn fn;
		void *arg;
	} signer;
	struct journal_vec *vec;  /* vector.c; NULL until first used */
	sqlite3_stmt *stmt[STMT_COUNT];
	/* Statements of the replication code, prepared once: keyed by the
	 * address of their (static) SQL text.  The journal passes about a
	 * hundred distinct texts (an agent in test_compaction.sh used 60 on
	 * its one connection): as many as its call sites, so the array grows
	 * when it must rather than fail a statement some day. */
	struct journal_cached {
		const char *sql;
		sqlite3_stmt *stmt;
	} *cache;
	int n_cache, cap_cache;
};

/* checkpoint.c: the background checkpointer (JOURNAL_BACKGROUND_CHECKPOINT),
 * and journal_begin's wait while it holds the writer or the WAL is past
 * its hard bound. */
int journal_checkpoint_start(struct journal *j, const char *path);
void journal_checkpoint_stop(struct journal *j);
void journal_checkpoint_wait(struct journal *j);
/* One integer from SQL (with ARG bound to ?1 when not NULL): 0,
 * -ENOENT for no row, or a negative code. */
int journal_query_int(struct journal *j, const char *sql, const char *arg,
		      int64_t *out);
/* Reads next_seq and the Lamport clock back from the database. */
int journal_load_counters(struct journal *j);
/* SQLite result code to the project's vocabulary. */
int journal_db_err(int rc);
/*
 * SQLite failed with RC on DB doing WHAT (SQL text, shortened, or a
 * phrase): logs what SQLite said, its message and extended code, and
 * returns RC's code.  Called once, where the failure happens; callers
 * up the stack pass the code on without logging it again.
 */
int journal_sqlite_fail(sqlite3 *db, int rc, const char *what);
/*
 * Steps S: 1 for a row, 0 when it is done, or a negative code when SQLite
 * failed (logged).  A loop reads
 *
 *     while ((rc = journal_row(s)) > 0) { ... }
 *     if (rc < 0) err = rc;
 *
 * so that an error part-way is never taken for the end of the rows.
 */
int journal_row(sqlite3_stmt *s);
/* What sqlite3_bind_*() returned, RC, on S: 0 or a negative code
 * (logged).  Only a bind that copies (SQLITE_TRANSIENT) can fail at run
 * time, out of memory; a wrong index is a bug. */
int journal_bind_check(sqlite3_stmt *s, int rc);
/* sqlite3_prepare_v2 of SQL: 0, or a negative code (logged). */
int journal_prepare(struct journal *j, const char *sql, sqlite3_stmt **out);
/* Prepared statement ID, reset and with bindings cleared. */
sqlite3_stmt *journal_stmt(struct journal *j, enum journal_stmt_id id);
int journal_link_head(struct journal *j, int64_t id, int64_t base,
		      const char *volume, const char *path);
/* Steps S once, for its effect: 0 (a row or done) or a negative code
 * (logged). */
int journal_step_done(sqlite3_stmt *s);
int journal_begin(struct journal *j);
/* chunks.c: stores C's list, as runs over BASE's when that pays (BASE:
 * the content C replaces, or NULL). */
int journal_store_content(struct journal *j, const struct content *c,
			  const uint8_t *base);
/* Runs FN inside a savepoint of the open batch: all of it or none. */
int journal_atomic(struct journal *j, int (*fn)(struct journal *, void *),
		   void *arg);
int journal_append_merge(struct journal *j, const char *volume,
			 const char *path, const struct stat *st,
			 const uint8_t *hash, const char *target);
/* versions_cost.c: each kept version of VOLUME/PATH gets its part of
 * what they cost on disk (versions.disk); STOREFD is the store, whose
 * parent is the volumes' root. */
int versions_cost_measure(struct journal *j, int storefd, const char *volume,
			  const char *path);
/* replica.c: recomputes what VOLUME/PATH must look like on disk. */
int journal_retarget(struct journal *j, const char *volume, const char *path);
/* A job's place in the queue among jobs of the same attempt count
 * (schema/004_job_order.sql): parents before children, deletes last and
 * deepest first, so a directory exists before its files and is empty
 * before it goes. */
int64_t journal_job_order(enum journal_op op, const char *path);
/* The origins row of ORIGIN, made when CREATE and absent; 0 if none. */
int journal_origin_id(struct journal *j, const char *origin, bool create,
		      int64_t *out);
/* Change ID (ORIGIN row, SEQ) at VOLUME/PATH: its bases leave the heads,
 * and it joins them unless a version held already descends from it. */
int journal_heads_join(struct journal *j, const char *volume, const char *path,
		       int64_t id, int64_t origin, uint64_t seq);
/* Binds C's seq and version fields to parameters 2-14 of an INSERT in
 * the column order of changes (parameter 1 is the caller's origin). */
void journal_bind_version(sqlite3_stmt *s, const struct journal_change *c);
/* Inserts C (from a peer; its origin's row ORIGIN) and its bases. */
int journal_insert_remote(struct journal *j, const struct journal_change *c,
			  int64_t origin, int64_t *id);
/* The fields of a change from a peer agree with each other. */
bool journal_change_valid(const struct journal_change *c);
/* journal.c: records, as this node's change, that VOLUME/PATH is gone
 * with every head as its base; the disk and current are left alone (a
 * job removes the file).  Inside an open savepoint. */
int journal_append_forget(struct journal *j, const char *volume,
			  const char *path);
/*
 * A prepared statement for the static SQL text SQL, made once per
 * connection and reused; returns an SQLite result code like
 * sqlite3_prepare_v2() (a failure is logged).  Give it back with
 * journal_stmt_done() (never finalize it).  SQL must have static storage.
 */
int journal_prepare_cached(struct journal *j, const char *sql,
			   sqlite3_stmt **out);
void journal_stmt_done(sqlite3_stmt *s);
/* Runs SQL without results; 0 or a negative code (logged). */
int journal_exec(struct journal *j, const char *sql);
/* Fills C from a row in the column order of JOURNAL_CHANGE_COLUMNS, and
 * its bases into the caller's BASES array (capacity CAP). */
#define JOURNAL_CHANGE_COLUMNS \
	"c.id, o.node || '@' || o.epoch, c.seq, c.lamport, c.wall_ns, " \
	"c.volume, c.path, c.op, c.mode, c.uid, c.gid, c.size, c.mtime_ns, " \
	"c.hash, c.target, c.prev, c.digest"
int journal_change_from_row(struct journal *j, sqlite3_stmt *row,
			    struct journal_change *c, struct journal_ref *bases,
			    size_t cap);

/* chain.c: chains and signs this node's changes not chained yet (inside
 * the batch, before it commits). */
int journal_chain_own(struct journal *j);
/* Stores remote change C's place in its chain (row ID of origin ORIGIN):
 * KR_EHOSTILE when its prev is not what the chain holds. */
int journal_chain_remote(struct journal *j, int64_t origin, int64_t id,
			 const struct journal_change *c);
/* chain.c: stores change ID's place in its chain, as checked elsewhere. */
int journal_chain_store(struct journal *j, int64_t id,
			const uint8_t prev[CONTENT_HASH_LEN],
			const uint8_t digest[CONTENT_HASH_LEN]);
/* replica.c: whether C's Lamport value or wall time is past the bounds
 * remote changes are held to. */
bool journal_remote_out_of_bounds(const struct journal *j,
				  const struct journal_change *c);

/* exchange_proof.c: a head being served, and the proof of the run of
 * heads it belongs to (the top of exchange_proof.c). */
struct exchange_head {
	int64_t id, origin;
	uint64_t seq;
};

struct exchange_run {
	size_t first, last;       /* heads[first..last] */
	bool ok;                  /* provable: served chained */
	uint64_t start, end;      /* seqs of the first head and the signature */
	uint8_t prev[CONTENT_HASH_LEN];
	uint8_t digest[JOURNAL_SEGMENT_MAX][CONTENT_HASH_LEN];  /* seq start + k */
	uint8_t chain[JOURNAL_SEGMENT_MAX][CONTENT_HASH_LEN];
	uint8_t sealed[CONTENT_HASH_LEN];
	uint8_t key[CONTENT_HASH_LEN];
	uint8_t sig[JOURNAL_SIG_MAX];
	size_t sig_len;
};

/* The run starting at HEADS[AT] (of N, in (origin, seq) order). */
int exchange_run_load(struct journal *j, const struct exchange_head *heads,
		      size_t n, size_t at, struct exchange_run *r);
/* C's chain fields for HEADS[I] of run R: its proof, or unchained. */
void exchange_run_fill(const struct exchange_run *r,
		       const struct exchange_head *heads, size_t i,
		       struct journal_change *c);
/* Stages the proof of chained head C of ORIGIN (row id), whose digest is
 * DIGEST. */
int exchange_stage_proof(struct journal *j, int64_t origin,
			 const struct journal_change *c,
			 const uint8_t digest[CONTENT_HASH_LEN]);
/* Moves the staged proofs to chain_skips and signatures. */
int exchange_keep_proofs(struct journal *j);

/* vector.c: the version vector in memory (see there). */
/* The old query, one probe per origin, sorted by name: what a load
 * reads, and what tests compare memory with. */
int journal_vector_sql(struct journal *j, journal_vector_fn fn, void *arg);
/* ORIGIN holds at least SEQ now, or what may be sent of it changed:
 * it comes after every origin in generation order.  Call once the
 * change is in (its savepoint released). */
void journal_vector_touch(struct journal *j, const char *origin,
			  uint64_t seq);
/* The same for the origins row ORIGIN. */
void journal_vector_touch_id(struct journal *j, int64_t origin, uint64_t seq);
/* What memory holds may be stale: read again from SQL at the next use,
 * every origin as changed. */
void journal_vector_reset(struct journal *j);
void journal_vector_free(struct journal *j);
/* ORIGIN's value: 0, -ENOENT when the vector does not name it (not
 * held, or retired: compact.c), or another negative code. */
int journal_vector_get(struct journal *j, const char *origin, uint64_t *out);

#endif
