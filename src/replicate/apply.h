/*
 * Applying the journal's jobs: each is one version to make true at one
 * path (apply.c).  Files whose content the disk lacks become transfers
 * (transfer.h); everything else is done at once.
 *
 * The applier's state is struct replicate's `apply`; only apply.c
 * touches its fields.
 */
#ifndef KRAKEN_APPLY_H
#define KRAKEN_APPLY_H

#include "hist.h"
#include "journal.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

struct replicate;

#define ARRIVALS_MAX 4096              /* batches remembered for latency */

struct apply_state {
	bool hold;                /* apply nothing (replicate_hold) */
	bool jobs_due;            /* look for jobs at the next tick */
	int64_t next_jobs_ns;     /* and at the latest then (retries) */
	int64_t last_jobs_ns;
	/* Conflict copies held while entries arrive ("Conflicts"): since
	 * when, and when to look again. */
	int64_t copies_held_since, copies_wake_ns;
	/* When entries arrived, per batch: change ids are the local arrival
	 * order, so "the first batch whose last id >= X" says when X came.
	 * A ring; a change older than all of it is not sampled. */
	struct { int64_t last_id, ns; } arrivals[ARRIVALS_MAX];
	size_t arrivals_head, arrivals_n;
	struct hist latency_us;   /* entry received to version on disk */
	uint64_t applied;         /* versions put on disk since start */
	uint64_t repaired;        /* damaged files made again */
};

/* What the journal holds up to change LAST_ID arrived before this start,
 * at an unknown time: its jobs are not sampled for latency. */
void apply_init(struct replicate *r, int64_t last_id);
/* Entries up to change id LAST_ID arrived now. */
void apply_note_arrival(struct replicate *r, int64_t last_id);
/* Looks for jobs at the next tick. */
void apply_kick(struct replicate *r);
void apply_tick(struct replicate *r);
/* When the applier wants the next tick (monotonic), INT64_MAX: none. */
int64_t apply_deadline(const struct replicate *r);
void apply_hold(struct replicate *r, bool hold);
bool apply_held(const struct replicate *r);

/* The journal marks JOB done (ST: what is on disk now, or NULL);
 * counted for metrics.  0 or negative. */
int apply_job_done(struct replicate *r, const struct journal_job *job,
		   const struct stat *st);
/* JOB failed with ERR: counted, and said once it is stuck. */
void apply_job_failed(struct replicate *r, const struct journal_job *job,
		      int err);
/* Whether the version the disk holds at JOB's path still waits for its
 * conflict copy: then nothing replaces it yet ("Conflicts"). */
bool apply_copy_pending(struct replicate *r, const struct journal_job *job);

#endif
