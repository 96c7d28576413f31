/*
 * Chunk-list planning: pure functions over the chunk list of a version
 * being made (LIST) and the list of the version it replaces (BASE).  No
 * I/O and no replicator state, so tests/unit/test_plan.c drives them
 * directly.
 *
 *   plan_runs    the chunks LIST shares with BASE, as runs (i.. in LIST,
 *                j.. in BASE, k chunks) to copy from the base's file
 *                without a lookup or a hash per chunk: an edit keeps
 *                most of a file;
 *   plan_deltas  the missing chunks beside those runs, to be asked for
 *                as deltas from the base's bytes (delta.h): an edit
 *                moves the blocks it changed, not the chunks around them;
 *   plan_diff    LIST as wire items against BASE (runs of BASE where
 *                LIST repeats it, single chunks elsewhere): what a
 *                serving node sends for a GET_CHUNKLIST naming a base.
 *
 * Chunks are equal when hash and length are.  BUSY (one byte per chunk
 * of LIST, 0 = missing) says which chunks are already settled; those are
 * neither planned nor asked for.
 */
#ifndef KRAKEN_PLAN_H
#define KRAKEN_PLAN_H

#include "content.h"
#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deltas: every missing chunk of a stretch of up to PLAN_DELTA_ALL bytes
 * between runs, else the first PLAN_DELTA_LEAD and last PLAN_DELTA_TRAIL
 * of it (an edit's old bytes are at its edges); none under
 * PLAN_DELTA_MIN bytes (only a file's last chunk is shorter than the
 * chunker's minimum); at most PLAN_DELTAS_MAX per version. */
#define PLAN_DELTA_ALL (4u << 20)
#define PLAN_DELTA_LEAD 2
#define PLAN_DELTA_TRAIL 4
#define PLAN_DELTA_MIN CONTENT_CHUNK_MIN
#define PLAN_DELTAS_MAX 1024

/* Open addressing over a list's chunk hashes: hash -> first index + 1. */
struct plan_index {
	uint32_t *slot;
	size_t mask;
};

int plan_index_build(struct plan_index *ix, const struct content *b);
void plan_index_release(struct plan_index *ix);
/* Index in B (which IX indexes) of a chunk equal to K, or -1. */
int64_t plan_index_find(const struct plan_index *ix, const struct content *b,
			const struct content_chunk *k);

/* Chunks LIST[i + n] == BASE[j + n] for n < k. */
struct plan_run {
	size_t i, j, k;
};

/*
 * The runs of LIST's missing chunks (BUSY[i] == 0) found in BASE, in
 * LIST's order; a run is cut after SLICE bytes, so that the caller's
 * writeback starts while the rest is still being copied.  *RUNS is
 * malloc'd (the caller frees it).  0, or -ENOMEM with *RUNS and *N the
 * runs planned so far: planning is an optimisation.
 */
int plan_runs(const struct content *list, const struct content *base,
	      const uint8_t *busy, uint64_t slice, struct plan_run **runs,
	      size_t *n);

/* A chunk to ask for as a delta from the base's bytes at BASE_OFF. */
struct plan_delta {
	size_t i;
	uint64_t base_off;
	bool plain;               /* a delta failed: ask for it whole */
};

/*
 * After the runs (and local copies) are planned, with BUSY marking them:
 * the missing chunks beside the runs whose old bytes the base should
 * hold, into OUT (room for PLAN_DELTAS_MAX), sorted by chunk index.  The
 * file's start and end anchor the first and last stretch.  Their number.
 */
size_t plan_deltas(const struct content *list, const struct content *base,
		   const uint8_t *busy, const struct plan_run *runs,
		   size_t n_runs, struct plan_delta *out);

/* The delta planned for chunk I (in DELTAS, sorted), unless none or it
 * is to be asked for whole. */
struct plan_delta *plan_delta_find(struct plan_delta *deltas, size_t n,
				   size_t i);

/* LIST as *N items against BASE into *OUT (malloc'd), greedy from the
 * left: content-defined boundaries resynchronise right after an edit, so
 * every unchanged stretch is found.  0 or -ENOMEM. */
int plan_diff(const struct content *base, const struct content *list,
	      struct wire_chunk_ref **out, size_t *n);

#endif
