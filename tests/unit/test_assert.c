/* The tests run with assertions compiled in (CMake's ASSERTIONS, which
 * tools/build.sh turns on): without this test, a build type that adds
 * -DNDEBUG would make every assert() in the tree silently vanish from
 * the suite.  Built like the libraries, so what holds here holds there. */
#include <assert.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#ifdef NDEBUG
#define ASSERTIONS_COMPILED 0
#else
#define ASSERTIONS_COMPILED 1
#endif

static void test_ndebug_is_not_defined(void **state)
{
	(void)state;
	if (!ASSERTIONS_COMPILED)
		fail_msg("assert() is compiled out (NDEBUG): configure with "
			 "-DASSERTIONS=ON, as tools/build.sh does");
}

/* Volatile so that the compiler cannot prove the assertion either way. */
static volatile int broken_invariant = 1;

static void test_failed_assert_aborts(void **state)
{
	pid_t pid;
	int status;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The message assert() prints is noise in the test's output. */
		close(STDERR_FILENO);
		assert(!broken_invariant);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ndebug_is_not_defined),
		cmocka_unit_test(test_failed_assert_aborts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
