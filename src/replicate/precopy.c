/*
 * Copies of a large file made while its new version is still being
 * hashed on the node that changed it.
 *
 * An edit of a large file costs the receiver a copy of the version it
 * holds into the temp file, the chunks that changed written over it, and
 * a flush: the disk writes the whole file again.  That work does not
 * depend on the new version, only on the old one, yet it could only start
 * once the sender had hashed the new version and sent its list.  A
 * CHANGING message from the sender (see wire.h) starts it at once, on a
 * thread, so that it overlaps the sender's hashing; the transfer for the
 * new version then takes the copy over (reuse.c) and only rewrites what
 * moved.
 *
 * Where the filesystem shares extents between files (XFS with reflink,
 * btrfs), the copy is a clone (FICLONE): no byte is read or written, and
 * the chunks written over it later are copied on write, so the flush
 * before the rename writes only those.  Elsewhere the copy bypasses the
 * page cache where the filesystem allows (O_DIRECT): see
 * precopy_step_direct.
 *
 * States: RUNNING (the thread copies) -> DONE or FAILED (the thread set
 * it and woke the loop) -> taken by the transfer of the new version.
 * Dropped instead, temp file removed: when an entry for the path brings
 * no new content (a touch), when a version not based on it comes, when
 * it failed, or PRECOPY_KEEP_NS after it finished unused.  At most
 * PRECOPY_MAX at once.  A copy needs twice the file's size free: each
 * holds a file's worth of disk on a guess.  A clone needs none, and is
 * tried whatever the space (clone_only: nothing else when short): on a
 * nearly full XFS the edit would otherwise write a whole new file next
 * to the old, and the versions kept from it fill the disk.
 *
 * Trust: only a file whose journal state and disk agree, and whose
 * content is the base the sender named, is copied; the copy is good only
 * if the file did not change while it was read (size, mtime and ctime
 * compared before and after).  The taker checks again that the file is
 * still that version before it trusts a byte of the copy.  A temp file
 * left by a crash is removed by the watcher's start-up scan like any.
 */
#include "replicate_int.h"
#include "precopy.h"

#include "io.h"
#include "log.h"
#include "loop.h"
#include "tempname.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Smaller files are copied after the list comes, in little time. */
#define PRECOPY_MIN_SIZE (64u << 20)
#define PRECOPY_MAX 2
/* A copy nobody took by then is not for a version on its way. */
#define PRECOPY_KEEP_NS (30LL * 1000000000)
/* Copied per step: a stop request is seen, writeback starts. */
#define PRECOPY_STEP (8u << 20)
/* O_DIRECT offsets, lengths and memory: any logical block size up to it. */
#define PRECOPY_ALIGN 4096

enum precopy_state { PRECOPY_RUNNING, PRECOPY_DONE, PRECOPY_FAILED };

struct precopy {
	struct replicate *r;
	char volume[VOLUME_NAME_MAX + 1];
	char *path;
	uint8_t base[CONTENT_HASH_LEN];
	int dirfd;                /* O_PATH of the file's directory */
	char tmp[TEMPNAME_MAX];
	int src, dst;
	struct stat before;       /* of src, when the copy started */
	pthread_t thread;
	atomic_int state;
	atomic_bool stop;
	atomic_bool urgent;       /* a transfer waits for it */
	bool cloned;              /* made by FICLONE, sharing the extents */
	bool clone_only;          /* no room for a copy: a clone or nothing */
	int64_t done_ns;          /* when the loop saw it finish */
	struct precopy *next;
};

static bool same_version(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size && a->st_ino == b->st_ino &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* This thread's nice value; failing leaves it as it was. */
static void precopy_nice(int nice)
{
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) != 0)
		(void)0;
}

/*
 * One step around the page cache: read into BUF, written through DFD
 * (O_DIRECT), the last block padded with zeros (cut off at the end).
 * Filling the page cache with a file's worth of new pages is what is slow
 * on a VM whose host has taken back memory the guest left idle (a GiB in
 * 1 to 4 s), where the disk takes the same GiB directly in about one.
 */
static ssize_t precopy_step_direct(struct precopy *pc, int dfd, uint8_t *buf,
				   uint64_t off, size_t len)
{
	ssize_t n = io_pread_full(pc->src, buf, len, off), w;
	size_t padded;

	if (n <= 0)
		return n;
	padded = ((size_t)n + PRECOPY_ALIGN - 1) & ~(size_t)(PRECOPY_ALIGN - 1);
	memset(buf + n, 0, padded - (size_t)n);
	w = pwrite(dfd, buf, padded, (off_t)off);
	if (w < 0)
		return -errno;
	return w == (ssize_t)padded ? n : -EIO;
}

/* One step inside the kernel, through the page cache: where O_DIRECT is
 * not to be had. */
static ssize_t precopy_step_kernel(struct precopy *pc, uint64_t off,
				   size_t len)
{
	loff_t in = (loff_t)off, out = (loff_t)off;
	ssize_t n = copy_file_range(pc->src, &in, pc->dst, &out, len, 0);

	if (n < 0)
		return -errno;
	sync_file_range(pc->dst, (off64_t)off, n, SYNC_FILE_RANGE_WRITE);
	return n;
}

/* A descriptor writing the temp file with O_DIRECT and an aligned buffer
 * for it, or -1 (the kernel copies instead). */
static int precopy_open_direct(struct precopy *pc, uint8_t **buf)
{
	int fd = openat(pc->dirfd, pc->tmp, O_WRONLY | O_DIRECT | O_NOFOLLOW |
			O_CLOEXEC);
	void *p = NULL;

	if (fd >= 0 && posix_memalign(&p, PRECOPY_ALIGN, PRECOPY_STEP) == 0) {
		*buf = p;
		return fd;
	}
	if (fd >= 0)
		close(fd);
	*buf = NULL;
	return -1;
}

/*
 * The thread: the whole file, in steps.  Work ahead of need runs at the
 * lowest priority so as not to slow what is needed now (on a node sharing
 * its cores, the hashing of the new version), until a transfer waits for
 * it: then at the usual one (which takes CAP_SYS_NICE; without, it stays
 * low).
 */
static int precopy_copy(struct precopy *pc)
{
	uint64_t off = 0, size = (uint64_t)pc->before.st_size;
	bool raised = false;
	uint8_t *buf = NULL;
	int dfd = -1, err = 0;
	struct stat after;

	if (ioctl(pc->dst, FICLONE, pc->src) == 0) {
		pc->cloned = true;
		off = size;
	} else if (pc->clone_only) {
		return -ENOSPC;
	} else {
		dfd = precopy_open_direct(pc, &buf);
	}
	precopy_nice(19);
	while (!err && off < size) {
		size_t len = size - off < PRECOPY_STEP ? (size_t)(size - off)
						       : PRECOPY_STEP;
		ssize_t n;

		if (atomic_load(&pc->stop)) {
			err = -ECANCELED;
			break;
		}
		if (!raised && atomic_load(&pc->urgent)) {
			precopy_nice(0);
			raised = true;
		}
		n = dfd >= 0 ? precopy_step_direct(pc, dfd, buf, off, len)
			     : precopy_step_kernel(pc, off, len);
		if (n == -EINVAL && dfd >= 0) {
			close(dfd);       /* no O_DIRECT here after all */
			dfd = -1;
			continue;
		}
		if (n < 0)
			err = (int)n;
		else if (n == 0)
			err = -ESTALE;    /* shorter than it was */
		off += n > 0 ? (uint64_t)n : 0;
	}
	if (dfd >= 0)
		close(dfd);
	free(buf);
	if (!err && ftruncate(pc->dst, (off_t)size) != 0)
		err = -errno;
	if (!err && fstat(pc->src, &after) != 0)
		err = -errno;
	if (!err && !same_version(&pc->before, &after))
		err = -ESTALE;
	return err;
}

static void *precopy_main(void *arg)
{
	struct precopy *pc = arg;
	uint64_t one = 1;
	int err = precopy_copy(pc);

	atomic_store(&pc->state, err ? PRECOPY_FAILED : PRECOPY_DONE);
	/* Nothing to do if the write fails: the loop looks at every
	 * copy's state on its next tick as well. */
	if (write(pc->r->precopy_efd, &one, sizeof(one)) < 0)
		(void)0;
	return NULL;
}

/* Waits for the thread, removes the temp file, frees PC. */
static void precopy_free(struct precopy *pc)
{
	atomic_store(&pc->stop, true);
	pthread_join(pc->thread, NULL);
	if (pc->dst >= 0) {
		close(pc->dst);
		unlinkat(pc->dirfd, pc->tmp, 0);
	}
	if (pc->src >= 0)
		close(pc->src);
	if (pc->dirfd >= 0)
		close(pc->dirfd);
	free(pc->path);
	free(pc);
}

static void precopy_on_event(void *arg, uint32_t events)
{
	struct replicate *r = arg;
	uint64_t n;

	(void)events;
	if (read(r->precopy_efd, &n, sizeof(n)) < 0)
		(void)0;          /* spurious: the states tell */
	/* The transfer waiting for it goes on at this turn's tick, which
	 * steps every transfer (transfer_tick). */
	precopy_tick(r, loop_now_ns());
}

static int precopy_efd(struct replicate *r)
{
	int err;

	if (r->precopy_efd >= 0)
		return 0;
	r->precopy_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->precopy_efd < 0)
		return -errno;
	err = loop_add_fd(r->loop, r->precopy_efd, EPOLLIN, precopy_on_event,
			  r);
	if (err) {
		close(r->precopy_efd);
		r->precopy_efd = -1;
	}
	return err;
}

/* The link to VOLUME/PATH's copy in the list; *link is NULL when none. */
static struct precopy **precopy_link(struct replicate *r, const char *volume,
				     const char *path)
{
	struct precopy **pp = &r->precopies;

	while (*pp && (strcmp((*pp)->volume, volume) != 0 ||
		       strcmp((*pp)->path, path) != 0))
		pp = &(*pp)->next;
	return pp;
}

static size_t precopy_count(const struct replicate *r)
{
	size_t n = 0;

	for (const struct precopy *pc = r->precopies; pc; pc = pc->next)
		n++;
	return n;
}

/* The file at C's path, if it holds C's base as the journal says: its
 * descriptor, or -1. */
static int precopy_open_base(struct replicate *r,
			     const struct wire_changing *c, int *dirfd)
{
	struct journal_state cur = { 0 };
	const char *name;
	int fd = -1;

	*dirfd = -1;
	if (journal_lookup(r->journal, c->volume, c->path, &cur) != 0 ||
	    !S_ISREG(cur.mode) || !cur.has_hash ||
	    memcmp(cur.hash, c->base, CONTENT_HASH_LEN) != 0 ||
	    cur.size < PRECOPY_MIN_SIZE ||
	    disk_open_parent(r, c->volume, c->path, dirfd, &name) != 0)
		goto out;
	fd = openat(*dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
		    O_CLOEXEC);
	if (fd >= 0 && !disk_file_current(&cur, fd)) {
		close(fd);
		fd = -1;
	}
out:
	journal_state_release(&cur);
	return fd;
}

/* Room for the copy with as much to spare: it is only a guess that the
 * version needing it is on its way, and must not fill a disk others use. */
static bool precopy_room(int dirfd, uint64_t size)
{
	struct statvfs v;

	return fstatvfs(dirfd, &v) == 0 &&
	       (uint64_t)v.f_bavail * v.f_frsize / 2 >= size;
}

/* Starts the copy thread for PC; 0 or -errno. */
static int precopy_start(struct precopy *pc)
{
	sigset_t all, old;
	int err;

	tempname_make(pc->tmp, sizeof(pc->tmp));
	pc->dst = openat(pc->dirfd, pc->tmp,
			 O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (pc->dst < 0)
		return -errno;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&pc->thread, NULL, precopy_main, pc);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		close(pc->dst);
		unlinkat(pc->dirfd, pc->tmp, 0);
		pc->dst = -1;
	}
	return -err;
}

void precopy_on_changing(struct replicate *r, struct peer *p,
			 const struct wire_changing *c)
{
	struct precopy *pc;
	int dirfd, fd;

	if (c->size < PRECOPY_MIN_SIZE || *precopy_link(r, c->volume, c->path) ||
	    precopy_count(r) >= PRECOPY_MAX || precopy_efd(r) != 0)
		return;
	fd = precopy_open_base(r, c, &dirfd);
	pc = fd >= 0 ? calloc(1, sizeof(*pc)) : NULL;
	if (!pc || fstat(fd, &pc->before) != 0 ||
	    !(pc->path = strdup(c->path))) {
		if (fd >= 0)
			close(fd);
		if (dirfd >= 0)
			close(dirfd);
		if (pc)
			free(pc);
		return;
	}
	pc->r = r;
	pc->clone_only = !precopy_room(dirfd, c->size);
	snprintf(pc->volume, sizeof(pc->volume), "%s", c->volume);
	memcpy(pc->base, c->base, CONTENT_HASH_LEN);
	pc->dirfd = dirfd;
	pc->src = fd;
	atomic_init(&pc->state, PRECOPY_RUNNING);
	atomic_init(&pc->stop, false);
	atomic_init(&pc->urgent, false);
	if (precopy_start(pc) != 0) {
		close(fd);
		close(dirfd);
		free(pc->path);
		free(pc);
		return;
	}
	pc->next = r->precopies;
	r->precopies = pc;
	log_debug("replicate", "%s is changing %s/%s: copying the version "
		  "held here ahead of its list", p->id, c->volume, c->path);
}

int precopy_take(struct replicate *r, const char *volume, const char *path,
		 const uint8_t base[CONTENT_HASH_LEN], int dirfd,
		 char tmp[TEMPNAME_MAX], int *fd)
{
	struct precopy **pp = precopy_link(r, volume, path), *pc = *pp;
	struct stat a, b;
	bool same;
	int state;

	*fd = -1;
	if (!pc)
		return 0;
	same = memcmp(pc->base, base, CONTENT_HASH_LEN) == 0;
	state = atomic_load(&pc->state);
	if (same && state == PRECOPY_RUNNING) {
		atomic_store(&pc->urgent, true);
		return -EINPROGRESS;
	}
	*pp = pc->next;
	/* Of another base it is stale: the path moved on without it.  The
	 * directory must be the transfer's, which renames through DIRFD. */
	if (same && state == PRECOPY_DONE && fstat(dirfd, &a) == 0 &&
	    fstat(pc->dirfd, &b) == 0 && a.st_dev == b.st_dev &&
	    a.st_ino == b.st_ino) {
		memcpy(tmp, pc->tmp, sizeof(pc->tmp));
		*fd = pc->dst;
		pc->dst = -1;
		if (pc->cloned)
			log_debug("replicate", "%s/%s: the copy made ahead is "
				  "a clone, sharing the old version's extents",
				  volume, path);
	}
	precopy_free(pc);
	return *fd >= 0 ? 1 : 0;
}

void precopy_drop(struct replicate *r, const char *volume, const char *path)
{
	struct precopy **pp = precopy_link(r, volume, path), *pc = *pp;

	if (!pc)
		return;
	*pp = pc->next;
	log_debug("replicate", "copy of %s/%s ahead of a new version not "
		  "needed; removed", volume, path);
	precopy_free(pc);
}

void precopy_on_entry(struct replicate *r, const struct wire_entry *e)
{
	struct precopy *pc = *precopy_link(r, e->volume, e->path);

	if (pc && (!e->has_hash ||
		   memcmp(e->hash, pc->base, CONTENT_HASH_LEN) == 0))
		precopy_drop(r, e->volume, e->path);
}

void precopy_tick(struct replicate *r, int64_t now)
{
	for (struct precopy **pp = &r->precopies; *pp;) {
		struct precopy *pc = *pp;
		int state = atomic_load(&pc->state);

		if (state != PRECOPY_RUNNING && !pc->done_ns)
			pc->done_ns = now;
		/* A failed copy goes at once: it may have filled the disk. */
		if (state != PRECOPY_FAILED &&
		    (!pc->done_ns || now - pc->done_ns < PRECOPY_KEEP_NS)) {
			pp = &pc->next;
			continue;
		}
		*pp = pc->next;
		log_debug("replicate", "copy of %s/%s ahead of a new version "
			  "%s; removed", pc->volume, pc->path,
			  state == PRECOPY_FAILED ? "failed" : "unused");
		precopy_free(pc);
	}
}

bool precopy_pending(const struct replicate *r)
{
	return r->precopies != NULL;
}

void precopy_free_all(struct replicate *r)
{
	while (r->precopies) {
		struct precopy *pc = r->precopies;

		r->precopies = pc->next;
		precopy_free(pc);
	}
	if (r->precopy_efd >= 0) {
		loop_del_fd(r->loop, r->precopy_efd);
		close(r->precopy_efd);
		r->precopy_efd = -1;
	}
}
