/* Log lines as journald and a terminal receive them: stderr is a real pipe,
 * and JOURNAL_STREAM names it (or not) as systemd would. */
#include "log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

struct captured {
	int saved;      /* the real stderr */
	int rd;         /* the pipe's read end, now behind stderr */
};

static void capture_start(struct captured *c)
{
	int p[2];

	assert_int_equal(pipe(p), 0);
	c->saved = dup(STDERR_FILENO);
	assert_true(c->saved >= 0);
	assert_true(dup2(p[1], STDERR_FILENO) >= 0);
	close(p[1]);
	c->rd = p[0];
}

/* Restores stderr and returns what was written to it. */
static char *capture_end(struct captured *c, char *buf, size_t size)
{
	ssize_t n;

	assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
	close(c->saved);
	n = read(c->rd, buf, size - 1);
	close(c->rd);
	assert_true(n > 0);
	buf[n] = '\0';
	return buf;
}

static void set_stream_env(void)
{
	struct stat st;
	char v[64];

	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	snprintf(v, sizeof(v), "%ju:%ju", (uintmax_t)st.st_dev,
		 (uintmax_t)st.st_ino);
	setenv("JOURNAL_STREAM", v, 1);
}

static void test_journal_gets_priorities(void **state)
{
	struct captured c;
	char buf[512];

	(void)state;
	log_set_level(LOG_DEBUG);
	capture_start(&c);
	set_stream_env();
	assert_true(log_detect_journal());
	log_error("mod", "e %d", 1);
	log_warn("mod", "w");
	log_info("mod", "i");
	log_debug("mod", "d");
	capture_end(&c, buf, sizeof(buf));
	assert_string_equal(buf, "<3>error mod: e 1\n"
				 "<4>warn  mod: w\n"
				 "<6>info  mod: i\n"
				 "<7>debug mod: d\n");
}

/* A child that inherited JOURNAL_STREAM but writes elsewhere keeps
 * timestamps: the variable must name this stderr. */
static void test_other_stream_gets_timestamps(void **state)
{
	struct captured c;
	char buf[512];

	(void)state;
	set_stream_env();       /* the real stderr's, not the pipe's */
	capture_start(&c);
	assert_false(log_detect_journal());
	log_warn("mod", "w");
	capture_end(&c, buf, sizeof(buf));
	/* 2026-12-07T03:35:25.946Z warn  mod: w */
	assert_int_equal(strlen(buf), 24 + strlen(" warn  mod: w\n"));
	assert_int_equal(buf[10], 'T');
	assert_int_equal(buf[23], 'Z');
	assert_string_equal(buf + 24, " warn  mod: w\n");
}

static void test_malformed_variable_ignored(void **state)
{
	static const char *const bad[] = { "", "12", "12:", ":34", "1:2:3",
					   "1:2x", "x:y" };
	struct captured c;
	char buf[64];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		capture_start(&c);
		setenv("JOURNAL_STREAM", bad[i], 1);
		assert_false(log_detect_journal());
		log_warn("mod", "w");
		capture_end(&c, buf, sizeof(buf));
		assert_true(buf[0] != '<');
	}
	unsetenv("JOURNAL_STREAM");
	assert_false(log_detect_journal());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_journal_gets_priorities),
		cmocka_unit_test(test_other_stream_gets_timestamps),
		cmocka_unit_test(test_malformed_variable_ignored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
