/* The syncer thread: a sync asked for ends and is seen exactly once. */
#include "syncer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

static void wait_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	assert_int_equal(poll(&p, 1, 10000), 1);
}

static void test_syncs_end_and_are_seen_once(void **state)
{
	struct syncer *s = NULL;
	int result = 1;

	(void)state;
	assert_int_equal(syncer_new("/tmp", &s), 0);
	assert_false(syncer_collect(s, &result));   /* nothing asked yet */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(syncer_start(s, NULL, 0), 0);
		wait_readable(syncer_fd(s));
		assert_true(syncer_collect(s, &result));
		assert_int_equal(result, 0);
		assert_false(syncer_collect(s, &result));
	}
	/* Freed with a sync running: it waits for it. */
	assert_int_equal(syncer_start(s, NULL, 0), 0);
	syncer_free(s);
}

/* A few files are flushed one by one, through duplicates of their
 * descriptors, and a failure is reported, not swallowed. */
static void test_file_flush(void **state)
{
	char path[] = "/tmp/kraken-syncer-XXXXXX";
	struct syncer *s = NULL;
	int fds[SYNCER_FILES_MAX + 1];
	int fd, pipefd[2], result = 1;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, "data", 4), 4);
	assert_int_equal(syncer_new("/tmp", &s), 0);
	fds[0] = fd;
	fds[1] = fd;
	assert_int_equal(syncer_start(s, fds, 2), 0);
	close(fd);      /* the syncer holds its own */
	wait_readable(syncer_fd(s));
	assert_true(syncer_collect(s, &result));
	assert_int_equal(result, 0);

	/* A pipe cannot be fsync'ed: EINVAL comes back as the result. */
	assert_int_equal(pipe(pipefd), 0);
	assert_int_equal(syncer_start(s, pipefd, 1), 0);
	wait_readable(syncer_fd(s));
	assert_true(syncer_collect(s, &result));
	assert_int_equal(result, -EINVAL);

	/* Refused up front: a closed descriptor, too many files. */
	close(pipefd[1]);
	assert_int_equal(syncer_start(s, &pipefd[1], 1), -EBADF);
	for (int i = 0; i <= SYNCER_FILES_MAX; i++)
		fds[i] = pipefd[0];
	assert_int_equal(syncer_start(s, fds, SYNCER_FILES_MAX + 1), -EINVAL);
	assert_false(syncer_collect(s, &result));
	close(pipefd[0]);
	syncer_free(s);
}

/* Descriptors handed over are closed by the thread, even more than it
 * queues at once. */
static void test_close_later(void **state)
{
	struct syncer *s = NULL;
	int fds[SYNCER_CLOSE_MAX + 8];
	int open_left = 1;

	(void)state;
	assert_int_equal(syncer_new("/tmp", &s), 0);
	for (size_t i = 0; i < SYNCER_CLOSE_MAX + 8; i++) {
		fds[i] = open("/tmp", O_PATH | O_CLOEXEC);
		assert_true(fds[i] >= 0);
		syncer_close(s, fds[i]);
	}
	for (int tries = 0; open_left && tries < 1000; tries++) {
		open_left = 0;
		for (size_t i = 0; i < SYNCER_CLOSE_MAX + 8; i++)
			open_left += fcntl(fds[i], F_GETFD) >= 0;
		if (open_left)
			usleep(10000);
	}
	assert_int_equal(open_left, 0);
	syncer_free(s);
}

/* Early flushes: each descriptor is flushed and closed on the thread,
 * one that cannot be flushed is closed all the same, and the flush of
 * the writer's own descriptor before the rename still runs and reports. */
static void test_advance(void **state)
{
	char path[] = "/tmp/kraken-syncer-XXXXXX";
	struct syncer *s = NULL;
	int fd, early, pipefd[2], result = 1, open_left = 2;
	char buf[4096] = { 1 };

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	for (int i = 0; i < 256; i++)
		assert_int_equal(write(fd, buf, sizeof(buf)), sizeof(buf));
	early = open(path, O_RDONLY | O_CLOEXEC);
	unlink(path);
	assert_true(early >= 0);
	assert_int_equal(pipe(pipefd), 0);
	assert_int_equal(syncer_new("/tmp", &s), 0);
	syncer_advance(s, early);
	syncer_advance(s, pipefd[0]);      /* fdatasync fails: still closed */
	for (int tries = 0; open_left && tries < 1000; tries++) {
		open_left = (fcntl(early, F_GETFD) >= 0) +
			    (fcntl(pipefd[0], F_GETFD) >= 0);
		if (open_left)
			usleep(10000);
	}
	assert_int_equal(open_left, 0);
	assert_int_equal(syncer_start(s, &fd, 1), 0);
	wait_readable(syncer_fd(s));
	assert_true(syncer_collect(s, &result));
	assert_int_equal(result, 0);
	syncer_free(s);
	close(pipefd[1]);
	close(fd);
}

static void test_missing_dir(void **state)
{
	struct syncer *s = NULL;

	(void)state;
	assert_int_equal(syncer_new("/nonexistent/krakenfs", &s), -ENOENT);
	assert_null(s);
	syncer_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_syncs_end_and_are_seen_once),
		cmocka_unit_test(test_file_flush),
		cmocka_unit_test(test_close_later),
		cmocka_unit_test(test_advance),
		cmocka_unit_test(test_missing_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
