/* One holder at a time, named on refusal, and never a stale lock: the
 * holder is a real second process, killed with SIGKILL. */
#include "pidlock.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

/* A child that takes the lock, says so on READY, and waits to be killed. */
static pid_t spawn_holder(const char *path)
{
	int p[2];
	char c;
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd;
		pid_t holder;

		close(p[0]);
		if (pidlock_acquire(path, &fd, &holder) != 0)
			_exit(1);
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	return pid;
}

static void test_second_holder_refused_then_lock_freed_by_kill(void **state)
{
	char dir[] = "/tmp/kraken-pidlock-XXXXXX", path[64], text[32] = "";
	pid_t child, holder = 0;
	int fd = -1, status;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/journal.db.lock", dir);
	child = spawn_holder(path);

	assert_int_equal(pidlock_acquire(path, &fd, &holder), -EBUSY);
	assert_int_equal(fd, -1);
	assert_int_equal(holder, child);
	/* The file says who holds it, for people. */
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(text, sizeof(text), f));
	fclose(f);
	assert_int_equal(atol(text), (long)child);

	kill(child, SIGKILL);
	assert_int_equal(waitpid(child, &status, 0), child);
	/* No stale lock: the kernel dropped it with the process. */
	assert_int_equal(pidlock_acquire(path, &fd, &holder), 0);
	assert_true(fd >= 0);
	pidlock_release(fd);
	unlink(path);
	rmdir(dir);
}

static void test_unusable_path(void **state)
{
	pid_t holder = 1;
	int fd = 7;

	(void)state;
	assert_int_equal(pidlock_acquire("/nonexistent-dir/x.lock", &fd,
					 &holder), -ENOENT);
	assert_int_equal(fd, -1);
	assert_int_equal(holder, 0);
	/* A symlink in place of the lock file is not followed. */
	char dir[] = "/tmp/kraken-pidlock-XXXXXX", path[64];

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/l", dir);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_int_equal(pidlock_acquire(path, &fd, &holder), -ELOOP);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_second_holder_refused_then_lock_freed_by_kill),
		cmocka_unit_test(test_unusable_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
