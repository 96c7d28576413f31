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
 * The socket is bound here rather than by libmicrohttpd so that IPv4 and
 * IPv6 hosts, names and port 0 (tests) all take the same path and the
 * caller gets a precise "cannot listen on HOST:PORT" message.
 */
#include "api_int.h"
#include "rest_render.h"
#include "config.h"
#include "err.h"
#include "path.h"

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
#define REST_TOKEN_MAX 4096
#define REST_LIMIT_DEFAULT 100
#define REST_LIMIT_MAX 1000

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
};

struct rest_call {
	struct rest *r;
	struct MHD_Connection *conn;
	const char *url;
};

typedef enum MHD_Result (*rest_fn)(struct rest_call *c);

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

static enum MHD_Result rest_json(struct rest_call *c, unsigned code,
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

static enum MHD_Result rest_error(struct rest_call *c, unsigned code,
				  const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum MHD_Result rest_error(struct rest_call *c, unsigned code,
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

static enum MHD_Result rest_journal_error(struct rest_call *c, int err)
{
	/* The connection may be what broke (file replaced, I/O error):
	 * the next request opens a fresh one. */
	journal_close(c->r->journal);
	c->r->journal = NULL;
	return rest_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "journal: %s",
			  kr_strerror(err));
}

/* The thread's journal connection, opened on first use. */
static int rest_journal(struct rest_call *c, struct journal **out)
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
static int rest_arg_str(struct rest_call *c, const char *name, size_t max,
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
	return rest_parse_time(v, api_now_wall(), out);
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
	char *text = NULL;
	size_t len = 0;
	int err = -ENOMEM;

	if (snap) {
		api_snapshot_get(c->r->api, snap);
		err = rest_metrics_text(snap, api_now_mono() -
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

/* Reads the admin token: the file's content without trailing newlines. */
static int rest_token_load(const char *file, char *out, size_t cap,
			   size_t *len)
{
	ssize_t n;
	int fd, err = 0;

	*len = 0;
	if (!file)
		return -ENOENT;
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	do
		n = read(fd, out, cap);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		err = -errno;
	else if ((size_t)n == cap)
		err = -EFBIG;   /* not a token; refuse rather than truncate */
	close(fd);
	if (err)
		return err;
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		n--;
	*len = (size_t)n;
	return n > 0 ? 0 : -ENODATA;
}

/* Time depends on the secret's length only, never on where they differ. */
static bool rest_token_equal(const char *given, size_t glen, const char *want,
			     size_t wlen)
{
	unsigned char diff = glen != wlen;

	for (size_t i = 0; i < wlen; i++)
		diff |= (unsigned char)want[i] ^
			(unsigned char)(i < glen ? given[i] : 0);
	return diff == 0;
}

static int rest_authorize(struct rest_call *c)
{
	char token[REST_TOKEN_MAX];
	const char *h;
	size_t len;
	bool ok;

	if (rest_token_load(c->r->api->token_file, token, sizeof(token), &len))
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	h = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND,
					MHD_HTTP_HEADER_AUTHORIZATION);
	if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
		ok = false;
	} else {
		h += 7;
		while (*h == ' ')
			h++;
		ok = rest_token_equal(h, strlen(h), token, len);
	}
	explicit_bzero(token, sizeof(token));
	return ok ? 0 : MHD_HTTP_UNAUTHORIZED;
}

/* 0 when the caller holds the token, else the error response's result
 * through *RESULT. */
static int rest_admin_check(struct rest_call *c, enum MHD_Result *result)
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
 * The file is validated here, on the HTTP thread, so that a bad edit is
 * answered with its problems (400) instead of a line in the agent's log;
 * the loop then reads it again and applies it.
 */
static enum MHD_Result rest_post_reload(struct rest_call *c)
{
	struct config_diag diag = { 0 };
	struct config *cfg = NULL;
	enum MHD_Result res;
	int err;

	if (rest_admin_check(c, &res))
		return res;
	err = config_load(c->r->api->config_path, getenv("NODE_ID"),
			  getenv("CLUSTER_NODES"), &cfg, &diag);
	config_free(cfg);
	if (err) {
		res = rest_json(c, MHD_HTTP_BAD_REQUEST,
				json_pack("{s:s,s:o}", "error",
					  "the configuration has errors; "
					  "nothing was changed",
					  "problems", rest_lines(diag.text)));
		config_diag_release(&diag);
		return res;
	}
	config_diag_release(&diag);
	return rest_queue(c, API_CMD_RELOAD, "reload");
}

/* ---- routing --------------------------------------------------------- */

/* The endpoints api.h lists.  The POST ones are the admin calls
 * (resync, rescan, reload, compact): each checks the bearer token. */
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
	{ "/metrics", false, false, rest_get_metrics },
	{ "/v1/admin/resync", false, true, rest_post_resync },
	{ "/v1/admin/rescan", false, true, rest_post_rescan },
	{ "/v1/admin/reload", false, true, rest_post_reload },
	{ "/v1/admin/compact", false, true, rest_post_compact },
	{ "/v1/admin/scrub", false, true, rest_post_scrub },
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
	struct rest_call c = { .r = cls, .conn = conn, .url = url };
	struct rest_req *req = *con_cls;

	(void)version;
	(void)upload_data;
	if (!req) {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		*con_cls = req;
		/* Answering now, before the body, is what keeps it unread. */
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
	if (req->started)
		return MHD_YES;
	req->started = true;
	return rest_dispatch(&c, method);
}

static void rest_completed(void *cls, struct MHD_Connection *conn,
			   void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	free(*con_cls);
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
	r->daemon = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL,
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
