#include "pidlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct flock pidlock_whole(void)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;   /* l_start 0, l_len 0: the whole file */
	return fl;
}

/* The holder of the lock on FD's file, or 0 if it was just released. */
static pid_t pidlock_holder(int fd)
{
	struct flock fl = pidlock_whole();

	if (fcntl(fd, F_GETLK, &fl) != 0 || fl.l_type == F_UNLCK)
		return 0;
	return fl.l_pid;
}

int pidlock_acquire(const char *path, int *fd, pid_t *holder)
{
	struct flock fl = pidlock_whole();
	char pid[32];
	int n, err;
	int lfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

	*fd = -1;
	*holder = 0;
	if (lfd < 0)
		return -errno;
	if (fcntl(lfd, F_SETLK, &fl) != 0) {
		err = errno == EAGAIN || errno == EACCES ? -EBUSY : -errno;
		if (err == -EBUSY)
			*holder = pidlock_holder(lfd);
		goto fail;
	}
	/* For people only (see the header): a full disk must not stop it. */
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(lfd, 0) == 0) {
		ssize_t w = pwrite(lfd, pid, (size_t)n, 0);

		(void)w;
	}
	*fd = lfd;
	return 0;
fail:
	close(lfd);
	return err;
}

void pidlock_release(int fd)
{
	if (fd >= 0)
		close(fd);
}
