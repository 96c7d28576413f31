/*
 * Applying the journal's jobs: each is one version to make true at one
 * path (apply.c).  Files whose content the disk lacks become transfers
 * (transfer.h); everything else is done at once.  A job's outcome goes
 * through outcome.h, so that transfers never call back up here.
 *
 * The applier's state is struct replicate's `apply`; only apply.c
 * touches its fields.
 */
#ifndef KRAKEN_APPLY_H
#define KRAKEN_APPLY_H

#include "journal.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

struct replicate;

struct apply_state {
	bool hold;                /* apply nothing (replicate_hold) */
	bool jobs_due;            /* look for jobs at the next tick */
	int64_t next_jobs_ns;     /* and at the latest then (retries) */
	int64_t last_jobs_ns;
	/* Conflict copies held while entries arrive ("Conflicts"): since
	 * when, and when to look again. */
	int64_t copies_held_since, copies_wake_ns;
};

/* Looks for jobs at the next tick. */
void apply_kick(struct replicate *r);
void apply_tick(struct replicate *r);
/* When the applier wants the next tick (monotonic), INT64_MAX: none. */
int64_t apply_deadline(const struct replicate *r);
void apply_hold(struct replicate *r, bool hold);
bool apply_held(const struct replicate *r);

#endif
