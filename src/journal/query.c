/*
 * Journal read path: current state, the audit log, per-path history.
 * Everything here only reads, so it works the same on the agent's
 * connection and on a read-only one beside it.  The version vector is
 * kept in memory (vector.c).
 */
#include "journal_int.h"
#include "loop.h"

#include "err.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BASES_MAX 64   /* more than any resolution names; extra are cut */

static void state_from_row(sqlite3_stmt *s, int col, struct journal_state *st)
{
	const void *hash = sqlite3_column_blob(s, col + 5);
	const unsigned char *target = sqlite3_column_text(s, col + 6);

	st->mode = (uint32_t)sqlite3_column_int64(s, col);
	st->uid = (uint32_t)sqlite3_column_int64(s, col + 1);
	st->gid = (uint32_t)sqlite3_column_int64(s, col + 2);
	st->size = (uint64_t)sqlite3_column_int64(s, col + 3);
	st->mtime_ns = sqlite3_column_int64(s, col + 4);
	st->has_hash = hash && sqlite3_column_bytes(s, col + 5) == CONTENT_HASH_LEN;
	if (st->has_hash)
		memcpy(st->hash, hash, CONTENT_HASH_LEN);
	st->target = target ? strdup((const char *)target) : NULL;
	st->ino = (uint64_t)sqlite3_column_int64(s, col + 7);
	st->ctime_ns = sqlite3_column_int64(s, col + 8);
}

int journal_lookup(struct journal *j, const char *volume, const char *path,
		   struct journal_state *out)
{
	sqlite3_stmt *s = journal_stmt(j, STMT_LOOKUP);
	int rc;

	memset(out, 0, sizeof(*out));
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	rc = journal_row(s);
	if (rc > 0)
		state_from_row(s, 0, out);
	/* Never leave a row pending: see journal_current_change(). */
	sqlite3_reset(s);
	return rc > 0 ? 0 : rc == 0 ? -ENOENT : rc;
}

void journal_state_release(struct journal_state *s)
{
	free(s->target);
	s->target = NULL;
}

static int foreach_rows(sqlite3_stmt *s, journal_state_fn fn, void *arg)
{
	int rc = 0, ret = 0;

	while (ret == 0 && (rc = journal_row(s)) > 0) {
		struct journal_state st = { 0 };

		state_from_row(s, 2, &st);
		ret = fn(arg, (const char *)sqlite3_column_text(s, 0),
			 (const char *)sqlite3_column_text(s, 1), &st);
		journal_state_release(&st);
	}
	return ret ? ret : rc;
}

#define STATE_COLUMNS \
	"cur.volume, cur.path, c.mode, c.uid, c.gid, c.size, c.mtime_ns, " \
	"c.hash, c.target, cur.ino, cur.ctime_ns"

bool journal_subtree_live(struct journal *j, const char *volume,
			  const char *dir)
{
	sqlite3_stmt *s = NULL;
	char *lo = NULL, *hi = NULL;
	bool live = false;

	/* Every path under DIR sorts between "DIR/" and "DIR0" ('0' is the
	 * byte after '/'): one range of current's primary key. */
	if (asprintf(&lo, "%s/", dir) < 0 || asprintf(&hi, "%s0", dir) < 0 ||
	    journal_prepare_cached(j, "SELECT 1 FROM current cur JOIN changes c "
				   "ON c.id = cur.change WHERE cur.volume = ?1 "
				   "AND cur.path > ?2 AND cur.path < ?3 AND "
				   "c.mode != 0 LIMIT 1", &s) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, lo, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, hi, -1, SQLITE_STATIC);
	/* A failure (logged) answers "nothing": the caller tries again
	 * later rather than act on it. */
	live = journal_row(s) > 0;
	journal_stmt_done(s);
out:
	free(lo);
	free(hi);
	return live;
}

int journal_next_file(struct journal *j, const char *volume, const char *path,
		      char *vol_out, size_t vcap, char **path_out,
		      struct journal_state *st)
{
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j,
		"SELECT " STATE_COLUMNS " FROM current cur JOIN changes c "
		"ON c.id = cur.change WHERE (cur.volume, cur.path) > (?1, ?2) "
		"AND (c.mode & ?3) = ?4 AND c.hash IS NOT NULL "
		"ORDER BY cur.volume, cur.path LIMIT 1", &s));

	*path_out = NULL;
	memset(st, 0, sizeof(*st));
	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 3, S_IFMT);
	sqlite3_bind_int(s, 4, S_IFREG);
	rc = journal_row(s);
	if (rc > 0) {
		snprintf(vol_out, vcap, "%s",
			 (const char *)sqlite3_column_text(s, 0));
		*path_out = strdup((const char *)sqlite3_column_text(s, 1));
		state_from_row(s, 2, st);
		err = *path_out ? 0 : -ENOMEM;
	} else {
		err = rc == 0 ? -ENOENT : rc;
	}
	journal_stmt_done(s);
	return err;
}

int journal_files_bytes(struct journal *j, uint64_t *out)
{
	int64_t n = 0;
	int err = journal_query_int(j, "SELECT coalesce(sum(c.size), 0) FROM "
				    "current cur JOIN changes c ON c.id = "
				    "cur.change WHERE (c.mode & 61440) = 32768",
				    NULL, &n);

	*out = err ? 0 : (uint64_t)n;
	return err;
}

int journal_foreach_state(struct journal *j, const char *volume,
			  journal_state_fn fn, void *arg)
{
	static const char sql[] =
		"SELECT " STATE_COLUMNS " FROM current cur JOIN changes c "
		"ON c.id = cur.change WHERE cur.volume = ? AND c.mode != 0";
	sqlite3_stmt *s = NULL;
	int err = journal_prepare(j, sql, &s);

	if (!err) {
		sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
		err = foreach_rows(s, fn, arg);
	}
	sqlite3_finalize(s);
	return err;
}

/*
 * A volume's root is its path '' in current, the first of its rows in
 * primary-key order: each step seeks the first row of the next volume
 * name, so the walk reads one row per volume, not every path.
 */
int journal_foreach_volume(struct journal *j, journal_state_fn fn, void *arg)
{
	static const char sql[] =
		"SELECT " STATE_COLUMNS ", c.op FROM current cur JOIN changes c "
		"ON c.id = cur.change WHERE cur.volume > ? "
		"ORDER BY cur.volume, cur.path LIMIT 1";
	sqlite3_stmt *s = NULL;
	char *last = strdup("");
	int ret = journal_prepare(j, sql, &s);

	if (!last && !ret)
		ret = -ENOMEM;
	while (ret == 0) {
		const char *vol;

		ret = journal_bind_check(s, sqlite3_bind_text(s, 1, last, -1,
							      SQLITE_TRANSIENT));
		if (!ret)
			ret = journal_row(s);
		if (ret <= 0)
			break;
		ret = 0;
		vol = (const char *)sqlite3_column_text(s, 0);
		free(last);
		last = strdup(vol);
		if (!last) {
			ret = -ENOMEM;
			break;
		}
		if (sqlite3_column_text(s, 1)[0] == '\0' &&
		    sqlite3_column_int(s, 11) != JOURNAL_VOLUME_REMOVE) {
			struct journal_state st = { 0 };

			state_from_row(s, 2, &st);
			ret = fn(arg, last, "", &st);
			journal_state_release(&st);
		}
		sqlite3_reset(s);
	}
	free(last);
	sqlite3_finalize(s);
	return ret;
}

static int load_bases(struct journal *j, int64_t id, struct journal_ref *bases,
		      size_t cap, size_t *n)
{
	sqlite3_stmt *s = journal_stmt(j, STMT_BASES_OF);
	int rc;

	*n = 0;
	sqlite3_bind_int64(s, 1, id);
	while ((rc = journal_row(s)) > 0) {
		if (*n == cap)
			continue;
		snprintf(bases[*n].origin, sizeof(bases[*n].origin), "%s",
			 (const char *)sqlite3_column_text(s, 0));
		bases[(*n)++].seq = (uint64_t)sqlite3_column_int64(s, 1);
	}
	return rc;
}

int journal_change_from_row(struct journal *j, sqlite3_stmt *row,
			    struct journal_change *c, struct journal_ref *bases,
			    size_t cap)
{
	const void *hash = sqlite3_column_blob(row, 13);

	memset(c, 0, sizeof(*c));
	c->id = sqlite3_column_int64(row, 0);
	snprintf(c->ref.origin, sizeof(c->ref.origin), "%s",
		 (const char *)sqlite3_column_text(row, 1));
	c->ref.seq = (uint64_t)sqlite3_column_int64(row, 2);
	c->lamport = (uint64_t)sqlite3_column_int64(row, 3);
	c->wall_ns = sqlite3_column_int64(row, 4);
	c->volume = (const char *)sqlite3_column_text(row, 5);
	c->path = (const char *)sqlite3_column_text(row, 6);
	c->op = (enum journal_op)sqlite3_column_int(row, 7);
	c->mode = (uint32_t)sqlite3_column_int64(row, 8);
	c->uid = (uint32_t)sqlite3_column_int64(row, 9);
	c->gid = (uint32_t)sqlite3_column_int64(row, 10);
	c->size = (uint64_t)sqlite3_column_int64(row, 11);
	c->mtime_ns = sqlite3_column_int64(row, 12);
	c->has_hash = hash && sqlite3_column_bytes(row, 13) == CONTENT_HASH_LEN;
	if (c->has_hash)
		memcpy(c->hash, hash, CONTENT_HASH_LEN);
	c->target = (const char *)sqlite3_column_text(row, 14);
	c->chain.chained = sqlite3_column_bytes(row, 15) == CONTENT_HASH_LEN &&
			   sqlite3_column_bytes(row, 16) == CONTENT_HASH_LEN;
	if (c->chain.chained) {
		memcpy(c->chain.prev, sqlite3_column_blob(row, 15),
		       CONTENT_HASH_LEN);
		memcpy(c->chain.digest, sqlite3_column_blob(row, 16),
		       CONTENT_HASH_LEN);
	}
	c->bases = bases;
	return load_bases(j, c->id, bases, cap, &c->n_bases);
}

static int run_change_query(struct journal *j, sqlite3_stmt *s,
			    journal_change_fn fn, void *arg)
{
	struct journal_ref bases[BASES_MAX];
	int rc = 0, ret = 0;

	while (ret == 0 && (rc = journal_row(s)) > 0) {
		struct journal_change c;

		ret = journal_change_from_row(j, s, &c, bases, BASES_MAX);
		if (ret == 0)
			ret = fn(arg, &c);
	}
	return ret ? ret : rc;
}

/* Appends " AND <cond>" to the WHERE clause being built in SQL. */
static void where_add(char *sql, size_t cap, const char *cond)
{
	size_t n = strlen(sql);

	snprintf(sql + n, cap - n, " AND %s", cond);
}

/*
 * A page of the audit log is read in id order from its cursor (the end
 * of the journal for the first page) and stops at LIMIT: the newest page
 * costs its rows whatever the history.  A volume has its own index; the
 * other filters are checked on the way, so a filter that matches rarely
 * reads as far back as its matches lie (a search, like grep).
 */
int journal_log(struct journal *j, const struct journal_filter *f,
		journal_change_fn fn, void *arg)
{
	char sql[1024] = "SELECT " JOURNAL_CHANGE_COLUMNS " FROM changes c "
			 "JOIN origins o ON o.id = c.origin WHERE 1";
	sqlite3_stmt *s = NULL;
	size_t n;
	int err;

	if (f->volume)
		where_add(sql, sizeof(sql), "c.volume = :volume");
	if (f->path_prefix)
		where_add(sql, sizeof(sql), "substr(c.path, 1, length(:prefix))"
			  " = :prefix");
	if (f->origin)
		where_add(sql, sizeof(sql), "c.origin IN (SELECT id FROM "
			  "origins WHERE node = :origin OR "
			  "node || '@' || epoch = :origin)");
	if (f->since_ns)
		where_add(sql, sizeof(sql), "c.wall_ns >= :since");
	if (f->until_ns)
		where_add(sql, sizeof(sql), "c.wall_ns < :until");
	if (f->op)
		where_add(sql, sizeof(sql), "c.op = :op");
	where_add(sql, sizeof(sql), f->oldest_first ? "c.id > :cursor" :
		  "c.id < :cursor");
	n = strlen(sql);
	snprintf(sql + n, sizeof(sql) - n, " ORDER BY c.id %s LIMIT :limit",
		 f->oldest_first ? "ASC" : "DESC");
	err = journal_prepare(j, sql, &s);
	if (err)
		goto out;
#define BIND_TEXT(name, v) sqlite3_bind_text(s, \
	sqlite3_bind_parameter_index(s, name), v, -1, SQLITE_STATIC)
#define BIND_INT(name, v) sqlite3_bind_int64(s, \
	sqlite3_bind_parameter_index(s, name), v)
	BIND_TEXT(":volume", f->volume);
	BIND_TEXT(":prefix", f->path_prefix);
	BIND_TEXT(":origin", f->origin);
	BIND_INT(":since", f->since_ns);
	BIND_INT(":until", f->until_ns);
	BIND_INT(":op", f->op);
	BIND_INT(":cursor", f->before_id ? f->before_id :
		 f->oldest_first ? 0 : INT64_MAX);
	BIND_INT(":limit", f->limit > 0 ? f->limit : -1);
#undef BIND_TEXT
#undef BIND_INT
	err = run_change_query(j, s, fn, arg);
out:
	sqlite3_finalize(s);
	return err;
}

int journal_history(struct journal *j, const char *volume, const char *path,
		    journal_change_fn fn, void *arg)
{
	static const char sql[] =
		"SELECT " JOURNAL_CHANGE_COLUMNS " FROM changes c "
		"JOIN origins o ON o.id = c.origin "
		"WHERE c.volume = ? AND c.path = ? ORDER BY c.lamport, c.id";
	sqlite3_stmt *s = NULL;
	int err = journal_prepare(j, sql, &s);

	if (!err) {
		sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
		err = run_change_query(j, s, fn, arg);
	}
	sqlite3_finalize(s);
	return err;
}

static int count_rows(struct journal *j, const char *sql, uint64_t *out)
{
	sqlite3_stmt *s = NULL;
	int err = journal_prepare(j, sql, &s);

	if (!err)
		err = journal_row(s);
	if (err > 0)
		*out = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return err < 0 ? err : 0;
}

int journal_info(struct journal *j, struct journal_info *out)
{
	int err;

	memset(out, 0, sizeof(*out));
	snprintf(out->node_id, sizeof(out->node_id), "%s", j->node_id);
	snprintf(out->origin, sizeof(out->origin), "%s", j->origin);
	out->own_seq = j->next_seq - 1;
	out->lamport = j->lamport;
	/* Kept by triggers (schema 5): counting rows costs their number. */
	err = count_rows(j, "SELECT n FROM counts WHERE name = 'changes'",
			 &out->n_changes);
	if (!err)
		err = count_rows(j, "SELECT n FROM counts WHERE name = 'paths'",
				 &out->n_paths);
	if (!err)
		err = count_rows(j, "SELECT n FROM counts WHERE name = 'volumes'",
				 &out->n_volumes);
	if (!err)
		err = count_rows(j, "SELECT n FROM counts WHERE name = 'contents'",
				 &out->n_contents);
	if (!err)
		err = count_rows(j, "SELECT n FROM counts WHERE name = 'chunks'",
				 &out->n_chunks);
	if (!err) {
		uint64_t v = 0;

		err = count_rows(j, "PRAGMA user_version", &v);
		out->schema_version = (int)v;
	}
	if (!err)
		journal_sizes(j, &out->journal_bytes, &out->wal_bytes);
	return err;
}

int journal_check(struct journal *j, char **why)
{
	static const char gaps[] =
		"SELECT o.node || '@' || o.epoch, count(*), max(c.seq), "
		"max(o.floor) FROM changes c JOIN origins o ON o.id = c.origin "
		"WHERE c.seq > o.floor GROUP BY c.origin "
		"HAVING count(*) != max(c.seq) - max(o.floor) LIMIT 1";
	sqlite3_stmt *s = NULL;
	int err;

	*why = NULL;
	err = journal_prepare(j, "PRAGMA quick_check", &s);
	/* A check that cannot read the database is no pass. */
	if (!err)
		err = journal_row(s);
	if (err > 0)
		err = 0;
	else
		assert(err < 0);    /* quick_check always has a row */
	if (!err && strcmp((const char *)sqlite3_column_text(s, 0), "ok") != 0) {
		if (asprintf(why, "database: %s", sqlite3_column_text(s, 0)) < 0)
			*why = NULL;
		err = KR_ECORRUPT;
	}
	sqlite3_finalize(s);
	s = NULL;
	if (!err)
		err = journal_prepare(j, gaps, &s);
	if (!err && (err = journal_row(s)) > 0) {
		if (asprintf(why, "origin %s holds %lld changes after %lld "
			     "but its last seq is %lld",
			     sqlite3_column_text(s, 0),
			     sqlite3_column_int64(s, 1),
			     sqlite3_column_int64(s, 3),
			     sqlite3_column_int64(s, 2)) < 0)
			*why = NULL;
		err = KR_ECORRUPT;
	}
	sqlite3_finalize(s);
	return err;
}

/* ---- mounts ------------------------------------------------------------ */

static int mount_exec(struct journal *j, const char *sql, const char *volume,
		      const char *id, int64_t now)
{
	sqlite3_stmt *s = NULL;
	int err = journal_prepare(j, sql, &s);

	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
	if (sqlite3_bind_parameter_count(s) >= 3)
		sqlite3_bind_int64(s, 3, now);
	err = journal_step_done(s);
	sqlite3_finalize(s);
	if (!err)
		err = journal_flush(j);
	return err;
}

int journal_mount_add(struct journal *j, const char *volume, const char *id)
{
	int err = journal_begin(j);

	if (!err)
		err = mount_exec(j, "INSERT OR IGNORE INTO mounts (volume, id, "
				 "created_ns) VALUES (?1, ?2, ?3)", volume, id,
				 loop_wall_ns());
	return err;
}

int journal_mount_remove(struct journal *j, const char *volume,
			 const char *id)
{
	int err = journal_begin(j);

	if (!err)
		err = mount_exec(j, "DELETE FROM mounts WHERE volume = ?1 AND "
				 "id = ?2", volume, id, 0);
	if (!err && sqlite3_changes(j->db) == 0)
		err = -ENOENT;
	return err;
}

int journal_mount_count(struct journal *j, const char *volume, uint64_t *out)
{
	sqlite3_stmt *s = NULL;
	int err = journal_prepare(j, "SELECT count(*) FROM mounts "
				  "WHERE volume = ?", &s);

	*out = 0;
	if (!err) {
		sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
		/* A failure is no count of 0: a mounted volume would go. */
		err = journal_row(s);
		if (err > 0)
			*out = (uint64_t)sqlite3_column_int64(s, 0);
	}
	sqlite3_finalize(s);
	return err < 0 ? err : 0;
}

int journal_mounts(struct journal *j,
		   int (*fn)(void *arg, const char *volume, const char *id,
			     int64_t created_ns), void *arg)
{
	sqlite3_stmt *s = NULL;
	int rc = 0, ret = journal_prepare(j, "SELECT volume, id, created_ns "
					  "FROM mounts ORDER BY volume, id", &s);

	while (ret == 0 && (rc = journal_row(s)) > 0)
		ret = fn(arg, (const char *)sqlite3_column_text(s, 0),
			 (const char *)sqlite3_column_text(s, 1),
			 sqlite3_column_int64(s, 2));
	sqlite3_finalize(s);
	return ret ? ret : rc;
}
