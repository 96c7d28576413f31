/*
 * Chunks this node already holds, put into a transfer's temp file before
 * and while peers are asked for the rest (transfer.h, FETCH).
 *
 * An edit keeps most of a file: the chunks the new version shares with
 * the one it replaces (the base) are copied from the file on disk, run by
 * run (plan_runs), inside the kernel and without a lookup or a hash per
 * chunk, when that file is still exactly what the journal recorded.
 * Planned first and copied last, so that the chunks nobody here has are
 * asked of peers before the copy and arrive while it runs.  Other chunks
 * are looked up in the journal (any file of any volume may hold them),
 * read and verified.  The temp file may also start as a copy of the base
 * made ahead while the peer was still hashing (precopy.c).
 *
 * Bytes copied from the base (copy_file_range, a clone, the copy made
 * ahead) were never looked at, and a disk can rot under an unchanged
 * inode, size and mtime.  No hash is recorded that the bytes do not
 * have: each such chunk is read back and hashed on the writer thread
 * before it counts (CHECKING), and one that does not match is fetched
 * from a peer.  That costs a read of the reused bytes (from the page
 * cache, mostly) and their SHA-256, beside the loop.
 */
#include "transfer.h"
#include "disk.h"
#include "replicate_int.h"
#include "precopy.h"
#include "session.h"
#include "writer.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bytes copied from the base are checked in reads of up to this much. */
#define REUSE_CHECK_BYTES (1u << 20)

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
	if (disk_open_parent(r, volume, path, &dirfd, &name))
		goto out;
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 || pread(fd, buf, len, (off_t)off) != (ssize_t)len)
		goto out;
	ok = disk_chunk_verify(buf, len, k->hash);
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

static int open_temp(struct transfer *t)
{
	tempname_make(t->tmp, sizeof(t->tmp));
	t->fd = openat(t->dirfd, t->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
		       0600);
	/* No ftruncate to the size: the chunks cover [0, size) exactly, so
	 * the last one written makes it, and a small file saves a call. */
	return t->fd < 0 ? -errno : 0;
}

/*
 * The temp file: the copy of the base made ahead (precopy.c), cut to the
 * new size, when there is one; else a new file.  -EINPROGRESS while that
 * copy is still being made.
 */
static int reuse_temp(struct replicate *r, struct transfer *t)
{
	int rc = 0, fd = -1;

	if (t->fd >= 0)
		return 0;
	if (t->base.n_chunks)
		rc = precopy_take(r, t->job.volume, t->job.path, t->base.hash,
				  t->dirfd, t->tmp, &fd);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return open_temp(t);
	t->fd = fd;
	t->precopied = true;
	log_debug("replicate", "%s/%s: starting from the copy made ahead",
		  t->job.volume, t->job.path);
	return ftruncate(t->fd, (off_t)t->list.size) == 0 ? 0 : -errno;
}

/* The runs of T to copy from its base, and the base's file. */
struct base_plan {
	int fd;
	struct plan_run *runs;
	size_t n;
};

/* The base on disk, when it is still exactly what the journal recorded:
 * its descriptor, else -1. */
static int base_open(struct replicate *r, const struct transfer *t)
{
	struct journal_state cur = { 0 };
	const char *name;
	int dirfd = -1, fd = -1;

	if (journal_lookup(r->journal, t->job.volume, t->job.path, &cur) ||
	    !cur.has_hash ||
	    memcmp(cur.hash, t->base.hash, CONTENT_HASH_LEN) != 0 ||
	    disk_open_parent(r, t->job.volume, t->job.path, &dirfd, &name))
		goto out;
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0 && !disk_file_current(&cur, fd)) {
		close(fd);
		fd = -1;
	}
out:
	if (dirfd >= 0)
		close(dirfd);
	journal_state_release(&cur);
	return fd;
}

/* Planned chunks are FROM_BASE: neither looked up nor asked.  Runs are
 * cut in slices so that writeback (transfer_mark) starts while the rest
 * is still being copied. */
static void base_plan_make(struct replicate *r, struct transfer *t,
			   struct base_plan *plan)
{
	plan->fd = t->base.n_chunks ? base_open(r, t) : -1;
	if (plan->fd < 0)
		return;
	/* A plan cut short by memory is still a plan. */
	(void)plan_runs(&t->list, &t->base, t->got,
			TRANSFER_WRITEBACK_BYTES * 4, &plan->runs, &plan->n);
	for (size_t n = 0; n < plan->n; n++)
		for (size_t k = 0; k < plan->runs[n].k; k++)
			transfer_chunk_set(t, plan->runs[n].i + k,
					   CHUNK_FROM_BASE);
}

/* Marks the K chunks of T from I as TO. */
static void chunks_set(struct transfer *t, size_t i, size_t k,
		       enum chunk_state to)
{
	while (k--)
		transfer_chunk_set(t, i++, to);
}

/*
 * Copies the planned runs inside the kernel; a run that fails is left
 * to the peers (missing again), one copied is checked before it counts.
 * The old version's cached pages are dropped once copied: the version
 * replacing it needs as many new ones, and pages just freed are cheaper
 * to reuse than memory nobody touched yet (on a VM, often an order of
 * magnitude), besides halving what a large edit holds in the page cache.
 */
static void base_plan_copy(struct transfer *t, struct base_plan *plan)
{
	for (size_t r = 0; r < plan->n; r++) {
		const struct plan_run *run = &plan->runs[r];
		loff_t src = (loff_t)t->base.chunks[run->j].offset;
		loff_t dst = (loff_t)t->list.chunks[run->i].offset;
		loff_t from = src;
		uint64_t left = 0;

		for (size_t k = 0; k < run->k; k++)
			left += t->list.chunks[run->i + k].len;
		/* A temp file copied from the base has these bytes in place. */
		if (t->precopied && src == dst)
			left = 0;
		while (left > 0 && t->state != TRANSFER_FAILED) {
			ssize_t n = copy_file_range(plan->fd, &src, t->fd,
						    &dst, left, 0);

			if (n <= 0)
				break;
			left -= (uint64_t)n;
		}
		chunks_set(t, run->i, run->k,
			   left == 0 ? CHUNK_CHECKING : CHUNK_MISSING);
		if (src > from)
			posix_fadvise(plan->fd, from, src - from,
				      POSIX_FADV_DONTNEED);
	}
	free(plan->runs);
	if (plan->fd >= 0)
		close(plan->fd);
}

/* The chunks to ask for as deltas from the base (plan_deltas); T keeps
 * the base's file open for that. */
static void delta_plan(struct transfer *t, const struct base_plan *plan)
{
	if (plan->fd < 0 || plan->n == 0)
		return;
	t->deltas = calloc(PLAN_DELTAS_MAX, sizeof(*t->deltas));
	if (!t->deltas)
		return;
	t->n_deltas = plan_deltas(&t->list, &t->base, t->got, plan->runs,
				  plan->n, t->deltas);
	if (t->n_deltas)
		t->base_fd = dup(plan->fd);
	if (t->base_fd < 0) {
		free(t->deltas);
		t->deltas = NULL;
		t->n_deltas = 0;
	}
}

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
	r->xfer.damaged_chunks++;
	transfer_chunk_set(t, i, CHUNK_MISSING);
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
	else if (buf && !disk_chunk_verify(buf, k->len, k->hash))
		result = KR_ECORRUPT;
	free(buf);
	check_done(r, t, i, result);
}

/* On a mismatch each chunk is checked again alone, to fetch only the
 * damaged ones. */
void reuse_checked(struct replicate *r, struct transfer *t, size_t i,
		   size_t n, int result)
{
	if (result == 0)
		transfer_mark(t, i, n);
	else if (result == KR_ECORRUPT)
		for (size_t k = i; k < i + n && t->state != TRANSFER_FAILED; k++)
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
	struct writer_job *job = fetch_writer(r) ? NULL : writer_job_new();
	uint64_t len = last->offset + last->len - k->offset;
	int err;

	if (!job || !(job->data = malloc(len))) {
		writer_job_free(job);
		reuse_checked(r, t, i, n, KR_ECORRUPT);
		return 0;
	}
	job->len = (uint32_t)len;
	job->check_only = true;
	job->check = k;
	job->n_check = n;
	job->n_targets = 1;
	job->targets[0] = (struct writer_target){ .fd = t->fd,
		.offset = k->offset, .ctx = t, .index = i };
	err = writer_submit(r->xfer.writer, job);
	if (err) {
		writer_job_free(job);
		return err;
	}
	t->writing++;
	return 0;
}

void reuse_check_base(struct replicate *r, struct transfer *t)
{
	while (t->check_next < t->list.n_chunks &&
	       t->state == TRANSFER_FETCH) {
		size_t i = t->check_next, n = 0;
		uint64_t len = 0;

		while (i + n < t->list.n_chunks &&
		       t->got[i + n] == CHUNK_CHECKING &&
		       (n == 0 ||
			len + t->list.chunks[i + n].len <= REUSE_CHECK_BYTES)) {
			len += t->list.chunks[i + n].len;
			n++;
		}
		if (n && check_submit(r, t, i, n) == -EAGAIN)
			return;
		t->check_next = i + (n ? n : 1);
	}
}

void reuse_fill(struct replicate *r, struct transfer *t)
{
	struct base_plan plan = { .fd = -1 };
	uint8_t *buf;
	int err = reuse_temp(r, t);

	if (err == -EINPROGRESS) {
		transfer_set_state(t, TRANSFER_PRECOPY);
		return;
	}
	buf = err ? NULL : malloc(WIRE_MAX_CHUNK);
	if (!buf) {
		transfer_fail(t, err ? err : -ENOMEM);
		return;
	}
	transfer_set_state(t, TRANSFER_FETCH);
	base_plan_make(r, t, &plan);
	(void)journal_read_begin(r->journal);
	for (size_t i = 0; i < t->list.n_chunks &&
	     t->state != TRANSFER_FAILED; i++)
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
	reuse_check_base(r, t);
}
