/*
 * Private to the REST server's files: rest.c (server, routing, reads
 * and admin calls) and rest_restore.c (versions, restores, fetches).
 * Everything here runs on the server's one MHD thread.
 */
#ifndef KRAKEN_REST_INT_H
#define KRAKEN_REST_INT_H

#include "api_int.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rest {
	struct api *api;
	struct MHD_Daemon *daemon;
	int fd;                      /* listening socket, owned until MHD runs */
	uint16_t port;
	struct journal *journal;     /* the MHD thread's connection */
};

/* Per-request state, freed by rest_completed. */
struct rest_req {
	uint64_t body;               /* bytes of body seen (and dropped) */
	bool started;
	/* GET /v1/versions waiting for peers: the question (id 0 until
	 * queued) and the document the answers complete */
	struct api_ask *ask;
	json_t *doc;
};

struct rest_call {
	struct rest *r;
	struct MHD_Connection *conn;
	const char *url;
	struct rest_req *req;
};

typedef enum MHD_Result (*rest_fn)(struct rest_call *c);

/* Answers O (taken over; NULL: out of memory) with CODE. */
enum MHD_Result rest_json(struct rest_call *c, unsigned code, json_t *o);
/* Answers {"error": the formatted text} with CODE. */
enum MHD_Result rest_error(struct rest_call *c, unsigned code,
			   const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* 500 for a journal error, and a fresh connection for the next call. */
enum MHD_Result rest_journal_error(struct rest_call *c, int err);
/* The thread's journal connection, opened on first use. */
int rest_journal(struct rest_call *c, struct journal **out);
/* A string parameter of at most MAX bytes, valid UTF-8; NULL if absent. */
int rest_arg_str(struct rest_call *c, const char *name, size_t max,
		 const char **out);
/* 0 when the caller holds the admin token, else the error answer
 * through *RESULT. */
int rest_admin_check(struct rest_call *c, enum MHD_Result *result);

/* rest_restore.c */
enum MHD_Result rest_get_versions(struct rest_call *c);
/* The request GET /v1/versions parked, woken: the peers answered. */
enum MHD_Result rest_versions_done(struct rest_call *c);
enum MHD_Result rest_post_restore(struct rest_call *c);
enum MHD_Result rest_post_fetch(struct rest_call *c);

#endif
