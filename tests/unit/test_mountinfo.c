/*
 * mountinfo_dir_in_use against real bind mounts.  The test moves itself
 * into a private mount namespace first, so nothing it mounts is seen by
 * the host, and the scan must find the mounts there (the way it finds a
 * container's).  Needs root, as the whole suite does.
 */
#include "mountinfo.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

static char base[64];

static void at(char *out, const char *rel)
{
	snprintf(out, PATH_MAX, "%s/%s", base, rel);
}

static bool in_use(const char *rel)
{
	char p[PATH_MAX];
	bool used = true;

	at(p, rel);
	assert_int_equal(mountinfo_dir_in_use(p, &used), 0);
	return used;
}

static void bind(const char *from, const char *to)
{
	char a[PATH_MAX], b[PATH_MAX];

	at(a, from);
	at(b, to);
	assert_int_equal(mount(a, b, NULL, MS_BIND, NULL), 0);
}

static void unbind(const char *rel)
{
	char p[PATH_MAX];

	at(p, rel);
	assert_int_equal(umount2(p, MNT_DETACH), 0);
}

static int setup(void **state)
{
	static const char *dirs[] = { "vols", "vols/a", "vols/a/sub",
				      "vols/b", "vols/a b", "c1", "c2" };
	char p[PATH_MAX];

	(void)state;
	if (unshare(CLONE_NEWNS) != 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		fprintf(stderr, "test_mountinfo needs root (CAP_SYS_ADMIN): "
			"%s\n", strerror(errno));
		return -1;
	}
	snprintf(base, sizeof(base), "/tmp/kraken-mountinfo-XXXXXX");
	if (!mkdtemp(base))
		return -1;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		at(p, dirs[i]);
		if (mkdir(p, 0755) != 0)
			return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	/* A failed test may have left its mount. */
	at(cmd, "c1");
	umount2(cmd, MNT_DETACH);
	at(cmd, "c2");
	umount2(cmd, MNT_DETACH);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_unused(void **state)
{
	(void)state;
	assert_false(in_use("vols/a"));
	assert_false(in_use("vols"));
}

static void test_bind_of_the_dir(void **state)
{
	(void)state;
	bind("vols/a", "c1");
	assert_true(in_use("vols/a"));
	assert_false(in_use("vols/b"));
	/* Something inside it is mounted: it is in use too. */
	assert_true(in_use("vols"));
	unbind("c1");
	assert_false(in_use("vols/a"));
}

static void test_bind_below_the_dir(void **state)
{
	(void)state;
	bind("vols/a/sub", "c1");
	assert_true(in_use("vols/a"));
	unbind("c1");
}

static void test_bind_of_a_parent_does_not_count(void **state)
{
	(void)state;
	bind("vols", "c2");
	assert_false(in_use("vols/a"));
	unbind("c2");
}

static void test_names_with_spaces(void **state)
{
	(void)state;
	bind("vols/a b", "c1");
	assert_true(in_use("vols/a b"));
	assert_false(in_use("vols/a"));
	unbind("c1");
}

static void test_missing_dir(void **state)
{
	char p[PATH_MAX];
	bool used;

	(void)state;
	at(p, "nope");
	assert_int_equal(mountinfo_dir_in_use(p, &used), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unused),
		cmocka_unit_test(test_bind_of_the_dir),
		cmocka_unit_test(test_bind_below_the_dir),
		cmocka_unit_test(test_bind_of_a_parent_does_not_count),
		cmocka_unit_test(test_names_with_spaces),
		cmocka_unit_test(test_missing_dir),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
