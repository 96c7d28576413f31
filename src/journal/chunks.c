/*
 * Chunk lists in the journal: storing, loading, and finding a chunk on
 * this node's disk.
 *
 * Format (schema 6).  A content's list is stored whole, one content_chunks
 * row per chunk, or, when it shares most chunks with a list the node holds
 * already (an edit and its previous version), as runs: a content_runs row
 * says "chunks [idx, idx + n) of this list are the rows [holder_idx,
 * holder_idx + n) of HOLDER, each at its offset there plus SHIFT", and the
 * content keeps rows only for the chunks no run covers, the ones it
 * brought.  contents.runs counts a content's runs (0: stored whole);
 * contents.n_chunks is always the length of the whole list.
 *
 * Invariants.
 *  - A run points at rows, never at another run: when the base an edit is
 *    compared with is itself stored as runs, its runs are composed into
 *    the new ones.  So loading a list reads its runs and, per run, one
 *    range of its holder's rows: cost in proportion to the list, never to
 *    the history of the file.
 *  - An edit stores its new chunks and the runs around them: journal
 *    space in proportion to what changed, however large the file.  A list
 *    whose runs would number more than a quarter of its chunks, or a list
 *    of fewer than RUNS_MIN_CHUNKS chunks, is stored whole: runs pay off
 *    for edits, not for lists that share little.
 *  - A content with rows a run points at is a holder; it may be removed
 *    only when no run points at it (content_runs_by_holder).
 *
 * Chunk lookups (journal_chunk_source) find rows by the chunk's hash
 * (content_chunks_by_chunk), then a current file holding that row: its
 * own content, or a content with a run over it, runs nearest to the row
 * first and at most SOURCE_RUNS_MAX of them per row.  A miss only costs a
 * fetch from a peer: callers read and verify what they are pointed at.
 */
#include "journal_int.h"

#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUNS_MIN_CHUNKS 64
#define SOURCE_ROWS_MAX 64
#define SOURCE_RUNS_MAX 256

/* Where one chunk of a loaded list is stored. */
struct chunk_loc {
	uint32_t holder;          /* index into located.holders */
	uint32_t row;             /* the row's idx in the holder's list */
	int64_t shift;            /* offset here minus offset in the holder */
};

/* A list with, for each chunk, the row that stores it. */
struct located {
	struct content list;
	struct chunk_loc *loc;
	uint8_t (*holders)[CONTENT_HASH_LEN];
	size_t n_holders, cap_holders;
};

struct run {
	uint32_t idx, holder, row, n;
	int64_t shift;
};

static void located_release(struct located *l)
{
	content_release(&l->list);
	free(l->loc);
	free(l->holders);
	memset(l, 0, sizeof(*l));
}

static int holder_index(struct located *l, const void *hash, uint32_t *out)
{
	for (size_t i = 0; i < l->n_holders; i++) {
		if (memcmp(l->holders[i], hash, CONTENT_HASH_LEN) == 0) {
			*out = (uint32_t)i;
			return 0;
		}
	}
	if (l->n_holders == l->cap_holders) {
		size_t cap = l->cap_holders ? 2 * l->cap_holders : 4;
		void *p = realloc(l->holders, cap * CONTENT_HASH_LEN);

		if (!p)
			return -ENOMEM;
		l->holders = p;
		l->cap_holders = cap;
	}
	memcpy(l->holders[l->n_holders], hash, CONTENT_HASH_LEN);
	*out = (uint32_t)l->n_holders++;
	return 0;
}

/* Rows [FROM, TO) of HOLDER into list positions starting at AT. */
static int load_rows(struct journal *j, struct located *l, const void *holder,
		     uint32_t hi, int64_t from, int64_t to, int64_t at,
		     int64_t shift, size_t *filled)
{
	static const char sql[] =
		"SELECT idx, chunk, offset, len FROM content_chunks "
		"WHERE content = ?1 AND idx >= ?2 AND idx < ?3 ORDER BY idx";
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j, sql, &s));

	if (err)
		return err;
	sqlite3_bind_blob(s, 1, holder, CONTENT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, from);
	sqlite3_bind_int64(s, 3, to);
	while ((rc = journal_row(s)) > 0) {
		int64_t row = sqlite3_column_int64(s, 0);
		int64_t pos = at + (row - from);
		struct content_chunk *k;

		if (pos < 0 || (uint64_t)pos >= l->list.n_chunks ||
		    sqlite3_column_bytes(s, 1) != CONTENT_HASH_LEN) {
			err = KR_ECORRUPT;
			break;
		}
		k = &l->list.chunks[pos];
		memcpy(k->hash, sqlite3_column_blob(s, 1), CONTENT_HASH_LEN);
		k->offset = (uint64_t)(sqlite3_column_int64(s, 2) + shift);
		k->len = (uint32_t)sqlite3_column_int64(s, 3);
		if (l->loc)
			l->loc[pos] = (struct chunk_loc){ hi, (uint32_t)row,
							  shift };
		(*filled)++;
	}
	if (!err && rc < 0)
		err = rc;
	journal_stmt_done(s);
	return err;
}

/* The runs of HASH, each filled from its holder's rows. */
static int load_runs(struct journal *j, struct located *l, const void *hash,
		     size_t *filled)
{
	static const char sql[] =
		"SELECT idx, holder, holder_idx, n, shift FROM content_runs "
		"WHERE content = ? ORDER BY idx";
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j, sql, &s));
	struct run *runs = NULL;
	uint8_t (*holders)[CONTENT_HASH_LEN] = NULL;
	size_t n = 0, cap = 0;

	if (err)
		return err;
	/* Read first: the rows' statement must not run inside this one's
	 * step loop on the same cached handle set. */
	sqlite3_bind_blob(s, 1, hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	while ((rc = journal_row(s)) > 0) {
		if (n == cap) {
			size_t c2 = cap ? 2 * cap : 16;
			void *p = realloc(runs, c2 * sizeof(*runs));
			void *q = p ? realloc(holders, c2 * CONTENT_HASH_LEN) :
				  NULL;

			if (p)
				runs = p;
			if (q)
				holders = q;
			if (!p || !q) {
				err = -ENOMEM;
				break;
			}
			cap = c2;
		}
		if (sqlite3_column_bytes(s, 1) != CONTENT_HASH_LEN) {
			err = KR_ECORRUPT;
			break;
		}
		runs[n].idx = (uint32_t)sqlite3_column_int64(s, 0);
		memcpy(holders[n], sqlite3_column_blob(s, 1), CONTENT_HASH_LEN);
		runs[n].row = (uint32_t)sqlite3_column_int64(s, 2);
		runs[n].n = (uint32_t)sqlite3_column_int64(s, 3);
		runs[n].shift = sqlite3_column_int64(s, 4);
		n++;
	}
	if (!err && rc < 0)
		err = rc;
	journal_stmt_done(s);
	for (size_t i = 0; i < n && !err; i++) {
		uint32_t hi = 0;

		if (l->loc)
			err = holder_index(l, holders[i], &hi);
		if (!err)
			err = load_rows(j, l, holders[i], hi, runs[i].row,
					(int64_t)runs[i].row + runs[i].n,
					runs[i].idx, runs[i].shift, filled);
	}
	free(runs);
	free(holders);
	return err;
}

/* Loads HASH's whole list, with where each chunk is stored when WHERE. */
static int list_load(struct journal *j, const uint8_t *hash, struct located *l,
		     bool where)
{
	sqlite3_stmt *s = NULL;
	int64_t n = -1, runs = 0;
	size_t filled = 0;
	uint32_t self = 0;
	int err;

	memset(l, 0, sizeof(*l));
	err = journal_db_err(journal_prepare_cached(j,
		"SELECT size, n_chunks, runs FROM contents WHERE hash = ?", &s));
	if (!err) {
		sqlite3_bind_blob(s, 1, hash, CONTENT_HASH_LEN, SQLITE_STATIC);
		err = journal_row(s);
		if (err > 0) {
			l->list.size = (uint64_t)sqlite3_column_int64(s, 0);
			n = sqlite3_column_int64(s, 1);
			runs = sqlite3_column_int64(s, 2);
		}
		err = err < 0 ? err : 0;
	}
	journal_stmt_done(s);
	if (err || n < 0)
		return err ? err : -ENOENT;
	memcpy(l->list.hash, hash, CONTENT_HASH_LEN);
	l->list.chunks = calloc((size_t)n + 1, sizeof(*l->list.chunks));
	l->list.cap_chunks = (size_t)n + 1;
	l->list.n_chunks = (size_t)n;
	if (where)
		l->loc = calloc((size_t)n + 1, sizeof(*l->loc));
	if (!l->list.chunks || (where && !l->loc))
		err = -ENOMEM;
	if (!err && where)
		err = holder_index(l, hash, &self);
	if (!err)
		err = load_rows(j, l, hash, self, 0, n, 0, 0, &filled);
	if (!err && runs > 0)
		err = load_runs(j, l, hash, &filled);
	/* Every position exactly once: anything else is a list not (or
	 * not wholly) stored, as when a peer's list never arrived. */
	if (!err && filled != (size_t)n)
		err = -ENOENT;
	if (err)
		located_release(l);
	return err;
}

int journal_content_load(struct journal *j, const uint8_t *hash,
			 struct content *out)
{
	struct located l;
	int err = list_load(j, hash, &l, false);

	memset(out, 0, sizeof(*out));
	if (!err) {
		*out = l.list;
		memset(&l.list, 0, sizeof(l.list));
	}
	located_release(&l);
	return err;
}

/* ---- storing ------------------------------------------------------------ */

/* Base chunk K for C's chunk I: the next one in the base when it matches
 * (the common case: an edit leaves the rest in order), else any. */
static bool base_match(const struct located *b, const uint32_t *index,
		       const struct content_chunk *k, size_t next, size_t *out)
{
	const struct content *bl = &b->list;
	size_t first, n;

	if (next < bl->n_chunks && bl->chunks[next].len == k->len &&
	    memcmp(bl->chunks[next].hash, k->hash, CONTENT_HASH_LEN) == 0) {
		*out = next;
		return true;
	}
	content_index_find(bl, index, k->hash, &first, &n);
	for (size_t i = 0; i < n; i++) {
		if (bl->chunks[index[first + i]].len == k->len) {
			*out = index[first + i];
			return true;
		}
	}
	return false;
}

/*
 * C's list as runs over the rows that hold base B's chunks.  RUNS gets
 * them (malloc'd), LIT[i] says whether chunk i is a row of C's own.
 * Returns the number of runs, or a negative code.
 */
static int runs_compute(const struct content *c, const struct located *b,
			struct run **runs, bool *lit)
{
	uint32_t *index = NULL;
	struct run *r = NULL, *cur = NULL;
	size_t n = 0, cap = 0, next = 0;
	int err = content_index_build(&b->list, &index);

	*runs = NULL;
	for (size_t i = 0; !err && i < c->n_chunks; i++) {
		const struct content_chunk *k = &c->chunks[i];
		size_t m;

		lit[i] = !base_match(b, index, k, next, &m);
		if (lit[i]) {
			cur = NULL;
			continue;
		}
		const struct chunk_loc *loc = &b->loc[m];
		int64_t held = (int64_t)b->list.chunks[m].offset - loc->shift;
		int64_t shift = (int64_t)k->offset - held;

		next = m + 1;
		if (cur && cur->holder == loc->holder && cur->shift == shift &&
		    cur->row + cur->n == loc->row) {
			cur->n++;
			continue;
		}
		if (n == cap) {
			size_t c2 = cap ? 2 * cap : 32;
			void *p = realloc(r, c2 * sizeof(*r));

			if (!p) {
				err = -ENOMEM;
				break;
			}
			r = p;
			cap = c2;
		}
		cur = &r[n++];
		*cur = (struct run){ (uint32_t)i, loc->holder, loc->row, 1,
				     shift };
	}
	free(index);
	if (err) {
		free(r);
		return err;
	}
	*runs = r;
	return (int)n;
}

static int store_row(struct journal *j, const uint8_t *content, size_t idx,
		     const struct content_chunk *k)
{
	sqlite3_stmt *s = journal_stmt(j, STMT_INSERT_CHUNK);

	sqlite3_bind_blob(s, 1, content, CONTENT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)idx);
	sqlite3_bind_blob(s, 3, k->hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)k->offset);
	sqlite3_bind_int64(s, 5, k->len);
	return journal_step_done(s);
}

static int store_run(struct journal *j, const uint8_t *content,
		     const struct located *b, const struct run *r)
{
	static const char sql[] =
		"INSERT INTO content_runs (content, idx, holder, holder_idx, n, "
		"shift) VALUES (?,?,?,?,?,?)";
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j, sql, &s));

	if (err)
		return err;
	sqlite3_bind_blob(s, 1, content, CONTENT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, r->idx);
	sqlite3_bind_blob(s, 3, b->holders[r->holder], CONTENT_HASH_LEN,
			  SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, r->row);
	sqlite3_bind_int64(s, 5, r->n);
	sqlite3_bind_int64(s, 6, r->shift);
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

/* Stores C as runs over BASE when that pays; 1 when it did, 0 when C is
 * better stored whole (nothing written), or a negative code. */
static int store_as_runs(struct journal *j, const struct content *c,
			 const uint8_t *base)
{
	struct located b;
	struct run *runs = NULL;
	bool *lit = NULL;
	int n, err;

	if (c->n_chunks < RUNS_MIN_CHUNKS ||
	    memcmp(base, c->hash, CONTENT_HASH_LEN) == 0)
		return 0;
	err = list_load(j, base, &b, true);
	if (err)
		return err == -ENOENT ? 0 : err;
	lit = calloc(c->n_chunks, sizeof(*lit));
	n = lit ? runs_compute(c, &b, &runs, lit) : -ENOMEM;
	err = n < 0 ? n : 0;
	if (n <= 0 || (size_t)n > c->n_chunks / 4)
		goto out;
	for (size_t i = 0; !err && i < c->n_chunks; i++)
		if (lit[i])
			err = store_row(j, c->hash, i, &c->chunks[i]);
	for (int i = 0; !err && i < n; i++)
		err = store_run(j, c->hash, &b, &runs[i]);
	if (!err) {
		sqlite3_stmt *s = NULL;

		err = journal_db_err(journal_prepare_cached(j,
			"UPDATE contents SET runs = ? WHERE hash = ?", &s));
		if (!err) {
			sqlite3_bind_int64(s, 1, n);
			sqlite3_bind_blob(s, 2, c->hash, CONTENT_HASH_LEN,
					  SQLITE_STATIC);
			err = journal_step_done(s);
		}
		journal_stmt_done(s);
	}
	if (!err)
		err = 1;
out:
	free(runs);
	free(lit);
	located_release(&b);
	return err;
}

int journal_store_content(struct journal *j, const struct content *c,
			  const uint8_t *base)
{
	sqlite3_stmt *s = journal_stmt(j, STMT_INSERT_CONTENT);
	int err;

	/* A hash without its chunk list (a meta change referring to content
	 * stored earlier) must not create an empty list for it. */
	if (c->n_chunks == 0 && c->size > 0)
		return 0;
	sqlite3_bind_blob(s, 1, c->hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)c->size);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)c->n_chunks);
	err = journal_step_done(s);
	if (err || sqlite3_changes(j->db) == 0)
		return err;   /* known content: its chunk list is stored */
	err = base ? store_as_runs(j, c, base) : 0;
	if (err)
		return err < 0 ? err : 0;
	for (size_t i = 0; i < c->n_chunks && !err; i++)
		err = store_row(j, c->hash, i, &c->chunks[i]);
	return err;
}

struct store_arg {
	const struct content *c;
	const uint8_t *base;
};

static int store_fn(struct journal *j, void *arg)
{
	const struct store_arg *a = arg;

	return journal_store_content(j, a->c, a->base);
}

/* All or nothing: a list left half stored would count as known and never
 * be stored again. */
int journal_content_store(struct journal *j, const struct content *c,
			  const uint8_t *base)
{
	struct store_arg a = { c, base };

	return journal_atomic(j, store_fn, &a);
}

/* ---- finding a chunk on disk ------------------------------------------- */

/* A current, not deleted file whose content is HASH. */
static int source_file(struct journal *j, const void *hash, char *volume,
		       size_t vcap, char **path)
{
	static const char sql[] =
		"SELECT cur.volume, cur.path FROM changes c "
		"JOIN current cur ON cur.change = c.id "
		"WHERE c.hash = ? AND c.mode != 0 LIMIT 1";
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j, sql, &s));

	if (err)
		return err;
	sqlite3_bind_blob(s, 1, hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	err = journal_row(s);
	if (err > 0) {
		snprintf(volume, vcap, "%s",
			 (const char *)sqlite3_column_text(s, 0));
		*path = strdup((const char *)sqlite3_column_text(s, 1));
		err = *path ? 0 : -ENOMEM;
	} else if (err == 0) {
		err = -ENOENT;
	}
	journal_stmt_done(s);
	return err;
}

struct source_row {
	uint8_t holder[CONTENT_HASH_LEN];
	int64_t idx, offset;
	uint32_t len;
};

struct source_run {
	uint8_t content[CONTENT_HASH_LEN];
	int64_t shift;
};

/* Up to SOURCE_RUNS_MAX contents with a run over ROW, nearest first. */
static int source_runs(struct journal *j, const struct source_row *row,
		       struct source_run *out, size_t *n)
{
	static const char sql[] =
		"SELECT content, holder_idx, n, shift FROM content_runs "
		"WHERE holder = ?1 AND holder_idx <= ?2 "
		"ORDER BY holder_idx DESC LIMIT ?3";
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j, sql, &s));

	*n = 0;
	if (err)
		return err;
	sqlite3_bind_blob(s, 1, row->holder, CONTENT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, row->idx);
	sqlite3_bind_int64(s, 3, SOURCE_RUNS_MAX);
	while ((rc = journal_row(s)) > 0) {
		if (sqlite3_column_int64(s, 1) + sqlite3_column_int64(s, 2) <=
		    row->idx || sqlite3_column_bytes(s, 0) != CONTENT_HASH_LEN)
			continue;
		memcpy(out[*n].content, sqlite3_column_blob(s, 0),
		       CONTENT_HASH_LEN);
		out[(*n)++].shift = sqlite3_column_int64(s, 3);
	}
	if (rc < 0)
		err = rc;
	journal_stmt_done(s);
	return err;
}

static int source_rows(struct journal *j, const uint8_t *hash,
		       struct source_row *out, size_t *n)
{
	static const char sql[] =
		"SELECT content, idx, offset, len FROM content_chunks "
		"WHERE chunk = ? LIMIT ?";
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j, sql, &s));

	*n = 0;
	if (err)
		return err;
	sqlite3_bind_blob(s, 1, hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, SOURCE_ROWS_MAX);
	while ((rc = journal_row(s)) > 0) {
		if (sqlite3_column_bytes(s, 0) != CONTENT_HASH_LEN)
			continue;
		memcpy(out[*n].holder, sqlite3_column_blob(s, 0),
		       CONTENT_HASH_LEN);
		out[*n].idx = sqlite3_column_int64(s, 1);
		out[*n].offset = sqlite3_column_int64(s, 2);
		out[(*n)++].len = (uint32_t)sqlite3_column_int64(s, 3);
	}
	if (rc < 0)
		err = rc;
	journal_stmt_done(s);
	return err;
}

/* Whether CONTENT is where a chunk may be read: 0, -ENOENT, or an error. */
typedef int holder_fn(struct journal *j, const uint8_t *content, void *arg);

/* The first content holding chunk HASH, itself or through a run over it,
 * that FN accepts: the chunk's *OFFSET and *LEN in it. */
static int chunk_holder(struct journal *j, const uint8_t *hash, holder_fn *fn,
			void *arg, uint64_t *offset, uint32_t *len)
{
	struct source_row rows[SOURCE_ROWS_MAX];
	struct source_run *runs = NULL;
	size_t n_rows, n_runs;
	int err = source_rows(j, hash, rows, &n_rows);

	for (size_t i = 0; !err && i < n_rows; i++) {
		err = fn(j, rows[i].holder, arg);
		if (err != -ENOENT) {
			*offset = (uint64_t)rows[i].offset;
			*len = rows[i].len;
			goto out;
		}
		err = 0;
	}
	runs = err ? NULL : calloc(SOURCE_RUNS_MAX, sizeof(*runs));
	if (!err && !runs)
		err = -ENOMEM;
	for (size_t i = 0; !err && i < n_rows; i++) {
		err = source_runs(j, &rows[i], runs, &n_runs);
		for (size_t k = 0; !err && k < n_runs; k++) {
			err = fn(j, runs[k].content, arg);
			if (err != -ENOENT) {
				*offset = (uint64_t)(rows[i].offset +
						     runs[k].shift);
				*len = rows[i].len;
				goto out;
			}
			err = 0;
		}
	}
	if (!err)
		err = -ENOENT;
out:
	free(runs);
	return err;
}

struct live_holder {
	char *volume;
	size_t vcap;
	char **path;
};

static int live_holder(struct journal *j, const uint8_t *content, void *arg)
{
	struct live_holder *h = arg;

	return source_file(j, content, h->volume, h->vcap, h->path);
}

int journal_chunk_source(struct journal *j, const uint8_t *hash,
			 char *volume, size_t vcap, char **path,
			 uint64_t *offset, uint32_t *len)
{
	struct live_holder h = { volume, vcap, path };

	*path = NULL;
	return chunk_holder(j, hash, live_holder, &h, offset, len);
}

/* CONTENT is in the version store (versions.c): copied to ARG. */
static int kept_holder(struct journal *j, const uint8_t *content, void *arg)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"SELECT 1 FROM versions WHERE hash = ?", &s));

	if (err)
		return err;
	sqlite3_bind_blob(s, 1, content, CONTENT_HASH_LEN, SQLITE_STATIC);
	err = journal_row(s);
	err = err > 0 ? 0 : err == 0 ? -ENOENT : err;
	journal_stmt_done(s);
	if (!err)
		memcpy(arg, content, CONTENT_HASH_LEN);
	return err;
}

int journal_chunk_kept(struct journal *j, const uint8_t *hash,
		       uint8_t content[CONTENT_HASH_LEN], uint64_t *offset,
		       uint32_t *len)
{
	return chunk_holder(j, hash, kept_holder, content, offset, len);
}
