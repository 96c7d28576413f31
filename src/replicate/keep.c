/*
 * Keeping what a peer's change replaces: before the applier renames a
 * new version over a file, or deletes it, the file as the journal knows
 * it goes to the version store (src/journal/versions.c), so that a bad
 * write made elsewhere never takes the last good copy here with it.
 * Keeping is best effort: a failure is logged and the job goes on.
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
