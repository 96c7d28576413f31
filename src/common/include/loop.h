/*
 * A small epoll event loop, owned by one thread.
 *
 * Each turn: wait for the earliest hook deadline or an fd event, dispatch
 * every ready fd callback, then run every hook.  Hooks are where batched
 * work happens (settled file events, the journal commit), so one burst of
 * events becomes one transaction.  Callbacks may add and remove fds;
 * a removed fd is never dispatched again, even later in the same turn.
 */
#ifndef KRAKEN_LOOP_H
#define KRAKEN_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;

typedef void (*loop_fd_fn)(void *arg, uint32_t events);
/* Next absolute CLOCK_MONOTONIC deadline in ns, or -1 for none. */
typedef int64_t (*loop_deadline_fn)(void *arg);
typedef void (*loop_hook_fn)(void *arg);

int loop_new(struct loop **out);
void loop_free(struct loop *loop);

/* EVENTS is an EPOLLIN/EPOLLOUT mask.  0 or -errno. */
int loop_add_fd(struct loop *loop, int fd, uint32_t events, loop_fd_fn fn,
		void *arg);
int loop_del_fd(struct loop *loop, int fd);
/* Changes the events FD is polled for; 0 or -errno. */
int loop_mod_fd(struct loop *loop, int fd, uint32_t events);

/* Hooks run in registration order after every turn.  0 or -ENOMEM. */
int loop_add_hook(struct loop *loop, loop_deadline_fn deadline,
		  loop_hook_fn run, void *arg);

/* Runs until loop_stop(); returns 0 or -errno from epoll. */
int loop_run(struct loop *loop);
void loop_stop(struct loop *loop);

/* The monotonic clock, for deadlines; the wall clock, for what is
 * stored or shown (ns since the epoch). */
int64_t loop_now_ns(void);
int64_t loop_wall_ns(void);

#endif
