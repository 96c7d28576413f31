/*
 * Exclusive locks that say who holds them: one agent per journal and per
 * volume root.
 *
 * A lock is a POSIX record lock (fcntl F_SETLK) on the whole of a small
 * file, which then holds the owner's pid in decimal for people to read.
 * The kernel drops the lock when its process dies however it dies, so a
 * killed agent never leaves a stale lock; the pid written in the file is
 * only informational, and the holder reported on a refusal comes from the
 * kernel (F_GETLK), not from the file.
 *
 * Record locks belong to the process: the same process may take a lock
 * it holds again, and closing any descriptor of the file releases it, so
 * nothing else in the process may open a lock file.
 */
#ifndef KRAKEN_PIDLOCK_H
#define KRAKEN_PIDLOCK_H

#include <sys/types.h>

/*
 * Creates PATH when missing and locks it.  Returns 0 with *FD holding the
 * lock, -EBUSY with *HOLDER set to the process that holds it, or another
 * negative errno (the file cannot be created or locked).
 */
int pidlock_acquire(const char *path, int *fd, pid_t *holder);
/* Releases a lock taken by pidlock_acquire; a negative FD is ignored. */
void pidlock_release(int fd);

#endif
