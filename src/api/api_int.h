/*
 * shared by api.c, rest.c and plugin.c
 *
 * The API module's private layout, on kapi's private include path only
 * (and the white-box tests' that CMakeLists.txt names); users see
 * src/api/include/api.h.  api.c owns struct api and its lifecycle;
 * rest.c serves TCP and plugin.c the Docker unix socket, each on its own
 * libmicrohttpd thread.  What the two servers share:
 *
 *   - copies of the options (strings strdup'd, never NULL unless the
 *     option was NULL), valid for the whole life of struct api;
 *   - the loop's latest snapshot, read with api_snapshot_get() (a copy
 *     taken under the mutex, so a server never holds the lock while it
 *     renders or does I/O);
 *   - the command queue towards the loop (api_command_push);
 *   - api_journal_open(): each server thread opens its own journal
 *     connection (a struct journal is single-threaded).
 */
#ifndef KRAKEN_API_INT_H
#define KRAKEN_API_INT_H

#include "api.h"
#include "journal.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Commands waiting for the loop; a full queue drops duplicates only. */
#define API_QUEUE_MAX 16

struct rest;
struct plugin;

/* How a waiting request is parked and woken (MHD suspend and resume). */
typedef void (*api_conn_fn)(void *conn);

/* One question to peers and the request waiting for it (api_ask.c). */
struct api_asking {
	bool used;
	bool parked;              /* its request sleeps until woken */
	bool queued;              /* not taken by the loop yet */
	bool answered;            /* or ended unanswered: peers NULL */
	struct api_ask q;
	void *conn;
	api_conn_fn resume;
	struct api_kept *peers;
	size_t n_peers;
};

struct api {
	/* Options, copied by api_new. */
	char *node_id;
	char *journal_path;
	char *root;
	char *listen_host;
	uint16_t listen_port;
	char *token_file;
	char *read_token_file;
	char **allowed_hosts;
	size_t n_allowed_hosts;
	api_config_check_fn check_config;
	void *check_config_ctx;
	char *plugin_socket;
	char *driver_name;
	unsigned mount_wait_ms;
	unsigned mount_grace_ms;
	bool journal_signed;

	int64_t started_ns;          /* CLOCK_MONOTONIC at api_new */

	pthread_mutex_t lock;        /* guards snap, have_snap and the queue */
	struct api_snapshot snap;
	bool have_snap;
	enum api_command queue[API_QUEUE_MAX];
	unsigned q_head, q_len;
	int event_fd;                /* readable while q_len > 0 */
	struct api_restore *restores;   /* API_RESTORES_MAX, a ring */
	unsigned r_head, r_len;
	struct api_asking *asks;        /* API_ASKS_MAX slots (api_ask.c) */
	uint64_t last_ask_id;
	bool asks_closed;               /* the REST server is stopping */

	struct rest *rest;           /* rest.c's state, NULL: no REST server */
	struct plugin *plugin;       /* plugin.c's state, owned by plugin.c */
};

/* Copies the latest snapshot into *out (zeroed when none was published
 * yet); returns whether one was.  Any thread. */
bool api_snapshot_get(struct api *a, struct api_snapshot *out);

/* Queues CMD for the loop and makes the eventfd readable.  A command
 * already waiting is not queued twice.  0, or -ENOSPC.  Any thread. */
int api_command_push(struct api *a, enum api_command cmd);

/* Restores in place waiting for the loop thread at most. */
#define API_RESTORES_MAX 16
/* Queues a restore of content fetched from peers, and API_CMD_RESTORE.
 * 0, or -ENOSPC while API_RESTORES_MAX wait.  Any thread. */
int api_restore_push(struct api *a, const struct api_restore *req);

/* ---- questions to peers (api_ask.c) ------------------------------------ */

/* Open questions at most: each holds a waiting HTTP request. */
#define API_ASKS_MAX 8

/* Parks CONN with PARK and queues Q for the loop (API_CMD_ASK), in that
 * order, so that RESUME, which wakes it once answered, never comes
 * first.  Sets Q->id.  0 (CONN sleeps, or is already woken unanswered),
 * -EBUSY while API_ASKS_MAX wait, -ESHUTDOWN once stopping: then CONN
 * was not parked. */
int api_ask_push(struct api *a, struct api_ask *q, api_conn_fn park,
		 api_conn_fn resume, void *conn);
/* Takes the answers to ID (*PEERS malloc'd, the caller frees) and ends
 * the question: 0, or -ECANCELED when it ended unanswered (the server
 * stopping, or the request gone: then PEERS may be NULL). */
int api_ask_take(struct api *a, uint64_t id, struct api_kept **peers,
		 size_t *n_peers);
/* Wakes every waiting request unanswered and refuses new questions;
 * before the REST server stops, which it cannot with requests parked. */
void api_asks_close(struct api *a);
void api_asks_free(struct api *a);
/* api_command_push with the lock held. */
int api_command_push_locked(struct api *a, enum api_command cmd);

/* Opens a journal connection for the calling thread: read-only with
 * JOURNAL_READONLY, else read-write as this node (for mount references).
 * The caller closes it with journal_close; *errmsg as journal_open. */
int api_journal_open(struct api *a, unsigned flags, struct journal **out,
		     char **errmsg);


/* rest.c: the REST server on listen_host:listen_port.  rest_start sets
 * a->rest; rest_stop stops the thread and frees it (NULL rest ignored). */
int rest_start(struct api *a, char **errmsg);
void rest_stop(struct api *a);

/* plugin.c: the Docker plugin on plugin_socket (does nothing when NULL).
 * plugin_start sets a->plugin; plugin_stop undoes it, safe to call when
 * plugin_start failed or was never called. */
int plugin_start(struct api *a, char **errmsg);
void plugin_stop(struct api *a);

/* ---- plugin: added by plugin.c ---------------------------------------- */

/* Whether the mount reference (VOLUME, ID) made at CREATED_NS (wall
 * clock) is no longer used by any container; the caller decides how to
 * tell (ask dockerd, or compare with dockerd's start time). */
typedef bool (*plugin_mount_gone_fn)(void *arg, const char *volume,
				     const char *id, int64_t created_ns);

/* Drops every mount reference GONE reports gone, which repairs the count
 * after Docker lost an Unmount.  Any thread; GONE runs without locks.
 * Returns how many were dropped, -ENOTCONN without a plugin, or a
 * negative code. */
int plugin_reconcile_mounts(struct api *a, plugin_mount_gone_fn gone,
			    void *arg);

/* The reconciliation the plugin itself uses: drops references to VOLUME
 * (NULL: every volume) older than mount_grace_ms whose directory no
 * mount namespace on this host has mounted.  Logs what it dropped;
 * returns plugin_reconcile_mounts' result. */
int plugin_reconcile(struct api *a, const char *volume);

/*
 * How the endpoints read a request, apart from the socket and the volumes
 * so that tests/fuzz can reach it.
 *
 * plugin_parse_body: BODY (LEN bytes, NULL when empty) as a new JSON
 * object; or NULL, with the {"Err"} answer in *err (NULL when out of
 * memory).  plugin_name / plugin_mount_id read the Name / ID field of REQ
 * into *out (borrowed from REQ); plugin_options checks Create's Opts.
 * Those return NULL when REQ is acceptable, else the {"Err"} answer.
 */
json_t *plugin_parse_body(const char *body, size_t len, json_t **err);
json_t *plugin_name(json_t *req, const char **name);
json_t *plugin_mount_id(json_t *req, const char **id);
json_t *plugin_options(json_t *req);

/* ---- end of plugin block ---------------------------------------------- */

/* dashboard.c: the embedded page, generated by tools/embed-dashboard.sh. */
extern const char api_dashboard_html[];
extern const unsigned long api_dashboard_html_len;

#endif
