/*
 * A kill -9 at an exact point, for the crash tests: preloaded into an
 * agent (LD_PRELOAD), it lets renameat(2) or unlinkat(2) of the name in
 * KRAKEN_CRASH_AT (a last path component) happen, then kills the
 * process with SIGKILL before it returns.  The disk then holds the
 * rename or unlink while nothing the process did after it, a journal
 * commit above all, took place: the state a power cut or an OOM kill
 * leaves in that window, which a kill -9 from outside hits only by luck.
 *
 * Without KRAKEN_CRASH_AT every call goes straight through.
 */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int renameat_fn(int, const char *, int, const char *);
typedef int unlinkat_fn(int, const char *, int);

static int crash_wanted(const char *path)
{
	const char *name = getenv("KRAKEN_CRASH_AT");
	const char *slash = strrchr(path, '/');

	return name && *name && strcmp(slash ? slash + 1 : path, name) == 0;
}

static void crash_now(void)
{
	kill(getpid(), SIGKILL);
	pause();
}

int renameat(int olddirfd, const char *oldpath, int newdirfd,
	     const char *newpath)
{
	renameat_fn *real = (renameat_fn *)dlsym(RTLD_NEXT, "renameat");
	int rc;

	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	rc = real(olddirfd, oldpath, newdirfd, newpath);
	if (rc == 0 && crash_wanted(newpath))
		crash_now();
	return rc;
}

int unlinkat(int dirfd, const char *path, int flags)
{
	unlinkat_fn *real = (unlinkat_fn *)dlsym(RTLD_NEXT, "unlinkat");
	int rc;

	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	rc = real(dirfd, path, flags);
	if (rc == 0 && crash_wanted(path))
		crash_now();
	return rc;
}
