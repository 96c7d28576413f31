/* The version store's side of applying (keep.c): what a peer's change
 * replaces is kept, fetched versions go into the store. */
#ifndef KRAKEN_KEEP_H
#define KRAKEN_KEEP_H

#include "replicate_int.h"

/* A fetch job's file TMP (in DIRFD), complete and verified,
 * goes into the version store instead of the volume; the job is done. */
int keep_fetched(struct replicate *r, const struct journal_job *job,
		 int dirfd, const char *tmp);

/* Keeps DIRFD/NAME, the current version of VOLUME/PATH, before
 * a peer's change replaces or deletes it.  Never fails the job. */
void keep_replaced(struct replicate *r, int dirfd, const char *name,
		   const char *volume, const char *path);
/* A restore job (journal_job_restore) failed with ERR: true when it is
 * given up for good (no peer has the content), said in the log. */
bool keep_restore_failed(struct replicate *r, const struct journal_job *job,
			 int err);

#endif
