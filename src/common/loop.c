#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 64

struct loop_fd {
	int fd;
	loop_fd_fn fn;
	void *arg;
	struct loop_fd *next;
};

struct loop_hook {
	loop_deadline_fn deadline;
	loop_hook_fn run;
	void *arg;
};

struct loop {
	int epfd;
	bool stop;
	struct loop_fd *fds;
	struct loop_hook *hooks;
	int n_hooks;
	/* Registrations removed during a turn are freed after it, so an
	 * epoll_event still pointing at one is recognised as dead. */
	struct loop_fd *dead;
};

int64_t loop_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t loop_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int loop_new(struct loop **out)
{
	struct loop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return -ENOMEM;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		int err = -errno;

		free(loop);
		return err;
	}
	*out = loop;
	return 0;
}

static void loop_reap(struct loop *loop)
{
	while (loop->dead) {
		struct loop_fd *d = loop->dead;

		loop->dead = d->next;
		free(d);
	}
}

void loop_free(struct loop *loop)
{
	if (!loop)
		return;
	while (loop->fds) {
		struct loop_fd *f = loop->fds;

		loop->fds = f->next;
		free(f);
	}
	loop_reap(loop);
	free(loop->hooks);
	close(loop->epfd);
	free(loop);
}

int loop_add_fd(struct loop *loop, int fd, uint32_t events, loop_fd_fn fn,
		void *arg)
{
	struct loop_fd *f = calloc(1, sizeof(*f));
	struct epoll_event ev = { .events = events };

	if (!f)
		return -ENOMEM;
	f->fd = fd;
	f->fn = fn;
	f->arg = arg;
	ev.data.ptr = f;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		int err = -errno;

		free(f);
		return err;
	}
	f->next = loop->fds;
	loop->fds = f;
	return 0;
}

int loop_del_fd(struct loop *loop, int fd)
{
	for (struct loop_fd **pp = &loop->fds; *pp; pp = &(*pp)->next) {
		struct loop_fd *f = *pp;

		if (f->fd != fd)
			continue;
		*pp = f->next;
		epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
		f->fn = NULL;
		f->next = loop->dead;
		loop->dead = f;
		return 0;
	}
	return -ENOENT;
}

int loop_mod_fd(struct loop *loop, int fd, uint32_t events)
{
	for (struct loop_fd *f = loop->fds; f; f = f->next) {
		struct epoll_event ev = { .events = events, .data.ptr = f };

		if (f->fd != fd)
			continue;
		return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) ? -errno : 0;
	}
	return -ENOENT;
}

int loop_add_hook(struct loop *loop, loop_deadline_fn deadline,
		  loop_hook_fn run, void *arg)
{
	struct loop_hook *h = realloc(loop->hooks,
				      sizeof(*h) * (size_t)(loop->n_hooks + 1));

	if (!h)
		return -ENOMEM;
	loop->hooks = h;
	h[loop->n_hooks++] = (struct loop_hook){ deadline, run, arg };
	return 0;
}

static int loop_timeout_ms(struct loop *loop)
{
	int64_t best = -1;
	int64_t now;

	for (int i = 0; i < loop->n_hooks; i++) {
		int64_t d = loop->hooks[i].deadline ?
			    loop->hooks[i].deadline(loop->hooks[i].arg) : -1;

		if (d >= 0 && (best < 0 || d < best))
			best = d;
	}
	if (best < 0)
		return -1;
	now = loop_now_ns();
	if (best <= now)
		return 0;
	/* Round up so that we never wake just before the deadline. */
	int64_t ms = (best - now + 999999) / 1000000;

	return ms > 60000 ? 60000 : (int)ms;
}

int loop_run(struct loop *loop)
{
	struct epoll_event evs[LOOP_MAX_EVENTS];

	loop->stop = false;
	while (!loop->stop) {
		int n = epoll_wait(loop->epfd, evs, LOOP_MAX_EVENTS,
				   loop_timeout_ms(loop));

		if (n < 0 && errno != EINTR)
			return -errno;
		for (int i = 0; i < n; i++) {
			struct loop_fd *f = evs[i].data.ptr;

			if (f->fn)
				f->fn(f->arg, evs[i].events);
		}
		loop_reap(loop);
		for (int i = 0; i < loop->n_hooks; i++)
			loop->hooks[i].run(loop->hooks[i].arg);
	}
	return 0;
}

void loop_stop(struct loop *loop)
{
	loop->stop = true;
}
