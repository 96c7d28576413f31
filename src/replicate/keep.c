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
 */
#include "replicate_int.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <sys/stat.h>

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
	r->jobs_due = true;
	return 0;
}

bool keep_restore_failed(struct replicate *r, const struct journal_job *job,
			 int err)
{
	if (!journal_job_is_restore(job) || err != KR_ENOSOURCE)
		return false;
	log_warn("replicate", "restoring %s/%s: no connected peer keeps the "
		 "content of version %s:%llu any more; given up", job->volume,
		 job->path, job->ref.origin, (unsigned long long)job->ref.seq);
	journal_job_cancel(r->journal, job);
	return true;
}
