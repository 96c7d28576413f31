/*
 * What became of a job (outcome.c): done (the journal told, counted, its
 * latency sampled) or failed (the journal told why, said once it is
 * stuck).  The applier and transfers both end jobs here, so that neither
 * needs the other: apply.c starts transfers, and a transfer only tells
 * its outcome.
 *
 * Latency is counted from when a job's entry arrived: change ids are
 * the local arrival order, so the first batch of entries whose last id
 * is at least a job's change says when that change came.  The batches
 * are a ring of ARRIVALS_MAX; a change older than all of it, or from
 * before this start (the first record, with no time), is not sampled.
 *
 * The state is struct replicate's `outcome`; only outcome.c touches its
 * fields.
 */
#ifndef KRAKEN_OUTCOME_H
#define KRAKEN_OUTCOME_H

#include "hist.h"
#include "journal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

struct replicate;

#define ARRIVALS_MAX 4096              /* batches remembered for latency */

struct outcome_state {
	struct { int64_t last_id, ns; } arrivals[ARRIVALS_MAX];
	size_t arrivals_head, arrivals_n;
	struct hist latency_us;   /* entry received to version on disk */
	uint64_t applied;         /* versions put on disk since start */
	uint64_t repaired;        /* damaged files made again */
};

/* What the journal holds up to change LAST_ID arrived before this start,
 * at an unknown time: its jobs are not sampled. */
void outcome_init(struct replicate *r, int64_t last_id);
/* Entries up to change id LAST_ID arrived now. */
void outcome_note_arrival(struct replicate *r, int64_t last_id);
/* When entries last arrived (monotonic), 0 when none did since start. */
int64_t outcome_last_arrival_ns(const struct replicate *r);
/* The journal marks JOB done (ST: what is on disk now, or NULL).  0 or
 * negative. */
int outcome_done(struct replicate *r, const struct journal_job *job,
		 const struct stat *st);
/* JOB failed with ERR: the journal records why (kraken-journal status
 * shows it), and it is said once it is stuck. */
void outcome_failed(struct replicate *r, const struct journal_job *job,
		    int err);

#endif
