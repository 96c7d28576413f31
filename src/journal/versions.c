/*
 * The store of superseded content: what a peer's change replaced or
 * deleted here stays restorable for versions.keep, within
 * versions.max_bytes.
 *
 * Layout.  A directory of its own, ROOT/.krakenfs-versions (a name no
 * volume can have), on the volumes' file system, holding one file per
 * kept content, named by the 64 hex digits of its content hash; the table
 * `versions` (schema 15) says its size and when it was last replaced.
 * Nothing in it is a volume's: it is never watched or replicated.
 *
 * Keeping costs no copy.  Before the applier renames a new version over
 * a file, or deletes it, the file is hard-linked into the store
 * (journal_versions_keep): the inode the volume lets go of lives on
 * there, and its blocks are all it costs.  On a file system that shares
 * blocks between copies (XFS, btrfs), a version made from the one before
 * shares most of its blocks too.  Content already kept is not kept
 * twice.
 *
 * Cost.  What the store reports and versions.max_bytes caps is what a
 * path's kept versions hold on disk beyond its live file (`disk`,
 * schema 16; versions_cost.c): 100 edits of 1 MiB inside a 1 GiB file on
 * XFS keep about 100 MiB, and are counted so, not 100 GiB.  Sharing
 * changes as other files change (the live file edited again, or
 * deleted), so the paths whose rows shared blocks are measured again
 * before each prune, and a path again after each of its rows goes.  A
 * version is first measured once its replacement is in place (the agent
 * asks every two seconds; journal_versions_measure_fresh), counting its
 * size until then.
 *
 * Crash safety.  The link comes before its row, and a row goes before
 * its file is removed (the row's removal commits with the next batch),
 * so a crash leaves at worst a file without a row or a row whose file is
 * gone.  Opening the store removes both; meanwhile a row's file is never
 * served unless it is there with the size the row says.
 */
#include "journal_int.h"

#include "content.h"
#include "err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEX_LEN (2 * CONTENT_HASH_LEN)

struct journal_versions {
	struct journal *j;
	int fd;                   /* the store directory */
};

/* Whether NAME is a kept file's name: 64 lowercase hex digits. */
static bool store_name(const char *name)
{
	uint8_t hash[CONTENT_HASH_LEN];

	return strlen(name) == HEX_LEN && content_unhex(name, hash) == 0;
}

static bool row_exists(struct journal *j, const uint8_t *hash)
{
	sqlite3_stmt *s = NULL;
	bool yes = false;

	if (journal_prepare_cached(j, "SELECT 1 FROM versions WHERE hash = ?1",
				   &s) != SQLITE_OK)
		return true;      /* when in doubt, keep the file */
	sqlite3_bind_blob(s, 1, hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	yes = journal_row(s) != 0;    /* a failure is doubt: keep it */
	journal_stmt_done(s);
	return yes;
}

/* Rows a crash left without their file. */
static int rows_sweep(struct journal_versions *v)
{
	sqlite3_stmt *s = NULL, *d = NULL;
	int rc = 0, err = journal_prepare(v->j, "SELECT hash FROM versions",
					  &s);

	if (!err)
		err = journal_db_err(journal_prepare_cached(v->j,
			"DELETE FROM versions WHERE hash = ?1", &d));
	if (!err)
		err = journal_begin(v->j);
	while (!err && (rc = journal_row(s)) > 0) {
		char hex[HEX_LEN + 1];

		if (sqlite3_column_bytes(s, 0) != CONTENT_HASH_LEN)
			continue;
		content_hex(sqlite3_column_blob(s, 0), hex);
		if (faccessat(v->fd, hex, F_OK, AT_SYMLINK_NOFOLLOW) == 0 ||
		    errno != ENOENT)
			continue;
		sqlite3_reset(d);
		err = journal_bind_check(d, sqlite3_bind_blob(d, 1,
				sqlite3_column_blob(s, 0), CONTENT_HASH_LEN,
				SQLITE_TRANSIENT));
		if (!err)
			err = journal_step_done(d);
		v->j->pending++;
	}
	if (!err && rc < 0)
		err = rc;
	sqlite3_finalize(s);
	journal_stmt_done(d);
	return err ? err : journal_flush(v->j);
}

/* Files a crash left without a row. */
static int store_sweep(struct journal_versions *v)
{
	int fd = dup(v->fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while ((e = readdir(d))) {
		uint8_t hash[CONTENT_HASH_LEN];

		if (!store_name(e->d_name) ||
		    content_unhex(e->d_name, hash) != 0 ||
		    row_exists(v->j, hash))
			continue;
		unlinkat(v->fd, e->d_name, 0);
	}
	closedir(d);
	return 0;
}

int journal_versions_open(struct journal *j, const char *dir, bool create,
			  struct journal_versions **out)
{
	struct journal_versions *v = calloc(1, sizeof(*v));
	int err = 0;

	*out = NULL;
	if (!v)
		return -ENOMEM;
	v->j = j;
	if (create && mkdir(dir, 0700) != 0 && errno != EEXIST)
		err = -errno;
	if (!err) {
		v->fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (v->fd < 0)
			err = -errno;
	}
	if (!err && create && !j->readonly)
		err = rows_sweep(v);
	if (!err && create && !j->readonly)
		err = store_sweep(v);
	if (err) {
		if (v->fd > 0)
			close(v->fd);
		free(v);
		return err;
	}
	*out = v;
	return 0;
}

void journal_versions_close(struct journal_versions *v)
{
	if (!v)
		return;
	close(v->fd);
	free(v);
}

static int row_put(struct journal *j, const uint8_t *hash, uint64_t size,
		   const char *volume, const char *path, int64_t now_ns)
{
	sqlite3_stmt *s = NULL;
	int err = journal_begin(j);

	if (!err)
		err = journal_db_err(journal_prepare_cached(j,
			"INSERT OR REPLACE INTO versions (hash, size, kept_ns, "
			"volume, path) VALUES (?1, ?2, ?3, ?4, ?5)", &s));
	if (err)
		return err;
	sqlite3_bind_blob(s, 1, hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)size);
	sqlite3_bind_int64(s, 3, now_ns);
	sqlite3_bind_text(s, 4, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, path, -1, SQLITE_STATIC);
	err = journal_step_done(s);
	journal_stmt_done(s);
	if (!err)
		j->pending++;
	return err;
}

int journal_versions_keep(struct journal_versions *v, int dirfd,
			  const char *name, const uint8_t hash[CONTENT_HASH_LEN],
			  uint64_t size, const char *volume, const char *path,
			  int64_t now_ns)
{
	char hex[HEX_LEN + 1];
	struct stat st;

	if (!v)
		return 0;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != size)
		return -ESTALE;   /* not the version the journal says */
	content_hex(hash, hex);
	if (linkat(dirfd, name, v->fd, hex, 0) != 0 && errno != EEXIST)
		return -errno;
	/* Measured later (journal_versions_measure_fresh): right now the
	 * live file is the very one kept, which would make it cost
	 * nothing. */
	v->j->versions_fresh = true;
	return row_put(v->j, hash, size, volume, path, now_ns);
}

int journal_versions_get(struct journal_versions *v,
			 const uint8_t hash[CONTENT_HASH_LEN])
{
	sqlite3_stmt *s = NULL;
	char hex[HEX_LEN + 1];
	uint64_t size = 0;
	struct stat st;
	int fd, err;

	err = journal_db_err(journal_prepare_cached(v->j,
		"SELECT size FROM versions WHERE hash = ?1", &s));
	if (err)
		return err;
	sqlite3_bind_blob(s, 1, hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	err = journal_row(s);
	if (err > 0)
		size = (uint64_t)sqlite3_column_int64(s, 0);
	err = err > 0 ? 0 : err == 0 ? -ENOENT : err;
	journal_stmt_done(s);
	if (err)
		return err;
	content_hex(hash, hex);
	fd = openat(v->fd, hex, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != size) {
		close(fd);
		return -ENOENT;   /* changed since: not that content */
	}
	return fd;
}

bool journal_versions_has(struct journal_versions *store,
			  const uint8_t hash[CONTENT_HASH_LEN])
{
	int fd = store ? journal_versions_get(store, hash) : -ENOENT;

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

const char *journal_versions_where(struct journal_versions *store,
				   const struct journal_state *live,
				   const struct journal_change *c)
{
	if (!c->has_hash)
		return "-";
	if (live && live->has_hash &&
	    memcmp(live->hash, c->hash, CONTENT_HASH_LEN) == 0)
		return "live";
	return journal_versions_has(store, c->hash) ? "kept" : "not here";
}

int journal_versions_find(struct journal *j, const char *root,
			  struct journal_versions **out)
{
	char dir[PATH_MAX];

	*out = NULL;
	if ((size_t)snprintf(dir, sizeof(dir), "%s/" JOURNAL_VERSIONS_DIR,
			     root) >= sizeof(dir))
		return -ENAMETOOLONG;
	if (access(dir, F_OK) != 0)
		return errno == ENOENT ? 0 : -errno;
	return journal_versions_open(j, dir, false, out);
}

/* Removes the kept content of the row S points at. */
static int prune_one(struct journal_versions *v, sqlite3_stmt *s)
{
	uint8_t hash[CONTENT_HASH_LEN];
	char hex[HEX_LEN + 1];
	sqlite3_stmt *d = NULL;
	int err;

	if (sqlite3_column_bytes(s, 0) != CONTENT_HASH_LEN)
		return KR_ECORRUPT;
	memcpy(hash, sqlite3_column_blob(s, 0), CONTENT_HASH_LEN);
	err = journal_db_err(journal_prepare_cached(v->j,
		"DELETE FROM versions WHERE hash = ?1", &d));
	if (err)
		return err;
	sqlite3_bind_blob(d, 1, hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	err = journal_step_done(d);
	journal_stmt_done(d);
	if (err)
		return err;
	v->j->pending++;
	content_hex(hash, hex);
	if (unlinkat(v->fd, hex, 0) != 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int journal_versions_usage(struct journal_versions *v, uint64_t *bytes,
			   uint64_t *count, int64_t *oldest_ns)
{
	return journal_versions_stats(v->j, NULL, bytes, count, oldest_ns);
}

int journal_versions_stats(struct journal *j, const char *volume,
			   uint64_t *bytes, uint64_t *count, int64_t *oldest_ns)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"SELECT coalesce(sum(coalesce(disk, size)), 0), count(*), "
		"coalesce(min(kept_ns), 0) FROM versions WHERE ?1 IS NULL OR "
		"volume = ?1", &s));

	*bytes = *count = 0;
	*oldest_ns = 0;
	if (err)
		return err;
	if (volume)
		sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	err = journal_row(s);
	if (err > 0) {
		*bytes = (uint64_t)sqlite3_column_int64(s, 0);
		*count = (uint64_t)sqlite3_column_int64(s, 1);
		*oldest_ns = sqlite3_column_int64(s, 2);
	}
	journal_stmt_done(s);
	return err < 0 ? err : 0;
}

/* Measures the kept versions of every path SQL selects (volume, path):
 * how many paths, or a negative code. */
static int measure_paths(struct journal_versions *v, const char *sql)
{
	sqlite3_stmt *s = NULL;
	int rc = 0, n = 0;
	int err = journal_prepare(v->j, sql, &s);

	while (!err && (rc = journal_row(s)) > 0) {
		char *volume = strdup((const char *)sqlite3_column_text(s, 0));
		char *path = strdup((const char *)sqlite3_column_text(s, 1));

		err = volume && path ? versions_cost_measure(v->j, v->fd,
							     volume, path) :
		      -ENOMEM;
		n += !err;
		free(volume);
		free(path);
	}
	if (!err && rc < 0)
		err = rc;
	sqlite3_finalize(s);
	return err ? err : n;
}

/* The paths whose kept versions may share blocks measured again
 * (versions_cost.c): sharing moved as other files did (the live file
 * edited again, or deleted).  A row that shared nothing when measured
 * stays so (nothing clones from the store but a restore) and is not
 * read again: on a file system without sharing that is every row once
 * measured. */
static int measure_all(struct journal_versions *v)
{
	int n = measure_paths(v, "SELECT DISTINCT volume, path FROM versions "
			      "WHERE disk IS NULL OR disk < size");

	return n < 0 ? n : 0;
}

int journal_versions_measure_fresh(struct journal_versions *v)
{
	int n;

	if (!v->j->versions_fresh)
		return 0;
	v->j->versions_fresh = false;
	n = measure_paths(v, "SELECT DISTINCT volume, path FROM versions "
			  "WHERE disk IS NULL");
	if (n < 0)
		v->j->versions_fresh = true;   /* tried again next time */
	return n;
}

int journal_versions_prune(struct journal_versions *v, int64_t keep_ns,
			   uint64_t max_bytes, int64_t now_ns,
			   uint64_t *removed)
{
	uint64_t total = 0, count = 0;
	int64_t oldest = 0;
	int err = measure_all(v);

	if (!err)
		err = journal_versions_usage(v, &total, &count, &oldest);
	*removed = 0;
	while (!err && count > 0) {
		sqlite3_stmt *s = NULL;
		char *volume = NULL, *path = NULL;

		err = journal_db_err(journal_prepare_cached(v->j,
			"SELECT hash, kept_ns, volume, path FROM versions "
			"ORDER BY kept_ns LIMIT 1", &s));
		if (err)
			break;
		err = journal_row(s);
		if (err <= 0 ||
		    (sqlite3_column_int64(s, 1) >= now_ns - keep_ns &&
		     total <= max_bytes)) {
			journal_stmt_done(s);
			err = err < 0 ? err : 0;
			break;    /* young enough, and within the cap */
		}
		volume = strdup((const char *)sqlite3_column_text(s, 2));
		path = strdup((const char *)sqlite3_column_text(s, 3));
		err = volume && path ? journal_begin(v->j) : -ENOMEM;
		if (!err)
			err = prune_one(v, s);
		journal_stmt_done(s);
		/* What it held may be held by the rest of its path now. */
		if (!err)
			err = versions_cost_measure(v->j, v->fd, volume, path);
		if (!err)
			err = journal_versions_usage(v, &total, &count,
						     &oldest);
		free(volume);
		free(path);
		(*removed)++;
	}
	return err;
}
