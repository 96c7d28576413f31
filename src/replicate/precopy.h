/* Copies made ahead of a new version (precopy.c). */
#ifndef KRAKEN_PRECOPY_H
#define KRAKEN_PRECOPY_H

#include "replicate_int.h"

/* A peer is hashing a new version of C's file: copy the version held
 * here, if it is C's base, so the transfer to come finds it made.  The
 * caller checks that no transfer of the path is under way. */
void precopy_on_changing(struct replicate *r, struct peer *p,
			 const struct wire_changing *c);
/* The copy of BASE at VOLUME/PATH for a transfer whose directory is
 * DIRFD: 1 with its temp file's name in TMP and descriptor in *FD, now
 * the caller's; -EINPROGRESS while it is still being made; 0 when there
 * is none to take (a failed or unusable one is dropped). */
int precopy_take(struct replicate *r, const char *volume, const char *path,
		 const uint8_t base[CONTENT_HASH_LEN], int dirfd,
		 char tmp[48], int *fd);
/* Entry E arrived: a copy made ahead for its path is not needed when E
 * brings no new content (a touch, a chmod, a delete). */
void precopy_on_entry(struct replicate *r, const struct wire_entry *e);
/* VOLUME/PATH got a version that did not need a copy: drop any. */
void precopy_drop(struct replicate *r, const char *volume, const char *path);
/* Drops copies nobody took for a while. */
void precopy_tick(struct replicate *r, int64_t now);
bool precopy_pending(const struct replicate *r);
/* Stops every copy, removes their temp files. */
void precopy_free_all(struct replicate *r);

#endif
