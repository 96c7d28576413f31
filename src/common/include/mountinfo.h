/*
 * Whether a directory is in use as the source of a mount anywhere on
 * this host, read from /proc/PID/mountinfo of every mount namespace.
 *
 * Docker bind-mounts a volume's directory into each container that uses
 * it, so "some namespace has a mount whose source is DIR or below it" is
 * the ground truth for "a container on this node uses the volume",
 * independent of whether Docker's Unmount calls ever arrived.
 *
 * Only meaningful from the host's initial PID namespace, where /proc
 * lists every process: elsewhere (a managed plugin without pidhost) the
 * answer would be "unused" for volumes in use, so the caller is told
 * -ENOTSUP instead.
 */
#ifndef KRAKEN_MOUNTINFO_H
#define KRAKEN_MOUNTINFO_H

#include <stdbool.h>

/* 0 and *IN_USE, -ENOTSUP outside the initial PID namespace, or -errno
 * (DIR missing, /proc unreadable). */
int mountinfo_dir_in_use(const char *dir, bool *in_use);

#endif
