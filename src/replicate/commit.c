/*
 * The commit of ready transfers (transfer.h: READY -> SYNCING -> DONE).
 *
 * One flush for a whole batch, before any rename makes a file visible
 * under its real name.  A few large files are flushed one by one: their
 * own data is most of the work, and syncfs would add every other dirty
 * page of the filesystem.  Otherwise one syncfs(2): a commit per small
 * file would cost more than the rest.  The flush runs on the syncer's
 * thread (syncer.h); the batch is what was ready when it started, and
 * transfers that become ready meanwhile wait for the next one.  A failed
 * flush keeps the batch hidden: its transfers fail and are fetched
 * again.  Right after a flush, while more transfers are on their way,
 * ready files wait up to COMMIT_GATHER_NS for a larger batch.
 *
 * After the flush each file is renamed into place, only if the path
 * still holds what the journal says (disk_as_journal), and only once the
 * losing version on disk, if any, has its conflict copy (apply.c,
 * "Conflicts"); then the journal marks the job done.
 */
#include "transfer.h"
#include "disk.h"
#include "outcome.h"
#include "replicate_int.h"
#include "keep.h"
#include "syncer.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

/* A large temp file is flushed in steps of this much while it fills. */
#define COMMIT_EARLY_SYNC_BYTES (64u << 20)
/* Batches of files this large on average are flushed file by file. */
#define COMMIT_FSYNC_MIN_SIZE (8u << 20)
/* Right after a flush, ready files wait this long for others to join
 * them, up to this many. */
#define COMMIT_GATHER_NS (10 * 1000000)
#define COMMIT_GATHER_FILES 512

static void commit_on_synced(void *arg, uint32_t events);

static int commit_syncer(struct replicate *r)
{
	struct transfer_set *x = &r->xfer;
	int err;

	if (x->commit.syncer)
		return 0;
	err = syncer_new(r->root, &x->commit.syncer);
	if (!err)
		err = loop_add_fd(r->loop, syncer_fd(x->commit.syncer), EPOLLIN,
				  commit_on_synced, r);
	if (err) {
		syncer_free(x->commit.syncer);
		x->commit.syncer = NULL;
	}
	return err;
}

/*
 * Every COMMIT_EARLY_SYNC_BYTES received into T's temp file, a flush of
 * what it holds so far starts on the syncer thread, through a descriptor
 * of its own (see syncer_advance).  On a virtual disk the flush before
 * the rename otherwise pays the host's cache flush for the whole file at
 * once, 0.4 s a gigabyte here.  Only for bytes from peers: they come at
 * network pace and leave the disk time to spare, where a local copy runs
 * at the disk's pace and was slowed down by flushes (1 GiB: 0.5 s to
 * 1.5 s).
 */
void commit_sync_ahead(struct transfer *t, uint32_t len)
{
	int fd;

	t->undurable += len;
	if (t->undurable < COMMIT_EARLY_SYNC_BYTES)
		return;
	t->undurable = 0;
	if (commit_syncer(t->r) != 0)
		return;
	fd = openat(t->dirfd, t->tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0)
		syncer_advance(t->r->xfer.commit.syncer, fd);
}

/* Where a transfer's time went, for whoever wonders why a file was slow. */
static void transfer_log(const struct transfer *t)
{
	int64_t now = loop_now_ns();

	log_debug("replicate", "applied %s/%s (%llu bytes): list %lld ms, "
		  "data %lld ms, waited for a flush %lld ms, flush %lld ms",
		  t->job.volume, t->job.path, (unsigned long long)t->job.size,
		  (long long)(t->fetch_ns - t->started_ns) / 1000000,
		  (long long)(t->ready_ns - t->fetch_ns) / 1000000,
		  (long long)(t->flush_ns - t->ready_ns) / 1000000,
		  (long long)(now - t->flush_ns) / 1000000);
}

/*
 * The large file a rename is about to replace, held open: the rename then
 * leaves the freeing of its pages (a good part of a second for a
 * gigabyte) to the last close, which the syncer's thread does.  -1 when
 * there is nothing worth it.
 */
static int hold_replaced(struct replicate *r, const struct transfer *t,
			 uint64_t size)
{
	if (!r->xfer.commit.syncer || size < COMMIT_FSYNC_MIN_SIZE)
		return -1;
	return openat(t->dirfd, t->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
}

/*
 * Stores a list learned from a peer, which the node needs from the moment
 * it holds the version: to serve it and as the base of the next edit.
 * Not earlier: 27,000 rows (a GiB) take 0.1 s of the loop, which is
 * spent best while the syncer flushes the file, not before the fetch.
 */
static void store_list(struct replicate *r, struct transfer *t)
{
	if (!t->list_unstored)
		return;
	t->list_unstored = false;
	journal_content_store(r->journal, &t->list,
			      t->base.n_chunks ? t->base.hash : NULL);
}

/* A version fetched for the store (keep.c) goes there, not in place. */
static void commit_fetched(struct replicate *r, struct transfer *t)
{
	int err = keep_fetched(r, &t->job, t->dirfd, t->tmp);

	close(t->fd);
	t->fd = -1;
	if (err)
		transfer_fail(t, err);
	else
		transfer_set_state(t, TRANSFER_DONE);
}

/* Renames T's temp file over its path, now known to hold what the
 * journal says (REPLACED bytes of a regular file, or 0). */
static void commit_rename(struct replicate *r, struct transfer *t,
			  uint64_t replaced)
{
	struct stat st;
	int old, err;

	if (replaced)
		keep_replaced(r, t->dirfd, t->name, t->job.volume, t->job.path);
	old = hold_replaced(r, t, replaced);
	if (renameat(t->dirfd, t->tmp, t->dirfd, t->name) != 0 ||
	    fstatat(t->dirfd, t->name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		err = -errno;
		if (old >= 0)
			close(old);
		transfer_fail(t, err);
		return;
	}
	if (old >= 0)
		syncer_close(r->xfer.commit.syncer, old);
	close(t->fd);
	t->fd = -1;
	err = outcome_done(r, &t->job, &st);
	if (err) {
		transfer_fail(t, err);
		return;
	}
	transfer_set_state(t, TRANSFER_DONE);
	transfer_log(t);
}

static void commit_one(struct replicate *r, struct transfer *t)
{
	uint64_t replaced;

	store_list(r, t);
	/* The path was retargeted while the file was made (a local change
	 * recorded, a newer version): this version is no longer wanted
	 * there, and must not replace what is. */
	if (!journal_job_wanted(r->journal, &t->job)) {
		transfer_fail(t, -ESTALE);
		return;
	}
	if (t->job.fetch) {
		commit_fetched(r, t);
		return;
	}
	/* A losing version on disk waits for its copy. */
	if (disk_copy_pending(r, &t->job)) {
		transfer_set_state(t, TRANSFER_READY);
		return;
	}
	if (!disk_as_journal(r, t->dirfd, t->name, &t->job, &replaced)) {
		disk_diverged(r, &t->job);
		transfer_fail(t, -EBUSY);
		return;
	}
	commit_rename(r, t, replaced);
}

/* Renames the batch the last flush covered, unless the flush failed:
 * then the batch is retried later, its data never shown. */
static void commit_synced(struct replicate *r, int result)
{
	if (result)
		log_warn("replicate", "cannot flush received files to disk: "
			 "%s; they stay hidden and are fetched again",
			 kr_strerror(result));
	for (struct transfer *t = r->xfer.head; t; t = t->next) {
		if (t->state != TRANSFER_SYNCING)
			continue;
		if (result)
			transfer_fail(t, result);
		else
			commit_one(r, t);
	}
	for (struct transfer **pp = &r->xfer.head; *pp;) {
		struct transfer *t = *pp;

		if (t->state != TRANSFER_DONE) {
			pp = &t->next;
			continue;
		}
		*pp = t->next;
		transfer_drop(r, t);
	}
}

static void commit_on_synced(void *arg, uint32_t events)
{
	struct replicate *r = arg;
	struct transfer_set *x = &r->xfer;
	int result = 0;

	(void)events;
	if (!syncer_collect(x->commit.syncer, &result))
		return;
	x->commit.running = false;
	x->commit.ended_ns = loop_now_ns();
	commit_synced(r, result);
	commit_ready(r);        /* what became ready meanwhile */
}

/* The flush before a batch's renames when no thread can be had. */
static int commit_flush_inline(struct replicate *r, const int *fds, size_t n)
{
	int rootfd = open(r->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err;

	if (rootfd < 0)
		return -errno;
	err = syncer_flush(rootfd, fds, n);
	close(rootfd);
	return err;
}

/*
 * Whether to hold the files ready now for a larger batch: only right
 * after a flush, while more transfers are under way and the batch is
 * small.  A flush costs a journal commit, a walk of the filesystem's
 * dirty inodes and the disk's cache flush whatever it holds: in a burst
 * of small files, flushes back to back were a third of the receiver's
 * CPU.  A lone file is flushed at once.
 */
static bool commit_gather(struct replicate *r)
{
	struct transfer_set *x = &r->xfer;
	int64_t now = loop_now_ns();
	unsigned ready = 0, coming = 0;

	x->commit.at = 0;
	if (now >= x->commit.ended_ns + COMMIT_GATHER_NS)
		return false;
	for (struct transfer *t = x->head; t; t = t->next) {
		if (t->state == TRANSFER_READY)
			ready++;
		else if (t->state < TRANSFER_READY)
			coming++;
	}
	if (!ready || !coming || ready >= COMMIT_GATHER_FILES)
		return false;
	x->commit.at = x->commit.ended_ns + COMMIT_GATHER_NS;
	return true;
}

void commit_ready(struct replicate *r)
{
	struct transfer_set *x = &r->xfer;
	int fds[SYNCER_FILES_MAX];
	uint64_t bytes = 0;
	size_t n = 0;

	if (x->commit.running || commit_gather(r))
		return;
	for (struct transfer *t = x->head; t; t = t->next)
		if (t->state == TRANSFER_READY &&
		    !disk_copy_pending(r, &t->job)) {
			transfer_set_state(t, TRANSFER_SYNCING);
			t->flush_ns = loop_now_ns();
			if (n < SYNCER_FILES_MAX)
				fds[n] = t->fd;
			n++;
			bytes += t->job.size;
		}
	if (!n)
		return;
	if (n > SYNCER_FILES_MAX || bytes < n * COMMIT_FSYNC_MIN_SIZE)
		n = 0;
	if (commit_syncer(r) == 0 &&
	    syncer_start(x->commit.syncer, fds, n) == 0) {
		x->commit.running = true;
		for (struct transfer *t = x->head; t; t = t->next)
			if (t->state == TRANSFER_SYNCING)
				store_list(r, t);
		return;
	}
	commit_synced(r, commit_flush_inline(r, fds, n));
}

int64_t commit_deadline(const struct replicate *r)
{
	return r->xfer.commit.at;
}

void commit_stop(struct replicate *r)
{
	struct transfer_set *x = &r->xfer;

	if (!x->commit.syncer)
		return;
	loop_del_fd(r->loop, syncer_fd(x->commit.syncer));
	syncer_free(x->commit.syncer);       /* waits for a running sync */
	x->commit.syncer = NULL;
	x->commit.running = false;
}
