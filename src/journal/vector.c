/*
 * The version vector, kept in memory: per origin ("node@epoch") the
 * highest seq this journal holds, max(floor, largest seq held), and the
 * generation at which the origin was last touched.
 *
 * Why.  The replicator reads the vector after every commit and on every
 * socket event, to find what each peer lacks, and every second for each
 * peer's lag.  In SQL that is an index probe per origin: 0.2 s with the
 * 90,000 origins a hostile peer once made up, which kept two idle agents
 * at full CPU and made a small file take seconds to replicate.  From
 * memory, a reader pays for the origins changed since it last looked.
 *
 * Generations.  A counter of the journal's, bumped each time an origin's
 * entry is touched: its seq rose, or what may be sent of it changed (own
 * changes signed, a floor raised by compaction).  Entries sit on a list
 * in generation order, the last touched at the tail, so
 * journal_vector_since(G) reads from the tail back to G.  A reader that
 * dealt with every origin up to generation G needs to look again only at
 * those touched after it.  Origins are never removed one by one; a
 * rebuild (below) drops them all.
 *
 * Touched.
 *  - journal_add_remote, once a remote change is in (replica.c);
 *  - compaction, once a change is removed and its floor raised
 *    (compact.c; the value stays, but a peer below the floor now needs a
 *    state exchange rather than entries);
 *  - this node's own origin, whose value is next_seq - 1: touched at the
 *    next read whenever next_seq or signed_seq moved since the last one
 *    (vec_own), which covers every local record, merge and signature
 *    without a hook in each.  Own entries leave the node once signed, so
 *    a signature is news to the replicator even when the seq is not.
 * Touches come after the savepoint of the change is released: a change
 * rolled back to its savepoint never reached memory, and its caller's
 * restored counters undo what vec_own saw of it.
 *
 * Rebuilt.  Dropped, and read again from SQL at the next use with every
 * origin under a new generation (every reader walks everything once),
 * when the copy may be stale: a batch rolled back (journal_load_counters),
 * a state exchange applied (exchange.c), a touch that could not allocate.
 * When in doubt, rebuild: a missed touch would silently stall
 * replication of that origin to a peer.
 *
 * Connections.  The writer's touches are its own: only it changes origins
 * and changes (the plugin's connection writes mounts; the checkpointer
 * writes nothing a query sees).  A read-only connection sees none of
 * them: it reads again whenever PRAGMA data_version says another
 * connection committed since its last read (checkpoints count too, so a
 * busy writer makes it read often; the API's status is its only user).
 *
 * Invariant, as read through the functions below: every origin holds
 * what journal_vector_sql() would give, and every origin whose value, or
 * whose range a peer may be sent, changed after generation G has a
 * generation above G.  tests/unit/test_vector.c checks both after random
 * operations.
 */
#include "journal_int.h"

#include "strmap.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vec_entry {
	struct vec_entry *prev, *next;   /* generation order */
	uint64_t seq;
	uint64_t gen;
	char origin[];
};

struct journal_vec {
	bool loaded;
	uint64_t gen;             /* the last one given; survives rebuilds */
	struct strmap by_origin;  /* origin -> struct vec_entry */
	struct vec_entry *head, *tail;
	size_t n;
	/* by origin, for journal_vector; NULL once an origin came */
	struct vec_entry **sorted;
	uint64_t own_seq;         /* next_seq - 1 when vec_own last looked */
	uint64_t own_signed;      /* and signed_seq */
	int64_t data_version;     /* read-only: at the last load */
};

int journal_vector_sql(struct journal *j, journal_vector_fn fn, void *arg)
{
	/* One index probe per origin, not a scan of every change. */
	static const char sql[] =
		"SELECT name, max(coalesce(top, 0), floor) FROM (SELECT "
		"o.node || '@' || o.epoch AS name, o.floor AS floor, "
		"o.retired AS retired, (SELECT max(c.seq) FROM changes c WHERE "
		"c.origin = o.id) AS top FROM origins o) WHERE top IS NOT NULL "
		"OR (floor > 0 AND NOT retired) ORDER BY name";
	sqlite3_stmt *s = NULL;
	int rc, ret = journal_prepare(j, sql, &s);

	while (ret == 0 && (rc = journal_row(s)) > 0)
		ret = fn(arg, (const char *)sqlite3_column_text(s, 0),
			 (uint64_t)sqlite3_column_int64(s, 1));
	if (ret == 0 && rc < 0)
		ret = rc;
	sqlite3_finalize(s);
	return ret;
}

/* ---- the list and the map ---------------------------------------------- */

static void vec_unlink(struct journal_vec *v, struct vec_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		v->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		v->tail = e->prev;
	e->prev = e->next = NULL;
}

/* E goes to the tail with the next generation. */
static void vec_touch_entry(struct journal_vec *v, struct vec_entry *e)
{
	if (v->tail == e) {
		e->gen = ++v->gen;
		return;
	}
	if (e->prev || e->next || v->head == e)
		vec_unlink(v, e);
	e->prev = v->tail;
	if (v->tail)
		v->tail->next = e;
	else
		v->head = e;
	v->tail = e;
	e->gen = ++v->gen;
	/* Generation order is list order: the tail is the newest. */
	assert(!e->prev || e->prev->gen < e->gen);
}

static void vec_clear(struct journal_vec *v)
{
	struct vec_entry *e = v->head;

	while (e) {
		struct vec_entry *next = e->next;

		free(e);
		e = next;
	}
	strmap_clear(&v->by_origin);
	free(v->sorted);
	v->sorted = NULL;
	v->head = v->tail = NULL;
	v->n = 0;
	v->loaded = false;
}

/* ORIGIN's value becomes SEQ exactly, and it is touched. */
static int vec_set(struct journal_vec *v, const char *origin, uint64_t seq)
{
	struct vec_entry *e = strmap_get(&v->by_origin, origin);
	size_t len;

	if (e) {
		e->seq = seq;
		vec_touch_entry(v, e);
		return 0;
	}
	len = strlen(origin) + 1;
	e = calloc(1, sizeof(*e) + len);
	if (!e)
		return -ENOMEM;
	memcpy(e->origin, origin, len);
	e->seq = seq;
	if (strmap_put(&v->by_origin, e->origin, e, NULL)) {
		free(e);
		return -ENOMEM;
	}
	vec_touch_entry(v, e);
	v->n++;
	/* The list and the map hold the same entries. */
	assert(v->n == v->by_origin.count);
	free(v->sorted);
	v->sorted = NULL;
	return 0;
}

/* ORIGIN leaves the vector (its value fell to 0: own changes rolled back
 * to before the first). */
static void vec_remove(struct journal_vec *v, const char *origin)
{
	struct vec_entry *e = strmap_del(&v->by_origin, origin);

	if (!e)
		return;
	assert(v->n > 0);
	vec_unlink(v, e);
	free(e);
	v->n--;
	assert(v->n == v->by_origin.count);
	free(v->sorted);
	v->sorted = NULL;
}

/* ---- keeping it true --------------------------------------------------- */

static int vec_load_one(void *arg, const char *origin, uint64_t max_seq)
{
	return vec_set(arg, origin, max_seq);
}

static int vec_data_version(struct journal *j, int64_t *out)
{
	static const char sql[] = "PRAGMA data_version";
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j, sql, &s));

	if (!err)
		err = journal_row(s);
	if (err > 0)
		*out = sqlite3_column_int64(s, 0);
	journal_stmt_done(s);
	assert(err != 0);    /* the pragma always has its row */
	return err > 0 ? 0 : err;
}

static int vec_load(struct journal *j)
{
	struct journal_vec *v = j->vec;
	int err = j->readonly ? vec_data_version(j, &v->data_version) : 0;

	if (!err)
		err = journal_vector_sql(j, vec_load_one, v);
	if (err) {
		vec_clear(v);
		return err;
	}
	v->own_seq = j->next_seq - 1;
	v->own_signed = j->signed_seq;
	v->loaded = true;
	return 0;
}

/* This node's origin as next_seq and signed_seq say now. */
static int vec_own(struct journal *j)
{
	struct journal_vec *v = j->vec;
	uint64_t own = j->next_seq - 1;
	int err = 0;

	if (own == v->own_seq && j->signed_seq == v->own_signed)
		return 0;
	if (own > 0)
		err = vec_set(v, j->origin, own);
	else
		vec_remove(v, j->origin);
	v->own_seq = own;
	v->own_signed = j->signed_seq;
	return err;
}

/* The vector, loaded and current; 0 or a negative code. */
static int vec_ready(struct journal *j)
{
	struct journal_vec *v = j->vec;
	int64_t dv = 0;
	int err;

	if (!v) {
		v = j->vec = calloc(1, sizeof(*v));
		if (!v)
			return -ENOMEM;
	}
	if (v->loaded && j->readonly &&
	    (vec_data_version(j, &dv) != 0 || dv != v->data_version))
		vec_clear(v);
	if (!v->loaded)
		return vec_load(j);
	if (j->readonly)
		return 0;
	err = vec_own(j);
	if (err)
		vec_clear(v);
	return err;
}

void journal_vector_touch(struct journal *j, const char *origin, uint64_t seq)
{
	struct journal_vec *v = j->vec;
	struct vec_entry *e;

	/* Not loaded: the next load reads what SQL holds now. */
	if (!v || !v->loaded)
		return;
	e = strmap_get(&v->by_origin, origin);
	if (vec_set(v, origin, e && e->seq > seq ? e->seq : seq))
		vec_clear(v);
}

void journal_vector_touch_id(struct journal *j, int64_t origin, uint64_t seq)
{
	static const char sql[] =
		"SELECT node || '@' || epoch FROM origins WHERE id = ?1";
	sqlite3_stmt *s = NULL;
	int rc;

	if (!j->vec || !j->vec->loaded)
		return;
	rc = journal_prepare_cached(j, sql, &s);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, origin);
		rc = journal_row(s);
	}
	/* Otherwise (a failure, logged) memory forgets what it held, and the
	 * next use reads it again from SQL. */
	if (rc > 0)
		journal_vector_touch(j, (const char *)sqlite3_column_text(s, 0),
				     seq);
	else
		vec_clear(j->vec);
	journal_stmt_done(s);
}

void journal_vector_reset(struct journal *j)
{
	if (j->vec)
		vec_clear(j->vec);
}

void journal_vector_free(struct journal *j)
{
	journal_vector_reset(j);
	free(j->vec);
	j->vec = NULL;
}

/* ---- reading ----------------------------------------------------------- */

int journal_vector_get(struct journal *j, const char *origin, uint64_t *out)
{
	const struct vec_entry *e;
	int err = vec_ready(j);

	*out = 0;
	if (err)
		return err;
	e = strmap_get(&j->vec->by_origin, origin);
	if (!e)
		return -ENOENT;   /* unknown, or retired: its floor is in SQL */
	*out = e->seq;
	return 0;
}

uint64_t journal_vector_gen(struct journal *j)
{
	(void)vec_ready(j);
	return j->vec ? j->vec->gen : 0;
}

/* A copy of what a walk reports, taken before the walk: FN may touch. */
struct vec_snap {
	struct journal_ref ref;
	uint64_t gen;
};

int journal_vector_since(struct journal *j, uint64_t gen,
			 journal_since_fn fn, void *arg)
{
	struct vec_snap *snap = NULL;
	const struct vec_entry *e;
	size_t n = 0, i = 0;
	int ret = vec_ready(j);

	if (ret)
		return ret;
	for (e = j->vec->tail; e && e->gen > gen; e = e->prev)
		n++;
	if (n == 0)
		return 0;
	snap = malloc(n * sizeof(*snap));
	if (!snap)
		return -ENOMEM;
	for (e = e ? e->next : j->vec->head; e; e = e->next, i++) {
		snprintf(snap[i].ref.origin, sizeof(snap[i].ref.origin), "%s",
			 e->origin);
		snap[i].ref.seq = e->seq;
		snap[i].gen = e->gen;
	}
	for (i = 0; i < n && ret == 0; i++)
		ret = fn(arg, snap[i].ref.origin, snap[i].ref.seq, snap[i].gen);
	free(snap);
	return ret;
}

static int vec_by_origin(const void *a, const void *b)
{
	const struct vec_entry *x = *(const struct vec_entry *const *)a;
	const struct vec_entry *y = *(const struct vec_entry *const *)b;

	return strcmp(x->origin, y->origin);
}

/* The entries sorted by origin, as SQL's ORDER BY name (BINARY) would. */
static int vec_sort(struct journal_vec *v)
{
	size_t i = 0;

	if (v->sorted || v->n == 0)
		return 0;
	v->sorted = malloc(v->n * sizeof(*v->sorted));
	if (!v->sorted)
		return -ENOMEM;
	for (const struct vec_entry *e = v->head; e; e = e->next)
		v->sorted[i++] = (struct vec_entry *)e;
	qsort(v->sorted, v->n, sizeof(*v->sorted), vec_by_origin);
	return 0;
}

int journal_vector_copy(struct journal *j, struct journal_ref **out,
			size_t *n)
{
	struct journal_ref *refs = NULL;
	int err = vec_ready(j);

	*out = NULL;
	*n = 0;
	if (!err)
		err = vec_sort(j->vec);
	if (err)
		return err;
	refs = calloc(j->vec->n ? j->vec->n : 1, sizeof(*refs));
	if (!refs)
		return -ENOMEM;
	for (size_t i = 0; i < j->vec->n; i++) {
		snprintf(refs[i].origin, sizeof(refs[i].origin), "%s",
			 j->vec->sorted[i]->origin);
		refs[i].seq = j->vec->sorted[i]->seq;
	}
	*out = refs;
	*n = j->vec->n;
	return 0;
}

int journal_vector(struct journal *j, journal_vector_fn fn, void *arg)
{
	struct journal_ref *refs = NULL;
	size_t n = 0;
	int ret = journal_vector_copy(j, &refs, &n);

	for (size_t i = 0; i < n && ret == 0; i++)
		ret = fn(arg, refs[i].origin, refs[i].seq);
	free(refs);
	return ret;
}
