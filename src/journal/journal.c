/*
 * Journal write path: opening, migrations, node identity, and recording
 * local changes.  Queries live in query.c, chunk lists in chunks.c,
 * checkpoints in checkpoint.c, retention in compact.c, state exchange in
 * exchange.c.
 *
 * Invariants kept here:
 *  - next_seq is one more than the largest seq of this node's origin,
 *    held or compacted (origins.floor), so seqs stay gapless: a record
 *    that fails is rolled back to its own savepoint and does not consume
 *    a number.
 *  - lamport only grows; a local change takes lamport + 1.
 *  - current holds, per path, the change now on this node's disk; a
 *    change's base is the change current held before it.
 *
 * SQLite failures, in every file of the journal: statements are stepped
 * through journal_row() (row, done, or a negative code), never compared
 * with SQLITE_ROW alone, so that an error is not read as "no row" or as
 * the end of a loop; it, journal_prepare() and journal_exec() log what
 * SQLite said (message and extended code) once, where the failure
 * happens, and callers only pass the code on.  A function that returns a
 * bool or a number instead of a code says which way a failure leans.
 */
#include "journal_int.h"
#include "loop.h"

#include "err.h"
#include "log.h"
#include "nodeid.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern const char *const journal_migrations[];
extern const size_t journal_migrations_count;

static const char *const stmt_sql[STMT_COUNT] = {
	[STMT_INSERT_CHANGE] =
		"INSERT INTO changes (origin, seq, lamport, wall_ns, volume, "
		"path, op, mode, uid, gid, size, mtime_ns, hash, target) "
		"VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
	/* A local change replaces the version on disk and every head whose
	 * content and metadata are identical to it (they are one state), and
	 * while the disk holds a file, every delete beside it (the delete
	 * lost to it; replica.c); a head that differs stays a head: an
	 * unresolved conflict.  The heads
	 * are found by path, never by hash: '+' keeps the planner off
	 * changes_by_hash, where a base without content (a delete, a mkdir)
	 * would walk every such row in history. */
	[STMT_INSERT_BASES] =
		"INSERT OR IGNORE INTO bases (change, origin, seq) "
		"SELECT :id, x.origin, x.seq FROM changes x WHERE x.id = :base "
		"OR x.id IN (SELECT h.change FROM heads h "
		"JOIN changes y ON y.id = h.change JOIN changes b ON b.id = :base "
		"WHERE h.volume = :volume AND h.path = :path "
		"AND ((+y.hash IS b.hash AND y.mode = b.mode AND y.uid = b.uid "
		"AND y.gid = b.gid AND y.target IS b.target) OR "
		"(y.mode = 0 AND b.mode != 0)))",
	[STMT_HEADS_DROP_BASES] =
		"DELETE FROM heads WHERE volume = :volume AND path = :path "
		"AND change IN (SELECT x.id FROM bases b JOIN changes x "
		"ON x.origin = b.origin AND x.seq = b.seq WHERE b.change = :id)",
	[STMT_HEADS_ADD] =
		"INSERT OR IGNORE INTO heads (volume, path, change) "
		"VALUES (:volume, :path, :id)",
	[STMT_INSERT_CONTENT] =
		"INSERT OR IGNORE INTO contents (hash, size, n_chunks) "
		"VALUES (?,?,?)",
	[STMT_INSERT_CHUNK] =
		"INSERT INTO content_chunks (content, idx, chunk, offset, len) "
		"VALUES (?,?,?,?,?)",
	[STMT_LOOKUP] =
		"SELECT c.mode, c.uid, c.gid, c.size, c.mtime_ns, c.hash, "
		"c.target, cur.ino, cur.ctime_ns FROM current cur "
		"JOIN changes c ON c.id = cur.change "
		"WHERE cur.volume = ? AND cur.path = ?",
	[STMT_CURRENT_REF] =
		"SELECT change FROM current WHERE volume = ? AND path = ?",
	[STMT_UPSERT_CURRENT] =
		"INSERT INTO current (volume, path, change, ino, ctime_ns) "
		"VALUES (?,?,?,?,?) ON CONFLICT (volume, path) DO UPDATE SET "
		"change = excluded.change, ino = excluded.ino, "
		"ctime_ns = excluded.ctime_ns",
	[STMT_TOUCH_CURRENT] =
		"UPDATE current SET ino = ?, ctime_ns = ? "
		"WHERE volume = ? AND path = ?",
	[STMT_BASES_OF] =
		"SELECT o.node || '@' || o.epoch, b.seq FROM bases b "
		"JOIN origins o ON o.id = b.origin WHERE b.change = ? "
		"ORDER BY o.node, o.epoch, b.seq",
	/* Prepared once: a savepoint per record would otherwise be parsed
	 * three times per change. */
	[STMT_SAVEPOINT] = "SAVEPOINT record",
	[STMT_RELEASE] = "RELEASE record",
	[STMT_ROLLBACK_TO] = "ROLLBACK TO record",
};

/* What one local change writes; the pieces the record_* calls differ in. */
struct journal_row {
	const char *volume;
	const char *path;
	enum journal_op op;
	const struct stat *st;    /* NULL for deletes */
	const struct content *content;
	const char *target;
};

int journal_db_err(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_FULL: return -ENOSPC;
	case SQLITE_IOERR: return -EIO;
	case SQLITE_CANTOPEN: return -ENOENT;
	case SQLITE_READONLY: return -EROFS;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return -EBUSY;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB: return KR_ECORRUPT;
	default: return KR_EDB;
	}
}

int journal_sqlite_fail(sqlite3 *db, int rc, const char *what)
{
	/* A busy database is waited for and retried up the stack; anything
	 * else is something an operator has to look at. */
	enum log_level lvl = (rc & 0xff) == SQLITE_BUSY ||
			     (rc & 0xff) == SQLITE_LOCKED ? LOG_WARN : LOG_ERROR;

	assert(rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE);
	log_at(lvl, "journal", "%.80s%s: %s (SQLite error %d)",
	       what ? what : "?", what && strlen(what) > 80 ? "..." : "",
	       db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
	       db ? sqlite3_extended_errcode(db) : rc);
	return journal_db_err(rc);
}

int journal_row(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return journal_sqlite_fail(sqlite3_db_handle(s), rc, sqlite3_sql(s));
}

int journal_bind_check(sqlite3_stmt *s, int rc)
{
	assert(rc != SQLITE_RANGE);
	if (rc == SQLITE_OK)
		return 0;
	return journal_sqlite_fail(sqlite3_db_handle(s), rc, sqlite3_sql(s));
}

int journal_prepare(struct journal *j, const char *sql, sqlite3_stmt **out)
{
	int rc = sqlite3_prepare_v2(j->db, sql, -1, out, NULL);

	return rc == SQLITE_OK ? 0 : journal_sqlite_fail(j->db, rc, sql);
}

/* sqlite3_reset's result repeats the last step's, which was checked
 * there: ignoring it here hides nothing. */
sqlite3_stmt *journal_stmt(struct journal *j, enum journal_stmt_id id)
{
	sqlite3_stmt *s;

	/* Prepared at open (journal_prepare_all), or the open failed. */
	assert(id >= 0 && id < STMT_COUNT && j->stmt[id]);
	s = j->stmt[id];

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

int journal_prepare_cached(struct journal *j, const char *sql,
			   sqlite3_stmt **out)
{
	int rc;

	for (int i = 0; i < j->n_cache; i++) {
		if (j->cache[i].sql == sql) {
			*out = j->cache[i].stmt;
			sqlite3_reset(*out);
			sqlite3_clear_bindings(*out);
			return SQLITE_OK;
		}
	}
	*out = NULL;
	if (j->n_cache == j->cap_cache) {
		int cap = j->cap_cache ? 2 * j->cap_cache : 64;
		struct journal_cached *c = realloc(j->cache,
						   (size_t)cap * sizeof(*c));

		if (!c)
			return SQLITE_NOMEM;
		j->cache = c;
		j->cap_cache = cap;
	}
	rc = sqlite3_prepare_v3(j->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out,
				NULL);
	if (rc == SQLITE_OK) {
		j->cache[j->n_cache].sql = sql;
		j->cache[j->n_cache++].stmt = *out;
	} else {
		(void)journal_sqlite_fail(j->db, rc, sql);
	}
	return rc;
}

void journal_stmt_done(sqlite3_stmt *s)
{
	if (s) {
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
	}
}

int journal_exec(struct journal *j, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(j->db, sql, NULL, NULL, &msg);

	sqlite3_free(msg);    /* sqlite3_errmsg() says the same */
	return rc == SQLITE_OK ? 0 : journal_sqlite_fail(j->db, rc, sql);
}

/* After a failure: SQLite may have rolled the transaction back already
 * (a full disk, an I/O error), and a ROLLBACK then only adds an error. */
static void journal_rollback(struct journal *j)
{
	if (!sqlite3_get_autocommit(j->db))
		(void)journal_exec(j, "ROLLBACK");
}

static int journal_user_version(struct journal *j, int *out)
{
	sqlite3_stmt *s = NULL;
	int err = journal_prepare(j, "PRAGMA user_version", &s);

	/* A file that is no database fails here, as SQLITE_NOTADB. */
	if (!err)
		err = journal_row(s);
	if (err > 0)
		*out = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	/* The pragma always has its one row. */
	assert(err != 0);
	return err > 0 ? 0 : err;
}

/* Applies migrations past the file's user_version, each in its own
 * transaction with the version bump, so a crash leaves a whole step. */
static int journal_migrate(struct journal *j, char **errmsg)
{
	int have = 0;
	int err = journal_user_version(j, &have);

	if (err)
		return err;
	if (have > (int)journal_migrations_count) {
		kr_seterr(errmsg, "journal schema version %d is newer than "
			       "this program understands (%zu); upgrade "
			       "krakenfs", have, journal_migrations_count);
		return KR_ESCHEMA;
	}
	if (j->readonly && have < (int)journal_migrations_count) {
		kr_seterr(errmsg, "journal schema version %d is older than "
			       "this program's (%zu); start krakenfs-agent once "
			       "to upgrade it", have, journal_migrations_count);
		return KR_ESCHEMA;
	}
	for (size_t v = (size_t)have; v < journal_migrations_count; v++) {
		char bump[64];

		snprintf(bump, sizeof(bump), "PRAGMA user_version = %zu", v + 1);
		err = journal_exec(j, "BEGIN IMMEDIATE");
		if (!err)
			err = journal_exec(j, journal_migrations[v]);
		if (!err)
			err = journal_exec(j, bump);
		if (!err)
			err = journal_exec(j, "COMMIT");
		if (err) {
			journal_rollback(j);
			kr_seterr(errmsg, "applying journal migration %zu "
				       "failed: %s", v + 1,
				       sqlite3_errmsg(j->db));
			return err;
		}
	}
	return 0;
}

/*
 * A journal made before schema 7 keeps freed pages inside the file; one
 * VACUUM (which needs as much free disk as the journal's size) lets it
 * give them back from then on.  Failing that, the journal still works,
 * it only does not shrink.
 */
static void journal_vacuum_mode(struct journal *j, const char *path)
{
	int64_t mode = 0;

	if (journal_query_int(j, "PRAGMA auto_vacuum", NULL, &mode) ||
	    mode == 2)
		return;
	log_info("journal", "rewriting %s once so that compaction can "
		 "shrink it", path);
	if (journal_exec(j, "PRAGMA auto_vacuum = INCREMENTAL; VACUUM"))
		log_warn("journal", "could not rewrite %s (%s); it will not "
			 "shrink after compaction until it is rewritten "
			 "(needs free disk space as large as the journal)",
			 path, sqlite3_errmsg(j->db));
}

static int journal_new_epoch(char out[17])
{
	uint64_t r;

	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return -errno;
	snprintf(out, 17, "%016" PRIx64, r);
	return 0;
}

int journal_query_int(struct journal *j, const char *sql,
			     const char *arg, int64_t *out)
{
	sqlite3_stmt *s = NULL;
	int err = journal_prepare(j, sql, &s);

	if (!err && arg)
		err = journal_bind_check(s, sqlite3_bind_text(s, 1, arg, -1,
							      SQLITE_STATIC));
	if (!err)
		err = journal_row(s);
	if (err > 0)
		*out = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return err > 0 ? 0 : err == 0 ? -ENOENT : err;
}

/* First open of a fresh journal: draw the epoch, register the origin. */
static int journal_create_identity(struct journal *j, const char *node_id)
{
	char epoch[17];
	char sql[512];
	int err = journal_new_epoch(epoch);

	if (err)
		return err;
	snprintf(sql, sizeof(sql),
		 "BEGIN IMMEDIATE;"
		 "INSERT INTO origins (node, epoch) VALUES ('%s', '%s');"
		 "INSERT INTO meta VALUES ('node_id', '%s');"
		 "INSERT INTO meta VALUES ('epoch', '%s');"
		 "INSERT INTO meta VALUES ('created_ns', '%" PRId64 "');"
		 "COMMIT;",
		 node_id, epoch, node_id, epoch,
		 (int64_t)time(NULL) * 1000000000);
	/* node_id was validated ([A-Za-z0-9._-]) so it is safe to inline. */
	err = journal_exec(j, sql);
	if (err)
		journal_rollback(j);
	return err;
}

static int journal_load_identity(struct journal *j, const char *node_id,
				 char **errmsg)
{
	char *stored = NULL, *epoch = NULL;
	int err = journal_meta_get(j, "node_id", &stored);

	if (err == -ENOENT && !j->readonly && node_id) {
		err = journal_create_identity(j, node_id);
		if (!err)
			err = journal_meta_get(j, "node_id", &stored);
	}
	if (err == -ENOENT) {
		kr_seterr(errmsg, "the journal holds no node identity yet "
			       "(has the agent ever started with it?)");
		goto out;
	}
	if (err)
		goto out;
	if (node_id && strcmp(stored, node_id) != 0) {
		kr_seterr(errmsg, "this journal belongs to node '%s', not "
			       "'%s'; fix sync.node_id / NODE_ID or point "
			       "journal.path elsewhere", stored, node_id);
		err = KR_EIDENTITY;
		goto out;
	}
	err = journal_meta_get(j, "epoch", &epoch);
	if (err)
		goto out;
	snprintf(j->node_id, sizeof(j->node_id), "%s", stored);
	snprintf(j->origin, sizeof(j->origin), "%s@%s", stored, epoch);
	err = journal_query_int(j, "SELECT id FROM origins WHERE node || '@' "
				"|| epoch = ?", j->origin, &j->origin_id);
	if (!err)
		err = journal_load_counters(j);
out:
	free(stored);
	free(epoch);
	return err;
}

static int journal_prepare_all(struct journal *j)
{
	for (int i = 0; i < STMT_COUNT; i++) {
		int rc = sqlite3_prepare_v3(j->db, stmt_sql[i], -1,
					    SQLITE_PREPARE_PERSISTENT,
					    &j->stmt[i], NULL);
		if (rc != SQLITE_OK)
			return journal_sqlite_fail(j->db, rc, stmt_sql[i]);
	}
	return 0;
}

static int journal_configure(struct journal *j)
{
	sqlite3_busy_timeout(j->db, 10000);
	if (j->readonly)
		return journal_exec(j, "PRAGMA query_only = ON");
	/* A 64 MiB page cache keeps a large batch (a start-up scan records
	 * one per file) from spilling pages into the WAL mid-transaction. */
	/* Before the first table: a new journal gives pages that compaction
	 * frees back to the file system (journal_compact_step). */
	return journal_exec(j, "PRAGMA auto_vacuum = INCREMENTAL;"
			    "PRAGMA journal_mode = WAL;"
			    "PRAGMA synchronous = NORMAL;"
			    "PRAGMA foreign_keys = ON;"
			    "PRAGMA cache_size = -65536;"
			    "PRAGMA temp_store = MEMORY;");
}

/*
 * SQLite counts every allocation under a global mutex unless told not to;
 * nothing here reads those counts, and recording many small files spent
 * a few percent of its CPU on that lock.  Must precede SQLite's own
 * initialization, hence once, before the first open.
 */
static pthread_once_t journal_sqlite_once = PTHREAD_ONCE_INIT;

static void journal_sqlite_setup(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int journal_open(const char *path, const char *node_id, unsigned flags,
		 struct journal **out, char **errmsg)
{
	struct journal *j = calloc(1, sizeof(*j));
	int oflags = SQLITE_OPEN_NOMUTEX;
	int err;

	*out = NULL;
	pthread_once(&journal_sqlite_once, journal_sqlite_setup);
	if (!j)
		return -ENOMEM;
	j->readonly = flags & JOURNAL_READONLY;
	j->next_seq = 1;
	j->wal_fd = -1;
	if (node_id && !node_id_ok(node_id, strlen(node_id))) {
		kr_seterr(errmsg, "invalid node id '%s'", node_id);
		err = -EINVAL;
		goto fail;
	}
	oflags |= j->readonly ? SQLITE_OPEN_READONLY :
		  SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	err = journal_db_err(sqlite3_open_v2(path, &j->db, oflags, NULL));
	if (err) {
		kr_seterr(errmsg, "cannot open journal %s: %s", path,
			       j->db ? sqlite3_errmsg(j->db) : "out of memory");
		goto fail;
	}
	err = journal_configure(j);
	if (err) {
		kr_seterr(errmsg, "cannot use journal %s: %s", path,
			       sqlite3_errmsg(j->db));
		goto fail;
	}
	err = journal_migrate(j, errmsg);
	if (!err && !j->readonly)
		journal_vacuum_mode(j, path);
	if (!err)
		err = journal_load_identity(j, node_id, errmsg);
	if (!err)
		err = journal_prepare_all(j);
	if (!err && (flags & JOURNAL_BACKGROUND_CHECKPOINT) && !j->readonly)
		err = journal_checkpoint_start(j, path);
	if (err)
		goto fail;
	*out = j;
	return 0;
fail:
	if (err == KR_ECORRUPT && !j->readonly && j->db)
		kr_seterr(errmsg, "journal %s is damaged (%s): move it aside, "
			  "with its -wal and -shm files, and start again; "
			  "the node then learns the history from its peers "
			  "and adopts the files in its volumes", path,
			  sqlite3_errmsg(j->db));
	else if (err && errmsg && !*errmsg && j->db)
		kr_seterr(errmsg, "journal %s: %s", path,
			       sqlite3_errmsg(j->db));
	journal_close(j);
	return err;
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	journal_checkpoint_stop(j);
	journal_read_end(j);
	if (j->in_txn && journal_flush(j) != 0)
		log_error("journal", "final commit failed");
	/* Nothing of ours is left unsigned behind: verify --chain reads
	 * what was committed. */
	if (journal_chain_sign_due(j, true) < 0)
		log_error("journal", "signing the last changes failed");
	if (j->in_txn) {
		int err = journal_flush(j);

		if (err)
			log_error("journal", "final commit failed: %s",
				  kr_strerror(err));
	}
	journal_vector_free(j);
	for (int i = 0; i < STMT_COUNT; i++)
		sqlite3_finalize(j->stmt[i]);
	for (int i = 0; i < j->n_cache; i++)
		sqlite3_finalize(j->cache[i].stmt);
	free(j->cache);
	sqlite3_close(j->db);
	if (j->wal_fd >= 0)
		close(j->wal_fd);
	free(j->path);
	free(j);
}

int journal_load_counters(struct journal *j)
{
	int64_t v = 0;
	int err = journal_query_int(j, "SELECT max(coalesce((SELECT max(seq) "
				    "FROM changes WHERE origin = o.id), 0), "
				    "o.floor) FROM origins o WHERE o.node || "
				    "'@' || o.epoch = ?", j->origin, &v);

	j->remote.valid = false;
	journal_vector_reset(j);   /* the batch it held may be gone */
	if (err)
		return err;
	j->next_seq = (uint64_t)v + 1;
	/* An origin's Lamport values grow with its seqs, so the largest is
	 * among each origin's newest change: one index probe per origin
	 * instead of a read of every change at every start. */
	err = journal_query_int(j, "SELECT coalesce(max(max(coalesce(("
				"SELECT c.lamport FROM changes c WHERE c.origin "
				"= o.id ORDER BY c.seq DESC LIMIT 1), 0), "
				"o.floor_lamport)), 0) FROM origins o", NULL,
				&v);
	if (!err)
		j->lamport = (uint64_t)v;
	if (!err)
		err = journal_query_int(j, "SELECT CASE WHEN chain IS NULL "
					"THEN 0 ELSE chain_seq END FROM origins "
					"WHERE node || '@' || epoch = ?",
					j->origin, &v);
	if (!err)
		j->chained_seq = (uint64_t)v;
	if (!err)
		err = journal_query_int(j, "SELECT coalesce(max(g.seq), 0) FROM "
					"signatures g JOIN origins o ON o.id = "
					"g.origin WHERE o.node || '@' || o.epoch "
					"= ?", j->origin, &v);
	if (!err)
		j->signed_seq = (uint64_t)v;
	return err == -ENOENT ? 0 : err;
}

/*
 * A failed commit (disk full, I/O error) rolls the whole batch back and
 * re-reads the counters, so the numbers it had taken are issued again and
 * seqs stay gapless.  The caller rescans later to re-record what was lost.
 */
int journal_flush(struct journal *j)
{
	int err;

	if (!j->in_txn)
		return 0;
	err = journal_chain_own(j);
	if (!err)
		err = journal_exec(j, "COMMIT");
	if (err) {
		journal_rollback(j);
		j->in_txn = false;
		j->pending = 0;
		journal_load_counters(j);
		return err;
	}
	j->in_txn = false;
	j->pending = 0;
	return 0;
}

/*
 * With synchronous=NORMAL a commit is written to the WAL but not synced.
 * fdatasync on our own descriptor of the WAL file flushes those frames
 * (the page cache is per file, not per descriptor), which is far cheaper
 * than a checkpoint and leaves the commit path without any fsync.
 */
int journal_sync(struct journal *j)
{
	int err = journal_flush(j);
	char wal[PATH_MAX];

	if (err)
		return err;
	if (j->wal_fd < 0) {
		const char *db = sqlite3_db_filename(j->db, "main");

		if (!db || snprintf(wal, sizeof(wal), "%s-wal", db) >=
		    (int)sizeof(wal))
			return -ENAMETOOLONG;
		j->wal_fd = open(wal, O_RDONLY | O_CLOEXEC);
		if (j->wal_fd < 0)
			return -errno;
	}
	if (fdatasync(j->wal_fd) != 0)
		return -errno;
	j->durable_seq = j->next_seq - 1;
	return 0;
}

void journal_sizes(struct journal *j, uint64_t *db, uint64_t *wal)
{
	const char *name = sqlite3_db_filename(j->db, "main");
	char path[PATH_MAX];
	struct stat st;

	*db = *wal = 0;
	if (!name || !*name)
		return;
	if (stat(name, &st) == 0)
		*db = (uint64_t)st.st_size;
	if (snprintf(path, sizeof(path), "%s-wal", name) < (int)sizeof(path) &&
	    stat(path, &st) == 0)
		*wal = (uint64_t)st.st_size;
}

uint64_t journal_durable_seq(const struct journal *j)
{
	return j->durable_seq;
}

const char *journal_origin(const struct journal *j)
{
	return j->origin;
}

unsigned journal_pending(const struct journal *j)
{
	return j->pending;
}

int journal_begin(struct journal *j)
{
	int err;

	if (j->readonly)
		return -EROFS;
	if (j->in_txn)
		return 0;
	/* Upgrading the read snapshot could fail on another connection's
	 * commit: end it and take the write lock afresh. */
	journal_read_end(j);
	assert(!j->in_read);
	journal_checkpoint_wait(j);
	err = journal_exec(j, "BEGIN IMMEDIATE");
	if (!err)
		j->in_txn = true;
	return err;
}

int journal_read_begin(struct journal *j)
{
	int err;

	/* One transaction at a time: the write batch, or a read. */
	assert(!(j->in_txn && j->in_read));
	if (j->in_txn || j->in_read)
		return 0;
	err = journal_exec(j, "BEGIN");
	if (!err)
		j->in_read = true;
	return err;
}

void journal_read_end(struct journal *j)
{
	if (!j->in_read)
		return;
	j->in_read = false;
	(void)journal_exec(j, "COMMIT");
}

int journal_step_done(sqlite3_stmt *s)
{
	int rc = journal_row(s);

	return rc < 0 ? rc : 0;
}

/* The change current holds at VOLUME/PATH in *ID, 0 for none; a failure
 * is an error, never "no base" (which would record an unrelated head). */
static int journal_current_change(struct journal *j, const char *volume,
				  const char *path, int64_t *id)
{
	sqlite3_stmt *s = journal_stmt(j, STMT_CURRENT_REF);
	int rc;

	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	rc = journal_row(s);
	*id = rc > 0 ? sqlite3_column_int64(s, 0) : 0;
	/* A statement left on a row keeps a read snapshot open; once another
	 * connection (the API's) commits, that stale snapshot makes the next
	 * BEGIN IMMEDIATE fail at once with SQLITE_BUSY. */
	sqlite3_reset(s);
	return rc < 0 ? rc : 0;
}

static int journal_insert_change(struct journal *j, const struct journal_row *r,
				 int64_t *id)
{
	sqlite3_stmt *s = journal_stmt(j, STMT_INSERT_CHANGE);
	const struct stat *st = r->st;
	int err;

	/* Seqs are handed out inside the write batch only, where a failure
	 * rolls the number back with the row (gapless seqs, at the top). */
	assert(j->in_txn && !j->readonly && j->origin_id > 0 &&
	       j->next_seq > 0);

	sqlite3_bind_int64(s, 1, j->origin_id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)j->next_seq);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)(j->lamport + 1));
	sqlite3_bind_int64(s, 4, loop_wall_ns() + j->wall_offset_ns);
	sqlite3_bind_text(s, 5, r->volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, r->path, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 7, r->op);
	sqlite3_bind_int64(s, 8, st ? st->st_mode : 0);
	sqlite3_bind_int64(s, 9, st ? st->st_uid : 0);
	sqlite3_bind_int64(s, 10, st ? st->st_gid : 0);
	sqlite3_bind_int64(s, 11, st && S_ISREG(st->st_mode) ? st->st_size : 0);
	sqlite3_bind_int64(s, 12, st ? (int64_t)st->st_mtim.tv_sec * 1000000000 +
			   st->st_mtim.tv_nsec : 0);
	if (r->content)
		sqlite3_bind_blob(s, 13, r->content->hash, CONTENT_HASH_LEN,
				  SQLITE_STATIC);
	if (r->target)
		sqlite3_bind_text(s, 14, r->target, -1, SQLITE_STATIC);
	err = journal_step_done(s);
	*id = sqlite3_last_insert_rowid(j->db);
	return err;
}

/* Points current at ID, keeping the stat cache: the disk is unchanged. */
static int journal_merge_current(struct journal *j, const char *volume,
				 const char *path, int64_t id)
{
	sqlite3_stmt *s = NULL;
	int err = journal_prepare(j, "UPDATE current SET change = ?1 "
				  "WHERE volume = ?2 AND path = ?3", &s);

	if (!err) {
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_text(s, 2, volume, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, path, -1, SQLITE_STATIC);
		err = journal_step_done(s);
	}
	sqlite3_finalize(s);
	return err;
}

static int journal_set_current(struct journal *j, const char *volume,
			       const char *path, int64_t change,
			       const struct stat *st)
{
	sqlite3_stmt *s = journal_stmt(j, STMT_UPSERT_CURRENT);

	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, change);
	sqlite3_bind_int64(s, 4, st ? (sqlite3_int64)st->st_ino : 0);
	sqlite3_bind_int64(s, 5, st ? (int64_t)st->st_ctim.tv_sec * 1000000000 +
			   st->st_ctim.tv_nsec : 0);
	return journal_step_done(s);
}

/* Binds the named parameters a statement uses among :id :base :volume
 * :path; the ones it does not use are skipped. */
static void journal_bind_ref(sqlite3_stmt *s, int64_t id, int64_t base,
			     const char *volume, const char *path)
{
	int i;

	if ((i = sqlite3_bind_parameter_index(s, ":id")))
		sqlite3_bind_int64(s, i, id);
	if ((i = sqlite3_bind_parameter_index(s, ":base")))
		sqlite3_bind_int64(s, i, base);
	if ((i = sqlite3_bind_parameter_index(s, ":volume")))
		sqlite3_bind_text(s, i, volume, -1, SQLITE_STATIC);
	if ((i = sqlite3_bind_parameter_index(s, ":path")))
		sqlite3_bind_text(s, i, path, -1, SQLITE_STATIC);
}

/* Links change ID to its bases and makes it the path's head in their
 * place.  BASE is 0 for a path's first version. */
int journal_link_head(struct journal *j, int64_t id, int64_t base,
		      const char *volume, const char *path)
{
	static const enum journal_stmt_id steps[] = {
		STMT_INSERT_BASES, STMT_HEADS_DROP_BASES, STMT_HEADS_ADD,
	};
	int err = 0;

	for (size_t i = base ? 0 : 1; i < 3 && !err; i++) {
		sqlite3_stmt *s = journal_stmt(j, steps[i]);

		journal_bind_ref(s, id, base, volume, path);
		err = journal_step_done(s);
	}
	return err;
}

/* C, which replaces change BASE at its path: an edit is stored as runs of
 * the previous version's chunk list (chunks.c). */
static int journal_store_content_at(struct journal *j, const struct content *c,
				    int64_t base)
{
	sqlite3_stmt *s = NULL;
	uint8_t hash[CONTENT_HASH_LEN];
	bool have = false;
	int err = 0;

	if (base && c->n_chunks > 1) {
		err = journal_db_err(journal_prepare_cached(j,
			"SELECT hash FROM changes WHERE id = ?", &s));
		if (!err) {
			sqlite3_bind_int64(s, 1, base);
			err = journal_row(s);
			have = err > 0 &&
			       sqlite3_column_bytes(s, 0) == CONTENT_HASH_LEN;
			err = err < 0 ? err : 0;
			if (have)
				memcpy(hash, sqlite3_column_blob(s, 0),
				       CONTENT_HASH_LEN);
		}
		journal_stmt_done(s);
	}
	return err ? err : journal_store_content(j, c, have ? hash : NULL);
}

static int journal_append_steps(struct journal *j, const struct journal_row *r)
{
	int64_t base = 0;
	int64_t id = 0;
	int err = journal_current_change(j, r->volume, r->path, &base);

	if (!err && r->content)
		err = journal_store_content_at(j, r->content, base);
	if (!err)
		err = journal_insert_change(j, r, &id);
	if (!err)
		err = journal_link_head(j, id, base, r->volume, r->path);
	if (!err)
		err = journal_set_current(j, r->volume, r->path, id, r->st);
	return err;
}

int journal_atomic(struct journal *j, int (*fn)(struct journal *, void *),
		   void *arg)
{
	int err = journal_begin(j);

	if (err)
		return err;
	err = journal_step_done(journal_stmt(j, STMT_SAVEPOINT));
	if (err)
		return err;
	err = fn(j, arg);
	if (err) {
		journal_step_done(journal_stmt(j, STMT_ROLLBACK_TO));
		journal_step_done(journal_stmt(j, STMT_RELEASE));
		return err;
	}
	return journal_step_done(journal_stmt(j, STMT_RELEASE));
}

static int journal_append_fn(struct journal *j, void *arg)
{
	const struct journal_row *r = arg;
	int err = journal_append_steps(j, r);

	if (err)
		return err;
	j->next_seq++;
	j->lamport++;
	j->pending++;
	/* Retargeting may record a merge, which takes the next seq. */
	return journal_retarget(j, r->volume, r->path);
}

/* One local change, inside the open batch; all of it or none of it. */
static int journal_append(struct journal *j, const struct journal_row *r)
{
	uint64_t seq = j->next_seq, lamport = j->lamport;
	unsigned pending = j->pending;
	int err = journal_atomic(j, journal_append_fn, (void *)r);

	if (err) {
		j->next_seq = seq;
		j->lamport = lamport;
		j->pending = pending;
	}
	/* A recorded change took a seq and a Lamport tick. */
	assert(err || (j->next_seq > seq && j->lamport > lamport));
	return err;
}

/* Inserts R as this node's next change with every head of its path as a
 * base, and makes it the path's only head. */
static int journal_append_over_heads(struct journal *j,
				     const struct journal_row *r, int64_t *id)
{
	static const char sql[] =
		"INSERT OR IGNORE INTO bases (change, origin, seq) "
		"SELECT ?1, x.origin, x.seq FROM heads h JOIN changes x "
		"ON x.id = h.change WHERE h.volume = ?2 AND h.path = ?3";
	sqlite3_stmt *s = NULL;
	int err = journal_insert_change(j, r, id);

	if (!err)
		err = journal_db_err(journal_prepare_cached(j, sql, &s));
	if (!err) {
		sqlite3_bind_int64(s, 1, *id);
		sqlite3_bind_text(s, 2, r->volume, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, r->path, -1, SQLITE_STATIC);
		err = journal_step_done(s);
	}
	journal_stmt_done(s);
	/* Every head is now a base: it leaves the heads, the new one joins. */
	if (!err)
		err = journal_link_head(j, *id, 0, r->volume, r->path);
	if (!err) {
		j->next_seq++;
		j->lamport++;
		j->pending++;
	}
	return err;
}

/*
 * A merge: a local version of PATH with the winner's content and every
 * current head as its base, which resolves a conflict once and for all.
 * Called inside an open savepoint; the path's disk state is unchanged.
 */
int journal_append_merge(struct journal *j, const char *volume,
			 const char *path, const struct stat *st,
			 const uint8_t *hash, const char *target)
{
	struct content keep = { .size = (uint64_t)st->st_size };
	struct journal_row r = { volume, path, JOURNAL_PUT, st, NULL, target };
	int64_t id = 0;
	int err;

	if (S_ISDIR(st->st_mode))
		r.op = JOURNAL_MKDIR;
	else if (S_ISLNK(st->st_mode))
		r.op = JOURNAL_SYMLINK;
	if (hash) {
		memcpy(keep.hash, hash, CONTENT_HASH_LEN);
		r.content = &keep;
	}
	err = journal_append_over_heads(j, &r, &id);
	if (!err)
		err = journal_merge_current(j, volume, path, id);
	return err;
}

int journal_append_forget(struct journal *j, const char *volume,
			  const char *path)
{
	struct journal_row r = { volume, path, JOURNAL_DELETE, NULL, NULL,
				 NULL };
	int64_t id = 0;

	return journal_append_over_heads(j, &r, &id);
}

int journal_record_put(struct journal *j, const char *volume,
		       const char *path, const struct stat *st,
		       const struct content *content)
{
	struct journal_row r = { volume, path, JOURNAL_PUT, st, content, NULL };

	return journal_append(j, &r);
}

int journal_record_mkdir(struct journal *j, const char *volume,
			 const char *path, const struct stat *st)
{
	struct journal_row r = { volume, path, JOURNAL_MKDIR, st, NULL, NULL };

	return journal_append(j, &r);
}

int journal_record_symlink(struct journal *j, const char *volume,
			   const char *path, const struct stat *st,
			   const char *target)
{
	struct journal_row r = { volume, path, JOURNAL_SYMLINK, st, NULL,
				 target };

	return journal_append(j, &r);
}

/* A metadata change carries the content it keeps, so that the row still
 * describes the whole version. */
int journal_record_meta(struct journal *j, const char *volume,
			const char *path, const struct stat *st)
{
	struct journal_state old = { 0 };
	struct content keep = { 0 };
	struct journal_row r = { volume, path, JOURNAL_META, st, NULL, NULL };
	int err = journal_lookup(j, volume, path, &old);

	if (err)
		return err;
	if (old.has_hash && S_ISREG(st->st_mode)) {
		memcpy(keep.hash, old.hash, CONTENT_HASH_LEN);
		keep.size = old.size;
		r.content = &keep;
	}
	r.target = old.target;
	err = journal_append(j, &r);
	journal_state_release(&old);
	return err;
}

static int journal_delete_one(struct journal *j, const char *volume,
			      const char *path)
{
	struct journal_row r = { volume, path, JOURNAL_DELETE, NULL, NULL,
				 NULL };

	return journal_append(j, &r);
}

/* Paths below VOLUME/PATH that currently exist, deepest first. */
static int journal_collect_below(struct journal *j, const char *volume,
				 const char *path, char ***out, size_t *n)
{
	static const char sql[] =
		"SELECT cur.path FROM current cur JOIN changes c "
		"ON c.id = cur.change WHERE cur.volume = ?1 AND c.mode != 0 "
		"AND cur.path > ?2 || '/' AND cur.path < ?2 || '0' "
		"ORDER BY cur.path DESC";
	sqlite3_stmt *s = NULL;
	size_t cap = 0;
	int rc = 0;
	int err = journal_prepare(j, sql, &s);

	*out = NULL;
	*n = 0;
	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	while (!err && (rc = journal_row(s)) > 0) {
		if (*n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			char **p = realloc(*out, ncap * sizeof(*p));

			if (!p) {
				err = -ENOMEM;
				break;
			}
			*out = p;
			cap = ncap;
		}
		(*out)[*n] = strdup((const char *)sqlite3_column_text(s, 0));
		if (!(*out)[(*n)++])
			err = -ENOMEM;
	}
	if (!err && rc < 0)
		err = rc;
	sqlite3_finalize(s);
	return err;
}

static void journal_free_list(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

/*
 * Deleting a directory deletes what the journal holds below it too: when
 * events were lost (rm -rf during an overflow) only the top may be seen.
 */
int journal_record_delete(struct journal *j, const char *volume,
			  const char *path)
{
	char **below = NULL;
	size_t n = 0;
	int err = path[0] ? journal_collect_below(j, volume, path, &below, &n)
			  : -EINVAL;

	for (size_t i = 0; i < n && !err; i++)
		err = journal_delete_one(j, volume, below[i]);
	if (!err)
		err = journal_delete_one(j, volume, path);
	journal_free_list(below, n);
	return err;
}

/*
 * A removed volume's paths leave the current table: their history stays
 * in changes, but a volume created again under the same name starts
 * empty instead of inheriting ghosts.
 */
int journal_record_volume(struct journal *j, const char *volume, bool create,
			  const struct stat *st)
{
	static const char *const forget[] = {
		"DELETE FROM current WHERE volume = ? AND path != ''",
		"DELETE FROM heads WHERE volume = ? AND path != ''",
		"DELETE FROM jobs WHERE volume = ? AND path != ''",
	};
	struct journal_row r = { volume, "", create ? JOURNAL_VOLUME_CREATE :
				 JOURNAL_VOLUME_REMOVE, create ? st : NULL,
				 NULL, NULL };
	int err = journal_append(j, &r);

	for (size_t i = 0; !err && !create && i < 3; i++) {
		sqlite3_stmt *s = NULL;

		err = journal_prepare(j, forget[i], &s);
		if (!err) {
			sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
			err = journal_step_done(s);
		}
		sqlite3_finalize(s);
	}
	return err;
}

int journal_touch_state(struct journal *j, const char *volume,
			const char *path, const struct stat *st)
{
	sqlite3_stmt *s;
	int err = journal_begin(j);

	if (err)
		return err;
	s = journal_stmt(j, STMT_TOUCH_CURRENT);
	sqlite3_bind_int64(s, 1, (sqlite3_int64)st->st_ino);
	sqlite3_bind_int64(s, 2, (int64_t)st->st_ctim.tv_sec * 1000000000 +
			   st->st_ctim.tv_nsec);
	sqlite3_bind_text(s, 3, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, path, -1, SQLITE_STATIC);
	return journal_step_done(s);
}

int journal_meta_set(struct journal *j, const char *key, const char *value)
{
	sqlite3_stmt *s = NULL;
	int err = journal_prepare(j, "INSERT INTO meta (key, value) VALUES "
		"(?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
		&s);

	if (!err)
		err = journal_begin(j);
	if (!err) {
		sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
		err = journal_step_done(s);
	}
	sqlite3_finalize(s);
	return err;
}

int journal_meta_get(struct journal *j, const char *key, char **out)
{
	sqlite3_stmt *s = NULL;
	int err = journal_prepare(j, "SELECT value FROM meta WHERE key = ?",
				  &s);

	*out = NULL;
	if (err)
		goto out;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	err = journal_row(s);
	if (err > 0) {
		*out = strdup((const char *)sqlite3_column_text(s, 0));
		err = *out ? 0 : -ENOMEM;
	} else if (err == 0) {
		err = -ENOENT;
	}
out:
	sqlite3_finalize(s);
	return err;
}

static const char *const op_names[] = {
	[JOURNAL_PUT] = "put",
	[JOURNAL_MKDIR] = "mkdir",
	[JOURNAL_SYMLINK] = "symlink",
	[JOURNAL_DELETE] = "delete",
	[JOURNAL_META] = "meta",
	[JOURNAL_VOLUME_CREATE] = "volume-create",
	[JOURNAL_VOLUME_REMOVE] = "volume-remove",
};

const char *journal_op_name(enum journal_op op)
{
	if (op >= JOURNAL_PUT && op <= JOURNAL_VOLUME_REMOVE)
		return op_names[op];
	return "?";
}

enum journal_op journal_op_parse(const char *name)
{
	for (int op = JOURNAL_PUT; op <= JOURNAL_VOLUME_REMOVE; op++)
		if (strcmp(name, op_names[op]) == 0)
			return (enum journal_op)op;
	return 0;
}
