/* Chunk-list planning (plan.h): pure, unit-tested in test_plan.c. */
#include "plan.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_key(const uint8_t *h)
{
	uint64_t k;

	memcpy(&k, h, sizeof(k));   /* a SHA-256: any 8 bytes are uniform */
	return k;
}

int plan_index_build(struct plan_index *ix, const struct content *b)
{
	size_t cap = 16;

	while (cap < 2 * b->n_chunks)
		cap *= 2;
	ix->slot = calloc(cap, sizeof(*ix->slot));
	ix->mask = cap - 1;
	if (!ix->slot)
		return -ENOMEM;
	for (size_t i = 0; i < b->n_chunks; i++) {
		size_t h = (size_t)hash_key(b->chunks[i].hash) & ix->mask;

		while (ix->slot[h] && memcmp(b->chunks[ix->slot[h] - 1].hash,
					     b->chunks[i].hash,
					     CONTENT_HASH_LEN) != 0)
			h = (h + 1) & ix->mask;
		if (!ix->slot[h])
			ix->slot[h] = (uint32_t)i + 1;
	}
	return 0;
}

void plan_index_release(struct plan_index *ix)
{
	free(ix->slot);
	ix->slot = NULL;
}

static bool chunk_same(const struct content_chunk *a,
		       const struct content_chunk *b)
{
	return a->len == b->len &&
	       memcmp(a->hash, b->hash, CONTENT_HASH_LEN) == 0;
}

int64_t plan_index_find(const struct plan_index *ix, const struct content *b,
			const struct content_chunk *k)
{
	size_t h = (size_t)hash_key(k->hash) & ix->mask;

	for (; ix->slot[h]; h = (h + 1) & ix->mask)
		if (chunk_same(&b->chunks[ix->slot[h] - 1], k))
			return ix->slot[h] - 1;
	return -1;
}

/* The run starting at LIST's chunk I, which BASE holds at J. */
static struct plan_run run_at(const struct content *list,
			      const struct content *base, const uint8_t *busy,
			      uint64_t slice, size_t i, size_t j)
{
	struct plan_run run = { i, j, 0 };
	uint64_t len = 0;

	while (len < slice && i + run.k < list->n_chunks &&
	       j + run.k < base->n_chunks && !busy[i + run.k] &&
	       chunk_same(&list->chunks[i + run.k], &base->chunks[j + run.k])) {
		len += list->chunks[i + run.k].len;
		run.k++;
	}
	return run;
}

int plan_runs(const struct content *list, const struct content *base,
	      const uint8_t *busy, uint64_t slice, struct plan_run **runs,
	      size_t *n)
{
	struct plan_index ix = { 0 };
	int err = plan_index_build(&ix, base);

	*runs = NULL;
	*n = 0;
	for (size_t i = 0; !err && i < list->n_chunks;) {
		int64_t j = busy[i] ? -1 :
			    plan_index_find(&ix, base, &list->chunks[i]);
		struct plan_run run = j < 0 ? (struct plan_run){ i, 0, 0 } :
				      run_at(list, base, busy, slice, i,
					     (size_t)j);

		if (run.k) {
			struct plan_run *more = *n % 64 ? *runs :
				realloc(*runs, (*n + 64) * sizeof(*more));

			if (!more) {
				err = -ENOMEM;
				break;
			}
			*runs = more;
			(*runs)[(*n)++] = run;
		}
		i += run.k ? run.k : 1;
	}
	plan_index_release(&ix);
	return err;
}

/* The missing chunks of a stretch of LIST, with what they need. */
struct gap {
	const struct content *list, *base;
	const uint8_t *busy;
	struct plan_delta *out;
	size_t n;
};

/* Chunk I is asked for as a delta from the base's bytes at I's offset
 * plus SHIFT, if those lie in the base and I is worth it. */
static void gap_add(struct gap *g, size_t i, int64_t shift)
{
	const struct content_chunk *k = &g->list->chunks[i];
	int64_t off = (int64_t)k->offset + shift;

	if (g->busy[i] || k->len < PLAN_DELTA_MIN || off < 0 ||
	    (uint64_t)off + k->len > g->base->size ||
	    g->n == PLAN_DELTAS_MAX)
		return;
	g->out[g->n++] = (struct plan_delta){ i, (uint64_t)off, false };
}

/*
 * The missing chunks A.. B - 1 lie between runs: their bytes, where
 * unchanged, are in the base at their offset plus LSHIFT when counted
 * from the chunk before (the base's A - 1 ends where the new one does,
 * after an insert or a delete before it) or RSHIFT from the one after.
 * Leading chunks take the first, trailing ones the second.
 */
static void gap_plan(struct gap *g, size_t a, size_t b, int64_t lshift,
		     int64_t rshift)
{
	uint64_t bytes = 0;

	for (size_t i = a; i < b; i++)
		bytes += g->busy[i] ? 0 : g->list->chunks[i].len;
	if (bytes == 0)
		return;
	if (bytes <= PLAN_DELTA_ALL) {
		for (size_t i = a; i < b; i++)
			gap_add(g, i, i - a < (b - a + 1) / 2 ? lshift : rshift);
		return;
	}
	/* Kept in index order: the list is searched by halves. */
	for (size_t i = a; i < a + PLAN_DELTA_LEAD && i < b; i++)
		gap_add(g, i, lshift);
	for (size_t i = b - a > PLAN_DELTA_LEAD + PLAN_DELTA_TRAIL ?
			b - PLAN_DELTA_TRAIL : a + PLAN_DELTA_LEAD; i < b; i++)
		gap_add(g, i, rshift);
}

/* Offset in the base minus offset in the list, of the chunk RUN maps at
 * K (0 = its first). */
static int64_t run_shift(const struct gap *g, const struct plan_run *run,
			 size_t k)
{
	return (int64_t)g->base->chunks[run->j + k].offset -
	       (int64_t)g->list->chunks[run->i + k].offset;
}

size_t plan_deltas(const struct content *list, const struct content *base,
		   const uint8_t *busy, const struct plan_run *runs,
		   size_t n_runs, struct plan_delta *out)
{
	struct gap g = { list, base, busy, out, 0 };
	size_t start = 0;
	int64_t lshift = 0;

	for (size_t n = 0; n_runs && n <= n_runs; n++) {
		const struct plan_run *run = n < n_runs ? &runs[n] : NULL;
		size_t end = run ? run->i : list->n_chunks;
		int64_t rshift = run ? run_shift(&g, run, 0) :
				 (int64_t)base->size - (int64_t)list->size;

		assert(!run || (run->k > 0 && run->i >= start));
		if (end > start)
			gap_plan(&g, start, end, lshift, rshift);
		if (run) {
			start = run->i + run->k;
			/* Equal chunks, equal lengths: the run ends shifted
			 * as its last chunk starts. */
			lshift = run_shift(&g, run, run->k - 1);
		}
	}
	return g.n;
}

static int delta_cmp(const void *key, const void *elem)
{
	size_t i = *(const size_t *)key;
	const struct plan_delta *w = elem;

	return i < w->i ? -1 : i > w->i;
}

struct plan_delta *plan_delta_find(struct plan_delta *deltas, size_t n,
				   size_t i)
{
	struct plan_delta *w = n ? bsearch(&i, deltas, n, sizeof(*w),
					   delta_cmp) : NULL;

	return w && !w->plain ? w : NULL;
}

int plan_diff(const struct content *base, const struct content *list,
	      struct wire_chunk_ref **out, size_t *n)
{
	struct plan_index ix = { 0 };
	struct wire_chunk_ref *v = calloc(list->n_chunks + 1, sizeof(*v));
	int err = v ? plan_index_build(&ix, base) : -ENOMEM;

	*n = 0;
	for (size_t i = 0; !err && i < list->n_chunks;) {
		int64_t j = plan_index_find(&ix, base, &list->chunks[i]);
		struct wire_chunk_ref *it = &v[(*n)++];
		size_t k = 0;

		if (j < 0) {
			memcpy(it->hash, list->chunks[i].hash, CONTENT_HASH_LEN);
			it->len = list->chunks[i].len;
			i++;
			continue;
		}
		while (i + k < list->n_chunks &&
		       (size_t)j + k < base->n_chunks &&
		       chunk_same(&list->chunks[i + k], &base->chunks[j + k]))
			k++;
		it->base_index = (uint32_t)j;
		it->count = (uint32_t)k;
		i += k;
	}
	plan_index_release(&ix);
	if (err) {
		free(v);
		v = NULL;
	}
	*out = v;
	return err;
}
