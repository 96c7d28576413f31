/*
 * Names of the agent's temp files inside volumes.
 *
 * A received version is assembled in a hidden temp file beside its
 * target and renamed into place; a crash leaves the temp file behind, and
 * the next start-up walk removes it.  That walk must never remove a file
 * the agent did not make, and the watcher must not ignore a user's file
 * that merely looks like one (a copy of another node's volume, say).  So
 * every name carries this node's tag:
 *
 *   .krakenfs-tmp-TAG-XXXXXXXXXXXXXXXX
 *
 * TAG is 16 random hex digits kept in ROOT/.krakenfs-temp-tag, made on
 * the first start over a root and kept with it (a lost journal does not
 * lose it, so a rejoining node still knows its leftovers).  X is a
 * counter scrambled by splitmix64 over a random seed: unpredictable
 * names without a getrandom(2) per file.  Names of another tag, or none,
 * are ordinary files: watched, replicated, never removed.
 *
 * Agents before the tag used ".krakenfs-tmp-" and 16 hex digits.  Such
 * names are removed only by the first start that makes the tag file,
 * which is the first start of this version over that root: they can only
 * be an older agent's leftovers.
 *
 * State is process-wide: one agent, one root.  Until tempname_init() the
 * tag is all zeros, which no init makes (unit tests use it).
 */
#include "tempname.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define TEMPNAME_PREFIX ".krakenfs-tmp-"
#define TEMPNAME_TAG_FILE ".krakenfs-temp-tag"
#define TEMPNAME_TAG_LEN 16

static char tag[TEMPNAME_TAG_LEN + 1] = "0000000000000000";
static bool legacy_sweep;

static bool tempname_is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* Reads ROOTFD's tag file into TAG: 0, -ENOENT, or -EINVAL when it does
 * not hold a tag. */
static int tempname_read(int rootfd)
{
	char buf[TEMPNAME_TAG_LEN + 2];
	ssize_t n;
	int fd = openat(rootfd, TEMPNAME_TAG_FILE, O_RDONLY | O_NOFOLLOW |
			O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < TEMPNAME_TAG_LEN || !tempname_is_hex(buf, TEMPNAME_TAG_LEN) ||
	    (n > TEMPNAME_TAG_LEN && buf[TEMPNAME_TAG_LEN] != '\n') ||
	    n > TEMPNAME_TAG_LEN + 1)
		return -EINVAL;
	memcpy(tag, buf, TEMPNAME_TAG_LEN);
	return 0;
}

/* Makes ROOTFD's tag file with a new random tag, atomically. */
static int tempname_create(int rootfd)
{
	char text[TEMPNAME_TAG_LEN + 2];
	uint64_t v = 0;
	int fd, err = 0;

	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
		return -errno;
	v |= 1;                       /* never the zero tag */
	snprintf(text, sizeof(text), "%016llx\n", (unsigned long long)v);
	fd = openat(rootfd, TEMPNAME_TAG_FILE ".new", O_WRONLY | O_CREAT |
		    O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, text, TEMPNAME_TAG_LEN + 1) != TEMPNAME_TAG_LEN + 1 ||
	    fsync(fd) != 0)
		err = errno ? -errno : -EIO;
	close(fd);
	if (!err && renameat(rootfd, TEMPNAME_TAG_FILE ".new", rootfd,
			     TEMPNAME_TAG_FILE) != 0)
		err = -errno;
	if (!err)
		memcpy(tag, text, TEMPNAME_TAG_LEN);
	return err;
}

int tempname_init(const char *root)
{
	int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err;

	if (rootfd < 0)
		return -errno;
	err = tempname_read(rootfd);
	if (err == -ENOENT) {
		err = tempname_create(rootfd);
		legacy_sweep = err == 0;
	}
	close(rootfd);
	return err;
}

const char *tempname_tag(void)
{
	return tag;
}

void tempname_make(char *out, size_t cap)
{
	static uint64_t seed, counter;
	uint64_t z;
	int n;

	if (!seed && getrandom(&seed, sizeof(seed), GRND_NONBLOCK) < 0)
		seed = (uint64_t)time(NULL) ^ (uint64_t)getpid();
	z = seed + ++counter * 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	n = snprintf(out, cap, TEMPNAME_PREFIX "%s-%016llx", tag,
		     (unsigned long long)z);
	/* Cut short, the name would not be tempname_ours(): a crash would
	 * leave a file no start-up walk removes.  Callers pass
	 * TEMPNAME_MAX. */
	assert(n > 0 && (size_t)n < cap && (size_t)n < TEMPNAME_MAX);
	(void)n;
}

bool tempname_ours(const char *name)
{
	size_t p = sizeof(TEMPNAME_PREFIX) - 1;

	return strncmp(name, TEMPNAME_PREFIX, p) == 0 &&
	       strncmp(name + p, tag, TEMPNAME_TAG_LEN) == 0 &&
	       name[p + TEMPNAME_TAG_LEN] == '-';
}

bool tempname_stale(const char *name)
{
	size_t p = sizeof(TEMPNAME_PREFIX) - 1;

	if (tempname_ours(name))
		return true;
	return legacy_sweep && strncmp(name, TEMPNAME_PREFIX, p) == 0 &&
	       strlen(name) == p + 16 && tempname_is_hex(name + p, 16);
}
