/*
 * The API module's shared state: option copies, the loop's snapshot and
 * the command queue, and the lifecycle that starts both servers.
 *
 * The loop thread publishes a snapshot about once a second; the HTTP
 * threads copy it out under the mutex and render from their copy, so the
 * lock is held only for a memcpy and the loop never waits on a slow
 * client.  Commands travel the other way through a small ring plus an
 * eventfd counter that stays readable exactly while the ring is non-empty:
 * api_next_command drains the counter when it takes the last command.
 */
#include "api_int.h"
#include "err.h"
#include "loop.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static int api_dup(const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

static int api_copy_options(struct api *a, const struct api_options *opt)
{
	int err = 0;

	err = err ? err : api_dup(opt->node_id, &a->node_id);
	err = err ? err : api_dup(opt->journal_path, &a->journal_path);
	err = err ? err : api_dup(opt->root, &a->root);
	err = err ? err : api_dup(opt->listen_host, &a->listen_host);
	err = err ? err : api_dup(opt->token_file, &a->token_file);
	err = err ? err : api_dup(opt->plugin_socket, &a->plugin_socket);
	err = err ? err : api_dup(opt->driver_name, &a->driver_name);
	err = err ? err : api_dup(opt->read_token_file, &a->read_token_file);
	a->journal_signed = opt->journal_signed;
	a->check_config = opt->check_config;
	a->check_config_ctx = opt->check_config_ctx;
	if (!err && opt->n_allowed_hosts) {
		a->allowed_hosts = calloc(opt->n_allowed_hosts,
					  sizeof(*a->allowed_hosts));
		err = a->allowed_hosts ? 0 : -ENOMEM;
	}
	for (size_t i = 0; !err && i < opt->n_allowed_hosts; i++) {
		err = api_dup(opt->allowed_hosts[i], &a->allowed_hosts[i]);
		a->n_allowed_hosts += !err;
	}
	a->listen_port = opt->listen_port;
	a->mount_wait_ms = opt->mount_wait_ms;
	a->mount_grace_ms = opt->mount_grace_ms ? opt->mount_grace_ms :
			    API_MOUNT_GRACE_MS;
	return err;
}

static void api_free_options(struct api *a)
{
	free(a->node_id);
	free(a->journal_path);
	free(a->root);
	free(a->listen_host);
	free(a->token_file);
	free(a->read_token_file);
	for (size_t i = 0; i < a->n_allowed_hosts; i++)
		free(a->allowed_hosts[i]);
	free(a->allowed_hosts);
	free(a->plugin_socket);
	free(a->driver_name);
}

static int api_errmsg(char **errmsg, const char *what, int err)
{
	if (errmsg && !*errmsg) {
		size_t cap = strlen(what) + 128;

		*errmsg = malloc(cap);
		if (*errmsg)
			snprintf(*errmsg, cap, "%s: %s", what, kr_strerror(err));
	}
	return err;
}

int api_new(const struct api_options *opt, struct api **out, char **errmsg)
{
	struct api *a;
	int err;

	*out = NULL;
	if (errmsg)
		*errmsg = NULL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return api_errmsg(errmsg, "api", -ENOMEM);
	a->event_fd = -1;
	pthread_mutex_init(&a->lock, NULL);
	a->started_ns = loop_now_ns();
	err = api_copy_options(a, opt);
	if (err) {
		api_errmsg(errmsg, "api", err);
		goto out;
	}
	a->restores = calloc(API_RESTORES_MAX, sizeof(*a->restores));
	a->asks = calloc(API_ASKS_MAX, sizeof(*a->asks));
	if (!a->restores || !a->asks) {
		err = api_errmsg(errmsg, "api", -ENOMEM);
		goto out;
	}
	a->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (a->event_fd < 0) {
		err = api_errmsg(errmsg, "api: eventfd", -errno);
		goto out;
	}
	if (a->listen_host) {
		err = rest_start(a, errmsg);
		if (err)
			goto out;
	}
	err = plugin_start(a, errmsg);
	/* Containers that stopped while the agent was down. */
	if (!err && a->plugin)
		plugin_reconcile(a, NULL);
out:
	if (err) {
		api_free(a);
		return err;
	}
	*out = a;
	return 0;
}

void api_free(struct api *a)
{
	if (!a)
		return;
	/* Servers first: their threads read everything below. */
	plugin_stop(a);
	rest_stop(a);
	if (a->event_fd >= 0)
		close(a->event_fd);
	pthread_mutex_destroy(&a->lock);
	api_free_options(a);
	free(a->restores);
	api_asks_free(a);
	free(a);
}

void api_publish(struct api *a, const struct api_snapshot *snap)
{
	pthread_mutex_lock(&a->lock);
	a->snap = *snap;
	if (a->snap.n_peers > API_PEERS_MAX)
		a->snap.n_peers = API_PEERS_MAX;
	a->have_snap = true;
	pthread_mutex_unlock(&a->lock);
}

bool api_snapshot_get(struct api *a, struct api_snapshot *out)
{
	bool have;

	pthread_mutex_lock(&a->lock);
	*out = a->snap;
	have = a->have_snap;
	pthread_mutex_unlock(&a->lock);
	return have;
}

int api_command_fd(const struct api *a)
{
	return a->event_fd;
}

int api_command_push_locked(struct api *a, enum api_command cmd)
{
	uint64_t one = 1;

	/* NONE is what an empty queue answers, never a command. */
	assert(cmd != API_CMD_NONE && a->q_len <= API_QUEUE_MAX);
	for (unsigned i = 0; i < a->q_len; i++)
		if (a->queue[(a->q_head + i) % API_QUEUE_MAX] == cmd)
			return 0;   /* one pending rescan does what two would */
	if (a->q_len == API_QUEUE_MAX)
		return -ENOSPC;
	a->queue[(a->q_head + a->q_len) % API_QUEUE_MAX] = cmd;
	a->q_len++;
	/* Cannot fail short of a counter overflow, which q_len rules out. */
	return write(a->event_fd, &one, sizeof(one)) < 0 ? -errno : 0;
}

int api_command_push(struct api *a, enum api_command cmd)
{
	int err;

	pthread_mutex_lock(&a->lock);
	err = api_command_push_locked(a, cmd);
	pthread_mutex_unlock(&a->lock);
	return err;
}

int api_restore_push(struct api *a, const struct api_restore *req)
{
	int err = 0;

	pthread_mutex_lock(&a->lock);
	if (a->r_len == API_RESTORES_MAX)
		err = -ENOSPC;
	else
		a->restores[(a->r_head + a->r_len++) % API_RESTORES_MAX] = *req;
	pthread_mutex_unlock(&a->lock);
	return err ? err : api_command_push(a, API_CMD_RESTORE);
}

bool api_next_restore(struct api *a, struct api_restore *out)
{
	bool have;

	pthread_mutex_lock(&a->lock);
	assert(a->r_len <= API_RESTORES_MAX);
	have = a->r_len > 0;
	if (have) {
		*out = a->restores[a->r_head];
		a->r_head = (a->r_head + 1) % API_RESTORES_MAX;
		a->r_len--;
	}
	pthread_mutex_unlock(&a->lock);
	return have;
}

enum api_command api_next_command(struct api *a)
{
	enum api_command cmd = API_CMD_NONE;
	uint64_t count;

	pthread_mutex_lock(&a->lock);
	if (a->q_len == 0)
		goto out;
	cmd = a->queue[a->q_head];
	a->q_head = (a->q_head + 1) % API_QUEUE_MAX;
	a->q_len--;
	/* Draining under the lock keeps "readable" equal to "q_len > 0". */
	if (a->q_len == 0 && read(a->event_fd, &count, sizeof(count)) < 0)
		count = 0;
out:
	pthread_mutex_unlock(&a->lock);
	return cmd;
}

int api_journal_open(struct api *a, unsigned flags, struct journal **out,
		     char **errmsg)
{
	const char *node = (flags & JOURNAL_READONLY) ? NULL : a->node_id;

	*out = NULL;
	if (!a->journal_path) {
		if (errmsg)
			*errmsg = strdup("no journal path configured");
		return -ENOENT;
	}
	return journal_open(a->journal_path, node, flags, out, errmsg);
}
