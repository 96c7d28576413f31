/*
 * What the kept versions of one path cost on disk (versions.c, "Cost").
 *
 * On a file system that shares blocks between files (XFS, btrfs), the
 * versions of an edited file share most of their blocks with each other
 * and with the live file: an edit's new version is made from a clone of
 * the one before.  A block is paid once however many files hold it, and
 * the store pays only for blocks the live file no longer holds.  So the
 * cost of a path's kept versions is the union of their physical extents
 * (FIEMAP) minus the live file's.  Each row gets the part of it that it
 * adds to the older rows of its path: the rows sum to the path's cost,
 * and pruning the oldest frees at most its part (the rest is measured
 * again after each removal).
 *
 * Sharing across paths (a copied file, reflinked) is not looked for: a
 * block a kept version shares with another path's file counts as the
 * version's.  Without FIEMAP (tmpfs), or for an extent with no physical
 * place yet (delayed allocation), a version costs its size.
 *
 * Ranges are byte ranges on the device, [start, end), kept sorted and
 * disjoint.
 */
#include "journal_int.h"

#include "content.h"
#include "path.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define FIEMAP_BATCH 128
/* Rows of one path measured together at most; the rest count their size. */
#define COST_ROWS_MAX 4096

struct range {
	uint64_t start, end;
};

struct ranges {
	struct range *v;
	size_t n, cap;
};

static int ranges_push(struct ranges *r, uint64_t start, uint64_t end)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 64;
		struct range *v = realloc(r->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n].start = start;
	r->v[r->n++].end = end;
	return 0;
}

static int range_cmp(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Sorted, overlaps and neighbours merged. */
static void ranges_normalize(struct ranges *r)
{
	size_t k = 0;

	if (r->n < 2)
		return;
	qsort(r->v, r->n, sizeof(*r->v), range_cmp);
	for (size_t i = 1; i < r->n; i++) {
		if (r->v[i].start <= r->v[k].end) {
			if (r->v[i].end > r->v[k].end)
				r->v[k].end = r->v[i].end;
		} else {
			r->v[++k] = r->v[i];
		}
	}
	r->n = k + 1;
}

/* Bytes of A outside COVERED (both normalized). */
static uint64_t ranges_outside(const struct ranges *a,
			       const struct ranges *covered)
{
	uint64_t out = 0;
	size_t j = 0;

	for (size_t i = 0; i < a->n; i++) {
		uint64_t pos = a->v[i].start, end = a->v[i].end;

		while (j < covered->n && covered->v[j].end <= pos)
			j++;
		for (size_t k = j; k < covered->n && pos < end &&
		     covered->v[k].start < end; k++) {
			if (covered->v[k].start > pos)
				out += covered->v[k].start - pos;
			if (covered->v[k].end > pos)
				pos = covered->v[k].end;
		}
		if (pos < end)
			out += end - pos;
	}
	return out;
}

/* COVERED gets A's ranges too. */
static int ranges_add(struct ranges *covered, const struct ranges *a)
{
	int err = 0;

	for (size_t i = 0; i < a->n && !err; i++)
		err = ranges_push(covered, a->v[i].start, a->v[i].end);
	ranges_normalize(covered);
	return err;
}

/* FD's extents with a physical place into OUT (normalized), the bytes of
 * the others into *LOOSE.  -EOPNOTSUPP and the like: no FIEMAP here. */
static int file_extents(int fd, struct ranges *out, uint64_t *loose)
{
	struct fiemap *fm = calloc(1, sizeof(*fm) + FIEMAP_BATCH *
				   sizeof(struct fiemap_extent));
	uint64_t start = 0;
	bool last = false;
	int err = fm ? 0 : -ENOMEM;

	out->n = 0;
	*loose = 0;
	while (!err && !last) {
		memset(fm, 0, sizeof(*fm));
		fm->fm_start = start;
		fm->fm_length = FIEMAP_MAX_OFFSET - start;
		fm->fm_extent_count = FIEMAP_BATCH;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) {
			err = -errno;
			break;
		}
		if (fm->fm_mapped_extents == 0)
			break;     /* holes to the end */
		for (uint32_t i = 0; i < fm->fm_mapped_extents && !err; i++) {
			const struct fiemap_extent *e = &fm->fm_extents[i];

			/* No block of its own to compare: data not
			 * placed yet, compressed, or inside the inode. */
			if (e->fe_flags & (FIEMAP_EXTENT_UNKNOWN |
					   FIEMAP_EXTENT_DELALLOC |
					   FIEMAP_EXTENT_ENCODED |
					   FIEMAP_EXTENT_DATA_INLINE |
					   FIEMAP_EXTENT_DATA_TAIL))
				*loose += e->fe_length;
			else
				err = ranges_push(out, e->fe_physical,
						  e->fe_physical + e->fe_length);
			last = e->fe_flags & FIEMAP_EXTENT_LAST;
			start = e->fe_logical + e->fe_length;
		}
	}
	free(fm);
	ranges_normalize(out);
	return err;
}

/* The live file of VOLUME/PATH's extents into COVERED; none when it is
 * not there (deleted) or not a regular file. */
static void live_extents(int storefd, const char *volume, const char *path,
			 struct ranges *covered)
{
	int rootfd = openat(storefd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
	int dirfd = -1, fd = -1;
	const char *name;
	uint64_t loose;
	struct stat st;

	if (rootfd >= 0 && path_open_parent(rootfd, volume, path, &dirfd,
					    &name) == 0)
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
			    O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    file_extents(fd, covered, &loose) != 0)
		covered->n = 0;
	if (fd >= 0)
		close(fd);
	if (dirfd >= 0)
		close(dirfd);
	if (rootfd >= 0)
		close(rootfd);
}

struct cost_row {
	uint8_t hash[CONTENT_HASH_LEN];
	uint64_t size, disk;
};

/* VOLUME/PATH's rows, oldest first. */
static int cost_rows(struct journal *j, const char *volume, const char *path,
		     struct cost_row **out, size_t *n)
{
	sqlite3_stmt *s = NULL;
	size_t cap = 0;
	int rc, err = journal_db_err(journal_prepare_cached(j,
		"SELECT hash, size FROM versions WHERE volume = ?1 AND "
		"path = ?2 ORDER BY kept_ns LIMIT ?3", &s));

	*out = NULL;
	*n = 0;
	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 3, COST_ROWS_MAX);
	while ((rc = journal_row(s)) > 0) {
		if (sqlite3_column_bytes(s, 0) != CONTENT_HASH_LEN)
			continue;
		if (*n == cap) {
			struct cost_row *v;

			cap = cap ? 2 * cap : 16;
			v = realloc(*out, cap * sizeof(*v));
			if (!v) {
				err = -ENOMEM;
				break;
			}
			*out = v;
		}
		memcpy((*out)[*n].hash, sqlite3_column_blob(s, 0),
		       CONTENT_HASH_LEN);
		(*out)[*n].size = (uint64_t)sqlite3_column_int64(s, 1);
		(*out)[*n].disk = (*out)[*n].size;
		(*n)++;
	}
	if (!err && rc < 0)
		err = rc;
	journal_stmt_done(s);
	return err;
}

/* Each row's part: what it adds to COVERED (the live file and the older
 * rows), at most its size. */
static int cost_parts(int storefd, struct cost_row *rows, size_t n,
		      struct ranges *covered)
{
	struct ranges mine = { 0 };
	int err = 0;

	for (size_t i = 0; i < n && !err; i++) {
		char hex[2 * CONTENT_HASH_LEN + 1];
		uint64_t loose, part;
		int fd;

		content_hex(rows[i].hash, hex);
		fd = openat(storefd, hex, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;          /* its size, until the sweep */
		if (file_extents(fd, &mine, &loose) == 0) {
			part = ranges_outside(&mine, covered) + loose;
			rows[i].disk = part < rows[i].size ? part :
				       rows[i].size;
			err = ranges_add(covered, &mine);
		}
		close(fd);
	}
	free(mine.v);
	return err;
}

static int cost_store(struct journal *j, const struct cost_row *rows,
		      size_t n)
{
	sqlite3_stmt *s = NULL;
	int err = journal_begin(j);

	if (!err)
		err = journal_db_err(journal_prepare_cached(j,
			"UPDATE versions SET disk = ?2 WHERE hash = ?1", &s));
	for (size_t i = 0; i < n && !err; i++) {
		sqlite3_reset(s);
		sqlite3_bind_blob(s, 1, rows[i].hash, CONTENT_HASH_LEN,
				  SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)rows[i].disk);
		err = journal_step_done(s);
	}
	journal_stmt_done(s);
	if (!err)
		j->pending++;
	return err;
}

int versions_cost_measure(struct journal *j, int storefd, const char *volume,
			  const char *path)
{
	struct ranges covered = { 0 };
	struct cost_row *rows = NULL;
	size_t n = 0;
	int err = cost_rows(j, volume, path, &rows, &n);

	if (!err && n) {
		live_extents(storefd, volume, path, &covered);
		err = cost_parts(storefd, rows, n, &covered);
	}
	if (!err && n)
		err = cost_store(j, rows, n);
	free(covered.v);
	free(rows);
	return err;
}
