/* Chunk-list planning (plan.h): which chunks of a new version are copied
 * from the version it replaces, which are asked for as deltas, and the
 * list a serving node sends against the asker's base. */
#include "plan.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define KIB 1024u

/* A list of N chunks named by IDS (a chunk's hash is its id), LEN bytes
 * each, laid end to end. */
static void list_make(struct content *c, const unsigned *ids, size_t n,
		      uint32_t len)
{
	memset(c, 0, sizeof(*c));
	c->chunks = calloc(n + 1, sizeof(*c->chunks));
	assert_non_null(c->chunks);
	c->n_chunks = c->cap_chunks = n;
	for (size_t i = 0; i < n; i++) {
		memset(c->chunks[i].hash, 0, CONTENT_HASH_LEN);
		memcpy(c->chunks[i].hash, &ids[i], sizeof(ids[i]));
		/* Spread the ids over the bytes the index hashes. */
		c->chunks[i].hash[9] = (uint8_t)(ids[i] * 37);
		c->chunks[i].len = len;
		c->chunks[i].offset = c->size;
		c->size += len;
	}
}

/* ids FROM, FROM + 1, ... */
static void ids_seq(unsigned *ids, size_t n, unsigned from)
{
	for (size_t i = 0; i < n; i++)
		ids[i] = from + (unsigned)i;
}

/* An edit in the middle: everything but the edited chunk is one run on
 * each side, each mapped to the same place in the base. */
static void runs_around_an_edit(void **state)
{
	unsigned ids[20];
	struct content base, list;
	uint8_t busy[20] = { 0 };
	struct plan_run *runs;
	size_t n;

	(void)state;
	ids_seq(ids, 20, 100);
	list_make(&base, ids, 20, 64 * KIB);
	ids[7] = 999;
	list_make(&list, ids, 20, 64 * KIB);
	assert_int_equal(plan_runs(&list, &base, busy, UINT64_MAX, &runs, &n),
			 0);
	assert_int_equal(n, 2);
	assert_int_equal(runs[0].i, 0);
	assert_int_equal(runs[0].j, 0);
	assert_int_equal(runs[0].k, 7);
	assert_int_equal(runs[1].i, 8);
	assert_int_equal(runs[1].j, 8);
	assert_int_equal(runs[1].k, 12);
	free(runs);
	content_release(&base);
	content_release(&list);
}

/* Bytes inserted before chunk 5: the rest of the file is one run that
 * starts a chunk later in the new list than in the base. */
static void runs_after_an_insert(void **state)
{
	unsigned old_ids[10], ids[11];
	struct content base, list;
	uint8_t busy[11] = { 0 };
	struct plan_run *runs;
	size_t n;

	(void)state;
	ids_seq(old_ids, 10, 1);
	list_make(&base, old_ids, 10, 16 * KIB);
	memcpy(ids, old_ids, 5 * sizeof(*ids));
	ids[5] = 500;
	memcpy(ids + 6, old_ids + 5, 5 * sizeof(*ids));
	list_make(&list, ids, 11, 16 * KIB);
	assert_int_equal(plan_runs(&list, &base, busy, UINT64_MAX, &runs, &n),
			 0);
	assert_int_equal(n, 2);
	assert_int_equal(runs[1].i, 6);
	assert_int_equal(runs[1].j, 5);
	assert_int_equal(runs[1].k, 5);
	free(runs);
	content_release(&base);
	content_release(&list);
}

/* Settled chunks are never planned, and a run is cut at SLICE bytes so
 * that writeback starts while the rest is copied. */
static void runs_skip_busy_and_slice(void **state)
{
	unsigned ids[12];
	struct content base, list;
	uint8_t busy[12] = { 0 };
	struct plan_run *runs;
	size_t n, covered = 0;

	(void)state;
	ids_seq(ids, 12, 7);
	list_make(&base, ids, 12, 32 * KIB);
	list_make(&list, ids, 12, 32 * KIB);
	busy[3] = 1;
	assert_int_equal(plan_runs(&list, &base, busy, 128 * KIB, &runs, &n),
			 0);
	for (size_t r = 0; r < n; r++) {
		assert_true(runs[r].k <= 4);       /* 4 x 32 KiB = 128 KiB */
		for (size_t k = 0; k < runs[r].k; k++)
			assert_int_not_equal(runs[r].i + k, 3);
		covered += runs[r].k;
	}
	assert_int_equal(covered, 11);
	free(runs);
	content_release(&base);
	content_release(&list);
}

/* A missing chunk between two runs is asked for as a delta from the
 * base's bytes where it was; one below the chunker's minimum is not. */
static void deltas_between_runs(void **state)
{
	unsigned ids[8];
	struct content base, list;
	uint8_t busy[8] = { 0 };
	struct plan_delta out[PLAN_DELTAS_MAX];
	struct plan_run *runs;
	size_t n, nd;

	(void)state;
	ids_seq(ids, 8, 40);
	list_make(&base, ids, 8, 64 * KIB);
	ids[4] = 4444;
	list_make(&list, ids, 8, 64 * KIB);
	assert_int_equal(plan_runs(&list, &base, busy, UINT64_MAX, &runs, &n),
			 0);
	for (size_t r = 0; r < n; r++)
		memset(busy + runs[r].i, 1, runs[r].k);
	nd = plan_deltas(&list, &base, busy, runs, n, out);
	assert_int_equal(nd, 1);
	assert_int_equal(out[0].i, 4);
	assert_int_equal(out[0].base_off, 4 * 64 * KIB);
	assert_false(out[0].plain);
	assert_ptr_equal(plan_delta_find(out, nd, 4), &out[0]);
	assert_null(plan_delta_find(out, nd, 3));
	out[0].plain = true;                 /* a delta failed: ask whole */
	assert_null(plan_delta_find(out, nd, 4));
	free(runs);
	content_release(&base);
	content_release(&list);

	/* The same edit in chunks too small to be worth a delta. */
	ids_seq(ids, 8, 40);
	list_make(&base, ids, 8, PLAN_DELTA_MIN / 2);
	ids[4] = 4444;
	list_make(&list, ids, 8, PLAN_DELTA_MIN / 2);
	memset(busy, 0, sizeof(busy));
	assert_int_equal(plan_runs(&list, &base, busy, UINT64_MAX, &runs, &n),
			 0);
	for (size_t r = 0; r < n; r++)
		memset(busy + runs[r].i, 1, runs[r].k);
	assert_int_equal(plan_deltas(&list, &base, busy, runs, n, out), 0);
	free(runs);
	content_release(&base);
	content_release(&list);
}

/* A long rewritten stretch: only its first LEAD and last TRAIL chunks
 * are asked as deltas (an edit's old bytes are at its edges); with no
 * run at all, nothing is. */
static void deltas_at_the_edges_of_a_long_gap(void **state)
{
	enum { N = 200, CH = 64 * KIB };
	unsigned ids[N];
	struct content base, list;
	uint8_t busy[N] = { 0 };
	struct plan_delta *out = calloc(PLAN_DELTAS_MAX, sizeof(*out));
	struct plan_run *runs;
	size_t n, nd;

	(void)state;
	assert_non_null(out);
	ids_seq(ids, N, 1);
	list_make(&base, ids, N, CH);
	for (size_t i = 10; i < 190; i++)     /* 180 x 64 KiB > DELTA_ALL */
		ids[i] = 10000 + (unsigned)i;
	list_make(&list, ids, N, CH);
	assert_int_equal(plan_runs(&list, &base, busy, UINT64_MAX, &runs, &n),
			 0);
	assert_int_equal(n, 2);
	for (size_t r = 0; r < n; r++)
		memset(busy + runs[r].i, 1, runs[r].k);
	nd = plan_deltas(&list, &base, busy, runs, n, out);
	assert_int_equal(nd, PLAN_DELTA_LEAD + PLAN_DELTA_TRAIL);
	assert_int_equal(out[0].i, 10);
	assert_int_equal(out[nd - 1].i, 189);
	for (size_t k = 1; k < nd; k++)
		assert_true(out[k - 1].i < out[k].i);   /* sorted */
	assert_int_equal(plan_deltas(&list, &base, busy, runs, 0, out), 0);
	free(runs);
	free(out);
	content_release(&base);
	content_release(&list);
}

/* Expands ITEMS (plan_diff's) against BASE, as a receiver does. */
static void diff_expand(const struct content *base,
			const struct wire_chunk_ref *items, size_t n,
			struct content *out)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		size_t count = items[i].count ? items[i].count : 1;

		for (size_t c = 0; c < count; c++, k++) {
			assert_true(k < out->n_chunks);
			if (items[i].count) {
				out->chunks[k] = base->chunks[items[i].base_index
							     + c];
				continue;
			}
			memcpy(out->chunks[k].hash, items[i].hash,
			       CONTENT_HASH_LEN);
			out->chunks[k].len = items[i].len;
		}
	}
	assert_int_equal(k, out->n_chunks);
}

/* The list a server sends against a base expands back to the list, and
 * an edit costs one item more than the unchanged runs. */
static void diff_round_trip(void **state)
{
	unsigned ids[30];
	struct content base, list, back;
	struct wire_chunk_ref *items;
	size_t n;

	(void)state;
	ids_seq(ids, 30, 1);
	list_make(&base, ids, 30, 16 * KIB);
	ids[12] = 7777;
	ids[13] = 7778;
	list_make(&list, ids, 30, 16 * KIB);
	assert_int_equal(plan_diff(&base, &list, &items, &n), 0);
	assert_int_equal(n, 4);       /* run, chunk, chunk, run */
	list_make(&back, ids, 30, 16 * KIB);
	memset(back.chunks, 0, 30 * sizeof(*back.chunks));
	diff_expand(&base, items, n, &back);
	for (size_t i = 0; i < 30; i++) {
		assert_memory_equal(back.chunks[i].hash, list.chunks[i].hash,
				    CONTENT_HASH_LEN);
		assert_int_equal(back.chunks[i].len, list.chunks[i].len);
	}
	free(items);
	assert_int_equal(plan_diff(&base, &base, &items, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(items[0].count, 30);
	free(items);
	content_release(&base);
	content_release(&list);
	content_release(&back);
}

/* A chunk repeated in the base maps to its first place; a chunk of the
 * same hash but another length is not the same chunk. */
static void index_first_and_exact(void **state)
{
	unsigned ids[6] = { 5, 6, 5, 7, 8, 5 };
	struct content base;
	struct content_chunk k;
	struct plan_index ix = { 0 };

	(void)state;
	list_make(&base, ids, 6, 8 * KIB);
	assert_int_equal(plan_index_build(&ix, &base), 0);
	k = base.chunks[5];
	assert_int_equal(plan_index_find(&ix, &base, &k), 0);
	k.len++;
	assert_int_equal(plan_index_find(&ix, &base, &k), -1);
	plan_index_release(&ix);
	content_release(&base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(runs_around_an_edit),
		cmocka_unit_test(runs_after_an_insert),
		cmocka_unit_test(runs_skip_busy_and_slice),
		cmocka_unit_test(deltas_between_runs),
		cmocka_unit_test(deltas_at_the_edges_of_a_long_gap),
		cmocka_unit_test(diff_round_trip),
		cmocka_unit_test(index_first_and_exact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
