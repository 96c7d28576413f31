/*
 * Flushes to disk on a thread of its own.
 *
 * Applying remote versions renames a batch of temp files into place only
 * after a flush has made their data durable.  On a real disk that flush
 * is a journal commit that can take tens of milliseconds, more when other
 * writes are pending; run on the event-loop thread it stalled receiving
 * and assembling the next batch.  Here the loop asks for a flush, goes on,
 * and learns through a readable descriptor when it has ended.
 *
 * A flush covers either a few named files (fsync each: syncfs would also
 * write every other program's dirty pages, on a busy host the larger
 * part) or the whole filesystem (syncfs: one journal commit for a batch
 * of many small files instead of one per file).
 *
 * It also closes descriptors whose last close is slow (syncer_close), and
 * flushes a large file in steps while it is still being written
 * (syncer_advance): on a virtual disk the host's cache flush costs in
 * proportion to what was written since the last one, and half a second
 * for a gigabyte at the end is half a second the rename waits.
 *
 * States: idle -> (syncer_start) running -> (flush returns) ended, seen
 * by the loop with syncer_collect, -> idle.  One sync at a time; the
 * caller keeps track of which files the running sync covers (those
 * written before it started).
 */
#ifndef KRAKEN_SYNCER_H
#define KRAKEN_SYNCER_H

#include <stdbool.h>
#include <stddef.h>

struct syncer;

/* A syncer for the filesystem holding DIR.  0 or -errno. */
int syncer_new(const char *dir, struct syncer **out);
/* Joins the thread (after a running sync ends); NULL is ignored. */
void syncer_free(struct syncer *s);

/* Readable when a sync has ended. */
int syncer_fd(const struct syncer *s);
/* Flushes the N files FDS, or with N == 0 the whole filesystem; 0 or
 * -errno of the first failure.  What the thread runs, for callers
 * without one. */
int syncer_flush(int dirfd, const int *fds, size_t n);
/* Starts a flush of the N (at most SYNCER_FILES_MAX) files FDS, which
 * are duplicated (the caller may close its own), or with N == 0 of the
 * whole filesystem.  The caller must not start another before
 * collecting.  0 or -errno (nothing started). */
#define SYNCER_FILES_MAX 16
int syncer_start(struct syncer *s, const int *fds, size_t n);
/*
 * Closes FD on the thread.  For a descriptor held on a file replaced by a
 * rename: the last close frees the old file's pages and blocks, and a
 * gigabyte of them takes a good part of a second.  Closed at once when
 * the thread has a backlog.
 */
#define SYNCER_CLOSE_MAX 64
void syncer_close(struct syncer *s, int fd);
/*
 * fdatasync(FD) on the thread, then close(FD); no result.  FD must be a
 * descriptor opened for this (not a dup): Linux reports a writeback
 * error once per open file, so an error met here still reaches the
 * flush of the writer's own descriptor before the rename.  Closed at
 * once, without the flush, when the thread has a backlog.
 */
void syncer_advance(struct syncer *s, int fd);
/* True when a flush has ended since the last call (drains the fd); its
 * result, 0 or -errno (EIO, ENOSPC: the data may not be on disk), goes
 * to *RESULT. */
bool syncer_collect(struct syncer *s, int *result);

#endif
