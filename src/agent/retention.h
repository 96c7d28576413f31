/*
 * The agent's compaction schedule: when journal.retention is set, a pass
 * of journal_compact_step every so often (an eighth of the retention,
 * between one second and an hour), one small step at a time with pauses
 * between them so that the loop stays responsive and a pass costs a few
 * percent of one core; a pass asked for through the admin API runs with
 * shorter pauses.  Loop thread only.
 */
#ifndef KRAKEN_RETENTION_H
#define KRAKEN_RETENTION_H

#include "journal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct retention;

/* Totals since start, for the API snapshot. */
struct retention_stats {
	uint64_t changes, tombstones, contents, pages_freed;
	uint64_t passes;
	int64_t last_pass_ns;     /* wall clock when the last pass ended */
	int64_t compacted_before_ns;
	bool running;
};

int retention_new(struct journal *j, struct retention **out);
void retention_free(struct retention *r);
/* RETENTION_MS 0 turns compaction off.  PEERS are the configured nodes
 * (this one may be among them): each holds history back until it has
 * acknowledged it.  0 or a negative code. */
int retention_configure(struct retention *r, uint64_t retention_ms,
			uint64_t pin_max_ms, const char *const *peers,
			size_t n);
/* A pass now (POST /v1/admin/compact). */
void retention_request(struct retention *r);
/* Monotonic time of the next step due, or -1. */
int64_t retention_deadline(const struct retention *r);
/* Runs the step due at NOW (monotonic), if any. */
void retention_tick(struct retention *r, int64_t now);
void retention_stats(const struct retention *r, struct retention_stats *out);

/*
 * Kept versions (versions.keep, versions.max_bytes): the store of what
 * peers' changes replaced here, opened in DIR when KEEP_MS is set, and
 * pruned once a minute to KEEP_MS and to MAX_BYTES, or when that is 0 to
 * MAX_PERCENT of the file system holding ROOT.  Called again on reload
 * with new limits (a store is opened only at start-up).
 */
int retention_versions(struct retention *r, const char *dir, const char *root,
		       uint64_t keep_ms, uint64_t max_bytes,
		       unsigned max_percent);
/* The store, or NULL when versions are not kept. */
struct journal_versions *retention_store(const struct retention *r);

#endif
