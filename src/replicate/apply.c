/*
 * Applying remote versions to disk: the journal's jobs (journal_jobs),
 * each one version to make true at one path.  Metadata-only jobs
 * (directories, symlinks, deletes, volumes, a mode change over content
 * the disk already holds) are done here at once; a file whose content
 * the disk lacks becomes a transfer (transfer.h), which fetches it,
 * flushes it and renames it into place (commit.c).  Nothing goes on
 * disk before the entries that asked for it are committed, and nothing
 * replaces what the journal does not know (disk.h).
 *
 * Subtrees.  Conflicts are decided per path (journal.h), but a directory
 * deleted on one node while files are made inside it on another must not
 * lose those files nor stall.  The rule: nothing written is lost; the
 * directory comes back holding the new content, and whatever else the
 * delete removed stays removed.  Where the files were made, the
 * directory's delete finds it not empty with live paths inside: the
 * node records the directory again (its own change, which names the
 * delete as a base) instead of retrying.  Where it was deleted, a new
 * file's job finds its parent missing: each missing ancestor whose last
 * version is a delete is made again as this node's change, and the job
 * goes on.  Both sides end with the directory and only the new files.
 * A rename is a delete of every old path and a put of every new one, so
 * a directory renamed on one node while files in it change on another
 * ends as the renamed tree holding what it held, and the old name
 * holding the edits and new files (an edit beats the delete of its path).
 * A file and a directory made at one path: the directory wins (what it
 * holds has paths of its own), the file becomes its conflict copy, and
 * where the file is on disk it goes only once that copy exists.
 *
 * Conflicts.  Where the disk holds a losing version, its conflict copy
 * is made before the winner replaces it: the loser's bytes may exist on
 * this disk only (written here during a partition), and peers fetch the
 * copy's content from this node.  Until then the winner's job waits.
 * Copies wait until entries have stopped arriving for
 * APPLY_COPY_SETTLE_NS (at most APPLY_COPY_HOLD_MAX_NS): the versions a
 * side wrote during a partition reach this node over a while, not at
 * once (after a partition TCP sends again from a window of one
 * segment), and a copy made of the first of them is merged at once, so
 * the rest became a conflict of their own and a second copy of an
 * intermediate version.  Held, the copy is of that side's last version,
 * as the journal intends (replica.c, "Stale copies").
 *
 * Failures.  A job that fails is retried each second; after
 * JOURNAL_JOB_STUCK failures in a row it is stuck: said once in the log,
 * listed with its reason (kraken-journal status, /v1/status, dashboard,
 * krakenfs_jobs_stuck), retried from 2 s doubling up to 5 min (at once
 * when a peer connects, or on POST /v1/admin/resync), and no Docker
 * mount waits for it.  A newer version of the path starts afresh.
 */
#include "apply.h"
#include "disk.h"
#include "outcome.h"
#include "replicate_int.h"
#include "keep.h"
#include "precopy.h"
#include "transfer.h"

#include "err.h"
#include "log.h"
#include "loop.h"
#include "path.h"
#include "tempname.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define APPLY_JOBS_BATCH 256
#define APPLY_JOBS_GAP_NS (10 * 1000000)
#define APPLY_RETRY_NS (1LL * 1000000000)
#define APPLY_COPY_SETTLE_NS (300LL * 1000000)
#define APPLY_COPY_HOLD_MAX_NS (5LL * 1000000000)
/* The longest a failing job waits (journal_job_fail's backoff). */
#define APPLY_RETRY_MAX_NS (300LL * 1000000000)
/* Transfers waiting on peers are stepped again this soon: requests that
 * found every window full go out once replies come in. */
#define APPLY_TRANSFER_STEP_NS (50 * 1000000)
/* Copies made ahead expire even with nothing else to do. */
#define APPLY_PRECOPY_STEP_NS (1000LL * 1000000)
#define REMOVED_DIR ".krakenfs-removed"

/* ---- metadata-only jobs ----------------------------------------------------- */

static int done_at(struct replicate *r, const struct journal_job *job,
		   int dirfd, const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	return outcome_done(r, job, &st);
}

static int apply_volume(struct replicate *r, const struct journal_job *job)
{
	char full[PATH_MAX], aside[PATH_MAX];
	struct stat st;

	if (path_join(full, sizeof(full), r->root, job->volume))
		return -ENAMETOOLONG;
	if (job->op == JOURNAL_VOLUME_REMOVE) {
		/* Moved aside, never destroyed: a removal is undoable. */
		snprintf(aside, sizeof(aside), "%s/%s", r->root, REMOVED_DIR);
		if (mkdir(aside, 0700) != 0 && errno != EEXIST)
			return -errno;
		snprintf(aside, sizeof(aside), "%s/%s/%s.%lld", r->root,
			 REMOVED_DIR, job->volume, (long long)time(NULL));
		if (rename(full, aside) != 0 && errno != ENOENT)
			return -errno;
		log_info("replicate", "volume %s removed by a peer; its data "
			 "is kept in %s", job->volume, aside);
		return outcome_done(r, job, NULL);
	}
	if (mkdir(full, job->mode & 07777) != 0 && errno != EEXIST)
		return -errno;
	if (lstat(full, &st) != 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	return outcome_done(r, job, &st);
}

/*
 * A file or symlink is where JOB's directory must be: a directory beats
 * a file at the same path (see "Subtrees" above), and the file is kept
 * as a conflict copy.  It goes once no copy of the path is still to be
 * made (-EAGAIN until then), and only when it is what the journal knows
 * (-EBUSY otherwise: the watcher records it first).
 */
static int apply_clear_way(struct replicate *r, const struct journal_job *job,
			   int dirfd, const char *name)
{
	uint64_t copies = 0;
	int err;

	if (!disk_as_journal(r, dirfd, name, job, NULL)) {
		disk_diverged(r, job);
		return -EBUSY;
	}
	err = journal_copies_pending(r->journal, job->volume, job->path,
				     &copies);
	if (err)
		return err;
	if (copies)
		return -EAGAIN;
	keep_replaced(r, dirfd, name, job->volume, job->path);
	return unlinkat(dirfd, name, 0) == 0 ? 0 : -errno;
}

static int open_dir_at(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
			O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

static int apply_mkdir(struct replicate *r, const struct journal_job *job,
		       int dirfd, const char *name)
{
	int fd, err;

	if (mkdirat(dirfd, name, job->mode & 07777) != 0 && errno != EEXIST)
		return -errno;
	fd = open_dir_at(dirfd, name);
	if (fd == -ENOTDIR || fd == -ELOOP) {
		err = apply_clear_way(r, job, dirfd, name);
		if (err)
			return err;
		if (mkdirat(dirfd, name, job->mode & 07777) != 0)
			return -errno;
		fd = open_dir_at(dirfd, name);
	}
	if (fd < 0)
		return fd;
	err = disk_set_meta(fd, job);
	close(fd);
	return err ? err : done_at(r, job, dirfd, name);
}

static int apply_symlink(struct replicate *r, const struct journal_job *job,
			 int dirfd, const char *name)
{
	char tmp[TEMPNAME_MAX];

	if (!job->target)
		return -EINVAL;
	if (!disk_as_journal(r, dirfd, name, job, NULL)) {
		disk_diverged(r, job);
		return -EBUSY;
	}
	tempname_make(tmp, sizeof(tmp));
	if (symlinkat(job->target, dirfd, tmp) != 0)
		return -errno;
	if (fchownat(dirfd, tmp, job->uid, job->gid, AT_SYMLINK_NOFOLLOW) != 0 &&
	    errno != EPERM) {
		unlinkat(dirfd, tmp, 0);
		return -errno;
	}
	keep_replaced(r, dirfd, name, job->volume, job->path);
	if (renameat(dirfd, tmp, dirfd, name) != 0) {
		int err = -errno;

		unlinkat(dirfd, tmp, 0);
		return err;
	}
	return done_at(r, job, dirfd, name);
}

static int apply_delete(struct replicate *r, const struct journal_job *job,
			int dirfd, const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return outcome_done(r, job, NULL);
	/* Only what the journal knows is deleted: a file written here and
	 * not recorded yet stays, and the watcher records it. */
	if (!disk_as_journal(r, dirfd, name, job, NULL)) {
		disk_diverged(r, job);
		return outcome_done(r, job, NULL);
	}
	if (S_ISREG(st.st_mode))
		keep_replaced(r, dirfd, name, job->volume, job->path);
	if (unlinkat(dirfd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) == 0)
		return outcome_done(r, job, NULL);
	if (errno != ENOTEMPTY)
		return -errno;
	/* Files recorded inside since the delete: they stay, so does the
	 * directory (see "Subtrees" above).  Otherwise its children's own
	 * deletes, queued first, have not all been applied yet. */
	if (!journal_subtree_live(r->journal, job->volume, job->path))
		return -EAGAIN;
	log_info("replicate", "keeping %s/%s: deleted by a peer while files "
		 "were added inside; those stay", job->volume, job->path);
	return journal_record_mkdir(r->journal, job->volume, job->path, &st);
}

/*
 * JOB's parent directory is missing: a peer deleted it while JOB's
 * version was made inside (see "Subtrees" above).  Each missing
 * ancestor whose last version here is a delete (or that was never seen)
 * is made again, as this node's change.  1 when something was made, 0
 * when an ancestor is missing for another reason (its own version is
 * still to be applied), or a negative code.
 */
static int apply_revive_parents(struct replicate *r,
				const struct journal_job *job)
{
	char dir[PATH_REL_MAX + 1];
	int made = 0;

	for (const char *p = strchr(job->path, '/'); p; p = strchr(p + 1, '/')) {
		struct journal_state cur = { 0 };
		struct stat st;
		const char *name;
		int dirfd, err, known;

		snprintf(dir, sizeof(dir), "%.*s", (int)(p - job->path),
			 job->path);
		err = disk_open_parent(r, job->volume, dir, &dirfd, &name);
		if (err)
			return err;
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			close(dirfd);
			if (!S_ISDIR(st.st_mode))
				return 0;
			continue;
		}
		known = journal_lookup(r->journal, job->volume, dir, &cur);
		journal_state_release(&cur);
		if (known == 0 && cur.mode != 0) {
			close(dirfd);
			return 0;
		}
		err = mkdirat(dirfd, name, 0755) == 0 &&
		      fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ?
		      journal_record_mkdir(r->journal, job->volume, dir, &st) :
		      -errno;
		close(dirfd);
		if (err)
			return err;
		log_info("replicate", "made %s/%s again: deleted by a peer "
			 "while %s was made inside", job->volume, dir,
			 job->path);
		made = 1;
	}
	return made;
}

/* A version whose content the disk already holds: only metadata moves. */
static int apply_meta(struct replicate *r, const struct journal_job *job,
		      int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
			O_CLOEXEC);
	int err;

	if (fd < 0)
		return -errno;
	err = disk_set_meta(fd, job);
	close(fd);
	return err ? err : done_at(r, job, dirfd, name);
}

static bool disk_has_content(struct replicate *r, const struct journal_job *job)
{
	struct journal_state cur;
	bool same = journal_lookup(r->journal, job->volume, job->path,
				   &cur) == 0 && cur.has_hash && job->has_hash &&
		    S_ISREG(cur.mode) &&
		    memcmp(cur.hash, job->hash, CONTENT_HASH_LEN) == 0;

	journal_state_release(&cur);
	return same && !job->copy_of;
}

/* ---- the tick --------------------------------------------------------------- */

static int apply_job(struct replicate *r, struct journal_job *job)
{
	const char *name;
	int dirfd = -1, err;

	if (job->op == JOURNAL_VOLUME_CREATE || job->op == JOURNAL_VOLUME_REMOVE)
		return apply_volume(r, job);
	if (disk_copy_pending(r, job))
		return -EAGAIN;
	/* A repair makes the very version the path holds, from the
	 * chunks of it that still check and peers' copies of the rest. */
	if (S_ISREG(job->mode) && (job->repair || !disk_has_content(r, job)))
		return transfer_new(r, job);
	if (r->precopies)
		precopy_drop(r, job->volume, job->path);
	err = disk_open_parent(r, job->volume, job->path, &dirfd, &name);
	if (err)
		return err;
	if (job->op == JOURNAL_DELETE)
		err = apply_delete(r, job, dirfd, name);
	else if (S_ISDIR(job->mode))
		err = apply_mkdir(r, job, dirfd, name);
	else if (S_ISLNK(job->mode))
		err = apply_symlink(r, job, dirfd, name);
	else
		err = apply_meta(r, job, dirfd, name);
	close(dirfd);
	return err;
}

/* Whether conflict copies wait, as entries are still arriving (see
 * "Conflicts"); sets when to look again. */
static bool copies_held(struct replicate *r)
{
	int64_t now = loop_now_ns(), last = outcome_last_arrival_ns(r);

	if (!last || now - last >= APPLY_COPY_SETTLE_NS) {
		r->apply.copies_held_since = 0;
		return false;
	}
	if (!r->apply.copies_held_since)
		r->apply.copies_held_since = now;
	if (now - r->apply.copies_held_since >= APPLY_COPY_HOLD_MAX_NS)
		return false;
	r->apply.copies_wake_ns = last + APPLY_COPY_SETTLE_NS;
	return true;
}

static void apply_one(struct replicate *r, struct journal_job *job)
{
	int err = 0;

	if (job->copy_of && copies_held(r))
		return;   /* not a failure: looked at again once entries stop */
	if (!S_ISREG(job->mode) || transfer_room(r, job->size))
		err = apply_job(r, job);
	if (err == -ENOENT && job->op != JOURNAL_DELETE &&
	    apply_revive_parents(r, job) > 0)
		err = apply_job(r, job);
	/* Waiting for a copy that is held is no failure either. */
	if (err && !(err == -EAGAIN && copies_held(r)))
		outcome_failed(r, job, err);
}

/* The queue position of JOB, to read on from it. */
static int job_cursor(const struct journal_job *job, struct journal_job *out)
{
	journal_job_release(out);
	memset(out, 0, sizeof(*out));
	out->attempts = job->attempts;
	out->order = job->order;
	memcpy(out->volume, job->volume, sizeof(out->volume));
	out->path = strdup(job->path);
	return out->path ? 0 : -ENOMEM;
}

/* With no job due: when the next failing one is (monotonic), 0 if none. */
static int64_t apply_next_retry(struct replicate *r)
{
	int64_t due, wait;

	if (journal_jobs_next_retry(r->journal, &due) != 0 || !due)
		return 0;
	/* Bounded both ways, whatever the wall clock did meanwhile. */
	wait = due - loop_wall_ns();
	if (wait < APPLY_JOBS_GAP_NS)
		wait = APPLY_JOBS_GAP_NS;
	if (wait > APPLY_RETRY_MAX_NS)
		wait = APPLY_RETRY_MAX_NS;
	return loop_now_ns() + wait;
}

/*
 * Up to APPLY_JOBS_BATCH jobs not yet under way.  A job stays in the
 * queue while its transfer runs, counted as an attempt (so it sorts after
 * untried jobs): the queue is read in pages past those, up to a page of
 * nothing but transfers under way, and new work starts while earlier
 * transfers are still being flushed.  With every transfer slot taken
 * nothing is read: a slot freed asks again.
 */
static void apply_wake_by(struct replicate *r, int64_t t);

static void apply_jobs(struct replicate *r)
{
	struct journal_job *jobs, last = { 0 };
	int n, seen = 0, fresh = 0, page_fresh, pages = 0;
	bool more;

	if (!transfer_room(r, 0))
		return;
	/* Nothing goes on disk before the entries that asked for it are
	 * committed: a kill -9 would leave a version on disk that the
	 * journal never heard of, and the scan would record it as ours
	 * (adopt.c, "Applied before a crash", covers only what it knows). */
	if (journal_pending(r->journal) && journal_flush(r->journal) != 0)
		return;
	jobs = calloc(APPLY_JOBS_BATCH, sizeof(*jobs));
	if (!jobs)
		return;
	do {
		page_fresh = 0;
		n = journal_jobs(r->journal, pages ? &last : NULL, jobs,
				 APPLY_JOBS_BATCH);
		more = n == APPLY_JOBS_BATCH &&
		       job_cursor(&jobs[n - 1], &last) == 0;
		for (int i = 0; i < n; i++) {
			if (!transfer_busy(r, jobs[i].volume, jobs[i].path)) {
				apply_one(r, &jobs[i]);
				page_fresh++;
			}
			journal_job_release(&jobs[i]);
		}
		fresh += page_fresh;
		seen += n > 0 ? n : 0;
	} while (more && page_fresh > 0 && fresh < APPLY_JOBS_BATCH &&
		 transfer_room(r, 0) &&
		 ++pages <= (int)(r->xfer.max / APPLY_JOBS_BATCH));
	journal_job_release(&last);
	free(jobs);
	/* A full batch may have more behind it: on with it soon, while
	 * there are slots (a slot freed asks again anyway).  Deferred jobs
	 * are looked at again after a pause, or sooner when new entries
	 * arrive or a transfer slot frees up. */
	if (fresh >= APPLY_JOBS_BATCH && transfer_room(r, 0))
		r->apply.jobs_due = true;
	r->apply.next_jobs_ns = seen > 0 ? loop_now_ns() + APPLY_RETRY_NS :
				apply_next_retry(r);
	apply_wake_by(r, r->apply.copies_wake_ns);
	r->apply.copies_wake_ns = 0;
}

/* The next tick is at T at the latest (0: no bound). */
static void apply_wake_by(struct replicate *r, int64_t t)
{
	if (t && (!r->apply.next_jobs_ns || r->apply.next_jobs_ns > t))
		r->apply.next_jobs_ns = t;
}

void apply_tick(struct replicate *r)
{
	struct apply_state *a = &r->apply;
	int64_t now = loop_now_ns();

	if (a->hold)
		return;
	if (r->xfer.freed) {
		r->xfer.freed = false;
		a->jobs_due = true;       /* a transfer slot is free */
	}
	if ((a->jobs_due && now >= a->last_jobs_ns + APPLY_JOBS_GAP_NS) ||
	    (a->next_jobs_ns && now >= a->next_jobs_ns)) {
		a->jobs_due = false;
		a->last_jobs_ns = now;
		apply_jobs(r);
	}
	transfer_tick(r);
	precopy_tick(r, now);
	if (r->xfer.n)
		apply_wake_by(r, now + APPLY_TRANSFER_STEP_NS);
	if (precopy_pending(r))
		apply_wake_by(r, now + APPLY_PRECOPY_STEP_NS);
}

void apply_kick(struct replicate *r)
{
	r->apply.jobs_due = true;
}

int64_t apply_deadline(const struct replicate *r)
{
	const struct apply_state *a = &r->apply;
	int64_t d = INT64_MAX;

	if (a->hold)
		return d;
	if (a->jobs_due || r->xfer.freed)
		d = a->last_jobs_ns + APPLY_JOBS_GAP_NS;
	if (a->next_jobs_ns && a->next_jobs_ns < d)
		d = a->next_jobs_ns;
	return d;
}

void apply_hold(struct replicate *r, bool hold)
{
	r->apply.hold = hold;
}

bool apply_held(const struct replicate *r)
{
	return r->apply.hold;
}
