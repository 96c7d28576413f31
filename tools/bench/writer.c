/*
 * kraken-bench-writer: writes COUNT files of SIZE bytes into DIR at RATE
 * files per second (0: as fast as possible), each with open/write/close,
 * as a container would.  Pacing is by absolute deadlines so a slow write
 * does not lower the average rate.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int parse_u(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno || end == s || *end ? -1 : 0;
}

static void sleep_until(const struct timespec *t)
{
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, t, NULL) == EINTR)
		;
}

int main(int argc, char **argv)
{
	unsigned long count, rate, size;
	struct timespec next;
	char *buf;

	if (argc != 5 || parse_u(argv[2], &count) || parse_u(argv[3], &rate) ||
	    parse_u(argv[4], &size) || size > (1ul << 30)) {
		fprintf(stderr, "usage: kraken-bench-writer DIR COUNT RATE SIZE\n");
		return 2;
	}
	buf = malloc(size ? size : 1);
	if (!buf)
		return 1;
	memset(buf, 'k', size);
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (unsigned long i = 0; i < count; i++) {
		char path[4096];
		int fd;

		snprintf(path, sizeof(path), "%s/w%06lu", argv[1], i);
		char tag[32];
		int n = snprintf(tag, sizeof(tag), "%lu\n", i);

		/* Distinct content per file, so no two share a hash. */
		memcpy(buf, tag, (size_t)n < size ? (size_t)n : size);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, buf, size) != (ssize_t)size) {
			perror(path);
			return 1;
		}
		close(fd);
		if (rate) {
			next.tv_nsec += 1000000000L / (long)rate;
			while (next.tv_nsec >= 1000000000L) {
				next.tv_nsec -= 1000000000L;
				next.tv_sec++;
			}
			sleep_until(&next);
		}
	}
	free(buf);
	return 0;
}
