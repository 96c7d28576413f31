/*
 * The thread waits on a condition for a request, flushes, and signals an
 * eventfd.  The request (flag and file list), its result, the queue of
 * descriptors to close (some to flush first, none reported) and the quit
 * flag are shared, under the mutex; the thread works on a copy of the
 * list.  The directory and eventfd are set up before the thread starts
 * and closed after it is joined.
 */
#include "syncer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* A descriptor the thread closes, after an fdatasync when SYNC. */
struct syncer_item {
	int fd;
	bool sync;
};

struct syncer {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int dirfd, efd;
	int fds[SYNCER_FILES_MAX];  /* duplicates, closed by the thread */
	size_t n_fds;
	struct syncer_item closing[SYNCER_CLOSE_MAX];
	size_t n_closing;
	int result;
	bool want, quit, started;
};

int syncer_flush(int dirfd, const int *fds, size_t n)
{
	int err = 0;

	if (n == 0)
		return syncfs(dirfd) == 0 ? 0 : -errno;
	/* fsync, not fdatasync: mode, owner and times are part of what is
	 * made durable before the rename. */
	for (size_t i = 0; i < n; i++)
		if (fsync(fds[i]) != 0 && !err)
			err = -errno;
	return err;
}

/* An early flush's error is not reported here: the descriptor is one of
 * its own, so the flush before the rename still sees it. */
static void syncer_close_items(const struct syncer_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (items[i].sync)
			(void)fdatasync(items[i].fd);
		close(items[i].fd);
	}
}

static void *syncer_main(void *arg)
{
	struct syncer *s = arg;
	uint64_t one = 1;

	for (;;) {
		int fds[SYNCER_FILES_MAX];
		size_t n;
		int err;

		struct syncer_item closing[SYNCER_CLOSE_MAX];
		size_t n_closing;

		pthread_mutex_lock(&s->lock);
		while (!s->want && !s->n_closing && !s->quit)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->quit) {
			pthread_mutex_unlock(&s->lock);
			return NULL;
		}
		n_closing = s->n_closing;
		memcpy(closing, s->closing, n_closing * sizeof(*closing));
		s->n_closing = 0;
		if (!s->want) {
			pthread_mutex_unlock(&s->lock);
			syncer_close_items(closing, n_closing);
			continue;
		}
		s->want = false;
		n = s->n_fds;
		memcpy(fds, s->fds, n * sizeof(*fds));
		s->n_fds = 0;
		pthread_mutex_unlock(&s->lock);
		err = syncer_flush(s->dirfd, fds, n);
		for (size_t i = 0; i < n; i++)
			close(fds[i]);
		syncer_close_items(closing, n_closing);
		pthread_mutex_lock(&s->lock);
		s->result = err;
		pthread_mutex_unlock(&s->lock);
		while (write(s->efd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
	}
}

int syncer_new(const char *dir, struct syncer **out)
{
	struct syncer *s = calloc(1, sizeof(*s));
	int err = 0;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	if (s->dirfd < 0 || s->efd < 0)
		err = -errno;
	if (!err)
		err = -pthread_create(&s->thread, NULL, syncer_main, s);
	s->started = !err;
	if (err) {
		syncer_free(s);
		return err;
	}
	*out = s;
	return 0;
}

void syncer_free(struct syncer *s)
{
	if (!s)
		return;
	if (s->started) {
		pthread_mutex_lock(&s->lock);
		s->quit = true;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->thread, NULL);
	}
	for (size_t i = 0; i < s->n_fds; i++)   /* a request never taken */
		close(s->fds[i]);
	for (size_t i = 0; i < s->n_closing; i++)
		close(s->closing[i].fd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	if (s->efd >= 0)
		close(s->efd);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int syncer_fd(const struct syncer *s)
{
	return s->efd;
}

int syncer_start(struct syncer *s, const int *fds, size_t n)
{
	int dups[SYNCER_FILES_MAX];
	size_t i;
	int err = 0;

	if (n > SYNCER_FILES_MAX)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		dups[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
		if (dups[i] < 0) {
			err = -errno;
			break;
		}
	}
	if (err) {
		while (i--)
			close(dups[i]);
		return err;
	}
	pthread_mutex_lock(&s->lock);
	memcpy(s->fds, dups, n * sizeof(*dups));
	s->n_fds = n;
	s->want = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void syncer_queue(struct syncer *s, int fd, bool sync)
{
	bool queued = false;

	pthread_mutex_lock(&s->lock);
	if (s->n_closing < SYNCER_CLOSE_MAX) {
		s->closing[s->n_closing++] = (struct syncer_item){ fd, sync };
		queued = true;
		pthread_cond_signal(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	if (!queued)
		close(fd);
}

void syncer_close(struct syncer *s, int fd)
{
	syncer_queue(s, fd, false);
}

void syncer_advance(struct syncer *s, int fd)
{
	syncer_queue(s, fd, true);
}

bool syncer_collect(struct syncer *s, int *result)
{
	uint64_t n = 0;

	if (read(s->efd, &n, sizeof(n)) != (ssize_t)sizeof(n) || n == 0)
		return false;
	pthread_mutex_lock(&s->lock);
	*result = s->result;
	pthread_mutex_unlock(&s->lock);
	return true;
}
