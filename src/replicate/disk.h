/*
 * The replicator's hands on the volumes: paths resolved beneath their
 * volume, and the checks made before anything on disk is replaced.
 *
 * Every path is resolved under its volume with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) (path.h): no write ever leaves the volume,
 * whatever a container made of the directories.  A file is replaced only
 * while it is what the journal recorded: anything else is a local change
 * not recorded yet, which must never be overwritten (the watcher records
 * it, and the job is retried or retargeted).
 */
#ifndef KRAKEN_DISK_H
#define KRAKEN_DISK_H

#include "journal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct replicate;

/* The parent directory of VOLUME/PATH, resolved beneath the volume, as an
 * O_PATH fd, and the last name.  0, KR_EHOSTILE or -errno. */
int disk_open_parent(struct replicate *r, const char *volume,
		     const char *path, int *dirfd, const char **name);
/* FD (the path's file, still linked) holds what the journal says it
 * does: the same test the watcher trusts to skip unchanged files. */
bool disk_file_current(const struct journal_state *cur, int fd);
/* Whether NAME in DIRFD still holds what the journal's current state of
 * JOB's path says (or nothing, when the journal has nothing there).
 * *SIZE (when SIZE is not NULL) gets the size of the regular file there,
 * else 0. */
bool disk_as_journal(struct replicate *r, int dirfd, const char *name,
		     const struct journal_job *job, uint64_t *size);
/* JOB's path holds something the journal does not know yet: told to
 * whoever watches the volume, so that it is recorded. */
void disk_diverged(struct replicate *r, const struct journal_job *job);
/* Mode, owner and mtime of JOB on FD.  0 or -errno. */
int disk_set_meta(int fd, const struct journal_job *job);
/* Whether the version the disk holds at JOB's path still waits for its
 * conflict copy: then nothing replaces it yet (apply.c, "Conflicts"). */
bool disk_copy_pending(struct replicate *r, const struct journal_job *job);
/* DATA hashes to HASH (SHA-256). */
bool disk_chunk_verify(const void *data, size_t len, const uint8_t *hash);

#endif
