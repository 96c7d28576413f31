/*
 * Received chunks verified and written on a thread of its own.
 *
 * Receiving a large file, the event loop spent most of its time on work it
 * need not do itself: the SHA-256 of every chunk (checked against the hash
 * it was asked by) and the pwrite into the temp file.  Now the loop hands
 * a chunk (a copy of its bytes and where they go) to the writer and goes
 * back to receiving and decrypting; the writer checks the chunk, writes
 * it, and hands the job back through a readable descriptor with its
 * result.
 *
 * Ownership: a job is the caller's until writer_submit takes it, the
 * writer's until writer_collect returns it, then the caller's again.  The
 * thread touches nothing of a job but its bytes, hash and targets (plain
 * descriptors and offsets), so the caller's own structures stay on one
 * thread; the caller keeps a target's descriptor open while a job naming
 * it is out.  Memory is bounded: a job that would take the chunk bytes
 * held by the writer past MAX_BYTES is refused, and the caller does that
 * one itself.
 *
 * States of a job: queued -> (thread) done -> (writer_collect) returned.
 */
#ifndef KRAKEN_WRITER_H
#define KRAKEN_WRITER_H

#include "content.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WRITER_TARGETS_MAX 4

struct writer;

struct writer_target {
	int fd;
	uint64_t offset;
	void *ctx;                /* the caller's, untouched */
	size_t index;             /* the caller's, untouched */
};

/* A job may also make its file: NAME created in DIRFD (O_EXCL, 0600),
 * the bytes written, then owner (EPERM ignored), mode and mtime set.
 * For many small files the create is most of the work, and here it runs
 * beside the loop.  The new descriptor comes back in targets[0].fd; on
 * failure the half-made file is removed. */
struct writer_create {
	int dirfd;                /* -1: the targets exist already */
	char name[48];
	uint32_t mode, uid, gid;
	int64_t mtime_ns;
};

struct writer_job {
	uint8_t hash[CONTENT_HASH_LEN];
	bool verified;            /* the caller checked the bytes already */
	/* Nothing written: LEN bytes are read from targets[0] into DATA and
	 * checked against CHECK, N_CHECK contiguous chunks starting at
	 * targets[0].offset (bytes copied without being looked at); the
	 * chunks are the caller's and must stay until the job returns. */
	bool check_only;
	const struct content_chunk *check;
	size_t n_check;
	struct writer_create create;
	uint32_t len;
	uint8_t *data;            /* malloc'd, freed with the job */
	size_t n_targets;
	struct writer_target targets[WRITER_TARGETS_MAX];
	char from[72];            /* the caller's: who sent the chunk */
	/* 0, KR_ECORRUPT when the bytes do not match the hash (nothing
	 * written), or the -errno of the first write (or read) that
	 * failed. */
	int result;
	struct writer_job *next;
};

/* A writer holding at most MAX_BYTES of chunk data.  0 or -errno. */
int writer_new(size_t max_bytes, struct writer **out);
/* Finishes the job under way, joins the thread, frees every job not
 * collected.  NULL is ignored. */
void writer_free(struct writer *w);

/* Readable when finished jobs wait to be collected. */
int writer_fd(const struct writer *w);
/* Queues JOB: 0, or -EAGAIN when the writer is full (JOB stays the
 * caller's), -EINVAL for a job without data or targets, or a create job
 * with other than one target. */
int writer_submit(struct writer *w, struct writer_job *job);
/* The finished jobs, oldest first, linked by next; NULL when none. */
struct writer_job *writer_collect(struct writer *w);
/* Jobs submitted and not collected yet. */
size_t writer_outstanding(const struct writer *w);

/* Checks and writes JOB on the calling thread, setting its result: what
 * the thread does, for a job the writer had no room for. */
void writer_run(struct writer_job *job);
/* Owner (EPERM ignored: not root), mode bits of MODE and, unless MODE is
 * a directory's, the mtime of FD.  0 or -errno.  What a create job does
 * after writing, shared with the caller's own metadata changes. */
int writer_set_meta(int fd, uint32_t mode, uint32_t uid, uint32_t gid,
		    int64_t mtime_ns);
/* A new job, zeroed, not a create job.  NULL without memory. */
struct writer_job *writer_job_new(void);
/* Frees JOB, closing a descriptor it created that nobody collected. */
void writer_job_free(struct writer_job *job);

#endif
