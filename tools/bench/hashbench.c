/*
 * kraken-hashbench: throughput of content_hash_fd (chunking plus SHA-256),
 * to compare with `openssl speed -evp sha256`.
 *
 * With FILE, that file is hashed; without, a temporary file of --size MiB
 * of pseudo-random data is written, hashed and removed.  One untimed run
 * warms the page cache and the code paths, then three timed runs follow and
 * the best is reported, since a benchmark measures the code, not noise from
 * the rest of the machine.  MB means 10^6 bytes, as openssl speed counts.
 *
 * With --previous, the timed runs hash the file again from the warm-up's
 * chunk list (content_hash_fd_from), as the watcher does when a file it
 * knows changes: every guess is right here, so this is the best case of
 * that path; an edit costs one wrong guess on top.
 *
 * The last line is "best: <MB/s> MB/s" (wall clock) for scripts; the line
 * before it gives the same run per CPU second, helper thread included.
 */
#include "content.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MIB 1024u
#define MAX_MIB (1u << 20)
#define TIMED_RUNS 3
#define FILL_BLOCK (1u << 20)

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kraken-hashbench [--size MiB] [--previous] [FILE]\n"
		"\n"
		"Hashes FILE, or a temporary file of MiB mebibytes of random\n"
		"data (default %u), with content_hash_fd: one warm-up run, then\n"
		"the best of %d runs in MB/s (10^6 bytes per second).\n"
		"\n"
		"  -s, --size MiB   size of the generated file\n"
		"  -p, --previous   time hashing again from the first run's\n"
		"                   chunk list, as after an edit\n"
		"  -h, --help       show this help\n",
		DEFAULT_MIB, TIMED_RUNS);
}

static int parse_mib(const char *s, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v == 0 || v > MAX_MIB)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Random bytes, so every chunk is distinct and the chunker does real work. */
static int fill_random(int fd, unsigned mib)
{
	uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	uint64_t *block = malloc(FILL_BLOCK);
	int rc = -ENOMEM;

	if (!block)
		goto out;
	for (unsigned i = 0; i < mib; i++) {
		for (size_t k = 0; k < FILL_BLOCK / sizeof(*block); k++)
			block[k] = splitmix64(&seed);
		rc = write_all(fd, (const uint8_t *)block, FILL_BLOCK);
		if (rc)
			goto out;
	}
	rc = 0;
out:
	free(block);
	return rc;
}

/* Creates and unlinks a temporary file; returns an open fd or -errno. */
static int make_temp(unsigned mib)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	int fd, rc;

	if (!dir || !*dir)
		dir = "/tmp";
	if (snprintf(path, sizeof(path), "%s/kraken-hashbench.XXXXXX", dir) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	unlink(path);
	rc = fill_random(fd, mib);
	/* Flushed now, so writeback does not compete with the timed runs. */
	if (!rc && fdatasync(fd) < 0)
		rc = -errno;
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* User plus system time of the whole process, helper threads included. */
static double cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct run {
	double wall;
	double cpu;
};

static int run_once(int fd, const struct content *prev, struct content *c,
		    struct run *r)
{
	double t0 = now_seconds(), c0 = cpu_seconds();
	int rc = content_hash_fd_from(fd, prev, c);

	r->wall = now_seconds() - t0;
	r->cpu = cpu_seconds() - c0;
	return rc;
}

static double mb_per_s(uint64_t bytes, double secs)
{
	return secs > 0 ? (double)bytes / secs / 1e6 : 0;
}

static int bench(int fd, const char *what, bool previous)
{
	struct content first = { 0 }, c = { 0 };
	const struct content *prev = previous ? &first : NULL;
	char hex[CONTENT_HEX_LEN];
	struct run r, best = { 0, 0 };
	int rc;

	rc = run_once(fd, NULL, &first, &r);   /* warm-up, not timed */
	if (rc)
		goto out;
	content_hex(first.hash, hex);
	printf("file: %s\nbytes: %llu\nchunks: %zu\nhash: %s\n", what,
	       (unsigned long long)first.size, first.n_chunks, hex);
	for (int i = 1; i <= TIMED_RUNS; i++) {
		content_release(&c);
		rc = run_once(fd, prev, &c, &r);
		/* Guessing must never change the answer. */
		if (!rc && memcmp(c.hash, first.hash, CONTENT_HASH_LEN))
			rc = KR_ECHANGED;
		if (rc)
			goto out;
		printf("run %d: %.4f s, %.1f MB/s, cpu %.4f s\n", i, r.wall,
		       mb_per_s(c.size, r.wall), r.cpu);
		if (!best.wall || r.wall < best.wall)
			best = r;
	}
	/*
	 * openssl speed divides by CPU time, not wall time, unless given
	 * -elapsed; the second figure is comparable with it on a busy host.
	 */
	printf("per cpu second: %.1f MB/s\n", mb_per_s(c.size, best.cpu));
	printf("best: %.1f MB/s\n", mb_per_s(c.size, best.wall));
out:
	content_release(&c);
	content_release(&first);
	if (rc)
		fprintf(stderr, "kraken-hashbench: hashing %s failed: %s\n",
			what, kr_strerror(rc));
	return rc;
}

/*
 * Returns -1 to go on, or the exit status when the options say to stop
 * (help printed, or a usage error).
 */
static int parse_args(int argc, char **argv, unsigned *mib, bool *previous,
		      const char **path)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "previous", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "s:ph", opts, NULL)) != -1) {
		if (opt == 'h') {
			usage(stdout);
			return 0;
		}
		if (opt == 'p') {
			*previous = true;
			continue;
		}
		if (opt != 's') {
			usage(stderr);
			return 2;
		}
		if (parse_mib(optarg, mib)) {
			fprintf(stderr, "kraken-hashbench: bad size '%s' "
				"(MiB, 1 to %u)\n", optarg, MAX_MIB);
			return 2;
		}
	}
	if (argc - optind > 1) {
		usage(stderr);
		return 2;
	}
	*path = optind < argc ? argv[optind] : NULL;
	return -1;
}

int main(int argc, char **argv)
{
	unsigned mib = DEFAULT_MIB;
	const char *path, *what = "(temporary, random data)";
	bool previous = false;
	int fd, rc;

	rc = parse_args(argc, argv, &mib, &previous, &path);
	if (rc >= 0)
		return rc;
	if (path) {
		what = path;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		rc = fd < 0 ? -errno : 0;
	} else {
		fd = make_temp(mib);
		rc = fd < 0 ? fd : 0;
	}
	if (rc) {
		fprintf(stderr, "kraken-hashbench: cannot open %s: %s\n", what,
			kr_strerror(rc));
		return 1;
	}
	rc = bench(fd, what, previous);
	close(fd);
	return rc ? 1 : 0;
}
