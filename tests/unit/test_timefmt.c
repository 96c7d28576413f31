/*
 * timefmt_parse: the one grammar of times that the REST API and
 * kraken-journal share (timefmt.h).
 */
#include "timefmt.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define NS 1000000000LL

static const int64_t now = 1767225600LL * NS;   /* 2026-01-01T00:00:00Z */

static int64_t parsed(const char *s)
{
	int64_t t = -1;

	assert_int_equal(timefmt_parse(s, now, &t), 0);
	return t;
}

static void test_forms(void **state)
{
	(void)state;
	assert_int_equal(parsed("2026-01-01T00:00:00Z"), now);
	assert_int_equal(parsed("2026-01-01t00:00:00z"), now);
	assert_int_equal(parsed("2026-01-01T00:00:00"), now);
	assert_int_equal(parsed("2026-01-01 00:00:00"), now);
	assert_int_equal(parsed("2026-01-01T01:00:00.5+01:00"), now + NS / 2);
	assert_int_equal(parsed("2025-12-31 16:00:00.000000001-08:00"), now + 1);
	assert_int_equal(parsed("2026-01-01"), now);
	assert_int_equal(parsed("@1767225600"), now);
	assert_int_equal(parsed("@1767225600.123456789"), now + 123456789);
	assert_int_equal(parsed("15m"), now - 900 * NS);
	assert_int_equal(parsed("3d"), now - 3 * 86400 * NS);
}

static void test_refused(void **state)
{
	static const char *const bad[] = {
		"", "garbage", "2026-01-01T00:00", "2026-01-01Tx",
		"2026-01-01T00:00:00.Z", "2026-01-01T00:00:00+24:00",
		"2026-13-45", "-5m", "99999999999999d", "1.5h", "5w", "@-1",
		"@", "@1.", "@99999999999999999999", "1969-12-31T23:59:59Z",
	};
	int64_t t;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (timefmt_parse(bad[i], now, &t) != -EINVAL)
			fail_msg("'%s' was taken as %lld", bad[i], (long long)t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forms),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
