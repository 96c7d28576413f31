/* Path rules: what may be journalled, and the helpers around them. */
#include "err.h"
#include "nodeid.h"
#include "path.h"
#include "strmap.h"
#include "hist.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static void test_rel_accepts_normal_paths(void **state)
{
	(void)state;
	assert_int_equal(path_check_rel(""), 0);
	assert_int_equal(path_check_rel("a"), 0);
	assert_int_equal(path_check_rel("a/b/c.txt"), 0);
	assert_int_equal(path_check_rel(".hidden/..x/x.."), 0);
	assert_int_equal(path_check_rel("line\nbreak"), 0);
	assert_int_equal(path_check_rel("caf\xc3\xa9"), 0);
}

static void test_rel_rejects_hostile_paths(void **state)
{
	(void)state;
	assert_int_equal(path_check_rel("/etc/passwd"), KR_EHOSTILE);
	assert_int_equal(path_check_rel(".."), KR_EHOSTILE);
	assert_int_equal(path_check_rel("../x"), KR_EHOSTILE);
	assert_int_equal(path_check_rel("a/../../x"), KR_EHOSTILE);
	assert_int_equal(path_check_rel("a/./b"), KR_EHOSTILE);
	assert_int_equal(path_check_rel("a//b"), KR_EHOSTILE);
	assert_int_equal(path_check_rel("a/"), KR_EHOSTILE);
	assert_int_equal(path_check_rel("bad\xff"), KR_EHOSTILE);
	assert_int_equal(path_check_rel("over\xc0\xaflong"), KR_EHOSTILE);
	assert_int_equal(path_check_rel("trunc\xe2\x82"), KR_EHOSTILE);
	assert_int_equal(path_check_rel("surrogate\xed\xa0\x80"), KR_EHOSTILE);
}

static void test_rel_name_lengths(void **state)
{
	char name[300];

	(void)state;
	memset(name, 'n', 255);
	name[255] = '\0';
	assert_int_equal(path_check_rel(name), 0);
	memset(name, 'n', 256);
	name[256] = '\0';
	assert_int_equal(path_check_rel(name), KR_EHOSTILE);
}

static void test_volume_names(void **state)
{
	(void)state;
	assert_true(path_volume_name_ok("my-shared-volume"));
	assert_true(path_volume_name_ok("v1.data_x"));
	assert_false(path_volume_name_ok("a"));
	assert_false(path_volume_name_ok(".hidden"));
	assert_false(path_volume_name_ok("-dash"));
	assert_false(path_volume_name_ok("has/slash"));
	assert_false(path_volume_name_ok("sp ace"));
	assert_false(path_volume_name_ok(""));
}

/* The one node-id rule (nodeid.h) that the config, the journal, the
 * wire and TLS all apply. */
static void test_node_ids(void **state)
{
	static const char *const good[] = { "vm1", "a-b.c_D9", "...", ".x",
					    "x.", "0" };
	static const char *const bad[] = { "", ".", "..", "vm 1", "vm1@x",
					   "vm/1", "vm\xc3\xa9", "a\nb" };
	char longest[NODE_ID_MAX + 2];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(node_id_ok(good[i], strlen(good[i])));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(node_id_ok(bad[i], strlen(bad[i])));
	memset(longest, 'n', sizeof(longest));
	assert_true(node_id_ok(longest, NODE_ID_MAX));
	assert_false(node_id_ok(longest, NODE_ID_MAX + 1));
	/* Only LEN bytes are looked at: an id inside a longer buffer. */
	assert_true(node_id_ok("vm1@0123456789abcdef", 3));
}

static void test_join(void **state)
{
	char out[8];

	(void)state;
	assert_int_equal(path_join(out, sizeof(out), "a", "b"), 0);
	assert_string_equal(out, "a/b");
	assert_int_equal(path_join(out, sizeof(out), "a", ""), 0);
	assert_string_equal(out, "a");
	assert_int_equal(path_join(out, sizeof(out), "", "b"), 0);
	assert_string_equal(out, "b");
	assert_int_equal(path_join(out, sizeof(out), "abcd", "efgh"),
			 -ENAMETOOLONG);
	assert_string_equal(path_basename("a/b/c"), "c");
	assert_string_equal(path_basename("c"), "c");
}

static void test_strmap_many_keys(void **state)
{
	struct strmap m = { 0 };
	char key[32];

	(void)state;
	for (intptr_t i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "k%ld", (long)i);
		assert_int_equal(strmap_put(&m, key, (void *)(i + 1), NULL), 0);
	}
	assert_int_equal(m.count, 5000);
	/* Delete every other key; the rest must stay reachable. */
	for (intptr_t i = 0; i < 5000; i += 2) {
		snprintf(key, sizeof(key), "k%ld", (long)i);
		assert_ptr_equal(strmap_del(&m, key), (void *)(i + 1));
	}
	for (intptr_t i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "k%ld", (long)i);
		if (i % 2)
			assert_ptr_equal(strmap_get(&m, key), (void *)(i + 1));
		else
			assert_null(strmap_get(&m, key));
	}
	assert_int_equal(m.count, 2500);
	strmap_clear(&m);
}

static void test_hist_quantiles(void **state)
{
	static struct hist h;

	(void)state;
	for (uint64_t v = 1; v <= 1000; v++)
		hist_record(&h, v);
	/* Within the histogram's ~6% bucket width. */
	assert_in_range(hist_quantile(&h, 0.5), 470, 540);
	assert_in_range(hist_quantile(&h, 0.99), 930, 1000);
	assert_int_equal(hist_quantile(&h, 1.0), 1000);
	assert_int_equal(h.count, 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rel_accepts_normal_paths),
		cmocka_unit_test(test_node_ids),
		cmocka_unit_test(test_rel_rejects_hostile_paths),
		cmocka_unit_test(test_rel_name_lengths),
		cmocka_unit_test(test_volume_names),
		cmocka_unit_test(test_join),
		cmocka_unit_test(test_strmap_many_keys),
		cmocka_unit_test(test_hist_quantiles),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
