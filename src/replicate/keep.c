/*
 * Versions on the replication side.
 *
 * Keeping what a peer's change replaces: before the applier renames a
 * new version over a file, or deletes it, the file as the journal knows
 * it goes to the version store (src/journal/versions.c), so that a bad
 * write made elsewhere never takes the last good copy here with it.
 * Keeping is best effort: a failure is logged and the job goes on.
 *
 * Restoring from peers: a restore in place of a version this node does
 * not keep (the write that replaced it was this node's own, or it was
 * pruned here) becomes a job (journal_job_restore) that the applier
 * fetches like any other, from peers' live files or version stores
 * (serve.c), and that ends as this node's new version of the path.
 * When every connected peer that held the version says it no longer
 * has it, the restore is given up and said in the log.
 *
 * Fetching into the store: a restore to a file (kraken-journal restore
 * --to) of a version only peers keep has the agent fetch it like any
 * job (journal_job_fetch, schema 17), but the file made goes into the
 * version store, where the restore reads it, instead of the volume: it
 * is kept like a replaced version (and pruned like one), and nothing in
 * the volume changes.  Given up as a restore is.
 */
#include "replicate_int.h"
#include "keep.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

void keep_replaced(struct replicate *r, int dirfd, const char *name,
		   const char *volume, const char *path)
{
	struct journal_state cur;
	int err;

	if (!r->versions ||
	    journal_lookup(r->journal, volume, path, &cur) != 0)
		return;
	if (S_ISREG(cur.mode) && cur.has_hash && cur.size > 0) {
		err = journal_versions_keep(r->versions, dirfd, name, cur.hash,
					    cur.size, volume, path,
					    loop_wall_ns());
		/* A volume mounted from another file system: said once. */
		if (err == -EXDEV && !r->keep_warned)
			log_warn("replicate", "versions of %s are not kept: it "
				 "is on another file system than the version "
				 "store under volume.root_path", volume);
		r->keep_warned |= err == -EXDEV;
		if (err && err != -EXDEV)
			log_warn("replicate", "not keeping the version of %s/%s "
				 "a peer replaced: %s", volume, path,
				 kr_strerror(err));
	}
	journal_state_release(&cur);
}

int replicate_restore(struct replicate *r, const char *volume,
		      const char *path, const struct journal_ref *ref)
{
	int err = journal_job_restore(r->journal, volume, path, ref);

	if (err) {
		log_warn("replicate", "restoring %s/%s as version %s:%llu: %s",
			 volume, path, ref->origin,
			 (unsigned long long)ref->seq, err == -EBUSY ?
			 "another version of it is being applied; try again "
			 "once it is" : kr_strerror(err));
		return err;
	}
	log_info("replicate", "restoring %s/%s as version %s:%llu, whose "
		 "content is fetched from peers", volume, path, ref->origin,
		 (unsigned long long)ref->seq);
	r->kicked = true;         /* the applier looks for the job */
	return 0;
}

bool keep_restore_failed(struct replicate *r, const struct journal_job *job,
			 int err)
{
	char *path = NULL;

	if ((!journal_job_is_restore(job) && !job->fetch) ||
	    err != KR_ENOSOURCE)
		return false;
	if (job->fetch)
		journal_change_path(r->journal, job->change, &path);
	log_warn("replicate", "%s %s/%s: no connected peer keeps the content "
		 "of version %s:%llu any more; given up", job->fetch ?
		 "fetching" : "restoring", job->volume, path ? path : job->path,
		 job->ref.origin, (unsigned long long)job->ref.seq);
	free(path);
	journal_job_cancel(r->journal, job);
	return true;
}

int replicate_fetch(struct replicate *r, const char *volume, const char *path,
		    const struct journal_ref *ref)
{
	int err = r->versions ? journal_job_fetch(r->journal, volume, path, ref) :
		  -EOPNOTSUPP;

	if (err) {
		log_warn("replicate", "fetching version %s:%llu of %s/%s into "
			 "the version store: %s", ref->origin,
			 (unsigned long long)ref->seq, volume, path,
			 err == -EOPNOTSUPP ? "this node keeps no versions "
			 "(versions.keep is 0)" : kr_strerror(err));
		return err;
	}
	log_info("replicate", "fetching version %s:%llu of %s/%s from peers "
		 "into the version store", ref->origin,
		 (unsigned long long)ref->seq, volume, path);
	r->kicked = true;         /* the applier looks for the job */
	return 0;
}

int keep_fetched(struct replicate *r, const struct journal_job *job,
		 int dirfd, const char *tmp)
{
	char *path = NULL;
	int err = journal_change_path(r->journal, job->change, &path);

	if (!err)
		err = journal_versions_keep(r->versions, dirfd, tmp, job->hash,
					    job->size, job->volume, path,
					    loop_wall_ns());
	if (!err)
		err = journal_job_cancel(r->journal, job);
	unlinkat(dirfd, tmp, 0);
	if (!err)
		log_info("replicate", "fetched version %s:%llu of %s/%s into "
			 "the version store", job->ref.origin,
			 (unsigned long long)job->ref.seq, job->volume, path);
	free(path);
	return err;
}
