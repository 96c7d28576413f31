/*
 * Applying remote versions to disk, and serving chunk lists to peers
 * (chunks are served by serve.c).
 *
 * A job (from the journal) is one version to make true at one path.
 * Metadata-only jobs (directories, symlinks, deletes, volumes, a mode
 * change over content the disk already holds) are done at once.  A file
 * job becomes a transfer:
 *
 *   LIST     the chunk list is loaded from the journal, or asked of a
 *            peer (GET_CHUNKLIST, paged) and checked against the content
 *            hash; a peer's list goes into the journal while the file
 *            is flushed, not on the way to its first chunk;
 *   FETCH    a hidden temp file beside the target (".krakenfs-tmp-*",
 *            which the watcher ignores) is filled: chunks this node holds
 *            in any file are copied, the rest are asked of peers holding
 *            the version (GET_CHUNKS, pipelined, a window per peer, every
 *            chunk verified on arrival).  Missing chunks next to the
 *            ones kept from the version being replaced are asked for as
 *            deltas from its bytes (GET_DELTA, delta.h): an edit then
 *            moves the blocks it changed, not the chunks around them.
 *            Large chunks are verified and written by the writer thread, and a pushed small file's temp
 *            file is made there whole (writer.h).  Writeback starts every
 *            few MiB, and what came from peers is flushed every 64 MiB
 *            on the syncer thread, so the flush before the rename finds
 *            little left;
 *   READY    all chunks in: mode, owner and times are set.  The file is
 *            not hashed again: every chunk was verified against its hash
 *            before it was written, at the offset the verified list
 *            gives, so the file is the content by construction;
 *   commit   for every ready transfer, one flush on the syncer thread
 *            (fsync of each file when they are few and large, else one
 *            syncfs(2)), then each is renamed into place (only if the
 *            path still holds what the journal says, so unsynced local
 *            data is never overwritten) and the journal marks the job
 *            done.  A failed flush keeps the batch hidden.  Right after
 *            a flush, while more transfers are on their way, ready
 *            files wait up to APPLY_GATHER_NS for a larger batch.
 * A crash at any point leaves the job in the journal and at worst a temp
 * file, which the next attempt replaces.
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
 *
 * Every path is resolved under its volume with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS): no write ever leaves the volume, whatever a
 * container made of the directories.
 */
#include "replicate_int.h"
#include "syncer.h"
#include "writer.h"

#include "err.h"
#include "log.h"
#include "loop.h"
#include "path.h"
#include "tempname.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define APPLY_TRANSFERS_MAX 2048
#define APPLY_TRANSFERS_MIN 16
/* Of those, files over APPLY_LARGE_SIZE: their lists and temp files are
 * what a transfer costs, and a few at full speed beat many crawling. */
#define APPLY_LARGE_MAX 512
#define APPLY_LARGE_SIZE (1u << 20)
#define APPLY_JOBS_BATCH 256
#define APPLY_JOBS_GAP_NS (10 * 1000000)
#define APPLY_GET_BATCH 256
#define APPLY_RETRY_NS (1LL * 1000000000)
#define APPLY_COPY_SETTLE_NS (300LL * 1000000)
#define APPLY_COPY_HOLD_MAX_NS (5LL * 1000000000)
/* The longest a failing job waits (journal_job_fail's backoff). */
#define APPLY_RETRY_MAX_NS (300LL * 1000000000)
#define APPLY_WRITEBACK_BYTES (8u << 20)
/* A large temp file is flushed in steps of this much while it fills. */
#define APPLY_EARLY_SYNC_BYTES (64u << 20)
#define APPLY_PUSH_WAIT_NS (20 * 1000000)
/* Batches of files this large on average are flushed file by file. */
#define APPLY_FSYNC_MIN_SIZE (8u << 20)
/* Right after a flush, ready files wait this long for others to join
 * them, up to this many. */
#define APPLY_GATHER_NS (10 * 1000000)
#define APPLY_GATHER_FILES 512
/* Files from this size are asked for as a difference from the version
 * they replace: below it the whole list is a few frames anyway. */
#define APPLY_BASE_MIN_SIZE (1u << 20)
#define REMOVED_DIR ".krakenfs-removed"
/* Chunk bytes handed to the writer thread and not written yet. */
#define APPLY_WRITER_BYTES (32u << 20)
/* Chunks asked for as deltas (delta.h): every missing one of a stretch of
 * up to APPLY_DELTA_ALL bytes between chunks kept from the base, else
 * the first APPLY_DELTA_LEAD and last APPLY_DELTA_TRAIL of it (an edit's
 * old bytes are at its edges); none under APPLY_DELTA_MIN bytes (only a
 * file's last chunk is shorter than the chunker's minimum); at most
 * APPLY_DELTAS_MAX per transfer. */
#define APPLY_DELTA_ALL (4u << 20)
#define APPLY_DELTA_LEAD 2
#define APPLY_DELTA_TRAIL 4
#define APPLY_DELTA_MIN CONTENT_CHUNK_MIN
#define APPLY_DELTAS_MAX 1024
/* Bytes copied from the base are checked in reads of up to this much. */
#define APPLY_CHECK_BYTES (1u << 20)

struct want;

/* Where each chunk of a transfer stands.  The order counts: below HERE a
 * chunk arriving from a peer is taken. */
enum chunk_state {
	CHUNK_MISSING,
	CHUNK_ASKED,              /* of a peer */
	CHUNK_HERE,               /* written and verified */
	CHUNK_FROM_BASE,          /* to be copied from the base (only inside
				   * transfer_start_fetch) */
	CHUNK_WRITING,            /* with the writer thread */
	CHUNK_CHECKING,           /* copied from the base, being verified */
};

/* A chunk to ask for as a delta from the base's bytes at BASE_OFF. */
struct delta_want {
	size_t i;
	uint64_t base_off;
	bool plain;               /* a delta failed: ask for it whole */
};

struct transfer {
	struct replicate *r;
	struct journal_job job;
	struct content list;      /* chunk list, once known */
	struct content base;      /* the replaced version's list, while the
				   * new one is asked as runs of it */
	bool have_list;
	struct peer *list_from;   /* asked for the list */
	size_t list_got;
	int dirfd;                /* O_PATH parent of the target */
	const char *name;         /* last component of job.path */
	char tmp[TEMPNAME_MAX];
	int fd;                   /* the temp file */
	uint8_t *got;             /* per chunk, enum chunk_state */
	unsigned writing;         /* writer targets naming this transfer */
	uint32_t *by_hash;        /* chunk indexes sorted by chunk hash */
	size_t missing;
	uint64_t unflushed;       /* bytes written since writeback started */
	uint64_t undurable;       /* bytes written since a flush started */
	bool list_looked_up;      /* the journal was asked for the list */
	bool list_unstored;       /* from a peer, not in the journal yet */
	bool awaited;             /* counted in r->awaited (no list yet) */
	bool meta_set;            /* the writer set mode, owner, mtime */
	bool precopy_wait;        /* its temp file is being copied ahead */
	bool precopied;           /* the temp file began as the base */
	bool syncing;             /* ready, in the batch being synced */
	int64_t started_ns;
	int64_t fetch_ns;         /* list known, temp file being filled */
	int64_t ready_ns;         /* every chunk in */
	int64_t flush_ns;         /* its flush started */
	size_t next_ask;          /* first chunk not yet asked */
	size_t check_next;        /* first chunk not yet sent to be checked */
	size_t damaged;           /* base chunks that did not check */
	struct delta_want *deltas;  /* sorted by chunk index */
	size_t n_deltas;
	int base_fd;              /* the base on disk, while deltas are asked */
	uint64_t refused;         /* bit i: peers[i] said "not here" */
	bool ready, failed, done;
	int error;                /* why it failed: a negative code */
	struct transfer *next;
};

/* T cannot go on: reaped, and its job counted as failed for ERR. */
static void transfer_fail(struct transfer *t, int err)
{
	if (!t->failed)
		t->error = err;
	t->failed = true;
}

/* ---- safe paths ----------------------------------------------------------- */

/* The parent directory of VOLUME/PATH as an O_PATH fd, and the last name. */
int apply_open_parent(struct replicate *r, const char *volume,
		      const char *path, int *dirfd, const char **name)
{
	/* Opened once: every file applied starts here. */
	if (r->rootfd < 0)
		r->rootfd = open(r->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (r->rootfd < 0)
		return -errno;
	return path_open_parent(r->rootfd, volume, path, dirfd, name);
}

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

/*
 * Whether NAME in DIRFD still holds what the journal's current state says
 * (or nothing, when the journal has nothing there): anything else is a
 * local change not recorded yet, which must not be overwritten.  *SIZE
 * (when SIZE is not NULL) gets the size of the regular file there, else 0.
 */
static bool disk_as_journal(struct replicate *r, int dirfd, const char *name,
			    const struct journal_job *job, uint64_t *size)
{
	struct journal_state cur;
	struct stat st;
	bool have = journal_lookup(r->journal, job->volume, job->path,
				   &cur) == 0 && cur.mode != 0;
	bool same;

	if (size)
		*size = 0;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		journal_state_release(&cur);
		return !have;
	}
	if (!have) {
		journal_state_release(&cur);
		return false;
	}
	/* A directory's ctime moves with every entry made in it; what it
	 * holds is judged entry by entry, so its inode is enough here. */
	same = (cur.mode & S_IFMT) == (st.st_mode & S_IFMT) &&
	       cur.ino == st.st_ino &&
	       (S_ISDIR(st.st_mode) || (cur.ctime_ns == ts_ns(&st.st_ctim) &&
		(S_ISLNK(st.st_mode) || cur.size == (uint64_t)st.st_size)));
	journal_state_release(&cur);
	if (size && S_ISREG(st.st_mode))
		*size = (uint64_t)st.st_size;
	return same;
}

static void diverged(struct replicate *r, const struct journal_job *job)
{
	if (r->diverged)
		r->diverged(r->diverged_arg, job->volume, job->path);
}

static int set_meta_fd(int fd, const struct journal_job *job)
{
	return writer_set_meta(fd, job->mode, job->uid, job->gid,
			       job->mtime_ns);
}

/* ---- metadata-only jobs ----------------------------------------------------- */

void apply_note_arrival(struct replicate *r, int64_t last_id)
{
	size_t n = r->arrivals_n, newest;

	if (n) {
		newest = (r->arrivals_head + n - 1) % ARRIVALS_MAX;
		if (r->arrivals[newest].last_id >= last_id)
			return;         /* nothing new was added */
	}
	if (n == ARRIVALS_MAX) {
		r->arrivals_head = (r->arrivals_head + 1) % ARRIVALS_MAX;
		n--;
	}
	newest = (r->arrivals_head + n) % ARRIVALS_MAX;
	r->arrivals[newest].last_id = last_id;
	r->arrivals[newest].ns = loop_now_ns();
	r->arrivals_n = n + 1;
}

#define ARRIVAL(r, i) \
	((r)->arrivals[((r)->arrivals_head + (i)) % ARRIVALS_MAX])

/* Binary search of the ring for the batch that brought CHANGE; no sample
 * when that is unknown (before the ring, or before this start, which the
 * first record marks with ns 0). */
static void apply_sample_latency(struct replicate *r, int64_t change)
{
	size_t lo = 0, hi = r->arrivals_n;

	if (!hi || ARRIVAL(r, hi - 1).last_id < change)
		return;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ARRIVAL(r, mid).last_id < change)
			lo = mid + 1;
		else
			hi = mid;
	}
	if ((lo == 0 && r->arrivals_n == ARRIVALS_MAX) ||
	    ARRIVAL(r, lo).ns == 0)
		return;
	hist_record(&r->apply_latency_us,
		    (uint64_t)(loop_now_ns() - ARRIVAL(r, lo).ns) / 1000);
}

/* The journal marks the job done; counted for metrics. */
static int job_done(struct replicate *r, const struct journal_job *job,
		    const struct stat *st)
{
	int err = journal_job_done(r->journal, job, st);

	if (!err) {
		r->applied++;
		apply_sample_latency(r, job->change);
	}
	if (!err && job->repair) {
		r->repaired++;
		log_info("replicate", "repaired %s/%s: its damaged bytes came "
			 "from a peer", job->volume, job->path);
	}
	if (!err && job->failures >= JOURNAL_JOB_STUCK)
		log_info("replicate", "applied %s/%s, stuck before (%u failed "
			 "attempts)", job->volume, job->path, job->failures);
	return err;
}

static int done_at(struct replicate *r, const struct journal_job *job,
		   int dirfd, const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	return job_done(r, job, &st);
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
		return job_done(r, job, NULL);
	}
	if (mkdir(full, job->mode & 07777) != 0 && errno != EEXIST)
		return -errno;
	if (lstat(full, &st) != 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	return job_done(r, job, &st);
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
		diverged(r, job);
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
	err = set_meta_fd(fd, job);
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
		diverged(r, job);
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
		return job_done(r, job, NULL);
	/* Only what the journal knows is deleted: a file written here and
	 * not recorded yet stays, and the watcher records it. */
	if (!disk_as_journal(r, dirfd, name, job, NULL)) {
		diverged(r, job);
		return job_done(r, job, NULL);
	}
	if (S_ISREG(st.st_mode))
		keep_replaced(r, dirfd, name, job->volume, job->path);
	if (unlinkat(dirfd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) == 0)
		return job_done(r, job, NULL);
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
		err = apply_open_parent(r, job->volume, dir, &dirfd, &name);
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
	err = set_meta_fd(fd, job);
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

/* Whether the version the disk holds at JOB's path still waits for its
 * conflict copy: then nothing replaces it yet (see "Conflicts" above). */
static bool copy_of_disk_pending(struct replicate *r,
				 const struct journal_job *job)
{
	uint64_t n = 0;

	return !job->copy_of &&
	       journal_copies_pending(r->journal, job->volume, job->path,
				      &n) == 0 && n > 0;
}

/* ---- transfers -------------------------------------------------------------- */

static void inflight_key(const char *volume, const char *path, char *out,
			 size_t cap)
{
	snprintf(out, cap, "%s/%s", volume, path);
}

static struct transfer *transfer_find(struct replicate *r, const char *volume,
				      const char *path)
{
	char key[PATH_MAX + 300];

	inflight_key(volume, path, key, sizeof(key));
	return strmap_get(&r->inflight, key);
}

bool apply_busy(struct replicate *r, const char *volume, const char *path)
{
	return transfer_find(r, volume, path) != NULL;
}

/*
 * Two counting filters spare each chunk that arrives a walk over every
 * transfer (up to transfers_max of them, for 10,000 small files
 * that walk was a good part of the work):
 *   wanted   chunk hashes of the chunks transfers still lack;
 *   awaited  content hashes of transfers without a chunk list yet,
 *            which a pushed small file may complete.
 * A slot is 16 bits of the hash; zero means "certainly nobody", anything
 * else "look".  Absent filters (no memory) mean "look" too.
 */
#define FILTER_SLOTS (1u << 16)

static size_t filter_slot(const uint8_t *hash)
{
	return (size_t)hash[8] | (size_t)hash[9] << 8;
}

static void filter_count(uint32_t *f, const uint8_t *hash, int delta)
{
	if (f)
		f[filter_slot(hash)] += (uint32_t)delta;
}

static bool filter_maybe(const uint32_t *f, const uint8_t *hash)
{
	return !f || f[filter_slot(hash)] > 0;
}

/* Made only while no transfer exists, so that every transfer is counted
 * from its start or not at all. */
static void filters_make(struct replicate *r)
{
	if (r->wanted || r->transfers)
		return;
	r->wanted = calloc(FILTER_SLOTS, sizeof(*r->wanted));
	r->awaited = calloc(FILTER_SLOTS, sizeof(*r->awaited));
	if (!r->wanted || !r->awaited) {
		free(r->wanted);
		free(r->awaited);
		r->wanted = r->awaited = NULL;
	}
}

static void transfer_free(struct transfer *t)
{
	if (t->awaited)
		filter_count(t->r->awaited, t->job.hash, -1);
	for (size_t i = 0; t->got && i < t->list.n_chunks; i++)
		if (t->got[i] != CHUNK_HERE)
			filter_count(t->r->wanted, t->list.chunks[i].hash, -1);
	if (t->fd >= 0) {
		close(t->fd);
		unlinkat(t->dirfd, t->tmp, 0);
	}
	if (t->dirfd >= 0)
		close(t->dirfd);
	if (t->base_fd >= 0)
		close(t->base_fd);
	free(t->deltas);
	content_release(&t->list);
	content_release(&t->base);
	journal_job_release(&t->job);
	free(t->got);
	free(t->by_hash);
	free(t);
}

/* Unlinks T from the replicator's indexes and frees it. */
static void transfer_drop(struct replicate *r, struct transfer *t)
{
	char key[PATH_MAX + 300];

	inflight_key(t->job.volume, t->job.path, key, sizeof(key));
	strmap_del(&r->inflight, key);
	r->n_transfers--;
	r->n_large -= t->job.size > APPLY_LARGE_SIZE;
	r->jobs_due = true;       /* a slot is free */
	transfer_free(t);
}

static void job_failed(struct replicate *r, const struct journal_job *job,
		       int err);

static void transfers_reap(struct replicate *r)
{
	for (struct transfer **pp = &r->transfers; *pp;) {
		struct transfer *t = *pp;

		/* The writer may still be writing into its temp file. */
		if (!t->failed || t->writing) {
			pp = &t->next;
			continue;
		}
		*pp = t->next;
		if (!keep_restore_failed(r, &t->job, t->error))
			job_failed(r, &t->job, t->error);
		transfer_drop(r, t);
	}
}

static bool peer_may_have(const struct peer *p, const struct transfer *t)
{
	const uint64_t *held;

	if (!p->session || p->session->state != SESSION_OPEN ||
	    p->session->dead)
		return false;
	/* Only peers known to hold the version can have its chunks. */
	held = strmap_get(&p->sent, t->job.ref.origin);
	return held && *held >= t->job.ref.seq;
}

/*
 * A peer to ask for T's content: the version's origin first (it wrote
 * the file), then the others in turn from SALT, skipping peers that
 * answered "not here" and peers whose window is full.  *EXHAUSTED is set
 * when every peer that may have it has refused.
 */
static struct peer *pick_peer(struct replicate *r, struct transfer *t,
			      size_t salt, bool *exhausted)
{
	size_t origin_len = strcspn(t->job.ref.origin, "@");
	bool candidate = false;

	*exhausted = false;
	for (size_t k = 0; k <= r->n_peers; k++) {
		size_t i = k == 0 ? SIZE_MAX : (salt + k) % r->n_peers;
		struct peer *p;

		if (k == 0) {
			for (size_t j = 0; j < r->n_peers; j++)
				if (strlen(r->peers[j]->id) == origin_len &&
				    !strncmp(r->peers[j]->id, t->job.ref.origin,
					     origin_len))
					i = j;
			if (i == SIZE_MAX)
				continue;
		}
		p = r->peers[i];
		if (!peer_may_have(p, t) || (i < 64 && (t->refused >> i) & 1))
			continue;
		candidate = true;
		if (p->fetch_inflight < PEER_FETCH_WINDOW)
			return p;
	}
	*exhausted = !candidate;
	return NULL;
}

/*
 * The list of the version T replaces, when that is a file large enough
 * for its list to matter (an edit keeps most chunks): the list is then
 * asked as runs of it.
 */
static void load_base(struct replicate *r, struct transfer *t)
{
	struct journal_state cur = { 0 };

	if (t->base.n_chunks || t->job.size < APPLY_BASE_MIN_SIZE ||
	    t->job.copy_of)
		return;
	if (journal_lookup(r->journal, t->job.volume, t->job.path, &cur) == 0 &&
	    S_ISREG(cur.mode) && cur.has_hash &&
	    memcmp(cur.hash, t->job.hash, CONTENT_HASH_LEN) != 0 &&
	    journal_content_load(r->journal, cur.hash, &t->base) != 0)
		content_release(&t->base);
	journal_state_release(&cur);
}

static void ask_list(struct replicate *r, struct transfer *t)
{
	struct wire_msg m = { .type = WIRE_GET_CHUNKLIST };
	bool exhausted;
	struct peer *p = pick_peer(r, t, (size_t)t->job.change, &exhausted);

	if (!p) {
		if (exhausted && t->refused)
			transfer_fail(t, KR_ENOSOURCE);
		return;
	}
	load_base(r, t);
	memcpy(m.get_chunklist.hash, t->job.hash, CONTENT_HASH_LEN);
	m.get_chunklist.start = 0;
	m.get_chunklist.has_base = t->base.n_chunks > 0;
	memcpy(m.get_chunklist.base, t->base.hash, CONTENT_HASH_LEN);
	if (session_send(p->session, &m) == 0) {
		t->list_from = p;
		t->list_got = 0;
		session_update_poll(p->session);
	}
}

bool apply_chunk_verify(const void *data, size_t len, const uint8_t *hash)
{
	uint8_t got[EVP_MAX_MD_SIZE];
	unsigned n = 0;

	return EVP_Digest(data, len, got, &n, EVP_sha256(), NULL) == 1 &&
	       n == CONTENT_HASH_LEN && memcmp(got, hash, n) == 0;
}

/* ---- chunk lists shared with a base version --------------------------- */

/* Open addressing over BASE's chunk hashes: hash -> first index + 1. */
struct base_index {
	uint32_t *slot;
	size_t mask;
};

static uint64_t hash_key(const uint8_t *h)
{
	uint64_t k;

	memcpy(&k, h, sizeof(k));   /* a SHA-256: any 8 bytes are uniform */
	return k;
}

static int base_index_build(struct base_index *ix, const struct content *b)
{
	size_t cap = 16;

	while (cap < 2 * b->n_chunks)
		cap *= 2;
	ix->slot = calloc(cap, sizeof(*ix->slot));
	ix->mask = cap - 1;
	if (!ix->slot)
		return -ENOMEM;
	for (size_t i = 0; i < b->n_chunks; i++) {
		size_t h = (size_t)hash_key(b->chunks[i].hash) & ix->mask;

		while (ix->slot[h] && memcmp(b->chunks[ix->slot[h] - 1].hash,
					     b->chunks[i].hash,
					     CONTENT_HASH_LEN) != 0)
			h = (h + 1) & ix->mask;
		if (!ix->slot[h])
			ix->slot[h] = (uint32_t)i + 1;
	}
	return 0;
}

static bool chunk_same(const struct content_chunk *a,
		       const struct content_chunk *b)
{
	return a->len == b->len &&
	       memcmp(a->hash, b->hash, CONTENT_HASH_LEN) == 0;
}

/* Index in B of a chunk equal to K, or -1. */
static int64_t base_find(const struct base_index *ix, const struct content *b,
			 const struct content_chunk *k)
{
	size_t h = (size_t)hash_key(k->hash) & ix->mask;

	for (; ix->slot[h]; h = (h + 1) & ix->mask)
		if (chunk_same(&b->chunks[ix->slot[h] - 1], k))
			return ix->slot[h] - 1;
	return -1;
}

static int commit_syncer(struct replicate *r);

/*
 * Counts LEN bytes received into T's temp file and, every
 * APPLY_EARLY_SYNC_BYTES, starts a flush of what it holds so far on the
 * syncer thread, through a descriptor of its own (see syncer_advance).
 * On a virtual disk the flush before the rename otherwise pays the
 * host's cache flush for the whole file at once, 0.4 s a gigabyte here.
 * Only for bytes from peers: they come at network pace and leave the
 * disk time to spare, where a local copy runs at the disk's pace and
 * was slowed down by flushes (1 GiB: 0.5 s to 1.5 s).
 */
static void transfer_sync_ahead(struct transfer *t, uint32_t len)
{
	int fd;

	t->undurable += len;
	if (t->undurable < APPLY_EARLY_SYNC_BYTES)
		return;
	t->undurable = 0;
	if (commit_syncer(t->r) != 0)
		return;
	fd = openat(t->dirfd, t->tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0)
		syncer_advance(t->r->syncer, fd);
}

/* Marks chunks FIRST.. FIRST + N - 1 of T written (they are contiguous). */
static void transfer_mark(struct transfer *t, size_t first, size_t n)
{
	for (size_t i = first; i < first + n; i++) {
		if (t->got[i] == CHUNK_HERE)
			continue;
		t->got[i] = CHUNK_HERE;
		t->missing--;
		filter_count(t->r->wanted, t->list.chunks[i].hash, -1);
		t->unflushed += t->list.chunks[i].len;
	}
	if (t->unflushed >= APPLY_WRITEBACK_BYTES) {
		sync_file_range(t->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		t->unflushed = 0;
	}
}

static void transfer_put_chunk(struct transfer *t, size_t i,
			       const uint8_t *data)
{
	const struct content_chunk *k = &t->list.chunks[i];

	if (t->got[i] == CHUNK_HERE)
		return;
	if (pwrite(t->fd, data, k->len, (off_t)k->offset) != (ssize_t)k->len) {
		transfer_fail(t, errno ? -errno : -EIO);
		return;
	}
	/* Writeback starts as the file fills, so that the sync before
	 * the rename finds little left to write: for a large file it would
	 * otherwise wait for all of it, after the transfer, in one go. */
	transfer_mark(t, i, 1);
}

/* Copies chunk I from a file of this node, if one still holds it. */
static bool copy_local_chunk(struct replicate *r, struct transfer *t, size_t i,
			     uint8_t *buf)
{
	const struct content_chunk *k = &t->list.chunks[i];
	char volume[256], *path = NULL;
	uint64_t off;
	uint32_t len;
	const char *name;
	int dirfd = -1, fd = -1;
	bool ok = false;

	if (journal_chunk_source(r->journal, k->hash, volume, sizeof(volume),
				 &path, &off, &len) || len != k->len)
		goto out;
	if (apply_open_parent(r, volume, path, &dirfd, &name))
		goto out;
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 || pread(fd, buf, len, (off_t)off) != (ssize_t)len)
		goto out;
	ok = apply_chunk_verify(buf, len, k->hash);
	if (ok)
		transfer_put_chunk(t, i, buf);
out:
	if (fd >= 0)
		close(fd);
	if (dirfd >= 0)
		close(dirfd);
	free(path);
	return ok;
}

static int transfer_open_temp(struct transfer *t)
{
	tempname_make(t->tmp, sizeof(t->tmp));
	t->fd = openat(t->dirfd, t->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
		       0600);
	/* No ftruncate to the size: the chunks cover [0, size) exactly, so
	 * the last one written makes it, and a small file saves a call. */
	return t->fd < 0 ? -errno : 0;
}

/* Chunks of T named HASH: [*first, *first + *n) of t->by_hash. */
static void chunks_named(const struct transfer *t, const uint8_t *hash,
			 size_t *first, size_t *n)
{
	content_index_find(&t->list, t->by_hash, hash, first, n);
}

bool apply_file_current(const struct journal_state *cur, int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink > 0 &&
	       (uint64_t)st.st_size == cur->size &&
	       (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec ==
	       cur->mtime_ns &&
	       (uint64_t)st.st_ino == cur->ino &&
	       (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec ==
	       cur->ctime_ns;
}

/* A run of chunks T holds at I.. and the base at J.. (K chunks). */
struct base_run {
	size_t i, j, k;
};

struct base_plan {
	int fd;                 /* the replaced version, on disk */
	struct base_run *runs;
	size_t n;
};

/*
 * An edit keeps most of a file: the chunks the new version shares with
 * the one it replaces are copied from the file on disk, run by run,
 * without a lookup or a hash per chunk, when that file is still exactly
 * what the journal recorded.  Planned first and copied last, so that the
 * chunks nobody here has are asked of peers before the copy and arrive
 * while it runs.  Planned chunks are marked 3 (to be copied): neither
 * looked up nor asked.  Runs are cut in slices so that writeback
 * (transfer_mark) starts while the rest is still being copied.
 */
static void base_plan_make(struct replicate *r, struct transfer *t,
			   struct base_plan *plan)
{
	struct journal_state cur = { 0 };
	struct base_index ix = { 0 };
	const char *name;
	int dirfd = -1;

	plan->fd = -1;
	if (!t->base.n_chunks ||
	    journal_lookup(r->journal, t->job.volume, t->job.path, &cur) ||
	    !cur.has_hash ||
	    memcmp(cur.hash, t->base.hash, CONTENT_HASH_LEN) != 0 ||
	    apply_open_parent(r, t->job.volume, t->job.path, &dirfd, &name))
		goto out;
	plan->fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
			  O_CLOEXEC);
	if (plan->fd < 0 || !apply_file_current(&cur, plan->fd) ||
	    base_index_build(&ix, &t->base))
		goto out;
	for (size_t i = 0; i < t->list.n_chunks;) {
		int64_t j = t->got[i] ? -1 :
			    base_find(&ix, &t->base, &t->list.chunks[i]);
		struct base_run run = { i, (size_t)j, 0 };
		uint64_t len = 0;

		while (j >= 0 && len < APPLY_WRITEBACK_BYTES * 4 &&
		       i + run.k < t->list.n_chunks &&
		       run.j + run.k < t->base.n_chunks &&
		       t->got[i + run.k] == CHUNK_MISSING &&
		       chunk_same(&t->list.chunks[i + run.k],
				  &t->base.chunks[run.j + run.k])) {
			len += t->list.chunks[i + run.k].len;
			t->got[i + run.k] = CHUNK_FROM_BASE;
			run.k++;
		}
		if (run.k) {
			struct base_run *more = plan->n % 64 ? plan->runs :
				realloc(plan->runs, (plan->n + 64) *
					sizeof(*more));

			if (!more) {
				memset(t->got + i, 0, run.k);
				break;
			}
			plan->runs = more;
			plan->runs[plan->n++] = run;
		}
		i += run.k ? run.k : 1;
	}
out:
	free(ix.slot);
	if (dirfd >= 0)
		close(dirfd);
	journal_state_release(&cur);
}

/*
 * Copies the planned runs inside the kernel; a run that fails is left
 * to the peers (marked missing again), one copied is checked before it
 * counts (transfer_check_base).  The old version's cached pages
 * are dropped once copied: the version replacing it needs as many new
 * ones, and pages just freed are cheaper to reuse than memory nobody
 * touched yet (on a VM, often an order of magnitude), besides halving
 * what a large edit holds in the page cache.
 */
static void base_plan_copy(struct transfer *t, struct base_plan *plan)
{
	for (size_t r = 0; r < plan->n; r++) {
		const struct base_run *run = &plan->runs[r];
		loff_t src = (loff_t)t->base.chunks[run->j].offset;
		loff_t dst = (loff_t)t->list.chunks[run->i].offset;
		loff_t from = src;
		uint64_t left = 0;

		for (size_t k = 0; k < run->k; k++)
			left += t->list.chunks[run->i + k].len;
		/* A temp file copied from the base has these bytes in place. */
		if (t->precopied && src == dst)
			left = 0;
		while (left > 0 && !t->failed) {
			ssize_t n = copy_file_range(plan->fd, &src, t->fd,
						    &dst, left, 0);

			if (n <= 0)
				break;
			left -= (uint64_t)n;
		}
		if (left == 0)
			memset(t->got + run->i, CHUNK_CHECKING, run->k);
		else
			memset(t->got + run->i, CHUNK_MISSING, run->k);
		if (src > from)
			posix_fadvise(plan->fd, from, src - from,
				      POSIX_FADV_DONTNEED);
	}
	free(plan->runs);
	if (plan->fd >= 0)
		close(plan->fd);
}

/* ---- chunks asked for as deltas from the base ---------------------------- */

/* Chunk I of T is asked for as a delta from the base's bytes at I's
 * offset plus SHIFT, if those lie in the base and I is worth it. */
static void delta_want_add(struct transfer *t, size_t i, int64_t shift)
{
	const struct content_chunk *k = &t->list.chunks[i];
	int64_t off = (int64_t)k->offset + shift;

	if (t->got[i] || k->len < APPLY_DELTA_MIN || off < 0 ||
	    (uint64_t)off + k->len > t->base.size ||
	    t->n_deltas == APPLY_DELTAS_MAX)
		return;
	t->deltas[t->n_deltas++] = (struct delta_want){ i, (uint64_t)off,
							false };
}

/*
 * The missing chunks A.. B - 1 lie between chunks kept from the base:
 * their bytes, where unchanged, are in the base at their offset plus
 * LSHIFT when counted from the chunk before (the base's A - 1 ends where
 * the new one does, after an insert or a delete before it) or RSHIFT
 * from the one after.  Leading chunks take the first, trailing ones the
 * second.
 */
static void delta_gap(struct transfer *t, size_t a, size_t b,
		      int64_t lshift, int64_t rshift)
{
	uint64_t bytes = 0;

	for (size_t i = a; i < b; i++)
		bytes += t->got[i] ? 0 : t->list.chunks[i].len;
	if (bytes == 0)
		return;
	if (bytes <= APPLY_DELTA_ALL) {
		for (size_t i = a; i < b; i++)
			delta_want_add(t, i, i - a < (b - a + 1) / 2 ?
					     lshift : rshift);
		return;
	}
	/* Kept in index order: the list is searched by halves. */
	for (size_t i = a; i < a + APPLY_DELTA_LEAD && i < b; i++)
		delta_want_add(t, i, lshift);
	for (size_t i = b - a > APPLY_DELTA_LEAD + APPLY_DELTA_TRAIL ?
			b - APPLY_DELTA_TRAIL : a + APPLY_DELTA_LEAD; i < b; i++)
		delta_want_add(t, i, rshift);
}

/* Offset in the base minus offset in T's list, of the chunk the base run
 * RUN maps at K (0 = its first). */
static int64_t run_shift(const struct transfer *t, const struct base_run *run,
			 size_t k)
{
	return (int64_t)t->base.chunks[run->j + k].offset -
	       (int64_t)t->list.chunks[run->i + k].offset;
}

/*
 * After the local copies are planned: the chunks still missing that sit
 * next to chunks kept from the base, to be asked for as deltas from the
 * base's file (PLAN's), which T keeps open for that.  The file's start
 * and end anchor the first and last stretch.
 */
static void delta_plan(struct transfer *t, const struct base_plan *plan)
{
	size_t start = 0;
	int64_t lshift = 0;

	if (plan->fd < 0 || plan->n == 0)
		return;
	t->deltas = calloc(APPLY_DELTAS_MAX, sizeof(*t->deltas));
	if (!t->deltas)
		return;
	for (size_t n = 0; n <= plan->n; n++) {
		const struct base_run *run = n < plan->n ? &plan->runs[n] : NULL;
		size_t end = run ? run->i : t->list.n_chunks;
		int64_t rshift = run ? run_shift(t, run, 0) :
				 (int64_t)t->base.size - (int64_t)t->list.size;

		if (end > start)
			delta_gap(t, start, end, lshift, rshift);
		if (run) {
			start = run->i + run->k;
			/* Equal chunks, equal lengths: the run ends shifted
			 * as its last chunk starts. */
			lshift = run_shift(t, run, run->k - 1);
		}
	}
	if (t->n_deltas)
		t->base_fd = dup(plan->fd);
	if (t->base_fd < 0) {
		free(t->deltas);
		t->deltas = NULL;
		t->n_deltas = 0;
	}
}

static int delta_cmp(const void *key, const void *elem)
{
	size_t i = *(const size_t *)key;
	const struct delta_want *w = elem;

	return i < w->i ? -1 : i > w->i;
}

/* The delta to ask for chunk I of T, or NULL to ask for it whole. */
static struct delta_want *delta_find(const struct transfer *t, size_t i)
{
	struct delta_want *w = t->n_deltas ?
		bsearch(&i, t->deltas, t->n_deltas, sizeof(*w), delta_cmp) :
		NULL;

	return w && !w->plain ? w : NULL;
}

/* Reads the base's bytes for W into BUF (W's chunk length). */
static bool delta_base_read(const struct transfer *t,
			    const struct delta_want *w, uint8_t *buf)
{
	uint32_t len = t->list.chunks[w->i].len;

	return pread(t->base_fd, buf, len, (off_t)w->base_off) ==
	       (ssize_t)len;
}

/* Sends P a GET_DELTA for W; false when it could not (ask it whole). */
static bool delta_ask(struct transfer *t, struct peer *p,
		      struct delta_want *w)
{
	const struct content_chunk *k = &t->list.chunks[w->i];
	uint8_t (*dig)[DELTA_DIGEST] = malloc((size_t)delta_blocks(k->len) *
					      DELTA_DIGEST);
	uint8_t *buf = malloc(k->len);
	struct wire_msg m = { .type = WIRE_GET_DELTA };
	bool ok = dig && buf && delta_base_read(t, w, buf) &&
		  delta_digests(buf, k->len, dig) == 0;

	if (ok) {
		memcpy(m.get_delta.hash, k->hash, CONTENT_HASH_LEN);
		m.get_delta.len = k->len;
		m.get_delta.digests = (const uint8_t (*)[DELTA_DIGEST])dig;
		ok = session_send(p->session, &m) == 0;
	}
	if (!ok)
		w->plain = true;
	free(dig);
	free(buf);
	return ok;
}

static struct peer *transfer_ask_chunks(struct replicate *r,
					struct transfer *t);

/* The chunk list is known: open the temp file, copy what is local, ask
 * peers for the rest. */
/* The list is known: per-chunk state, the index by hash, the filters
 * told.  0, or -ENOMEM (the transfer failed). */
static int transfer_prepare(struct replicate *r, struct transfer *t)
{
	t->fetch_ns = loop_now_ns();
	if (t->awaited) {
		filter_count(r->awaited, t->job.hash, -1);
		t->awaited = false;
	}
	t->got = calloc(t->list.n_chunks + 1, 1);
	for (size_t i = 0; t->got && i < t->list.n_chunks; i++)
		filter_count(r->wanted, t->list.chunks[i].hash, +1);
	t->missing = t->list.n_chunks;
	if (content_index_build(&t->list, &t->by_hash) != 0 || !t->got) {
		transfer_fail(t, -ENOMEM);
		return -ENOMEM;
	}
	return 0;
}

/*
 * The temp file: the copy of the base made ahead (precopy.c), cut to the
 * new size, when there is one; else a new file.  -EINPROGRESS while that
 * copy is still being made.
 */
static int transfer_temp(struct replicate *r, struct transfer *t)
{
	int rc = 0, fd = -1;

	if (t->base.n_chunks)
		rc = precopy_take(r, t->job.volume, t->job.path, t->base.hash,
				  t->dirfd, t->tmp, &fd);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return transfer_open_temp(t);
	t->fd = fd;
	t->precopied = true;
	log_debug("replicate", "%s/%s: starting from the copy made ahead",
		  t->job.volume, t->job.path);
	return ftruncate(t->fd, (off_t)t->list.size) == 0 ? 0 : -errno;
}

static int apply_writer(struct replicate *r);

/*
 * Chunk I, copied from the base, was checked with RESULT: it counts, or
 * (KR_ECORRUPT: the disk's copy of the old version is damaged) it is
 * asked of a peer like any missing chunk, or the transfer fails.
 */
static void check_done(struct replicate *r, struct transfer *t, size_t i,
		       int result)
{
	if (result == 0) {
		transfer_mark(t, i, 1);
		return;
	}
	if (result != KR_ECORRUPT) {
		transfer_fail(t, result);
		return;
	}
	if (!t->damaged++)
		log_warn("replicate", "%s/%s: bytes of its previous version on "
			 "this disk do not match their hash (a damaged disk?); "
			 "fetching them from a peer", t->job.volume,
			 t->job.path);
	r->damaged_chunks++;
	t->got[i] = CHUNK_MISSING;
	t->next_ask = 0;
}

/* Checks chunk I on the loop thread: without a writer thread. */
static void check_inline(struct replicate *r, struct transfer *t, size_t i)
{
	const struct content_chunk *k = &t->list.chunks[i];
	uint8_t *buf = malloc(k->len);
	int result = buf ? 0 : -ENOMEM;

	if (buf && pread(t->fd, buf, k->len, (off_t)k->offset) !=
		   (ssize_t)k->len)
		result = KR_ECORRUPT;
	else if (buf && !apply_chunk_verify(buf, k->len, k->hash))
		result = KR_ECORRUPT;
	free(buf);
	check_done(r, t, i, result);
}

/* Chunks I.. I + N - 1 were checked together with RESULT: on a mismatch
 * each is checked again alone, to fetch only the damaged ones. */
static void check_batch_done(struct replicate *r, struct transfer *t,
			     size_t i, size_t n, int result)
{
	if (result == 0)
		transfer_mark(t, i, n);
	else if (result == KR_ECORRUPT)
		for (size_t k = i; k < i + n && !t->failed; k++)
			check_inline(r, t, k);
	else
		transfer_fail(t, result);
}

/* Hands chunks I.. I + N - 1 (contiguous) to the writer thread to be read
 * back and checked: 0, or -EAGAIN when the writer is full (asked again
 * on the next step). */
static int check_submit(struct replicate *r, struct transfer *t, size_t i,
			size_t n)
{
	const struct content_chunk *k = &t->list.chunks[i];
	const struct content_chunk *last = &t->list.chunks[i + n - 1];
	struct writer_job *job = apply_writer(r) ? NULL : writer_job_new();
	uint64_t len = last->offset + last->len - k->offset;
	int err;

	if (!job || !(job->data = malloc(len))) {
		writer_job_free(job);
		check_batch_done(r, t, i, n, KR_ECORRUPT);
		return 0;
	}
	job->len = (uint32_t)len;
	job->check_only = true;
	job->check = k;
	job->n_check = n;
	job->n_targets = 1;
	job->targets[0] = (struct writer_target){ .fd = t->fd,
		.offset = k->offset, .ctx = t, .index = i };
	err = writer_submit(r->writer, job);
	if (err) {
		writer_job_free(job);
		return err;
	}
	t->writing++;
	return 0;
}

/*
 * Bytes copied from the base (copy_file_range, a clone, the copy made
 * ahead) were never looked at, and a disk can rot under an unchanged
 * inode, size and mtime.  No hash is recorded that the bytes do not
 * have: each such chunk is read back and hashed on the writer thread
 * before it counts, and one that does not match is fetched from a peer.
 * Costs a read of the reused bytes (from the page cache, mostly) and
 * their SHA-256, beside the loop.
 */
static void transfer_check_base(struct replicate *r, struct transfer *t)
{
	while (t->check_next < t->list.n_chunks && !t->failed) {
		size_t i = t->check_next, n = 0;
		uint64_t len = 0;

		while (i + n < t->list.n_chunks &&
		       t->got[i + n] == CHUNK_CHECKING &&
		       (n == 0 ||
			len + t->list.chunks[i + n].len <= APPLY_CHECK_BYTES)) {
			len += t->list.chunks[i + n].len;
			n++;
		}
		if (n && check_submit(r, t, i, n) == -EAGAIN)
			return;
		t->check_next = i + (n ? n : 1);
	}
}

/* After transfer_prepare: the temp file opened, local chunks copied,
 * peers asked for the rest. */
static void transfer_fill(struct replicate *r, struct transfer *t)
{
	struct base_plan plan = { .fd = -1 };
	uint8_t *buf;
	int err = transfer_temp(r, t);

	t->precopy_wait = err == -EINPROGRESS;
	if (t->precopy_wait)
		return;
	buf = err ? NULL : malloc(WIRE_MAX_CHUNK);
	if (!buf) {
		transfer_fail(t, err ? err : -ENOMEM);
		return;
	}
	base_plan_make(r, t, &plan);
	(void)journal_read_begin(r->journal);
	for (size_t i = 0; i < t->list.n_chunks && !t->failed; i++)
		if (t->got[i] == CHUNK_MISSING)
			copy_local_chunk(r, t, i, buf);
	journal_read_end(r->journal);
	free(buf);
	delta_plan(t, &plan);
	if (plan.n) {
		struct peer *p = transfer_ask_chunks(r, t);

		if (p)
			session_send_now(p->session);
	}
	base_plan_copy(t, &plan);
	transfer_check_base(r, t);
}

static void transfer_start_fetch(struct replicate *r, struct transfer *t)
{
	if (transfer_prepare(r, t) == 0)
		transfer_fill(r, t);
}

/* Asks one peer for the next missing chunks; the peer asked, or NULL. */
static struct peer *transfer_ask_chunks(struct replicate *r,
					struct transfer *t)
{
	uint8_t (*hashes)[CONTENT_HASH_LEN] = NULL;
	struct wire_msg m = { .type = WIRE_GET_CHUNKS };
	bool exhausted, asked = false;
	struct peer *p = pick_peer(r, t, t->next_ask, &exhausted);
	struct delta_want *w;
	uint32_t n = 0;

	if (!p) {
		/* Nobody that may hold it has it: the file moved on there
		 * too; a newer version will retarget the job. */
		if (exhausted && t->refused)
			transfer_fail(t, KR_ENOSOURCE);
		return NULL;
	}
	hashes = malloc(APPLY_GET_BATCH * CONTENT_HASH_LEN);
	if (!hashes)
		return NULL;
	while (t->next_ask < t->list.n_chunks && n < APPLY_GET_BATCH &&
	       p->fetch_inflight < PEER_FETCH_WINDOW) {
		size_t i = t->next_ask;

		if (t->got[i]) {
			t->next_ask++;
			continue;
		}
		/* The ingress limit is kept by asking no faster than it. */
		if (!bucket_take(&r->ingress, t->list.chunks[i].len,
				 loop_now_ns()))
			break;
		t->next_ask++;
		t->got[i] = CHUNK_ASKED;
		p->fetch_inflight += t->list.chunks[i].len;
		w = p->delta ? delta_find(t, i) : NULL;
		if (w && delta_ask(t, p, w)) {
			asked = true;
			continue;
		}
		memcpy(hashes[n++], t->list.chunks[i].hash, CONTENT_HASH_LEN);
	}
	m.get_chunks.n = n;
	m.get_chunks.hashes = (const uint8_t (*)[CONTENT_HASH_LEN])hashes;
	if (n && session_send(p->session, &m) == 0)
		asked = true;
	if (asked)
		session_update_poll(p->session);
	free(hashes);
	return asked ? p : NULL;
}

static void transfer_finish(struct replicate *r, struct transfer *t)
{
	int err = t->meta_set ? 0 : set_meta_fd(t->fd, &t->job);

	(void)r;
	if (err) {
		transfer_fail(t, err);
		return;
	}
	t->ready = true;
	t->ready_ns = loop_now_ns();
}

/* ---- pushed small contents ------------------------------------------------ */

/*
 * Pushed contents wait here for the transfers that claim them, in a ring
 * of keys in arrival order.  In a burst the entries run ahead of the
 * applier, and the transfers claim in about the order the pushes came:
 * so when the ring is full the oldest push is kept (it is claimed next)
 * and the new one is refused (its transfer will ask), unless the oldest
 * has waited past PUSH_KEEP_NS for nobody.  Dropping the oldest instead
 * would evict every push just before its claim, and a burst of more
 * files than the ring holds would ask a peer for nearly every list.  A
 * push serves every identical file announced while it waits (REFS); the
 * last claim frees it, and its slot is reclaimed when it reaches the
 * ring's head.
 */
#define PUSH_KEEP_NS (5LL * 1000000000)
#define PUSH_KEEP_BYTES (32u << 20)

struct pushed {
	uint8_t chunk[CONTENT_HASH_LEN];
	uint32_t len;
	uint32_t refs;            /* pushes of it not claimed yet */
	int64_t kept_ns;
	uint8_t data[];
};

static void push_forget(struct replicate *r, const char *key)
{
	struct pushed *p = strmap_del(&r->pushed, key);

	if (p)
		r->pushed_bytes -= p->len;
	free(p);
}

/* Room for a push of LEN bytes: slots of claimed pushes at the head are
 * reclaimed, then an oldest push nobody claimed in time.  False when
 * full. */
static bool push_room(struct replicate *r, uint32_t len)
{
	while (r->pushed_n) {
		char *key = r->pushed_keys[r->pushed_head];
		struct pushed *p = strmap_get(&r->pushed, key);

		if (p && r->pushed_n < PUSH_KEEP_MAX &&
		    r->pushed_bytes + len <= PUSH_KEEP_BYTES)
			return true;
		if (p && loop_now_ns() - p->kept_ns < PUSH_KEEP_NS)
			return false;
		push_forget(r, key);
		r->pushed_head = (r->pushed_head + 1) % PUSH_KEEP_MAX;
		r->pushed_n--;
	}
	return true;
}

/* Keeps chunk C, which no transfer wanted, under the content hash it
 * makes as a file of one chunk (into CONTENT). */
static void push_keep(struct replicate *r, const struct wire_chunk *c,
		      uint8_t content[CONTENT_HASH_LEN])
{
	char key[CONTENT_HEX_LEN];
	struct pushed *p;
	unsigned n = 0;
	void *old = NULL;

	if (c->len > PUSH_MAX_SIZE ||
	    EVP_Digest(c->hash, CONTENT_HASH_LEN, content, &n, EVP_sha256(),
		       NULL) != 1)
		return;
	content_hex(content, key);
	p = strmap_get(&r->pushed, key);
	if (p) {
		p->refs++;
		return;
	}
	if (!r->pushed_keys) {
		r->pushed_keys = calloc(PUSH_KEEP_MAX, sizeof(*r->pushed_keys));
		if (!r->pushed_keys)
			return;
	}
	if (!push_room(r, c->len))
		return;
	p = malloc(sizeof(*p) + c->len);
	if (!p)
		return;
	memcpy(p->chunk, c->hash, CONTENT_HASH_LEN);
	p->len = c->len;
	p->refs = 1;
	p->kept_ns = loop_now_ns();
	memcpy(p->data, c->data, c->len);
	if (strmap_put(&r->pushed, key, p, &old) != 0) {
		free(p);
		return;
	}
	r->pushed_bytes += p->len;
	memcpy(r->pushed_keys[(r->pushed_head + r->pushed_n) % PUSH_KEEP_MAX],
	       key, CONTENT_HEX_LEN);
	r->pushed_n++;
}

/* T's temp file made, filled with DATA and given its metadata by the
 * writer thread.  0, or the caller does it itself. */
static int push_create(struct replicate *r, struct transfer *t,
		       const struct pushed *p)
{
	struct writer_job *job;
	int err;

	if (apply_writer(r) != 0)
		return -EAGAIN;
	job = writer_job_new();
	if (!job)
		return -ENOMEM;
	job->data = malloc(p->len);
	if (!job->data) {
		writer_job_free(job);
		return -ENOMEM;
	}
	memcpy(job->data, p->data, p->len);
	memcpy(job->hash, p->chunk, CONTENT_HASH_LEN);
	job->len = p->len;
	job->verified = true;     /* when it was kept */
	tempname_make(t->tmp, sizeof(t->tmp));
	job->create = (struct writer_create){
		.dirfd = t->dirfd,
		.mode = t->job.mode, .uid = t->job.uid, .gid = t->job.gid,
		.mtime_ns = t->job.mtime_ns,
	};
	snprintf(job->create.name, sizeof(job->create.name), "%s", t->tmp);
	job->n_targets = 1;
	job->targets[0] = (struct writer_target){ .fd = -1, .ctx = t };
	err = writer_submit(r->writer, job);
	if (err) {
		writer_job_free(job);
		t->tmp[0] = '\0';
		return err;
	}
	t->got[0] = CHUNK_WRITING;
	t->writing++;
	t->meta_set = true;
	return 0;
}

/* T's content, when it was pushed: its one-chunk list and the chunk
 * written to the temp file (by the writer thread when it has room). */
static bool push_claim(struct replicate *r, struct transfer *t)
{
	char key[CONTENT_HEX_LEN];
	struct pushed *p;

	if (!r->pushed.count || t->job.size > PUSH_MAX_SIZE)
		return false;
	content_hex(t->job.hash, key);
	p = strmap_get(&r->pushed, key);
	if (!p || p->len != t->job.size)
		return false;
	t->list.chunks = calloc(1, sizeof(*t->list.chunks));
	if (!t->list.chunks)
		return false;
	t->list.cap_chunks = 1;
	t->list.n_chunks = 1;
	t->list.size = p->len;
	memcpy(t->list.hash, t->job.hash, CONTENT_HASH_LEN);
	memcpy(t->list.chunks[0].hash, p->chunk, CONTENT_HASH_LEN);
	t->list.chunks[0].len = p->len;
	journal_content_store(r->journal, &t->list, NULL);
	t->have_list = true;
	if (transfer_prepare(r, t) == 0 && push_create(r, t, p) != 0) {
		transfer_fill(r, t);
		if (!t->failed && t->got[0] != CHUNK_HERE)
			transfer_put_chunk(t, 0, p->data);
	}
	if (--p->refs == 0)
		push_forget(r, key);
	return true;
}

static void push_free(struct replicate *r)
{
	for (size_t i = 0; i < r->pushed.cap; i++)
		if (r->pushed.slots[i].key)
			free(r->pushed.slots[i].value);
	strmap_clear(&r->pushed);
	r->pushed_head = r->pushed_n = 0;
	r->pushed_bytes = 0;
	free(r->pushed_keys);
	r->pushed_keys = NULL;
}

static void transfer_step(struct replicate *r, struct transfer *t)
{
	if (t->failed || t->ready)
		return;
	if (t->precopy_wait) {
		transfer_fill(r, t);
		if (t->precopy_wait)
			return;
	}
	if (!t->have_list) {
		/* The journal is asked once: a list it lacks only comes from
		 * a peer, and asking again on every turn, for every waiting
		 * transfer, was most of the work of many small files. */
		if (push_claim(r, t)) {
			transfer_step(r, t);
			return;
		}
		/* A small file's content usually comes pushed right behind
		 * its entry: give it a moment before asking. */
		if (t->job.size <= PUSH_MAX_SIZE &&
		    loop_now_ns() - t->started_ns < APPLY_PUSH_WAIT_NS)
			return;
		if (!t->list_looked_up) {
			t->list_looked_up = true;
			if (journal_content_load(r->journal, t->job.hash,
						 &t->list) == 0) {
				t->have_list = true;
				transfer_start_fetch(r, t);
				return;
			}
		}
		if (!t->list_from)
			ask_list(r, t);
		return;
	}
	transfer_check_base(r, t);
	/* Chunks at the writer are missing but not to be asked for. */
	if (t->missing > t->writing) {
		if (t->next_ask >= t->list.n_chunks) {
			/* Everything asked once; re-ask what came back "not
			 * here" or was lost with a peer. */
			bool again = false;

			for (size_t i = 0; i < t->list.n_chunks; i++)
				again |= t->got[i] == CHUNK_MISSING;
			if (again)
				t->next_ask = 0;
		}
		transfer_ask_chunks(r, t);
	}
	if (t->missing == 0 && !t->failed)
		transfer_finish(r, t);
}

static int transfer_new(struct replicate *r, struct journal_job *job)
{
	struct transfer *t = calloc(1, sizeof(*t));
	int err;

	if (!t)
		return -ENOMEM;
	t->r = r;
	t->fd = -1;
	t->base_fd = -1;
	t->started_ns = loop_now_ns();
	err = apply_open_parent(r, job->volume, job->path, &t->dirfd, &t->name);
	if (err) {
		free(t);
		return err;
	}
	t->job = *job;
	/* The transfer owns the strings now; NAME points into its path. */
	memset(job, 0, sizeof(*job));
	{
		char key[PATH_MAX + 300];

		inflight_key(t->job.volume, t->job.path, key, sizeof(key));
		if (strmap_put(&r->inflight, key, t, NULL)) {
			transfer_free(t);
			return -ENOMEM;
		}
	}
	filters_make(r);
	t->next = r->transfers;
	r->transfers = t;
	r->n_transfers++;
	r->n_large += t->job.size > APPLY_LARGE_SIZE;
	t->awaited = true;
	filter_count(r->awaited, t->job.hash, +1);
	/* Started jobs sort after untried ones in the next batch. */
	journal_job_defer(r->journal, &t->job);
	transfer_step(r, t);
	return 0;
}

/* ---- the commit of ready transfers ----------------------------------------- */

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
	if (!r->syncer || size < APPLY_FSYNC_MIN_SIZE)
		return -1;
	return openat(t->dirfd, t->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
}

/*
 * Stores a list learned from a peer, which the node needs from the moment
 * it holds the version: to serve it and as the base of the next edit.
 * Not earlier: 27,000 rows (a GiB) take 0.1 s of the loop, which is
 * spent best while the syncer flushes the file, not before the fetch.
 */
static void transfer_store_list(struct replicate *r, struct transfer *t)
{
	if (!t->list_unstored)
		return;
	t->list_unstored = false;
	journal_content_store(r->journal, &t->list,
			      t->base.n_chunks ? t->base.hash : NULL);
}

/* A version fetched for the store (keep.c) goes there, not in place. */
static void transfer_commit_fetch(struct replicate *r, struct transfer *t)
{
	int err = keep_fetched(r, &t->job, t->dirfd, t->tmp);

	close(t->fd);
	t->fd = -1;
	if (err) {
		transfer_fail(t, err);
		return;
	}
	t->done = true;
}

static void transfer_commit(struct replicate *r, struct transfer *t)
{
	uint64_t replaced;
	struct stat st;
	int old, err;

	t->ready = false;
	transfer_store_list(r, t);
	/* The path was retargeted while the file was made (a local change
	 * recorded, a newer version): this version is no longer wanted
	 * there, and must not replace what is. */
	if (!journal_job_wanted(r->journal, &t->job)) {
		transfer_fail(t, -ESTALE);
		return;
	}
	if (t->job.fetch) {
		transfer_commit_fetch(r, t);
		return;
	}
	/* A losing version on disk waits for its copy (see "Conflicts"). */
	if (copy_of_disk_pending(r, &t->job)) {
		t->ready = true;
		return;
	}
	if (!disk_as_journal(r, t->dirfd, t->name, &t->job, &replaced)) {
		diverged(r, &t->job);
		transfer_fail(t, -EBUSY);
		return;
	}
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
		syncer_close(r->syncer, old);
	close(t->fd);
	t->fd = -1;
	err = job_done(r, &t->job, &st);
	if (err) {
		transfer_fail(t, err);
		return;
	}
	t->done = true;
	transfer_log(t);
}

static void commit_ready(struct replicate *r);

/* Renames the batch the last flush covered, unless the flush failed:
 * then the batch is retried later, its data never shown. */
static void commit_synced(struct replicate *r, int result)
{
	if (result)
		log_warn("replicate", "cannot flush received files to disk: "
			 "%s; they stay hidden and are fetched again",
			 kr_strerror(result));
	for (struct transfer *t = r->transfers; t; t = t->next)
		if (t->syncing) {
			t->syncing = false;
			if (result) {
				t->ready = false;
				transfer_fail(t, result);
			} else {
				transfer_commit(r, t);
			}
		}
	for (struct transfer **pp = &r->transfers; *pp;) {
		struct transfer *t = *pp;

		if (!t->done) {
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
	int result = 0;

	(void)events;
	if (!syncer_collect(r->syncer, &result))
		return;
	r->sync_running = false;
	r->sync_ended_ns = loop_now_ns();
	commit_synced(r, result);
	commit_ready(r);        /* what became ready meanwhile */
}

static int commit_syncer(struct replicate *r)
{
	int err;

	if (r->syncer)
		return 0;
	err = syncer_new(r->root, &r->syncer);
	if (!err)
		err = loop_add_fd(r->loop, syncer_fd(r->syncer), EPOLLIN,
				  commit_on_synced, r);
	if (err) {
		syncer_free(r->syncer);
		r->syncer = NULL;
	}
	return err;
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
	int64_t now = loop_now_ns();
	unsigned ready = 0, coming = 0;

	r->commit_at = 0;
	if (now >= r->sync_ended_ns + APPLY_GATHER_NS)
		return false;
	for (struct transfer *t = r->transfers; t; t = t->next) {
		if (t->syncing || t->done || t->failed)
			continue;
		if (t->ready)
			ready++;
		else
			coming++;
	}
	if (!ready || !coming || ready >= APPLY_GATHER_FILES)
		return false;
	r->commit_at = r->sync_ended_ns + APPLY_GATHER_NS;
	return true;
}

/*
 * One flush for a whole batch, before any rename makes a file visible
 * under its real name.  A few large files are flushed one by one: their
 * own data is most of the work, and syncfs would add every other dirty
 * page of the filesystem.  Otherwise one syncfs: a commit per small file
 * would cost more than the rest.  The flush runs on the syncer's thread;
 * the batch is what was ready when it started, and transfers that become
 * ready meanwhile wait for the next one.
 */
static void commit_ready(struct replicate *r)
{
	int fds[SYNCER_FILES_MAX];
	uint64_t bytes = 0;
	size_t n = 0;

	if (r->sync_running || commit_gather(r))
		return;
	for (struct transfer *t = r->transfers; t; t = t->next)
		if (t->ready && !t->syncing && !copy_of_disk_pending(r, &t->job)) {
			t->syncing = true;
			t->flush_ns = loop_now_ns();
			if (n < SYNCER_FILES_MAX)
				fds[n] = t->fd;
			n++;
			bytes += t->job.size;
		}
	if (!n)
		return;
	if (n > SYNCER_FILES_MAX || bytes < n * APPLY_FSYNC_MIN_SIZE)
		n = 0;
	if (commit_syncer(r) == 0 && syncer_start(r->syncer, fds, n) == 0) {
		r->sync_running = true;
		for (struct transfer *t = r->transfers; t; t = t->next)
			if (t->syncing)
				transfer_store_list(r, t);
		return;
	}
	commit_synced(r, commit_flush_inline(r, fds, n));
}

/* ---- the tick --------------------------------------------------------------- */

static int apply_job(struct replicate *r, struct journal_job *job)
{
	const char *name;
	int dirfd = -1, err;

	if (job->op == JOURNAL_VOLUME_CREATE || job->op == JOURNAL_VOLUME_REMOVE)
		return apply_volume(r, job);
	if (copy_of_disk_pending(r, job))
		return -EAGAIN;
	/* A repair makes the very version the path holds, from the
	 * chunks of it that still check and peers' copies of the rest. */
	if (S_ISREG(job->mode) && (job->repair || !disk_has_content(r, job)))
		return transfer_new(r, job);
	if (r->precopies)
		precopy_drop(r, job->volume, job->path);
	err = apply_open_parent(r, job->volume, job->path, &dirfd, &name);
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

/* Words for why JOB failed with ERR, as kraken-journal status shows it. */
static const char *job_reason(const struct journal_job *job, int err)
{
	switch (err) {
	case KR_EHOSTILE:
		return "the path leaves the volume or crosses a symlink";
	case -EBUSY:
		return "the path changed on this node and the change is not "
		       "recorded yet";
	case -EAGAIN:
		return job->op == JOURNAL_DELETE ?
		       "the directory is not empty" :
		       "waiting for the conflict copy of the version on disk";
	case -EEXIST:
		return "something of another type is in the way";
	case -ENOTDIR:
		return "a parent of the path is not a directory";
	case -ENOENT:
		return "a parent directory of the path is missing";
	}
	return kr_strerror(err);
}

/* JOB failed with ERR: counted, and said once it is stuck (the job stays
 * and is retried less and less often, in case the cause goes away). */
static void job_failed(struct replicate *r, const struct journal_job *job,
		       int err)
{
	const char *why = job_reason(job, err);

	if (err == KR_EHOSTILE && job->failures == 0)
		log_warn("replicate", "not applying %s/%s: %s", job->volume,
			 job->path, why);
	else if (job->failures + 1 == JOURNAL_JOB_STUCK)
		log_warn("replicate", "applying %s/%s is stuck: %s (%u "
			 "attempts); retried every few minutes (at once "
			 "after POST /v1/admin/resync) until it works or a "
			 "newer version replaces it; 'kraken-journal status' "
			 "lists stuck jobs",
			 job->volume, job->path, why, JOURNAL_JOB_STUCK);
	journal_job_fail(r->journal, job, why);
}

/* Whether conflict copies wait, as entries are still arriving (see
 * "Conflicts"); sets when to look again. */
static bool copies_held(struct replicate *r)
{
	int64_t now = loop_now_ns(), last;

	if (!r->arrivals_n)
		return false;
	last = ARRIVAL(r, r->arrivals_n - 1).ns;
	if (now - last >= APPLY_COPY_SETTLE_NS) {
		r->copies_held_since = 0;
		return false;
	}
	if (!r->copies_held_since)
		r->copies_held_since = now;
	if (now - r->copies_held_since >= APPLY_COPY_HOLD_MAX_NS)
		return false;
	r->copies_wake_ns = last + APPLY_COPY_SETTLE_NS;
	return true;
}

static void apply_one(struct replicate *r, struct journal_job *job)
{
	int err = 0;

	if (job->copy_of && copies_held(r))
		return;   /* not a failure: looked at again once entries stop */
	if (!S_ISREG(job->mode) ||
	    (r->n_transfers < r->transfers_max &&
	     (job->size <= APPLY_LARGE_SIZE || r->n_large < APPLY_LARGE_MAX)))
		err = apply_job(r, job);
	if (err == -ENOENT && job->op != JOURNAL_DELETE &&
	    apply_revive_parents(r, job) > 0)
		err = apply_job(r, job);
	/* Waiting for a copy that is held is no failure either. */
	if (err && !(err == -EAGAIN && copies_held(r)))
		job_failed(r, job, err);
}

/*
 * How many transfers may run at once.  Each holds two descriptors (its
 * temp file and directory) until renamed into place; a quarter of the
 * limit stays for the rest (peers, journal, watcher, API clients).  More
 * transfers let more files wait for one flush while the next are made.
 */
unsigned apply_transfers_max(void)
{
	struct rlimit rl;
	rlim_t cap = APPLY_TRANSFERS_MAX;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur * 3 / 8 < cap)
		cap = rl.rlim_cur * 3 / 8;
	return cap < APPLY_TRANSFERS_MIN ? APPLY_TRANSFERS_MIN : (unsigned)cap;
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
static void apply_jobs(struct replicate *r)
{
	struct journal_job *jobs, last = { 0 };
	int n, seen = 0, fresh = 0, page_fresh, pages = 0;
	bool more;

	if (r->n_transfers >= r->transfers_max)
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
			if (!transfer_find(r, jobs[i].volume, jobs[i].path)) {
				apply_one(r, &jobs[i]);
				page_fresh++;
			}
			journal_job_release(&jobs[i]);
		}
		fresh += page_fresh;
		seen += n > 0 ? n : 0;
	} while (more && page_fresh > 0 && fresh < APPLY_JOBS_BATCH &&
		 r->n_transfers < r->transfers_max &&
		 ++pages <= (int)(r->transfers_max / APPLY_JOBS_BATCH));
	journal_job_release(&last);
	free(jobs);
	/* A full batch may have more behind it: on with it soon, while
	 * there are slots (a slot freed asks again anyway).  Deferred jobs
	 * are looked at again after a pause, or sooner when new entries
	 * arrive or a transfer slot frees up. */
	if (fresh >= APPLY_JOBS_BATCH && r->n_transfers < r->transfers_max)
		r->jobs_due = true;
	r->next_jobs_ns = seen > 0 ? loop_now_ns() + APPLY_RETRY_NS :
			  apply_next_retry(r);
	if (r->copies_wake_ns && (!r->next_jobs_ns ||
				  r->next_jobs_ns > r->copies_wake_ns))
		r->next_jobs_ns = r->copies_wake_ns;
	r->copies_wake_ns = 0;
}

void apply_precopy_done(struct replicate *r)
{
	for (struct transfer *t = r->transfers; t; t = t->next)
		if (t->precopy_wait)
			transfer_step(r, t);
	precopy_tick(r, loop_now_ns());
}

void apply_tick(struct replicate *r)
{
	int64_t now = loop_now_ns();

	if (r->hold)
		return;
	if ((r->jobs_due && now >= r->last_jobs_ns + APPLY_JOBS_GAP_NS) ||
	    (r->next_jobs_ns && now >= r->next_jobs_ns)) {
		r->jobs_due = false;
		r->last_jobs_ns = now;
		apply_jobs(r);
	}
	for (struct transfer *t = r->transfers; t; t = t->next)
		transfer_step(r, t);
	commit_ready(r);
	transfers_reap(r);
	precopy_tick(r, now);
	/* Transfers waiting on peers are stepped again soon: requests
	 * that found every window full go out once replies come in. */
	if (r->n_transfers && (!r->next_jobs_ns ||
			       r->next_jobs_ns > now + 50000000))
		r->next_jobs_ns = now + 50000000;
	/* Copies made ahead expire even with nothing else to do. */
	if (precopy_pending(r) && (!r->next_jobs_ns ||
				   r->next_jobs_ns > now + 1000000000))
		r->next_jobs_ns = now + 1000000000;
}

/* ---- frames from peers -------------------------------------------------------- */

static bool list_matches(const struct content *c)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t got[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;

	for (size_t i = 0; ok && i < c->n_chunks; i++)
		ok = EVP_DigestUpdate(md, c->chunks[i].hash,
				      CONTENT_HASH_LEN) == 1;
	ok = ok && EVP_DigestFinal_ex(md, got, &n) == 1 &&
	     memcmp(got, c->hash, CONTENT_HASH_LEN) == 0;
	EVP_MD_CTX_free(md);
	return ok;
}

/* Appends chunk K to T's list at OFF; false when the list is full. */
static bool list_append(struct transfer *t, uint32_t total,
			const uint8_t *hash, uint32_t len, uint64_t *off)
{
	struct content_chunk *k;

	if (t->list_got >= total)
		return false;
	k = &t->list.chunks[t->list_got++];
	memcpy(k->hash, hash, CONTENT_HASH_LEN);
	k->len = len;
	k->offset = *off;
	*off += len;
	return true;
}

/* Expands CL's items into T's list: chunks as they are, runs from the
 * base T asked with.  False on an item that does not fit. */
static bool list_expand(struct transfer *t, const struct wire_chunklist *cl,
			uint64_t *off)
{
	if (cl->has_base && (!t->base.n_chunks ||
	    memcmp(cl->base, t->base.hash, CONTENT_HASH_LEN) != 0))
		return false;
	for (uint32_t i = 0; i < cl->n; i++) {
		const struct wire_chunk_ref *it = &cl->chunks[i];

		if (!it->count) {
			if (!list_append(t, cl->total, it->hash, it->len, off))
				return false;
			continue;
		}
		if (it->base_index > t->base.n_chunks ||
		    it->count > t->base.n_chunks - it->base_index)
			return false;
		for (uint32_t k = 0; k < it->count; k++) {
			const struct content_chunk *b =
				&t->base.chunks[it->base_index + k];

			if (!list_append(t, cl->total, b->hash, b->len, off))
				return false;
		}
	}
	return true;
}

static void list_page(struct replicate *r, struct transfer *t,
		      const struct wire_chunklist *cl)
{
	uint64_t off = 0;

	if (cl->start != t->list_got || cl->total > cl->size + 1 ||
	    cl->total > (1u << 26)) {
		transfer_fail(t, KR_ECORRUPT);
		return;
	}
	if (t->list.chunks == NULL) {
		t->list.chunks = calloc((size_t)cl->total + 1,
					sizeof(*t->list.chunks));
		t->list.cap_chunks = (size_t)cl->total + 1;
		t->list.size = cl->size;
		memcpy(t->list.hash, cl->hash, CONTENT_HASH_LEN);
		if (!t->list.chunks) {
			transfer_fail(t, -ENOMEM);
			return;
		}
	}
	if (t->list_got > 0)
		off = t->list.chunks[t->list_got - 1].offset +
		      t->list.chunks[t->list_got - 1].len;
	if (!list_expand(t, cl, &off)) {
		log_warn("replicate", "chunk list for %s/%s names chunks it "
			 "cannot have", t->job.volume, t->job.path);
		transfer_fail(t, KR_ECORRUPT);
		return;
	}
	t->list.n_chunks = t->list_got;
	if (t->list_got < cl->total)
		return;
	/* The whole list: it must hash to the content hash and add up. */
	if (off != cl->size || !list_matches(&t->list)) {
		log_warn("replicate", "chunk list for %s/%s does not match its "
			 "hash", t->job.volume, t->job.path);
		transfer_fail(t, KR_ECORRUPT);
		return;
	}
	t->list_unstored = true;
	t->have_list = true;
	transfer_start_fetch(r, t);
	transfer_step(r, t);
}

void apply_on_chunklist(struct replicate *r, struct peer *p,
			const struct wire_chunklist *cl)
{
	for (struct transfer *t = r->transfers; t; t = t->next) {
		if (t->have_list || t->list_from != p ||
		    memcmp(t->job.hash, cl->hash, CONTENT_HASH_LEN) != 0)
			continue;
		list_page(r, t, cl);
	}
}

/* LEN chunk bytes asked of P are answered (or refused): out of its window. */
static void peer_arrived(struct peer *p, uint32_t len)
{
	p->fetch_inflight -= p->fetch_inflight >= len ? len : p->fetch_inflight;
}

/* ---- chunks handed to the writer thread ----------------------------------- */

/* A transfer that had chunks in the writer is done with them. */
static void written_target(struct transfer *t, size_t i, int result)
{
	t->writing--;
	if (result == 0) {
		transfer_mark(t, i, 1);
		transfer_sync_ahead(t, t->list.chunks[i].len);
	} else if (result == KR_ECORRUPT)
		t->got[i] = CHUNK_MISSING;            /* asked again, elsewhere */
	else
		transfer_fail(t, result);
}

static void apply_on_written(void *arg, uint32_t events)
{
	struct replicate *r = arg;
	struct writer_job *jobs = writer_collect(r->writer);

	(void)events;
	while (jobs) {
		struct writer_job *job = jobs;
		struct peer *p = job->result == KR_ECORRUPT ?
				 replicate_peer_by_id(r, job->from) : NULL;

		jobs = job->next;
		if (job->check_only) {
			struct transfer *t = job->targets[0].ctx;

			t->writing--;
			check_batch_done(r, t, job->targets[0].index,
					 job->n_check, job->result);
			if (t->missing == 0 && !t->ready && !t->failed)
				transfer_finish(r, t);
			writer_job_free(job);
			continue;
		}
		if (job->result == KR_ECORRUPT)
			log_warn("replicate", "peer %s sent a chunk that does "
				 "not match its hash; asking elsewhere",
				 job->from);
		else if (job->result)
			log_warn("replicate", "cannot write a received chunk: "
				 "%s; the file is fetched again",
				 kr_strerror(job->result));
		for (size_t k = 0; k < job->n_targets; k++) {
			struct transfer *t = job->targets[k].ctx;

			if (job->create.dirfd >= 0 && !job->result) {
				t->fd = job->targets[k].fd;   /* taken over */
				job->targets[k].fd = -1;
			}
			written_target(t, job->targets[k].index, job->result);
			if (p && p->slot < 64)
				t->refused |= 1ull << p->slot;
			if (job->result == KR_ECORRUPT)
				t->next_ask = 0;
			if (t->missing == 0 && !t->ready && !t->failed)
				transfer_finish(r, t);
		}
		writer_job_free(job);
	}
}

static int apply_writer(struct replicate *r)
{
	int err;

	if (r->writer)
		return 0;
	err = writer_new(APPLY_WRITER_BYTES, &r->writer);
	if (!err)
		err = loop_add_fd(r->loop, writer_fd(r->writer), EPOLLIN,
				  apply_on_written, r);
	if (err) {
		writer_free(r->writer);
		r->writer = NULL;
	}
	return err;
}

/* The places in transfers that wait for chunk C, as writer targets:
 * their number, or -E2BIG when there are more than a job holds. */
static int chunk_targets(struct replicate *r, const struct wire_chunk *c,
			 struct writer_job *job)
{
	for (struct transfer *t = r->transfers; t; t = t->next) {
		size_t first, n;

		if (!t->have_list || t->failed || !t->by_hash)
			continue;
		chunks_named(t, c->hash, &first, &n);
		for (size_t k = first; k < first + n; k++) {
			size_t i = t->by_hash[k];

			if (t->got[i] > CHUNK_ASKED || t->list.chunks[i].len != c->len)
				continue;
			if (job->n_targets == WRITER_TARGETS_MAX)
				return -E2BIG;
			job->targets[job->n_targets++] = (struct writer_target){
				.fd = t->fd,
				.offset = t->list.chunks[i].offset,
				.ctx = t,
				.index = i,
			};
		}
	}
	return (int)job->n_targets;
}

/*
 * Hands chunk C to the writer thread: 0 when it took it (or nobody wants
 * a chunk this large), else the caller verifies and writes it itself.
 * Small chunks stay with the caller: they may be pushed contents, and
 * their hash costs little.
 */
static int chunk_submit(struct replicate *r, struct peer *p,
			const struct wire_chunk *c)
{
	struct writer_job *job;
	int n, err;

	if (c->len <= PUSH_MAX_SIZE || apply_writer(r) != 0)
		return -EAGAIN;
	job = writer_job_new();
	if (!job)
		return -ENOMEM;
	n = chunk_targets(r, c, job);
	if (n <= 0) {
		free(job);
		return n == 0 ? 0 : n;
	}
	memcpy(job->hash, c->hash, CONTENT_HASH_LEN);
	snprintf(job->from, sizeof(job->from), "%s", p->id);
	job->len = c->len;
	job->data = malloc(c->len);
	if (!job->data) {
		free(job);
		return -ENOMEM;
	}
	memcpy(job->data, c->data, c->len);
	err = writer_submit(r->writer, job);
	if (err) {
		writer_job_free(job);
		return err;
	}
	for (size_t k = 0; k < job->n_targets; k++) {
		struct transfer *t = job->targets[k].ctx;

		t->got[job->targets[k].index] = CHUNK_WRITING;
		t->writing++;
	}
	return 0;
}

void apply_on_chunk(struct replicate *r, struct peer *p,
		    const struct wire_chunk *c)
{
	bool valid, maybe, wanted = false;
	uint8_t content[CONTENT_HASH_LEN];

	peer_arrived(p, c->len);
	p->stats.chunk_bytes_in += c->len;
	maybe = filter_maybe(r->wanted, c->hash);
	if (!maybe && c->len > PUSH_MAX_SIZE)
		return;                 /* nobody wants it, nor would keep it */
	if (maybe && chunk_submit(r, p, c) == 0)
		return;
	valid = apply_chunk_verify(c->data, c->len, c->hash);
	if (!valid) {
		/* The peer's file moved on since it was recorded (it sends
		 * without checking), or worse: ask someone else. */
		log_warn("replicate", "peer %s sent a chunk that does not match "
			 "its hash; asking elsewhere", p->id);
		apply_on_not_here(r, p, c->hash);
		return;
	}
	for (struct transfer *t = maybe ? r->transfers : NULL; t; t = t->next) {
		size_t first, n;

		if (!t->have_list || t->failed || !t->by_hash)
			continue;
		chunks_named(t, c->hash, &first, &n);
		wanted |= n > 0;
		for (size_t k = first; k < first + n; k++) {
			size_t i = t->by_hash[k];

			if (t->got[i] < CHUNK_HERE && t->list.chunks[i].len == c->len)
				transfer_put_chunk(t, i, c->data);
		}
		if (n && t->missing == 0 && !t->ready && !t->failed)
			transfer_finish(r, t);
	}
	if (wanted || c->len > PUSH_MAX_SIZE)
		return;
	memset(content, 0, sizeof(content));
	push_keep(r, c, content);
	if (!filter_maybe(r->awaited, content))
		return;
	/* Transfers already waiting for this content (their list asked,
	 * or the wait for the push running) take it now. */
	for (struct transfer *t = r->transfers; t; t = t->next)
		if (!t->have_list && !t->failed &&
		    memcmp(t->job.hash, content, CONTENT_HASH_LEN) == 0 &&
		    push_claim(r, t))
			transfer_step(r, t);
}

/* The chunk D answers into BUF, from the base bytes W names: true when
 * it matches its hash. */
static bool delta_rebuild(const struct transfer *t, const struct delta_want *w,
			  const struct wire_delta *d, uint8_t *buf)
{
	if (!delta_base_read(t, w, buf))
		return false;
	delta_apply(buf, d->len, d->map, d->data);
	return apply_chunk_verify(buf, d->len, d->hash);
}

/*
 * Rebuilds the chunk D answers from the base bytes of the transfer that
 * asked for it, checks it, and writes it wherever it is wanted.  A chunk
 * that does not check (the base changed meanwhile, or block digests that
 * collided) is asked for again whole.
 */
void apply_on_delta(struct replicate *r, struct peer *p,
		    const struct wire_delta *d)
{
	uint8_t *buf = NULL;

	peer_arrived(p, d->len);
	p->stats.chunk_bytes_in += d->data_len;
	if (!filter_maybe(r->wanted, d->hash))
		return;
	for (struct transfer *t = r->transfers; t; t = t->next) {
		struct delta_want *w = NULL;
		size_t first, n;

		if (!t->have_list || t->failed || !t->by_hash || !t->n_deltas)
			continue;
		chunks_named(t, d->hash, &first, &n);
		for (size_t k = first; k < first + n && !w; k++) {
			size_t i = t->by_hash[k];

			if (t->got[i] == CHUNK_ASKED && t->list.chunks[i].len == d->len)
				w = delta_find(t, i);
		}
		if (!w || (!buf && !(buf = malloc(d->len))))
			continue;
		if (!delta_rebuild(t, w, d, buf)) {
			log_debug("replicate", "%s/%s: a chunk rebuilt from a "
				  "delta does not check; asking for it whole",
				  t->job.volume, t->job.path);
			w->plain = true;
			t->got[w->i] = CHUNK_MISSING;
			t->next_ask = 0;
			continue;
		}
		for (size_t k = first; k < first + n; k++) {
			size_t i = t->by_hash[k];

			if (t->got[i] < CHUNK_HERE && t->list.chunks[i].len == d->len)
				transfer_put_chunk(t, i, buf);
		}
		if (t->missing == 0 && !t->ready && !t->failed)
			transfer_finish(r, t);
	}
	free(buf);
}

void apply_on_not_here(struct replicate *r, struct peer *p,
		       const uint8_t *hash)
{
	size_t idx = p->slot;
	uint64_t bit = idx < 64 ? 1ull << idx : 0;

	for (struct transfer *t = r->transfers; t; t = t->next) {
		bool hit = false;

		if (t->list_from == p && !t->have_list &&
		    memcmp(t->job.hash, hash, CONTENT_HASH_LEN) == 0) {
			t->list_from = NULL;
			hit = true;
		}
		for (size_t i = 0; t->got && i < t->list.n_chunks; i++) {
			if (t->got[i] != CHUNK_ASKED || memcmp(t->list.chunks[i].hash,
						     hash, CONTENT_HASH_LEN))
				continue;
			t->got[i] = CHUNK_MISSING;
			hit = true;
			peer_arrived(p, t->list.chunks[i].len);
		}
		if (hit) {
			t->refused |= bit;
			t->next_ask = 0;
		}
	}
}

void apply_peer_gone(struct replicate *r, struct peer *p)
{
	p->fetch_inflight = 0;
	for (struct transfer *t = r->transfers; t; t = t->next) {
		if (t->list_from == p && !t->have_list)
			t->list_from = NULL;
		for (size_t i = 0; t->got && i < t->list.n_chunks; i++)
			if (t->got[i] == CHUNK_ASKED)
				t->got[i] = CHUNK_MISSING;
		t->next_ask = 0;
	}
}

void apply_peer_removed(struct replicate *r, struct peer *p)
{
	apply_peer_gone(r, p);
	for (struct transfer *t = r->transfers; t; t = t->next)
		if (t->list_from == p)
			t->list_from = NULL;
}

void apply_peers_renumbered(struct replicate *r)
{
	for (struct transfer *t = r->transfers; t; t = t->next) {
		t->refused = 0;
		t->next_ask = 0;
	}
}

void apply_free(struct replicate *r)
{
	if (r->rootfd >= 0)
		close(r->rootfd);
	r->rootfd = -1;
	while (r->transfers) {
		struct transfer *t = r->transfers;

		r->transfers = t->next;
		transfer_free(t);
	}
	r->n_transfers = r->n_large = 0;
	strmap_clear(&r->inflight);
	push_free(r);
	free(r->wanted);
	free(r->awaited);
	r->wanted = r->awaited = NULL;
}

void apply_stop(struct replicate *r)
{
	precopy_free_all(r);
	if (r->writer) {
		/* Joined before the transfers whose files it writes go. */
		loop_del_fd(r->loop, writer_fd(r->writer));
		writer_free(r->writer);
		r->writer = NULL;
	}
	if (!r->syncer)
		return;
	loop_del_fd(r->loop, syncer_fd(r->syncer));
	syncer_free(r->syncer);       /* waits for a running sync */
	r->syncer = NULL;
	r->sync_running = false;
}

/* ---- serving ------------------------------------------------------------------- */

/*
 * C's list as items: runs of BASE where C repeats it, single chunks
 * elsewhere.  Greedy from the left, which finds every unchanged stretch of
 * an edited file: content-defined boundaries resynchronise right after
 * the edit.  *N items into *OUT (malloc'd).
 */
static int chunklist_diff(const struct content *base, const struct content *c,
			  struct wire_chunk_ref **out, size_t *n)
{
	struct base_index ix = { 0 };
	struct wire_chunk_ref *v = calloc(c->n_chunks + 1, sizeof(*v));
	int err = v ? base_index_build(&ix, base) : -ENOMEM;

	*n = 0;
	for (size_t i = 0; !err && i < c->n_chunks;) {
		int64_t j = base_find(&ix, base, &c->chunks[i]);
		struct wire_chunk_ref *it = &v[(*n)++];
		size_t k = 0;

		if (j < 0) {
			memcpy(it->hash, c->chunks[i].hash, CONTENT_HASH_LEN);
			it->len = c->chunks[i].len;
			i++;
			continue;
		}
		while (i + k < c->n_chunks && (size_t)j + k < base->n_chunks &&
		       chunk_same(&c->chunks[i + k], &base->chunks[j + k]))
			k++;
		it->base_index = (uint32_t)j;
		it->count = (uint32_t)k;
		i += k;
	}
	free(ix.slot);
	if (err) {
		free(v);
		v = NULL;
	}
	*out = v;
	return err;
}

/* The list as items: against the asker's base when both have it, else
 * chunk by chunk. */
static int chunklist_items(struct replicate *r,
			   const struct wire_get_chunklist *g,
			   const struct content *c, struct content *base,
			   struct wire_chunk_ref **out, size_t *n)
{
	if (g->has_base && c->n_chunks > 1 &&
	    journal_content_load(r->journal, g->base, base) == 0 &&
	    base->n_chunks > 0)
		return chunklist_diff(base, c, out, n);
	content_release(base);
	*out = calloc(c->n_chunks + 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (size_t i = 0; i < c->n_chunks; i++) {
		memcpy((*out)[i].hash, c->chunks[i].hash, CONTENT_HASH_LEN);
		(*out)[i].len = c->chunks[i].len;
	}
	*n = c->n_chunks;
	return 0;
}

int serve_chunklist(struct replicate *r, struct session *s,
		    const struct wire_get_chunklist *g)
{
	struct content c = { 0 }, base = { 0 };
	struct wire_chunk_ref *items = NULL;
	struct wire_msg m = { .type = WIRE_CHUNKLIST };
	/* Pages sized to stay far under the frame cap. */
	const size_t page = 65536;
	size_t n_items = 0, first = 0;
	uint64_t start = 0;
	int err = journal_content_load(r->journal, g->hash, &c);

	if (err) {
		struct wire_msg nh = { .type = WIRE_NOT_HERE };

		memcpy(nh.not_here, g->hash, CONTENT_HASH_LEN);
		content_release(&c);
		return session_send(s, &nh);
	}
	err = chunklist_items(r, g, &c, &base, &items, &n_items);
	memcpy(m.chunklist.hash, g->hash, CONTENT_HASH_LEN);
	m.chunklist.size = c.size;
	m.chunklist.total = (uint32_t)c.n_chunks;
	m.chunklist.has_base = base.n_chunks > 0;
	memcpy(m.chunklist.base, g->base, CONTENT_HASH_LEN);
	/* Pages follow on from where the asker stands (START, in chunks);
	 * a page never splits an item. */
	while (!err && first < n_items && start + (items[first].count ?
		items[first].count : 1) <= g->start) {
		start += items[first].count ? items[first].count : 1;
		first++;
	}
	do {
		m.chunklist.start = (uint32_t)start;
		m.chunklist.n = (uint32_t)(n_items - first < page ?
					   n_items - first : page);
		m.chunklist.chunks = items + first;
		if (!err)
			err = session_send(s, &m);
		start += wire_chunklist_span(&m.chunklist);
		first += m.chunklist.n;
	} while (!err && first < n_items);
	free(items);
	content_release(&base);
	content_release(&c);
	return err;
}
