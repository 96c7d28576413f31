/*
 * syncfs(2) on a thread of its own.
 *
 * Applying remote versions renames a batch of temp files into place only
 * after one syncfs has made their data durable.  On a real disk that sync
 * is a journal commit that can take tens of milliseconds, more when other
 * writes are pending; run on the event-loop thread it stalled receiving
 * and assembling the next batch.  Here the loop asks for a sync, goes on,
 * and learns through a readable descriptor when it has ended.
 *
 * States: idle -> (syncer_start) running -> (sync returns) ended, seen
 * by the loop with syncer_collect, -> idle.  One sync at a time; the
 * caller keeps track of which files the running sync covers (those
 * written before it started).
 */
#ifndef KRAKEN_SYNCER_H
#define KRAKEN_SYNCER_H

#include <stdbool.h>

struct syncer;

/* A syncer for the filesystem holding DIR.  0 or -errno. */
int syncer_new(const char *dir, struct syncer **out);
/* Joins the thread (after a running sync ends); NULL is ignored. */
void syncer_free(struct syncer *s);

/* Readable when a sync has ended. */
int syncer_fd(const struct syncer *s);
/* Starts a sync; the caller must not start another before collecting. */
void syncer_start(struct syncer *s);
/* True when a sync has ended since the last call (drains the fd). */
bool syncer_collect(struct syncer *s);

#endif
