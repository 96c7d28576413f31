/*
 * The REST server: status, journal queries, metrics, admin commands and
 * the dashboard, on api.listen, served by libmicrohttpd.
 *
 * Threads.  One libmicrohttpd polling thread runs every handler, so the
 * journal connection it holds (read-only, opened on first use and reopened
 * after an error) is used by that thread alone.  Loop state comes from
 * the published snapshot (api_snapshot_get), admin commands leave through
 * the command queue; nothing here touches the loop's structures.
 *
 * Requests.  No endpoint takes a body.  A declared body over REST_BODY_MAX
 * is answered 413 before it is read; a chunked one is discarded as it
 * arrives and the connection dropped once it passes the cap, so no
 * request ever costs more memory than libmicrohttpd's per-connection pool.
 * Every answer is JSON ({"error": "..."} on failure) except /metrics
 * (Prometheus text) and / (the dashboard).
 *
 * Who is answered (rest_auth.c has the rules).  Every request first needs
 * a Host header naming this server, because a browser on this machine
 * would otherwise let any web page read the API through DNS rebinding;
 * it is checked on the first call, before any body is read: 403 naming
 * api.allowed_hosts, or 400 for two Host headers, or for none unless the
 * request is HTTP/1.0.
 * Then the admin calls (POST /v1/admin/...) need the admin token, and,
 * once api.read_token_file is set, every other request but GET / needs
 * the read token or the admin one (401 naming both options).  GET / is
 * exempt because a browser cannot send a header when it opens a page:
 * the page is a constant holding no data, and it sends the token (taken
 * from the URL fragment, which never reaches a server) with each of its
 * own requests.  Without api.read_token_file reads need no token, as the
 * default listen address is loopback.
 *
 * The socket is bound here rather than by libmicrohttpd so that IPv4 and
 * IPv6 hosts, names and port 0 (tests) all take the same path and the
 * caller gets a precise "cannot listen on HOST:PORT" message.
 */
#include "rest_int.h"
#include "rest_auth.h"
#include "rest_render.h"
#include "err.h"
#include "loop.h"
#include "path.h"
#include "timefmt.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define REST_BODY_MAX (64 * 1024)
#define REST_CONN_MAX 64
#define REST_TIMEOUT_S 15
#define REST_LIMIT_DEFAULT 100
#define REST_LIMIT_MAX 1000

/* ---- responses ------------------------------------------------------- */

static enum MHD_Result rest_send(struct rest_call *c, unsigned code,
				 const char *type, void *body, size_t len,
				 enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, body, mode);
	if (!resp) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (code == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer");
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
					strncmp(c->url, "/v1/admin/", 10) ?
					"GET, HEAD" : "POST");
	ret = MHD_queue_response(c->conn, code, resp);
	MHD_destroy_response(resp);
	return ret;
}

enum MHD_Result rest_json(struct rest_call *c, unsigned code,
				 json_t *o)
{
	static const char oom[] = "{\"error\":\"out of memory\"}\n";
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	size_t len;

	json_decref(o);
	if (!text)
		return rest_send(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
				 "application/json", (void *)oom,
				 sizeof(oom) - 1, MHD_RESPMEM_PERSISTENT);
	/* A trailing newline keeps curl output and shell tests tidy. */
	len = strlen(text);
	{
		char *t = realloc(text, len + 2);

		if (t) {
			text = t;
			text[len++] = '\n';
			text[len] = '\0';
		}
	}
	return rest_send(c, code, "application/json", text, len,
			 MHD_RESPMEM_MUST_FREE);
}

enum MHD_Result rest_error(struct rest_call *c, unsigned code,
				  const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o = json_pack("{s:s}", "error", msg);
	if (!o)   /* a message quoting bytes that are not UTF-8 */
		o = json_pack("{s:s}", "error", "bad request");
	return rest_json(c, code, o);
}

enum MHD_Result rest_journal_error(struct rest_call *c, int err)
{
	/* The connection may be what broke (file replaced, I/O error):
	 * the next request opens a fresh one. */
	journal_close(c->r->journal);
	c->r->journal = NULL;
	return rest_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "journal: %s",
			  kr_strerror(err));
}

/* The thread's journal connection, opened on first use. */
int rest_journal(struct rest_call *c, struct journal **out)
{
	char *msg = NULL;
	int err = 0;

	if (!c->r->journal) {
		err = api_journal_open(c->r->api, JOURNAL_READONLY,
				       &c->r->journal, &msg);
		free(msg);
	}
	*out = c->r->journal;
	return err;
}

/* ---- query parameters ------------------------------------------------ */

static const char *rest_arg(struct rest_call *c, const char *name)
{
	const char *v = MHD_lookup_connection_value(c->conn,
						    MHD_GET_ARGUMENT_KIND, name);

	return v && v[0] ? v : NULL;
}

/* A string parameter of at most MAX bytes, valid UTF-8; NULL if absent. */
int rest_arg_str(struct rest_call *c, const char *name, size_t max,
			const char **out)
{
	const char *v = rest_arg(c, name);

	*out = v;
	if (v && (strlen(v) > max || !path_utf8_ok(v, strlen(v))))
		return -EINVAL;
	return 0;
}

static int rest_arg_int(struct rest_call *c, const char *name, int64_t lo,
			int64_t hi, int64_t *out)
{
	const char *v = rest_arg(c, name);
	char *end;
	long long n;

	if (!v)
		return 0;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < lo || n > hi)
		return -EINVAL;
	*out = n;
	return 0;
}

static int rest_arg_time(struct rest_call *c, const char *name, int64_t *out)
{
	const char *v = rest_arg(c, name);

	if (!v)
		return 0;
	return timefmt_parse(v, loop_wall_ns(), out);
}

/* Fills F from the query string; on a bad value names it in *bad. */
static int rest_journal_filter(struct rest_call *c, struct journal_filter *f,
			       const char **bad)
{
	const char *op;

	memset(f, 0, sizeof(*f));
	f->limit = REST_LIMIT_DEFAULT;
	if (rest_arg_str(c, *bad = "volume", VOLUME_NAME_MAX, &f->volume) ||
	    rest_arg_str(c, *bad = "path", PATH_REL_MAX, &f->path_prefix) ||
	    rest_arg_str(c, *bad = "origin", JOURNAL_ORIGIN_MAX - 1,
			 &f->origin) ||
	    rest_arg_time(c, *bad = "since", &f->since_ns) ||
	    rest_arg_time(c, *bad = "until", &f->until_ns) ||
	    rest_arg_int(c, *bad = "limit", 1, REST_LIMIT_MAX, &f->limit) ||
	    rest_arg_int(c, *bad = "before", 1, INT64_MAX, &f->before_id))
		return -EINVAL;
	op = rest_arg(c, *bad = "op");
	if (op && !(f->op = journal_op_parse(op)))
		return -EINVAL;
	return 0;
}

/* ---- handlers -------------------------------------------------------- */

static enum MHD_Result rest_get_dashboard(struct rest_call *c)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(api_dashboard_html_len,
					       (void *)api_dashboard_html,
					       MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				"text/html; charset=utf-8");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	/* The page only talks to this server; nothing else may run in it. */
	MHD_add_response_header(resp, "Content-Security-Policy",
				"default-src 'none'; script-src 'unsafe-inline'; "
				"style-src 'unsafe-inline'; connect-src 'self'; "
				"img-src data:; frame-ancestors 'none'");
	ret = MHD_queue_response(c->conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result rest_get_health(struct rest_call *c)
{
	return rest_json(c, MHD_HTTP_OK, json_pack("{s:s,s:s?}", "status", "ok",
						   "node_id",
						   c->r->api->node_id));
}

static enum MHD_Result rest_get_status(struct rest_call *c)
{
	struct api_snapshot *snap = malloc(sizeof(*snap));
	struct journal *j;
	json_t *o = NULL;
	int err = -ENOMEM;

	if (snap) {
		err = rest_journal(c, &j);
		if (!err)
			err = rest_status_json(c->r->api, j, snap, &o);
	}
	free(snap);
	if (err)
		return rest_journal_error(c, err);
	return rest_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result rest_get_peers(struct rest_call *c)
{
	struct api_snapshot *snap = malloc(sizeof(*snap));
	json_t *o = NULL;

	if (snap) {
		api_snapshot_get(c->r->api, snap);
		o = rest_peers_json(snap);
	}
	free(snap);
	return rest_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result rest_get_volumes(struct rest_call *c)
{
	struct journal *j;
	json_t *o = NULL;
	int err = rest_journal(c, &j);

	if (!err)
		err = rest_volumes_json(j, &o);
	if (err)
		return rest_journal_error(c, err);
	return rest_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result rest_get_volume(struct rest_call *c)
{
	const char *name = c->url + strlen("/v1/volumes/");
	struct journal *j;
	json_t *o = NULL;
	int err;

	if (!path_volume_name_ok(name))
		return rest_error(c, MHD_HTTP_NOT_FOUND, "no such volume");
	err = rest_journal(c, &j);
	if (!err)
		err = rest_volume_json(j, name, &o);
	if (err == -ENOENT)
		return rest_error(c, MHD_HTTP_NOT_FOUND, "no such volume: %s",
				  name);
	if (err)
		return rest_journal_error(c, err);
	return rest_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result rest_get_journal(struct rest_call *c)
{
	struct journal_filter f;
	const char *bad = NULL;
	struct journal *j;
	json_t *o = NULL;
	int err;

	if (rest_journal_filter(c, &f, &bad))
		return rest_error(c, MHD_HTTP_BAD_REQUEST,
				  "bad value for query parameter '%s'", bad);
	err = rest_journal(c, &j);
	if (!err)
		err = rest_log_json(j, &f, &o);
	if (err)
		return rest_journal_error(c, err);
	return rest_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result rest_get_conflicts(struct rest_call *c)
{
	const char *volume;
	struct journal *j;
	json_t *o = NULL;
	int err;

	if (rest_arg_str(c, "volume", VOLUME_NAME_MAX, &volume))
		return rest_error(c, MHD_HTTP_BAD_REQUEST,
				  "bad value for query parameter 'volume'");
	err = rest_journal(c, &j);
	if (!err)
		err = rest_conflicts_json(j, volume, &o);
	if (err)
		return rest_journal_error(c, err);
	return rest_json(c, MHD_HTTP_OK, o);
}

static enum MHD_Result rest_get_metrics(struct rest_call *c)
{
	struct api_snapshot *snap = malloc(sizeof(*snap));
	struct journal *j = NULL;
	char *text = NULL;
	size_t len = 0;
	int err = -ENOMEM;

	if (snap) {
		api_snapshot_get(c->r->api, snap);
		if (rest_journal(c, &j) != 0)
			j = NULL;     /* the rest of the metrics still answer */
		err = rest_metrics_text(snap, j, loop_now_ns() -
					c->r->api->started_ns, &text, &len);
	}
	free(snap);
	if (err)
		return rest_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
				  "metrics: %s", kr_strerror(err));
	return rest_send(c, MHD_HTTP_OK, "text/plain; version=0.0.4", text, len,
			 MHD_RESPMEM_MUST_FREE);
}

/* ---- admin ----------------------------------------------------------- */

static int rest_authorize(struct rest_call *c)
{
	const char *given = rest_bearer(MHD_lookup_connection_value(c->conn,
					MHD_HEADER_KIND,
					MHD_HTTP_HEADER_AUTHORIZATION));
	int err = rest_token_check(c->r->api->token_file, given);

	if (err == -EACCES)
		return MHD_HTTP_UNAUTHORIZED;
	return err ? MHD_HTTP_SERVICE_UNAVAILABLE : 0;
}

/* 0 when the caller holds the token, else the error response's result
 * through *RESULT. */
int rest_admin_check(struct rest_call *c, enum MHD_Result *result)
{
	int code = rest_authorize(c);

	if (code == MHD_HTTP_SERVICE_UNAVAILABLE)
		*result = rest_error(c, code, "admin API disabled: create "
				     "api.token_file");
	else if (code)
		*result = rest_error(c, code, "missing or wrong bearer token");
	return code;
}

static enum MHD_Result rest_queue(struct rest_call *c, enum api_command cmd,
				  const char *name)
{
	if (api_command_push(c->r->api, cmd))
		return rest_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
				  "command queue full, try again");
	return rest_json(c, MHD_HTTP_ACCEPTED, json_pack("{s:s}", "queued",
							 name));
}

static enum MHD_Result rest_admin(struct rest_call *c, enum api_command cmd,
				  const char *name)
{
	enum MHD_Result res;

	if (rest_admin_check(c, &res))
		return res;
	return rest_queue(c, cmd, name);
}

static enum MHD_Result rest_post_resync(struct rest_call *c)
{
	return rest_admin(c, API_CMD_RESYNC, "resync");
}

static enum MHD_Result rest_post_rescan(struct rest_call *c)
{
	return rest_admin(c, API_CMD_RESCAN, "rescan");
}

/* Only queued: a pass writes, so it runs on the loop thread with the
 * writer connection, in steps between other work (journal.h). */
static enum MHD_Result rest_post_compact(struct rest_call *c)
{
	return rest_admin(c, API_CMD_COMPACT, "compact");
}

/* Queued: the scrub reads on the loop thread, in steps. */
static enum MHD_Result rest_post_scrub(struct rest_call *c)
{
	return rest_admin(c, API_CMD_SCRUB, "scrub");
}

/* One line of diagnostics per array element. */
static json_t *rest_lines(const char *text)
{
	json_t *a = json_array();

	while (a && text && *text) {
		size_t n = strcspn(text, "\n");

		json_array_append_new(a, json_stringn(text, n));
		text += n + (text[n] == '\n');
	}
	return a;
}

/*
 * The file is validated here (by the agent's hook), on the HTTP thread,
 * so that a bad edit is answered with its problems (400) instead of a
 * line in the agent's log; the loop then reads it again and applies it.
 */
static enum MHD_Result rest_post_reload(struct rest_call *c)
{
	const struct api *a = c->r->api;
	char *problems = NULL;
	enum MHD_Result res;

	if (rest_admin_check(c, &res))
		return res;
	if (a->check_config &&
	    a->check_config(a->check_config_ctx, &problems) != 0) {
		res = rest_json(c, MHD_HTTP_BAD_REQUEST,
				json_pack("{s:s,s:o}", "error",
					  "the configuration has errors; "
					  "nothing was changed",
					  "problems", rest_lines(problems)));
		free(problems);
		return res;
	}
	free(problems);
	return rest_queue(c, API_CMD_RELOAD, "reload");
}

/* ---- who is answered ------------------------------------------------- */

static enum MHD_Result rest_count_host(void *cls, enum MHD_ValueKind kind,
				       const char *key, const char *value)
{
	(void)kind;
	(void)value;
	if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
		(*(unsigned *)cls)++;
	return MHD_YES;
}

/* Whether S may be quoted in a message as it is: short printable ASCII. */
static bool rest_quotable(const char *s)
{
	size_t i;

	for (i = 0; s[i] && i <= 100; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return s[i] == '\0';
}

/* 0 when the request's Host names this server, else the error answer
 * through *RESULT.  Only HTTP/1.0 may leave Host out. */
static int rest_host_check(struct rest_call *c, const char *version,
			   enum MHD_Result *result)
{
	const struct api *a = c->r->api;
	const struct rest_hosts h = {
		.listen_host = a->listen_host, .port = c->r->port,
		.allowed = a->allowed_hosts, .n_allowed = a->n_allowed_hosts,
	};
	const char *host = MHD_lookup_connection_value(c->conn,
					MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
	unsigned n = 0;

	MHD_get_connection_values(c->conn, MHD_HEADER_KIND, rest_count_host,
				  &n);
	if (n > 1) {
		*result = rest_error(c, MHD_HTTP_BAD_REQUEST,
				     "more than one Host header");
		return MHD_HTTP_BAD_REQUEST;
	}
	if (!host) {
		if (strcmp(version, MHD_HTTP_VERSION_1_0) == 0)
			return 0;
		*result = rest_error(c, MHD_HTTP_BAD_REQUEST,
				     "missing Host header");
		return MHD_HTTP_BAD_REQUEST;
	}
	if (rest_host_allowed(&h, host))
		return 0;
	if (rest_quotable(host))
		*result = rest_error(c, MHD_HTTP_FORBIDDEN, "Host \"%s\" is "
				     "not a name of this server: list it in "
				     "api.allowed_hosts", host);
	else
		*result = rest_error(c, MHD_HTTP_FORBIDDEN, "Host is not a "
				     "name of this server: list it in "
				     "api.allowed_hosts");
	return MHD_HTTP_FORBIDDEN;
}

/* Whether URL answers only with the read token once there is one: all
 * but the page (see the top of this file) and the admin calls, which
 * check their own token. */
static bool rest_read_guarded(const char *url)
{
	return strcmp(url, "/") != 0 && strncmp(url, "/v1/admin/", 10) != 0;
}

/* 0 when reads are open or the caller holds the read or the admin
 * token, else the error answer through *RESULT. */
static int rest_read_check(struct rest_call *c, enum MHD_Result *result)
{
	const struct api *a = c->r->api;
	const char *given;
	int err;

	if (!a->read_token_file)
		return 0;
	given = rest_bearer(MHD_lookup_connection_value(c->conn,
				MHD_HEADER_KIND,
				MHD_HTTP_HEADER_AUTHORIZATION));
	err = rest_token_check(a->read_token_file, given);
	if (err && given && rest_token_check(a->token_file, given) == 0)
		err = 0;
	if (err == -EACCES) {
		*result = rest_error(c, MHD_HTTP_UNAUTHORIZED,
				     "missing or wrong bearer token: reads "
				     "need the token in api.read_token_file "
				     "or the one in api.token_file");
		return MHD_HTTP_UNAUTHORIZED;
	}
	if (err) {
		*result = rest_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
				     "reads disabled: api.read_token_file "
				     "holds no token (%s)", kr_strerror(err));
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	return 0;
}

/* ---- routing --------------------------------------------------------- */

/* The endpoints api.h lists.  The POST ones are the admin calls
 * (resync, rescan, reload, compact, scrub): each checks the admin token;
 * rest_dispatch checks the read token for the others. */
static const struct rest_route {
	const char *path;
	bool prefix;                 /* PATH followed by one more component */
	bool post;                   /* else GET (and HEAD) */
	rest_fn fn;
} rest_routes[] = {
	{ "/", false, false, rest_get_dashboard },
	{ "/health", false, false, rest_get_health },
	{ "/v1/status", false, false, rest_get_status },
	{ "/v1/peers", false, false, rest_get_peers },
	{ "/v1/volumes", false, false, rest_get_volumes },
	{ "/v1/volumes/", true, false, rest_get_volume },
	{ "/v1/journal", false, false, rest_get_journal },
	{ "/v1/conflicts", false, false, rest_get_conflicts },
	{ "/v1/versions", false, false, rest_get_versions },
	{ "/metrics", false, false, rest_get_metrics },
	{ "/v1/admin/resync", false, true, rest_post_resync },
	{ "/v1/admin/rescan", false, true, rest_post_rescan },
	{ "/v1/admin/reload", false, true, rest_post_reload },
	{ "/v1/admin/compact", false, true, rest_post_compact },
	{ "/v1/admin/scrub", false, true, rest_post_scrub },
	{ "/v1/admin/restore", false, true, rest_post_restore },
	{ "/v1/admin/fetch", false, true, rest_post_fetch },
};

static bool rest_route_match(const struct rest_route *rt, const char *url)
{
	size_t n = strlen(rt->path);

	if (!rt->prefix)
		return strcmp(url, rt->path) == 0;
	return strncmp(url, rt->path, n) == 0 && url[n] &&
	       !strchr(url + n, '/');
}

static enum MHD_Result rest_dispatch(struct rest_call *c, const char *method)
{
	bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
		   strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	bool known = false;
	enum MHD_Result res;

	if (rest_read_guarded(c->url) && rest_read_check(c, &res))
		return res;
	for (size_t i = 0; i < sizeof(rest_routes) / sizeof(rest_routes[0]);
	     i++) {
		const struct rest_route *rt = &rest_routes[i];

		if (!rest_route_match(rt, c->url))
			continue;
		known = true;
		if ((rt->post && post) || (!rt->post && get))
			return rt->fn(c);
	}
	if (known)
		return rest_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
				  "method %.16s not allowed on this path",
				  method);
	return rest_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint");
}

/* The declared body size is over the cap (or unreadable). */
static bool rest_body_too_big(struct MHD_Connection *conn)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					MHD_HTTP_HEADER_CONTENT_LENGTH);
	unsigned long long n;
	char *end;

	if (!v)
		return false;
	errno = 0;
	n = strtoull(v, &end, 10);
	return errno || end == v || *end || n > REST_BODY_MAX;
}

static enum MHD_Result rest_handler(void *cls, struct MHD_Connection *conn,
				    const char *url, const char *method,
				    const char *version,
				    const char *upload_data,
				    size_t *upload_data_size, void **con_cls)
{
	struct rest_call c = { .r = cls, .conn = conn, .url = url,
			       .req = *con_cls };
	struct rest_req *req = *con_cls;
	enum MHD_Result res;

	(void)upload_data;
	if (!req) {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		*con_cls = req;
		c.req = req;
		/* Answering now, before the body, is what keeps it unread. */
		if (rest_host_check(&c, version, &res))
			return res;
		if (rest_body_too_big(conn))
			return rest_error(&c, MHD_HTTP_CONTENT_TOO_LARGE,
					  "request body over %d bytes",
					  REST_BODY_MAX);
		return MHD_YES;
	}
	if (*upload_data_size) {
		req->body += *upload_data_size;
		*upload_data_size = 0;
		/* A chunked body has no declared size; once it passes the
		 * cap the only answer left mid-upload is to hang up. */
		return req->body > REST_BODY_MAX ? MHD_NO : MHD_YES;
	}
	if (req->ask && req->doc)
		return rest_versions_done(&c);   /* woken: the peers answered */
	if (req->started)
		return MHD_YES;
	req->started = true;
	return rest_dispatch(&c, method);
}

static void rest_completed(void *cls, struct MHD_Connection *conn,
			   void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct rest *r = cls;
	struct rest_req *req = *con_cls;
	struct api_kept *peers;
	size_t n;

	(void)conn;
	(void)toe;
	if (req && req->ask && req->doc &&
	    api_ask_take(r->api, req->ask->id, &peers, &n) == 0)
		free(peers);
	if (req) {
		json_decref(req->doc);
		free(req->ask);
	}
	free(req);
	*con_cls = NULL;
}

/* ---- lifecycle ------------------------------------------------------- */

static int rest_errmsg(char **errmsg, const struct api *a, const char *what,
		       int err)
{
	if (errmsg && !*errmsg) {
		size_t cap = strlen(a->listen_host) + strlen(what) + 128;

		*errmsg = malloc(cap);
		if (*errmsg)
			snprintf(*errmsg, cap, "cannot listen on %s:%u: %s%s",
				 a->listen_host, a->listen_port, what,
				 err ? strerror(-err) : "");
	}
	return err ? err : -EINVAL;
}

/* Binds the first address HOST resolves to that accepts a socket. */
static int rest_bind(struct rest *r, char **errmsg)
{
	const struct api *a = r->api;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char host[256], port[8];
	size_t hl = strlen(a->listen_host);
	int one = 1, err = -EADDRNOTAVAIL, gai;

	/* "[::1]" is how people write an IPv6 host next to a port. */
	if (hl >= 2 && a->listen_host[0] == '[' && a->listen_host[hl - 1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)(hl - 2),
			 a->listen_host + 1);
	else
		snprintf(host, sizeof(host), "%s", a->listen_host);
	snprintf(port, sizeof(port), "%u", a->listen_port);
	gai = getaddrinfo(host, port, &hints, &res);
	if (gai)
		return rest_errmsg(errmsg, a, gai_strerror(gai), 0);
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
				ai->ai_protocol);

		if (fd < 0) {
			err = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
		    listen(fd, REST_CONN_MAX) != 0 ||
		    getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
			err = -errno;
			close(fd);
			continue;
		}
		r->fd = fd;
		r->port = ntohs(ss.ss_family == AF_INET6 ?
				((struct sockaddr_in6 *)&ss)->sin6_port :
				((struct sockaddr_in *)&ss)->sin_port);
		err = 0;
		break;
	}
	freeaddrinfo(res);
	return err ? rest_errmsg(errmsg, a, "", err) : 0;
}

int rest_start(struct api *a, char **errmsg)
{
	struct rest *r = calloc(1, sizeof(*r));
	int err;

	if (!r)
		return -ENOMEM;
	r->api = a;
	r->fd = -1;
	err = rest_bind(r, errmsg);
	if (err)
		goto out;
	r->daemon = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD |
		MHD_ALLOW_SUSPEND_RESUME, 0, NULL,
		NULL, rest_handler, r,
		MHD_OPTION_LISTEN_SOCKET, r->fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)REST_CONN_MAX,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)REST_TIMEOUT_S,
		MHD_OPTION_NOTIFY_COMPLETED, rest_completed, r,
		MHD_OPTION_END);
	if (!r->daemon) {
		err = rest_errmsg(errmsg, a, "the HTTP server did not start",
				  0);
		goto out;
	}
	r->fd = -1;   /* MHD closes it now */
out:
	if (err) {
		if (r->fd >= 0)
			close(r->fd);
		free(r);
		return err;
	}
	a->rest = r;
	return 0;
}

void rest_stop(struct api *a)
{
	struct rest *r = a->rest;

	if (!r)
		return;
	/* MHD cannot stop with requests parked. */
	api_asks_close(a);
	/* After this no handler runs, so the journal is ours again. */
	MHD_stop_daemon(r->daemon);
	journal_close(r->journal);
	free(r);
	a->rest = NULL;
}

uint16_t api_rest_port(const struct api *a)
{
	return a->rest ? a->rest->port : 0;
}
