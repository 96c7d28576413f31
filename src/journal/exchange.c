/*
 * State exchange: catching a node up from a peer's heads when the range
 * of changes it lacks was compacted away (compact.c).
 *
 * What is sent.  The sender S commits what is pending, then takes, at one
 * instant, its version vector V (per origin the highest seq known, floors
 * included) and the list of its heads, and streams those heads, each a
 * whole change with its bases.  Compaction waits while S serves one, so
 * every listed change is still there when its turn comes.
 *
 * What the receiver R does.  The heads are staged (tables exchange and
 * exchange_bases) as they come and applied only when the last one is in,
 * in one transaction; an exchange cut short leaves R as it was, and the
 * next one starts over.  Applying:
 *   1. every staged head R does not hold is added as a change; one at or
 *      below R's own floor for its origin was compacted here, so R
 *      already holds a version descending from it, and it is skipped;
 *   2. each joins its path's heads as a pulled entry would (its bases
 *      leave the heads; it stays out if a version R holds names it);
 *   3. every head of R that V covers (seq <= V[origin]) and that is not
 *      among S's heads leaves the heads: S knew it and holds something
 *      that replaced it, or forgot a tombstone that replaced it.  When
 *      that leaves a path with no head and R's disk holds something
 *      there, R records a delete of its own with those heads as bases,
 *      so the file goes (here, as a job) and the record reaches others;
 *   4. every path touched is retargeted (jobs, conflict copies);
 *   5. R's floor for each origin rises to V's seq: R now knows all of it.
 *
 * Why that is what the full history would give.  A head is a version no
 * known version descends from.  For a version X that V covers, S's
 * history decides: X is a head at R after the exchange iff it is one at
 * S (steps 1-3).  A version V does not cover is one S never saw (R's own
 * changes not yet sent, or entries R got from a third node); full history
 * would keep it a head unless something R holds descends from it, and
 * nothing here removes it (step 3 leaves it, step 2 keeps a staged head
 * out only when R's version descends from it).  So R's own unsent
 * changes survive, as the winner or as a conflict with S's version, and
 * they reach S afterwards by the usual pull.  Nothing deleted comes back:
 * a deleted file's versions are covered by V and not heads at S.
 */
#include "journal_int.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXCHANGE_STAGED_MAX (16u << 20)   /* heads staged from one peer */
#define EXCHANGE_PAGE 256
#define EXCHANGE_BASES_MAX 64

struct journal_exchange {
	struct journal_ref *vector;
	size_t n_vector;
	struct exchange_head *heads;      /* in (origin, seq) order */
	size_t n_heads, cap_heads, next;
	struct exchange_run *run;         /* holds heads[next - 1] */
	bool run_loaded;
};

/* ---- serving ----------------------------------------------------------- */

static int heads_list(struct journal *j, struct journal_exchange *x)
{
	sqlite3_stmt *s = NULL;
	int rc = 0, err = journal_prepare(j, "SELECT h.change, c.origin, "
		"c.seq FROM heads h CROSS JOIN changes c ON c.id = h.change "
		"ORDER BY c.origin, c.seq", &s);

	while (!err && (rc = journal_row(s)) > 0) {
		if (x->n_heads == x->cap_heads) {
			size_t cap = x->cap_heads ? 2 * x->cap_heads : 1024;
			struct exchange_head *h = realloc(x->heads,
							  cap * sizeof(*h));

			if (!h) {
				err = -ENOMEM;
				break;
			}
			x->heads = h;
			x->cap_heads = cap;
		}
		x->heads[x->n_heads].id = sqlite3_column_int64(s, 0);
		x->heads[x->n_heads].origin = sqlite3_column_int64(s, 1);
		x->heads[x->n_heads++].seq =
			(uint64_t)sqlite3_column_int64(s, 2);
	}
	if (!err && rc < 0)
		err = rc;
	sqlite3_finalize(s);
	return err;
}

int journal_exchange_open(struct journal *j, struct journal_exchange **out,
			  const struct journal_ref **vector, size_t *n)
{
	struct journal_exchange *x = calloc(1, sizeof(*x));
	int err = x ? journal_flush(j) : -ENOMEM;

	*out = NULL;
	if (!err && !(x->run = malloc(sizeof(*x->run))))
		err = -ENOMEM;
	/* Our own newest changes are signed now: the vector sent is
	 * proven to the last one. */
	if (!err && journal_chain_sign_due(j, true) > 0)
		err = journal_flush(j);
	if (!err)
		err = journal_vector_copy(j, &x->vector, &x->n_vector);
	if (!err)
		err = heads_list(j, x);
	if (err) {
		if (x) {
			free(x->vector);
			free(x->heads);
			free(x->run);
		}
		free(x);
		return err;
	}
	journal_compaction_hold(j, +1);
	*vector = x->vector;
	*n = x->n_vector;
	*out = x;
	return 0;
}

/* Whether heads[next] belongs to the run already loaded. */
static bool exchange_in_run(const struct journal_exchange *x)
{
	return x->run_loaded && x->next > x->run->first &&
	       x->next <= x->run->last;
}

int journal_exchange_next(struct journal *j, struct journal_exchange *x,
			  unsigned max, journal_change_fn fn, void *arg)
{
	static const char sql[] =
		"SELECT " JOURNAL_CHANGE_COLUMNS " FROM changes c "
		"JOIN origins o ON o.id = c.origin WHERE c.id = ?1";
	struct journal_ref bases[EXCHANGE_BASES_MAX];
	int err = 0;

	for (unsigned k = 0; !err && x->next < x->n_heads &&
	     (k < max || exchange_in_run(x)); k++) {
		sqlite3_stmt *s = NULL;
		struct journal_change c;

		if (!exchange_in_run(x))
			err = exchange_run_load(j, x->heads, x->n_heads,
						x->next, x->run);
		x->run_loaded = !err;
		if (!err)
			err = journal_db_err(journal_prepare_cached(j, sql, &s));
		if (err)
			break;
		sqlite3_bind_int64(s, 1, x->heads[x->next].id);
		/* A failure ends the exchange; only a head that is gone
		 * (compacted since it was listed) is passed over. */
		err = journal_row(s);
		if (err > 0) {
			err = journal_change_from_row(j, s, &c, bases,
						      EXCHANGE_BASES_MAX);
			exchange_run_fill(x->run, x->heads, x->next, &c);
			if (!err)
				err = fn(arg, &c);
		}
		x->next++;
		journal_stmt_done(s);
	}
	if (err)
		return err < 0 ? err : 0;
	return x->next < x->n_heads ? 1 : 0;
}

void journal_exchange_close(struct journal *j, struct journal_exchange *x)
{
	if (!x)
		return;
	journal_compaction_hold(j, -1);
	free(x->vector);
	free(x->heads);
	free(x->run);
	free(x);
}

/* ---- receiving: staging ------------------------------------------------ */

static int stage_clear(struct journal *j)
{
	int err = journal_exec(j, "DELETE FROM exchange_bases; "
			       "DELETE FROM exchange; DELETE FROM exchange_skips; "
			       "DELETE FROM exchange_seals");

	j->staged = 0;
	return err;
}

int journal_exchange_begin(struct journal *j)
{
	int err = journal_begin(j);

	return err ? err : stage_clear(j);
}

static bool origin_ok(struct journal *j, const char *origin)
{
	int64_t id;

	return journal_origin_id(j, origin, false, &id) != KR_EHOSTILE;
}

static int stage_bases(struct journal *j, int64_t entry,
		       const struct journal_change *c)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"INSERT INTO exchange_bases (entry, origin, seq) "
		"VALUES (?1, ?2, ?3)", &s));

	for (size_t i = 0; !err && i < c->n_bases; i++) {
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, entry);
		sqlite3_bind_text(s, 2, c->bases[i].origin, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)c->bases[i].seq);
		err = journal_step_done(s);
	}
	journal_stmt_done(s);
	return err;
}

struct stage {
	const struct journal_change *c;
	int64_t origin;
	uint8_t digest[CONTENT_HASH_LEN];
};

static int stage_fn(struct journal *j, void *arg)
{
	const struct stage *t = arg;
	const struct journal_change *c = t->c;
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"INSERT INTO exchange (origin, seq, lamport, wall_ns, volume, "
		"path, op, mode, uid, gid, size, mtime_ns, hash, target, prev, "
		"digest) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", &s));

	if (err)
		return err;
	sqlite3_bind_text(s, 1, c->ref.origin, -1, SQLITE_STATIC);
	journal_bind_version(s, c);
	if (c->chain.chained) {
		sqlite3_bind_blob(s, 15, c->chain.prev, CONTENT_HASH_LEN,
				  SQLITE_STATIC);
		sqlite3_bind_blob(s, 16, t->digest, CONTENT_HASH_LEN,
				  SQLITE_STATIC);
	}
	err = journal_step_done(s);
	journal_stmt_done(s);
	if (!err)
		err = stage_bases(j, sqlite3_last_insert_rowid(j->db), c);
	if (!err && c->chain.chained)
		err = exchange_stage_proof(j, t->origin, c, t->digest);
	return err;
}

int journal_exchange_stage(struct journal *j, const struct journal_change *c)
{
	struct stage t = { .c = c };
	int err;

	if (!journal_change_valid(c) || c->ref.seq == 0 ||
	    !origin_ok(j, c->ref.origin) ||
	    c->chain.n_after >= JOURNAL_SEGMENT_MAX)
		return KR_EHOSTILE;
	for (size_t i = 0; i < c->n_bases; i++)
		if (!origin_ok(j, c->bases[i].origin))
			return KR_EHOSTILE;
	if (journal_remote_out_of_bounds(j, c))
		return -ERANGE;
	if (j->staged >= EXCHANGE_STAGED_MAX)
		return -E2BIG;
	err = journal_origin_id(j, c->ref.origin, true, &t.origin);
	if (!err && c->chain.chained)
		err = journal_entry_digest(c, t.digest);
	if (!err)
		err = journal_atomic(j, stage_fn, &t);
	if (!err) {
		j->staged++;
		j->pending++;
	}
	return err;
}

/* ---- receiving: applying ------------------------------------------------ */

struct apply {
	const struct journal_ref *vector;
	size_t n;
	uint64_t changed;
};

static int apply_tables(struct journal *j)
{
	return journal_exec(j, "DELETE FROM exchange_vector; "
			    "DELETE FROM exchange_paths; "
			    "DELETE FROM exchange_drops");
}

static int apply_vector(struct journal *j, const struct apply *a)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"INSERT INTO exchange_vector (origin, seq) VALUES (?1, ?2) "
		"ON CONFLICT (origin) DO UPDATE SET seq = "
		"max(seq, excluded.seq)", &s));

	for (size_t i = 0; !err && i < a->n; i++) {
		int64_t oid = 0;

		err = journal_origin_id(j, a->vector[i].origin, true, &oid);
		if (err == KR_EHOSTILE) {
			err = 0;      /* no change of it can be staged either */
			continue;
		}
		if (err)
			break;
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, oid);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)a->vector[i].seq);
		err = journal_step_done(s);
	}
	journal_stmt_done(s);
	return err;
}

static int path_touch(struct journal *j, const char *volume, const char *path)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"INSERT OR IGNORE INTO exchange_paths (volume, path) "
		"VALUES (?1, ?2)", &s));

	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

static int staged_bases(struct journal *j, int64_t entry,
			struct journal_ref *bases, size_t *n)
{
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j,
		"SELECT origin, seq FROM exchange_bases WHERE entry = ?1", &s));

	*n = 0;
	if (err)
		return err;
	sqlite3_bind_int64(s, 1, entry);
	while ((rc = journal_row(s)) > 0 && *n < EXCHANGE_BASES_MAX) {
		snprintf(bases[*n].origin, JOURNAL_ORIGIN_MAX, "%s",
			 (const char *)sqlite3_column_text(s, 0));
		bases[(*n)++].seq = (uint64_t)sqlite3_column_int64(s, 1);
	}
	journal_stmt_done(s);
	/* Bases cut short would store the change with a wrong history. */
	return rc < 0 ? rc : 0;
}

/* The change row of (ORIGIN, SEQ) in *ID: 0 when absent.  A failure is
 * no "absent", which would pass the head over. */
static int change_find(struct journal *j, int64_t origin, uint64_t seq,
		       int64_t *id)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j, "SELECT id FROM "
		"changes WHERE origin = ?1 AND seq = ?2", &s));

	*id = 0;
	if (err)
		return err;
	sqlite3_bind_int64(s, 1, origin);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)seq);
	err = journal_row(s);
	if (err > 0)
		*id = sqlite3_column_int64(s, 0);
	journal_stmt_done(s);
	return err < 0 ? err : 0;
}

static int staged_mark(struct journal *j, int64_t entry, int64_t change)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"UPDATE exchange SET change = ?2 WHERE id = ?1", &s));

	if (err)
		return err;
	sqlite3_bind_int64(s, 1, entry);
	sqlite3_bind_int64(s, 2, change);
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

/* What the sender's vector says of ORIGIN (row id), as taken, in *SEQ:
 * 0 when it names none. */
static int vector_seq(struct journal *j, int64_t origin, uint64_t *seq)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j, "SELECT seq FROM "
		"exchange_vector WHERE origin = ?1", &s));

	*seq = 0;
	if (err)
		return err;
	sqlite3_bind_int64(s, 1, origin);
	err = journal_row(s);
	if (err > 0)
		*seq = (uint64_t)sqlite3_column_int64(s, 0);
	journal_stmt_done(s);
	return err < 0 ? err : 0;
}

/* Stores the place in its chain that a staged head was proven with. */
static int apply_chain(struct journal *j, sqlite3_stmt *s, int64_t id)
{
	if (sqlite3_column_bytes(s, 15) != CONTENT_HASH_LEN ||
	    sqlite3_column_bytes(s, 16) != CONTENT_HASH_LEN)
		return 0;
	return journal_chain_store(j, id, sqlite3_column_blob(s, 15),
				   sqlite3_column_blob(s, 16));
}

/* Steps 1 and 2 for one staged head, whose row S is. */
static int apply_head(struct journal *j, sqlite3_stmt *s)
{
	struct journal_ref bases[EXCHANGE_BASES_MAX];
	struct journal_change c;
	int64_t entry = sqlite3_column_int64(s, 0), oid = 0, id;
	uint64_t taken = 0;
	int err;

	memset(&c, 0, sizeof(c));
	snprintf(c.ref.origin, sizeof(c.ref.origin), "%s",
		 (const char *)sqlite3_column_text(s, 1));
	c.ref.seq = (uint64_t)sqlite3_column_int64(s, 2);
	c.lamport = (uint64_t)sqlite3_column_int64(s, 3);
	c.wall_ns = sqlite3_column_int64(s, 4);
	c.volume = (const char *)sqlite3_column_text(s, 5);
	c.path = (const char *)sqlite3_column_text(s, 6);
	c.op = (enum journal_op)sqlite3_column_int(s, 7);
	c.mode = (uint32_t)sqlite3_column_int64(s, 8);
	c.uid = (uint32_t)sqlite3_column_int64(s, 9);
	c.gid = (uint32_t)sqlite3_column_int64(s, 10);
	c.size = (uint64_t)sqlite3_column_int64(s, 11);
	c.mtime_ns = sqlite3_column_int64(s, 12);
	c.has_hash = sqlite3_column_bytes(s, 13) == CONTENT_HASH_LEN;
	if (c.has_hash)
		memcpy(c.hash, sqlite3_column_blob(s, 13), CONTENT_HASH_LEN);
	c.target = (const char *)sqlite3_column_text(s, 14);
	c.bases = bases;
	err = journal_origin_id(j, c.ref.origin, true, &oid);
	if (err)
		return err;
	/* Absent and above the floor (which rises only at the end): a
	 * version R never had.  Not "above what R holds": heads applied
	 * before this one may have raised that past it. */
	err = change_find(j, oid, c.ref.seq, &id);
	if (!err && id == 0)
		err = vector_seq(j, oid, &taken);
	if (err)
		return err;
	/* Past what the vector was taken as (see state.c: what could not
	 * be proven): R learns it later, from its origin. */
	if (id == 0 && c.ref.seq > taken)
		return 0;
	if (id == 0 && strcmp(c.ref.origin, j->origin) != 0 &&
	    c.ref.seq > journal_floor(j, c.ref.origin)) {
		err = staged_bases(j, entry, bases, &c.n_bases);
		if (!err)
			err = journal_insert_remote(j, &c, oid, &id);
		if (!err)
			err = apply_chain(j, s, id);
		if (!err && c.lamport > j->lamport)
			j->lamport = c.lamport;
	}
	if (err || id == 0)
		return err;       /* compacted here: R holds what replaced it */
	err = staged_mark(j, entry, id);
	if (!err)
		err = journal_heads_join(j, c.volume, c.path, id, oid, c.ref.seq);
	if (!err)
		err = path_touch(j, c.volume, c.path);
	return err;
}

static int apply_staged(struct journal *j)
{
	/* One row per step, from the last id on: applying writes to the
	 * table being read. */
	static const char sql[] =
		"SELECT id, origin, seq, lamport, wall_ns, volume, path, op, "
		"mode, uid, gid, size, mtime_ns, hash, target, prev, digest "
		"FROM exchange WHERE id > ?1 ORDER BY id LIMIT 1";
	sqlite3_stmt *s = NULL;
	int64_t last = 0;
	int err = journal_prepare(j, sql, &s);

	while (!err) {
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, last);
		err = journal_row(s);
		if (err <= 0)
			break;
		last = sqlite3_column_int64(s, 0);
		err = apply_head(j, s);
	}
	sqlite3_finalize(s);
	return err;
}

/* Step 3: heads V covers that S does not hold as heads.  Read from the
 * heads (one per path), never from the history: CROSS JOIN keeps the
 * planner from starting at changes by origin. */
static int apply_drop_list(struct journal *j)
{
	return journal_exec(j,
		"INSERT OR IGNORE INTO exchange_drops (volume, path, change) "
		"SELECT h.volume, h.path, h.change FROM heads h "
		"CROSS JOIN changes c ON c.id = h.change "
		"CROSS JOIN exchange_vector v ON v.origin = c.origin "
		"WHERE c.seq <= v.seq AND NOT EXISTS (SELECT 1 FROM exchange x "
		"WHERE x.change = h.change)");
}

/* Heads of VOLUME/PATH left when the dropped ones go, and whether every
 * dropped one is a delete. */
static int path_count(struct journal *j, const char *volume, const char *path,
		      int64_t *others, bool *all_deletes)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"SELECT (SELECT count(*) FROM heads h WHERE h.volume = ?1 AND "
		"h.path = ?2 AND h.change NOT IN (SELECT d.change FROM "
		"exchange_drops d WHERE d.volume = ?1 AND d.path = ?2)), "
		"(SELECT count(*) FROM exchange_drops d JOIN changes c ON "
		"c.id = d.change WHERE d.volume = ?1 AND d.path = ?2 AND "
		"c.mode != 0)", &s));

	*others = 0;
	*all_deletes = true;
	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	/* Not "nothing left, all deletes" for a query that failed: the
	 * path's heads would be dropped on it. */
	err = journal_row(s);
	if (err > 0) {
		*others = sqlite3_column_int64(s, 0);
		*all_deletes = sqlite3_column_int64(s, 1) == 0;
	}
	journal_stmt_done(s);
	return err < 0 ? err : 0;
}

static int path_drop(struct journal *j, const char *volume, const char *path)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"DELETE FROM heads WHERE volume = ?1 AND path = ?2 AND change "
		"IN (SELECT d.change FROM exchange_drops d WHERE "
		"d.volume = ?1 AND d.path = ?2)", &s));

	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

static int apply_one_drop(struct journal *j, const char *volume,
			  const char *path)
{
	int64_t others = 0;
	bool all_deletes = true;
	int err = path_count(j, volume, path, &others, &all_deletes);

	if (err)
		return err;
	if (others > 0)
		err = path_drop(j, volume, path);
	else if (!all_deletes && path[0] != '\0')
		err = journal_append_forget(j, volume, path);
	/* else: only tombstones, or a volume root: they stay as they are */
	if (!err)
		err = path_touch(j, volume, path);
	return err;
}

/* Runs FN for each (volume, path) of SQL's rows, reading in pages so
 * that FN may write to what the statement reads. */
static int each_path(struct journal *j, const char *sql,
		     int (*fn)(struct journal *, const char *, const char *),
		     uint64_t *count)
{
	char *volume = strdup(""), *path = strdup("");
	int err = volume && path ? 0 : -ENOMEM;

	while (!err) {
		sqlite3_stmt *s = NULL;
		int rc;

		err = journal_prepare(j, sql, &s);
		if (err)
			break;
		rc = journal_bind_check(s, sqlite3_bind_text(s, 1, volume, -1,
							     SQLITE_TRANSIENT));
		if (!rc)
			rc = journal_bind_check(s, sqlite3_bind_text(s, 2, path,
							-1, SQLITE_TRANSIENT));
		if (!rc)
			rc = journal_row(s);
		if (rc > 0) {
			free(volume);
			free(path);
			volume = strdup((const char *)sqlite3_column_text(s, 0));
			path = strdup((const char *)sqlite3_column_text(s, 1));
		}
		sqlite3_finalize(s);
		if (rc <= 0) {
			err = rc;
			break;
		}
		if (!volume || !path) {
			err = -ENOMEM;
			break;
		}
		err = fn(j, volume, path);
		if (count && !err)
			(*count)++;
	}
	free(volume);
	free(path);
	return err;
}

static int apply_floors(struct journal *j)
{
	return journal_exec(j,
		"UPDATE origins SET floor = max(floor, (SELECT v.seq FROM "
		"exchange_vector v WHERE v.origin = origins.id)) "
		"WHERE id IN (SELECT origin FROM exchange_vector)");
}

static int apply_fn(struct journal *j, void *arg)
{
	struct apply *a = arg;
	int err = apply_tables(j);

	if (!err)
		err = apply_vector(j, a);
	if (!err)
		err = apply_staged(j);
	if (!err)
		err = exchange_keep_proofs(j);
	if (!err)
		err = apply_drop_list(j);
	if (!err)
		err = each_path(j, "SELECT DISTINCT volume, path FROM "
				"exchange_drops WHERE (volume, path) > (?1, ?2) "
				"ORDER BY volume, path LIMIT 1", apply_one_drop,
				NULL);
	if (!err)
		err = each_path(j, "SELECT volume, path FROM exchange_paths "
				"WHERE (volume, path) > (?1, ?2) ORDER BY volume, "
				"path LIMIT 1", journal_retarget, &a->changed);
	if (!err)
		err = apply_floors(j);
	return err;
}

int journal_exchange_apply(struct journal *j, const struct journal_ref *vector,
			   size_t n, uint64_t *changed)
{
	struct apply a = { vector, n, 0 };
	uint64_t seq = j->next_seq, lamport = j->lamport;
	unsigned pending = j->pending;
	int err = journal_begin(j);

	*changed = 0;
	if (!err)
		err = journal_atomic(j, apply_fn, &a);
	if (err) {
		j->next_seq = seq;
		j->lamport = lamport;
		j->pending = pending;
	} else {
		j->pending++;
		*changed = a.changed;
	}
	j->remote.valid = false;
	/* Changes and floors of many origins moved, or a load inside the
	 * savepoint saw what was rolled back: read them all again. */
	journal_vector_reset(j);
	stage_clear(j);
	return err;
}
