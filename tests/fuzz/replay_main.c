/*
 * Replays a fuzz target's corpus without libFuzzer, so that every build
 * (gcc, the sanitizer pass of tools/test.sh) runs the seeds as a test.
 *
 *   fuzz_NAME_replay DIR|FILE...
 *
 * Every regular file of each DIR (names starting with '.' skipped), and
 * each FILE, goes once through LLVMFuzzerTestOneInput, in name order so
 * that two runs do the same.  A DIR that is missing or holds no input is
 * an error: a corpus that vanished must not pass as a corpus that passed.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads PATH into a buffer of exactly its size, so that the sanitizers
 * see a target reading one byte past its input. */
static int replay_read(const char *path, uint8_t **out, size_t *len)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) != 0)
		goto fail;
	/* malloc(0) may be NULL; an empty input still gets a pointer. */
	buf = malloc((size_t)st.st_size);
	if (!buf && st.st_size > 0)
		goto fail;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = EIO;     /* the file shrank under us */
		if (n <= 0)
			goto fail;
		got += (size_t)n;
	}
	close(fd);
	*out = buf;
	*len = got;
	return 0;
fail:
	fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
	free(buf);
	if (fd >= 0)
		close(fd);
	return -1;
}

static int replay_file(const char *path)
{
	uint8_t *data;
	size_t len;

	if (replay_read(path, &data, &len) != 0)
		return -1;
	/* Named before it runs: a crash leaves the culprit as the last line. */
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
	LLVMFuzzerTestOneInput(data ? data : (const uint8_t *)"", len);
	free(data);
	return 0;
}

static int replay_is_input(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* Runs every input of DIR; how many, or -1. */
static long replay_dir(const char *dir)
{
	struct dirent **names;
	char path[4096];
	long ran = 0;
	int n = scandir(dir, &names, replay_is_input, alphasort);

	if (n < 0) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (ran >= 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode))
			ran = replay_file(path) == 0 ? ran + 1 : -1;
		free(names[i]);
	}
	free(names);
	if (ran == 0)
		fprintf(stderr, "replay: %s: no input in the corpus\n", dir);
	return ran > 0 ? ran : -1;
}

static long replay_arg(const char *arg)
{
	struct stat st;

	if (stat(arg, &st) == 0 && S_ISREG(st.st_mode))
		return replay_file(arg) == 0 ? 1 : -1;
	return replay_dir(arg);
}

int main(int argc, char **argv)
{
	long total = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		long ran = replay_arg(argv[i]);

		if (ran < 0)
			return 1;
		printf("replay: %s: %ld inputs\n", argv[i], ran);
		total += ran;
	}
	printf("replay: %ld inputs ran, none failed\n", total);
	return 0;
}
