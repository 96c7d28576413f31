/*
 * A mount's source is not in /proc/PID/mountinfo as a host path: each
 * line has the device (major:minor) and the path of the mount's root
 * *within that filesystem*.  So DIR is first translated the same way,
 * from our own mountinfo (the deepest mount point above DIR on DIR's
 * device gives root + the rest of the path), and then every namespace is
 * searched for a mount on that device whose root is DIR or below it.
 *
 *   mountinfo line:  36 35 98:0 /root/of/mount /mount/point opts ... - fs src
 *   fields:          id parent dev root        point        ...
 *
 * Paths in mountinfo escape space, tab, newline and backslash as \ooo.
 * Lines are capped (MOUNTINFO_LINE_MAX); a longer one cannot name a path
 * that fits PATH_MAX twice and is skipped.  Each namespace is read once.
 */
#include "mountinfo.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define MOUNTINFO_LINE_MAX (3 * PATH_MAX)
#define MOUNTINFO_NS_MAX 65536
/* The kernel's fixed inode number of the initial PID namespace. */
#define MOUNTINFO_PID_INIT_INO 0xEFFFFFFCUL

struct mnt_line {
	unsigned major, minor;
	char *root, *point;        /* unescaped, inside the line buffer */
};

/* Undoes mountinfo's \ooo escapes in place. */
static void mnt_unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
				      (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

static int mnt_parse(char *line, struct mnt_line *m)
{
	char *save = NULL, *f[5];

	for (int i = 0; i < 5; i++) {
		f[i] = strtok_r(i ? NULL : line, " \n", &save);
		if (!f[i])
			return -EINVAL;
	}
	if (sscanf(f[2], "%u:%u", &m->major, &m->minor) != 2)
		return -EINVAL;
	mnt_unescape(f[3]);
	mnt_unescape(f[4]);
	m->root = f[3];
	m->point = f[4];
	return 0;
}

/* Whether PATH is PREFIX or below it ("/" is above everything). */
static bool mnt_below(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (n == 1 && prefix[0] == '/')
		return true;
	return strncmp(path, prefix, n) == 0 && (!path[n] || path[n] == '/');
}

typedef int (*mnt_fn)(void *arg, const struct mnt_line *m);

static int mnt_each(const char *file, mnt_fn fn, void *arg)
{
	FILE *f = fopen(file, "re");
	char *line = malloc(MOUNTINFO_LINE_MAX);
	int err = f && line ? 0 : -errno;

	while (!err && fgets(line, MOUNTINFO_LINE_MAX, f)) {
		struct mnt_line m;

		if (!strchr(line, '\n')) {   /* over-long: skip the rest */
			int c;

			while ((c = fgetc(f)) != EOF && c != '\n')
				;
			continue;
		}
		if (mnt_parse(line, &m) == 0)
			err = fn(arg, &m);
	}
	if (f)
		fclose(f);
	free(line);
	return err > 0 ? 0 : err;
}

struct mnt_target {
	const char *dir;           /* real path of the directory */
	unsigned major, minor;
	size_t best;               /* length of the deepest mount point */
	char rel[PATH_MAX];        /* DIR within its filesystem */
	bool found, in_use;
};

static int mnt_locate(void *arg, const struct mnt_line *m)
{
	struct mnt_target *t = arg;
	size_t n = strlen(m->point);
	const char *rest;

	if (m->major != t->major || m->minor != t->minor ||
	    !mnt_below(t->dir, m->point) || (t->found && n <= t->best))
		return 0;
	rest = t->dir + (n == 1 ? 0 : n);
	if ((size_t)snprintf(t->rel, sizeof(t->rel), "%s%s",
			     strcmp(m->root, "/") ? m->root : "", rest) >=
	    sizeof(t->rel))
		return -ENAMETOOLONG;
	if (!t->rel[0])
		strcpy(t->rel, "/");
	t->best = n;
	t->found = true;
	return 0;
}

static int mnt_match(void *arg, const struct mnt_line *m)
{
	struct mnt_target *t = arg;

	/* A mount of a directory above DIR (the filesystem itself, say)
	 * does not use DIR; one of DIR or something inside it does. */
	if (m->major == t->major && m->minor == t->minor &&
	    mnt_below(m->root, t->rel) && strcmp(t->rel, "/") != 0) {
		t->in_use = true;
		return 1;               /* stop reading */
	}
	return 0;
}

static int mnt_ns_seen(unsigned long *seen, size_t *n, unsigned long ino)
{
	for (size_t i = 0; i < *n; i++)
		if (seen[i] == ino)
			return 1;
	if (*n == MOUNTINFO_NS_MAX)
		return -E2BIG;
	seen[(*n)++] = ino;
	return 0;
}

static int mnt_scan(struct mnt_target *t)
{
	unsigned long *seen = malloc(MOUNTINFO_NS_MAX * sizeof(*seen));
	DIR *proc = opendir("/proc");
	struct dirent *de;
	size_t n_seen = 0;
	int err = seen && proc ? 0 : -errno;

	while (!err && !t->in_use && (de = readdir(proc))) {
		char file[64];
		struct stat st;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(file, sizeof(file), "/proc/%.20s/ns/mnt", de->d_name);
		if (stat(file, &st) == 0) {
			err = mnt_ns_seen(seen, &n_seen,
					  (unsigned long)st.st_ino);
			if (err) {
				err = err > 0 ? 0 : err;
				continue;
			}
		} else if (errno == ENOENT || errno == ESRCH) {
			continue;           /* exited */
		}
		/* A namespace we may not identify (some init processes
		 * refuse it even to root) is read anyway; one whose mounts
		 * cannot be read fails the answer: then nobody can say the
		 * directory is unused. */
		snprintf(file, sizeof(file), "/proc/%.20s/mountinfo",
			 de->d_name);
		err = mnt_each(file, mnt_match, t);
		if (err == -ENOENT || err == -ESRCH)
			err = 0;            /* exited meanwhile */
	}
	if (proc)
		closedir(proc);
	free(seen);
	return err;
}

int mountinfo_dir_in_use(const char *dir, bool *in_use)
{
	struct mnt_target t = { 0 };
	char real[PATH_MAX];
	struct stat st;
	int err;

	*in_use = false;
	if (stat("/proc/self/ns/pid", &st) != 0)
		return -errno;
	if ((unsigned long)st.st_ino != MOUNTINFO_PID_INIT_INO)
		return -ENOTSUP;
	if (!realpath(dir, real) || stat(real, &st) != 0)
		return -errno;
	t.dir = real;
	t.major = major(st.st_dev);
	t.minor = minor(st.st_dev);
	err = mnt_each("/proc/self/mountinfo", mnt_locate, &t);
	if (!err && !t.found)
		err = -ENOENT;
	if (!err)
		err = mnt_scan(&t);
	*in_use = t.in_use;
	return err;
}
