/* The writer thread: chunks checked against their hash, written where
 * they belong, results handed back in order; memory bounded. */
#include "writer.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#define CHUNK 65536

static int temp_file(void)
{
	char path[] = "/tmp/kraken-writer-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

/* A job for LEN bytes of FILL at OFFSET of FD, hashed right unless
 * CORRUPT. */
static struct writer_job *job_make(int fd, uint64_t offset, uint32_t len,
				   int fill, bool corrupt)
{
	struct writer_job *job = writer_job_new();
	unsigned n = 0;

	assert_non_null(job);
	job->data = malloc(len);
	assert_non_null(job->data);
	memset(job->data, fill, len);
	job->len = len;
	assert_int_equal(EVP_Digest(job->data, len, job->hash, &n,
				    EVP_sha256(), NULL), 1);
	if (corrupt)
		job->hash[0] ^= 1;
	job->n_targets = 1;
	job->targets[0].fd = fd;
	job->targets[0].offset = offset;
	job->targets[0].index = (size_t)offset / CHUNK;
	snprintf(job->from, sizeof(job->from), "n%d", fill);
	return job;
}

/* Collects until N jobs came back; returns them in order. */
static struct writer_job *collect(struct writer *w, size_t n)
{
	struct writer_job *all = NULL, **tail = &all;
	size_t got = 0;

	while (got < n) {
		struct pollfd p = { .fd = writer_fd(w), .events = POLLIN };
		struct writer_job *j;

		assert_int_equal(poll(&p, 1, 10000), 1);
		for (j = writer_collect(w); j; j = j->next) {
			*tail = j;
			tail = &j->next;
			got++;
		}
	}
	assert_int_equal(got, n);
	return all;
}

static void jobs_free(struct writer_job *j)
{
	while (j) {
		struct writer_job *next = j->next;

		writer_job_free(j);
		j = next;
	}
}

static void test_written_in_order(void **state)
{
	struct writer *w = NULL;
	struct writer_job *done, *all;
	uint8_t buf[CHUNK];
	int fd = temp_file();

	(void)state;
	assert_int_equal(writer_new(16 * CHUNK, &w), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(writer_submit(w, job_make(fd,
				 (uint64_t)i * CHUNK, CHUNK, 'a' + i, false)),
				 0);
	assert_int_equal(writer_outstanding(w), 8);
	all = done = collect(w, 8);
	assert_int_equal(writer_outstanding(w), 0);
	for (int i = 0; i < 8; i++, done = done->next) {
		assert_int_equal(done->result, 0);
		assert_int_equal(done->targets[0].index, i);
	}
	for (int i = 0; i < 8; i++) {
		assert_int_equal(pread(fd, buf, CHUNK, (off_t)i * CHUNK), CHUNK);
		for (size_t k = 0; k < CHUNK; k++)
			if (buf[k] != 'a' + i)
				fail_msg("byte %zu of chunk %d is wrong", k, i);
	}
	jobs_free(all);
	close(fd);
	writer_free(w);
}

/* Many jobs, collected at irregular times: the loop is woken only when
 * the done queue was empty, and no job is ever left behind. */
static void test_many_collected(void **state)
{
	struct writer *w = NULL;
	int fd = temp_file();
	size_t left = 0;

	(void)state;
	assert_int_equal(writer_new(64 * CHUNK, &w), 0);
	for (int round = 0; round < 100; round++) {
		size_t n = (size_t)(round % 7) + 1;

		for (size_t i = 0; i < n; i++)
			assert_int_equal(writer_submit(w, job_make(fd,
					 (uint64_t)i * CHUNK, CHUNK, 'a', false)),
					 0);
		left += n;
		if (round % 3 == 2) {
			jobs_free(collect(w, left));
			left = 0;
		}
	}
	jobs_free(collect(w, left));
	assert_int_equal(writer_outstanding(w), 0);
	close(fd);
	writer_free(w);
}

/* Bytes that do not match their hash are never written. */
static void test_corrupt_not_written(void **state)
{
	struct writer *w = NULL;
	struct writer_job *done;
	struct stat st;
	int fd = temp_file();

	(void)state;
	assert_int_equal(writer_new(4 * CHUNK, &w), 0);
	assert_int_equal(writer_submit(w, job_make(fd, 0, CHUNK, 'x', true)),
			 0);
	done = collect(w, 1);
	assert_int_equal(done->result, KR_ECORRUPT);
	assert_string_equal(done->from, "n120");   /* who sent it, kept */
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 0);
	jobs_free(done);
	close(fd);
	writer_free(w);
}

/* A write that fails comes back as its errno. */
static void test_write_error(void **state)
{
	struct writer *w = NULL;
	struct writer_job *done;
	char path[] = "/tmp/kraken-writer-XXXXXX";
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	fd = open(path, O_RDONLY | O_CLOEXEC);   /* not open for writing */
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(writer_new(4 * CHUNK, &w), 0);
	assert_int_equal(writer_submit(w, job_make(fd, 0, CHUNK, 'y', false)),
			 0);
	done = collect(w, 1);
	assert_int_equal(done->result, -EBADF);
	jobs_free(done);
	close(fd);
	writer_free(w);
}

/* Past its byte bound the writer refuses, and takes jobs again once the
 * finished ones are collected; malformed jobs are refused. */
static void test_bounded(void **state)
{
	struct writer *w = NULL;
	struct writer_job *extra, *empty;
	int fd = temp_file();

	(void)state;
	assert_int_equal(writer_new(2 * CHUNK, &w), 0);
	assert_int_equal(writer_submit(w, job_make(fd, 0, CHUNK, 'a', false)),
			 0);
	assert_int_equal(writer_submit(w, job_make(fd, CHUNK, CHUNK, 'b',
						   false)), 0);
	extra = job_make(fd, 2 * CHUNK, CHUNK, 'c', false);
	/* Done or not, uncollected jobs still count. */
	assert_int_equal(writer_submit(w, extra), -EAGAIN);
	jobs_free(collect(w, 2));
	assert_int_equal(writer_submit(w, extra), 0);
	jobs_free(collect(w, 1));

	empty = job_make(fd, 0, CHUNK, 'd', false);
	empty->n_targets = 0;
	assert_int_equal(writer_submit(w, empty), -EINVAL);
	empty->n_targets = WRITER_TARGETS_MAX + 1;
	assert_int_equal(writer_submit(w, empty), -EINVAL);
	writer_job_free(empty);
	close(fd);
	writer_free(w);
}

/* Freed with work queued and results uncollected: nothing leaks (the
 * sanitizer run checks) and it does not hang. */
static void test_free_busy(void **state)
{
	struct writer *w = NULL;
	int fd = temp_file();

	(void)state;
	assert_int_equal(writer_new(64 * CHUNK, &w), 0);
	for (int i = 0; i < 64; i++)
		assert_int_equal(writer_submit(w, job_make(fd,
				 (uint64_t)i * CHUNK, CHUNK, 'z', false)), 0);
	writer_free(w);
	writer_free(NULL);
	close(fd);
}

/* A create job makes the file with its metadata and hands back the
 * descriptor; a name that exists fails without touching it. */
static void test_create(void **state)
{
	char dir[] = "/tmp/kraken-writer-dir-XXXXXX";
	struct writer *w = NULL;
	struct writer_job *job, *done;
	struct stat st;
	char buf[8] = "";
	int dirfd, taken;

	(void)state;
	assert_non_null(mkdtemp(dir));
	dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(dirfd >= 0);
	assert_int_equal(writer_new(4 * CHUNK, &w), 0);

	job = job_make(-1, 0, 5, 'k', false);
	job->create = (struct writer_create){ .dirfd = dirfd, .mode = 0640,
		.uid = getuid(), .gid = getgid(),
		.mtime_ns = 1234567890123456789LL };
	snprintf(job->create.name, sizeof(job->create.name), "made");
	assert_int_equal(writer_submit(w, job), 0);
	done = collect(w, 1);
	assert_int_equal(done->result, 0);
	assert_true(done->targets[0].fd >= 0);
	assert_int_equal(fstat(done->targets[0].fd, &st), 0);
	assert_int_equal(st.st_size, 5);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_mtim.tv_sec, 1234567890);
	assert_int_equal(st.st_mtim.tv_nsec, 123456789);
	assert_int_equal(pread(done->targets[0].fd, buf, 5, 0), 5);
	assert_memory_equal(buf, "kkkkk", 5);
	taken = done->targets[0].fd;    /* as its transfer takes it over */
	done->targets[0].fd = -1;
	jobs_free(done);
	assert_int_equal(close(taken), 0);

	/* The name is taken now: O_EXCL refuses, the file is untouched. */
	job = job_make(-1, 0, 3, 'z', false);
	job->create = (struct writer_create){ .dirfd = dirfd, .mode = 0600 };
	snprintf(job->create.name, sizeof(job->create.name), "made");
	assert_int_equal(writer_submit(w, job), 0);
	done = collect(w, 1);
	assert_int_equal(done->result, -EEXIST);
	assert_int_equal(done->targets[0].fd, -1);
	jobs_free(done);
	assert_int_equal(fstatat(dirfd, "made", &st, 0), 0);
	assert_int_equal(st.st_size, 5);

	/* Bytes that do not match: nothing is created. */
	job = job_make(-1, 0, 3, 'y', true);
	job->create = (struct writer_create){ .dirfd = dirfd, .mode = 0600 };
	snprintf(job->create.name, sizeof(job->create.name), "bad");
	assert_int_equal(writer_submit(w, job), 0);
	done = collect(w, 1);
	assert_int_equal(done->result, KR_ECORRUPT);
	jobs_free(done);
	assert_int_equal(fstatat(dirfd, "bad", &st, 0), -1);

	/* Made, but freed before a transfer took it (the agent stopping):
	 * the file goes with its job. */
	job = job_make(-1, 0, 3, 'x', false);
	job->create = (struct writer_create){ .dirfd = dirfd, .mode = 0600 };
	snprintf(job->create.name, sizeof(job->create.name), "orphan");
	assert_int_equal(writer_submit(w, job), 0);
	done = collect(w, 1);
	assert_int_equal(done->result, 0);
	assert_int_equal(fstatat(dirfd, "orphan", &st, 0), 0);
	jobs_free(done);
	assert_int_equal(fstatat(dirfd, "orphan", &st, 0), -1);

	/* A create job names exactly one target. */
	job = job_make(-1, 0, 3, 'x', false);
	job->create.dirfd = dirfd;
	job->n_targets = 2;
	assert_int_equal(writer_submit(w, job), -EINVAL);
	job->create.dirfd = -1;  /* not a create job: nothing to close */
	writer_job_free(job);

	writer_free(w);
	unlinkat(dirfd, "made", 0);
	close(dirfd);
	assert_int_equal(rmdir(dir), 0);
}

/* The caller's fallback does the same work on its own thread. */
static void test_run_inline(void **state)
{
	struct writer_job *job;
	uint8_t b = 0;
	int fd = temp_file();

	(void)state;
	job = job_make(fd, 10, 100, 'q', false);
	writer_run(job);
	assert_int_equal(job->result, 0);
	assert_int_equal(pread(fd, &b, 1, 10), 1);
	assert_int_equal(b, 'q');
	job->hash[5] ^= 0x80;
	writer_run(job);
	assert_int_equal(job->result, KR_ECORRUPT);
	writer_job_free(job);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_written_in_order),
		cmocka_unit_test(test_many_collected),
		cmocka_unit_test(test_corrupt_not_written),
		cmocka_unit_test(test_write_error),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_free_busy),
		cmocka_unit_test(test_run_inline),
		cmocka_unit_test(test_create),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
