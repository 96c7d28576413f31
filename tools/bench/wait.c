/*
 * kraken-bench-wait: the benchmark's stopwatch.  Polls until a replica is
 * identical to its original and prints when that was first seen, in
 * microseconds since the epoch (as bash's EPOCHREALTIME without the dot).
 *
 *   kraken-bench-wait sig FILE
 *       prints FILE's signature (inode:size:ctime in ns)
 *   kraken-bench-wait file A B TIMEOUT [OLD_SIG]
 *       waits until B's signature differs from OLD_SIG and B holds A's
 *       bytes; the time printed is when that signature was first seen
 *   kraken-bench-wait dir A B TIMEOUT
 *       waits until directory B has as many regular files as A (names
 *       starting with '.' are skipped: the tools' own bookkeeping) and
 *       every one holds A's bytes; the time printed is the start of the
 *       poll that found it so
 *
 * Why a program and not the shell: polling with stat(1), find(1) and
 * diff(1) forked a process every few milliseconds on the machine being
 * measured, about a tenth of its CPU on two cores.  Here a file poll is
 * one stat(2) every 2 ms and a directory poll one pass of getdents(2)
 * every 10 ms; contents are compared only when the shape matches.  Both
 * systems in the benchmark are timed by the same code.
 *
 * Exit status: 0 identical, 1 timeout (with what still differs on
 * stderr), 2 usage or an unreadable original.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FILE_POLL_NS (2 * 1000000L)
#define DIR_POLL_NS (10 * 1000000L)
#define CMP_BLOCK (1u << 20)

static int64_t now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void nap(long ns)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = ns };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void signature(const struct stat *st, char *out, size_t cap)
{
	snprintf(out, cap, "%ju:%jd:%jd", (uintmax_t)st->st_ino,
		 (intmax_t)st->st_size,
		 (intmax_t)st->st_ctim.tv_sec * 1000000000 +
		 st->st_ctim.tv_nsec);
}

/* Whether files A and B hold the same bytes; false if either is
 * unreadable. */
static bool same_bytes(const char *a, const char *b)
{
	static char *x, *y;
	int fa = open(a, O_RDONLY | O_CLOEXEC);
	int fb = open(b, O_RDONLY | O_CLOEXEC);
	bool same = fa >= 0 && fb >= 0;

	if (!x && same) {
		x = malloc(CMP_BLOCK);
		y = malloc(CMP_BLOCK);
		same = x && y;
	}
	while (same) {
		ssize_t n = read(fa, x, CMP_BLOCK);
		ssize_t m = n > 0 ? read(fb, y, (size_t)n) : read(fb, y, 1);

		if (n < 0 || m != n || memcmp(x, y, (size_t)(n > 0 ? n : 0)))
			same = false;
		if (n <= 0)
			break;
	}
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	return same;
}

static int cmd_file(const char *a, const char *b, int64_t timeout_ns,
		    const char *old)
{
	int64_t deadline = now_ns(CLOCK_MONOTONIC) + timeout_ns;
	char last[96] = "", sig[96], after[96];
	struct stat sa, sb;

	if (stat(a, &sa) != 0) {
		fprintf(stderr, "kraken-bench-wait: %s: %s\n", a,
			strerror(errno));
		return 2;
	}
	snprintf(last, sizeof(last), "%s", old ? old : "");
	while (now_ns(CLOCK_MONOTONIC) < deadline) {
		int64_t seen = now_ns(CLOCK_REALTIME);

		if (stat(b, &sb) == 0 && sb.st_size == sa.st_size) {
			signature(&sb, sig, sizeof(sig));
			if (strcmp(sig, last) != 0) {
				bool same = same_bytes(a, b);

				/* Unchanged across the compare: it was
				 * identical from the moment it was seen. */
				if (same && stat(b, &sb) == 0) {
					signature(&sb, after, sizeof(after));
					if (strcmp(after, sig) == 0) {
						printf("%" PRId64 "\n",
						       seen / 1000);
						return 0;
					}
				}
				snprintf(last, sizeof(last), "%s", sig);
			}
		}
		nap(FILE_POLL_NS);
	}
	fprintf(stderr, "kraken-bench-wait: %s is not identical to %s\n", b,
		a);
	return 1;
}

/* Regular files under DIR (recursively, dot names skipped). */
static long count_files(int dirfd)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *e;
	long n = 0;

	if (!d) {
		close(dirfd);
		return -1;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (e->d_type == DT_REG) {
			n++;
		} else if (e->d_type == DT_DIR) {
			int sub = openat(dirfd, e->d_name,
					 O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			long k = sub >= 0 ? count_files(sub) : -1;

			if (k < 0) {
				n = -1;
				break;
			}
			n += k;
		}
	}
	closedir(d);
	return n;
}

static long count_path(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	return fd < 0 ? -1 : count_files(fd);
}

/* Every regular file under A has its bytes at the same name under B;
 * the first that differs goes to WHY. */
static bool same_tree(const char *a, const char *b, char *why, size_t cap)
{
	DIR *d = opendir(a);
	struct dirent *e;
	bool same = d != NULL;

	while (same && (e = readdir(d))) {
		char pa[PATH_MAX], pb[PATH_MAX];

		if (e->d_name[0] == '.' ||
		    (e->d_type != DT_REG && e->d_type != DT_DIR))
			continue;
		snprintf(pa, sizeof(pa), "%s/%s", a, e->d_name);
		snprintf(pb, sizeof(pb), "%s/%s", b, e->d_name);
		same = e->d_type == DT_DIR ? same_tree(pa, pb, why, cap)
					   : same_bytes(pa, pb);
		if (!same && !why[0])
			snprintf(why, cap, "%s differs", pb);
	}
	if (d)
		closedir(d);
	return same;
}

static int cmd_dir(const char *a, const char *b, int64_t timeout_ns)
{
	int64_t deadline = now_ns(CLOCK_MONOTONIC) + timeout_ns;
	long want = count_path(a), got = -1;
	char why[PATH_MAX + 16] = "";

	if (want < 0) {
		fprintf(stderr, "kraken-bench-wait: cannot read %s\n", a);
		return 2;
	}
	while (now_ns(CLOCK_MONOTONIC) < deadline) {
		int64_t seen = now_ns(CLOCK_REALTIME);

		got = count_path(b);
		why[0] = '\0';
		if (got == want && same_tree(a, b, why, sizeof(why))) {
			printf("%" PRId64 "\n", seen / 1000);
			return 0;
		}
		nap(DIR_POLL_NS);
	}
	fprintf(stderr, "kraken-bench-wait: %s has %ld of %ld files%s%s\n", b,
		got < 0 ? 0 : got, want, why[0] ? "; " : "", why);
	return 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kraken-bench-wait sig FILE\n"
		"       kraken-bench-wait file A B TIMEOUT_S [OLD_SIG]\n"
		"       kraken-bench-wait dir A B TIMEOUT_S\n"
		"Waits until B is identical to A and prints when that was first\n"
		"seen (microseconds since the epoch).  Exit 0 identical, 1\n"
		"timeout, 2 usage error.\n");
}

int main(int argc, char **argv)
{
	char *end = NULL;
	long timeout = 0;
	struct stat st;
	char sig[96];

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "sig")) {
		if (stat(argv[2], &st) != 0) {
			fprintf(stderr, "kraken-bench-wait: %s: %s\n", argv[2],
				strerror(errno));
			return 2;
		}
		signature(&st, sig, sizeof(sig));
		printf("%s\n", sig);
		return 0;
	}
	if (argc >= 5)
		timeout = strtol(argv[4], &end, 10);
	if (argc < 5 || !end || *end || timeout <= 0) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "file") && argc <= 6)
		return cmd_file(argv[2], argv[3], timeout * 1000000000LL,
				argc == 6 ? argv[5] : NULL);
	if (!strcmp(argv[1], "dir") && argc == 5)
		return cmd_dir(argv[2], argv[3], timeout * 1000000000LL);
	usage(stderr);
	return 2;
}
