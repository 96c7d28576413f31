/* The syncer thread: a sync asked for ends and is seen exactly once. */
#include "syncer.h"

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

static void wait_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	assert_int_equal(poll(&p, 1, 10000), 1);
}

static void test_syncs_end_and_are_seen_once(void **state)
{
	struct syncer *s = NULL;

	(void)state;
	assert_int_equal(syncer_new("/tmp", &s), 0);
	assert_false(syncer_collect(s));        /* nothing asked yet */
	for (int i = 0; i < 3; i++) {
		syncer_start(s);
		wait_readable(syncer_fd(s));
		assert_true(syncer_collect(s));
		assert_false(syncer_collect(s));
	}
	/* Freed with a sync running: it waits for it. */
	syncer_start(s);
	syncer_free(s);
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
		cmocka_unit_test(test_missing_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
