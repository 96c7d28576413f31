/*
 * The thread waits on a condition for a request, runs syncfs, and
 * signals an eventfd.  Only the request and quit flags are shared, under
 * the mutex; the descriptors are set up before the thread starts and
 * closed after it is joined.
 */
#include "syncer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct syncer {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int dirfd, efd;
	bool want, quit, started;
};

static void *syncer_main(void *arg)
{
	struct syncer *s = arg;
	uint64_t one = 1;

	for (;;) {
		pthread_mutex_lock(&s->lock);
		while (!s->want && !s->quit)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->quit) {
			pthread_mutex_unlock(&s->lock);
			return NULL;
		}
		s->want = false;
		pthread_mutex_unlock(&s->lock);
		syncfs(s->dirfd);
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

void syncer_start(struct syncer *s)
{
	pthread_mutex_lock(&s->lock);
	s->want = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

bool syncer_collect(struct syncer *s)
{
	uint64_t n = 0;

	return read(s->efd, &n, sizeof(n)) == (ssize_t)sizeof(n) && n > 0;
}
