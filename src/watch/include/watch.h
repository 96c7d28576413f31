/*
 * The watcher: turns what happens under volume.root_path into journal
 * records.
 *
 * Layout on disk: ROOT/VOLUME/PATH.  A directory directly under ROOT is a
 * volume; anything else directly under ROOT is ignored with a log line.
 *
 * Flow: inotify events (recursive, a watch per directory) only mark a
 * path as pending with a due time; watch_process() examines due paths:
 * lstat, compare with the journal's current state, hash when content may
 * differ, record only what really changed.  A file that was closed after
 * writing is due at once; one that was modified without a close (mmap, a
 * writer still at work) is due after the settle time with no further
 * event.  An overflowed queue or a start-up triggers a scan that compares
 * the whole tree with the journal the same way (stat fields first, hash
 * only on doubt), so nothing changed while the agent was down is missed.
 *
 * Owned by the event-loop thread, like the journal it writes to.
 */
#ifndef KRAKEN_WATCH_H
#define KRAKEN_WATCH_H

#include "content.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct journal;
struct hist;
struct watch;

struct watch_options {
	const char *root;                   /* volume.root_path */
	char *const *volumes;               /* restrict to these; NULL: all */
	size_t n_volumes;
	char *const *exclude;               /* fnmatch patterns */
	size_t n_exclude;
	unsigned settle_ms;                 /* 0: default */
	/* Longest a watch_process() call examines paths, so that what it
	 * recorded is committed and sent while a burst goes on; 0: 25. */
	unsigned turn_ms;
	/* Called just before a changed file of WATCH_CHANGING_MIN bytes or
	 * more is hashed, with the content the journal holds for it, so
	 * that peers can prepare for the new version; NULL: not called. */
	void (*changing)(void *arg, const char *volume, const char *path,
			 const uint8_t base[CONTENT_HASH_LEN], uint64_t size);
	void *changing_arg;
	/* Called with the content and bytes (C->size of them) of every
	 * non-empty file of WATCH_SMALL_MAX bytes or less it hashed, as
	 * read for the hash, so that they can go to peers without another
	 * read; NULL: not called. */
	void (*small)(void *arg, const struct content *c, const void *data);
	void *small_arg;
};

#define WATCH_CHANGING_MIN (64u << 20)
#define WATCH_SMALL_MAX CONTENT_CHUNK_MIN    /* one chunk */

struct watch_stats {
	uint64_t events;                    /* inotify events read */
	uint64_t overflows;
	uint64_t scans;
	uint64_t recorded;                  /* journal changes made */
	uint64_t hashed_bytes;
	uint64_t skipped;                   /* unsupported or hostile names */
};

/*
 * Creates a watcher for OPT->root, recording into J (borrowed; it must
 * outlive the watcher).  Does not scan: call watch_scan() once, which
 * also installs the inotify watches.  0 or a negative code.
 */
int watch_new(struct journal *j, const struct watch_options *opt,
	      struct watch **out);
void watch_free(struct watch *w);

/* The inotify descriptor to poll for reading. */
int watch_fd(const struct watch *w);

/* Reads every queued inotify event and marks paths pending. */
int watch_dispatch(struct watch *w);

/* Absolute CLOCK_MONOTONIC time (ns) of the next due path, or -1. */
int64_t watch_next_deadline(const struct watch *w);

/* Examines due paths for up to turn_ms (all pending paths when FLUSH,
 * e.g. at shutdown) and records what changed; paths left over keep the
 * deadline at now.  Runs a scan first if one is owed. */
int watch_process(struct watch *w, bool flush);

/* Compares the whole tree with the journal and records the differences;
 * meant for start-up, before replication runs, as it also removes temp
 * files that a crash left behind. */
int watch_scan(struct watch *w);
/* What an adoption scan found, per journal_adoption. */
struct watch_adoption {
	uint64_t current;         /* known versions, taken as they are */
	uint64_t stale;           /* older versions, to be replaced */
	uint64_t fresh;           /* known nowhere: recorded as new */
	uint64_t kept_aside;      /* known nowhere where another version
				   * holds the path: moved to a copy */
};
/* watch_scan for a journal that has just learned the cluster's history
 * but not this disk (a lost or new journal): each path the journal does
 * not hold is first judged by journal_adopt; only what is known nowhere
 * is recorded.  Replication must not write meanwhile (replicate_hold). */
int watch_adopt(struct watch *w, struct watch_adoption *out);
/* Marks VOLUME/PATH to be examined at once (the replicator found the
 * disk there ahead of the journal). */
void watch_touch(struct watch *w, const char *volume, const char *path);

/* Asks for a scan at the next watch_process() (e.g. after a failed
 * commit lost a batch). */
void watch_request_scan(struct watch *w);

/* Called after the journal committed: accounts event-to-commit latency
 * (microseconds) of every change recorded since the last call into H. */
void watch_committed(struct watch *w, struct hist *h);

void watch_stats(const struct watch *w, struct watch_stats *out);

#endif
