/*
 * File reads that a short count cannot fool.
 *
 * pread(2) may return fewer bytes than asked without being at the end of
 * the file (signals, some filesystems); callers that read a file in
 * fixed steps need "fewer than asked" to mean exactly "end of file".
 */
#ifndef KRAKEN_IO_H
#define KRAKEN_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Reads up to CAP bytes at OFF into BUF, retrying short reads and EINTR,
 * so that fewer than CAP bytes means EOF.  The count, or -errno. */
ssize_t io_pread_full(int fd, void *buf, size_t cap, uint64_t off);

#endif
