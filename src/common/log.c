#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

atomic_int log_threshold = LOG_INFO;

static const char *const level_names[] = { "error", "warn", "info", "debug" };
/* syslog priorities of the levels: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const int level_priorities[] = { 3, 4, 6, 7 };
static bool log_to_journal;

void log_set_level(enum log_level level)
{
	atomic_store_explicit(&log_threshold, (int)level,
			      memory_order_relaxed);
}

int log_level_parse(const char *name, enum log_level *out)
{
	for (int i = 0; i <= LOG_DEBUG; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcmp(name, "warning") == 0) {
		*out = LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

const char *log_level_name(enum log_level level)
{
	return level <= LOG_DEBUG ? level_names[level] : "?";
}

bool log_detect_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	uintmax_t dev, ino;
	struct stat st;
	int used = 0;

	/* The variable is inherited by children whose stderr may go elsewhere:
	 * it counts only when it names the stderr this process has. */
	log_to_journal = env &&
		sscanf(env, "%ju:%ju%n", &dev, &ino, &used) == 2 &&
		env[used] == '\0' && fstat(STDERR_FILENO, &st) == 0 &&
		(uintmax_t)st.st_dev == dev && (uintmax_t)st.st_ino == ino;
	return log_to_journal;
}

/* The start of a line: a timestamp for a terminal or a file, a priority
 * for journald, which stamps lines itself. */
static size_t log_prefix(char *line, size_t size, enum log_level level)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	if (log_to_journal)
		return (size_t)snprintf(line, size, "<%d>",
					level_priorities[level]);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, size, "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, size - n, ".%03ldZ ",
			      ts.tv_nsec / 1000000);
	return n;
}

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
{
	char line[2048];
	size_t n;
	va_list ap;

	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	n = log_prefix(line, sizeof(line), level);
	n += (size_t)snprintf(line + n, sizeof(line) - n, "%-5s %s: ",
			      log_level_name(level), module);
	va_start(ap, fmt);
	int k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (k < 0)
		k = 0;
	n += (size_t)k;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;   /* truncated: keep the newline */
	line[n++] = '\n';
	/* One write per line; a failed log write has nowhere to be reported. */
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
}
