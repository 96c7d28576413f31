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
	struct writer_job *job = calloc(1, sizeof(*job));
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
		cmocka_unit_test(test_corrupt_not_written),
		cmocka_unit_test(test_write_error),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_free_busy),
		cmocka_unit_test(test_run_inline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
