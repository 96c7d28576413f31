/*
 * REST API: a real journal in a temp dir, the real server on a loopback
 * port chosen by the kernel, and plain HTTP/1.1 over a TCP socket, so
 * what is tested is what curl or a browser would see: status codes,
 * headers, JSON bodies, Prometheus text, the admin and read tokens, the
 * Host rule and the command queue the admin calls feed.
 */
#include "api.h"
#include "content.h"
#include "err.h"
#include "journal.h"
#include "rest_auth.h"
#include "rest_render.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#define TOKEN "s3cret-token-0123456789"
#define READ_TOKEN "read-only-token-42"
#define RESPONSE_MAX (4 * 1024 * 1024)

struct fixture {
	char dir[64];
	char db[128];
	char token[128];
	struct journal *j;          /* the writer, as the agent's loop holds */
	struct api *api;
	uint16_t port;
	char origin[JOURNAL_ORIGIN_MAX];
	char origin2[JOURNAL_ORIGIN_MAX];
	int64_t n_changes;
};

struct reply {
	int code;
	char *head;                 /* status line and headers */
	char *body;
	json_t *json;               /* body parsed, when it is JSON */
};

/* ---- a tiny blocking HTTP/1.1 client ------------------------------- */

static int http_connect(const char *host, uint16_t port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	char p[8];
	int fd = -1;

	snprintf(p, sizeof(p), "%u", port);
	if (getaddrinfo(host, p, &hints, &res) != 0)
		return -1;
	for (ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		assert_true(n > 0);
		buf += n;
		len -= (size_t)n;
	}
}

static char *read_all(int fd, size_t *len)
{
	size_t cap = 65536;
	char *buf = malloc(cap + 1);
	ssize_t n;

	*len = 0;
	assert_non_null(buf);
	while ((n = read(fd, buf + *len, cap - *len)) > 0) {
		*len += (size_t)n;
		if (*len == cap) {
			assert_true(cap < RESPONSE_MAX);
			cap *= 2;
			buf = realloc(buf, cap + 1);
			assert_non_null(buf);
		}
	}
	buf[*len] = '\0';
	return buf;
}

static void reply_parse(struct reply *r, char *raw)
{
	char *sep = strstr(raw, "\r\n\r\n");

	assert_non_null(sep);
	*sep = '\0';
	r->head = raw;
	r->body = sep + 4;
	assert_int_equal(sscanf(raw, "HTTP/1.%*d %d", &r->code), 1);
	if (strstr(r->head, "Content-Type: application/json"))
		r->json = json_loads(r->body, 0, NULL);
}

static void reply_release(struct reply *r)
{
	json_decref(r->json);
	free(r->head);
	memset(r, 0, sizeof(*r));
}

/* Sends the request REQ as it is and reads the whole answer. */
static struct reply http_raw(const char *host, uint16_t port, const char *req)
{
	struct reply r = { 0 };
	size_t len;
	int fd = http_connect(host, port);

	assert_true(fd >= 0);
	write_all(fd, req, strlen(req));
	reply_parse(&r, read_all(fd, &len));
	close(fd);
	return r;
}

/* Sends METHOD PATH with EXTRA header lines (each ending in \r\n) and
 * BODY, and reads the whole answer.  Host names the server as curl
 * would. */
static struct reply http_on(const char *host, uint16_t port,
			    const char *method, const char *path,
			    const char *extra, const char *body)
{
	bool v6 = strchr(host, ':') != NULL;
	char req[8192];

	snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: %s%s%s:%u\r\n"
		 "Connection: close\r\n%s\r\n%s", method, path,
		 v6 ? "[" : "", host, v6 ? "]" : "", port, extra ? extra : "",
		 body ? body : "");
	return http_raw(host, port, req);
}

static struct reply http(struct fixture *f, const char *method,
			 const char *path, const char *extra)
{
	return http_on("127.0.0.1", f->port, method, path, extra, NULL);
}

/* GET PATH, expecting CODE and a JSON body. */
static struct reply get_json(struct fixture *f, const char *path, int code)
{
	struct reply r = http(f, "GET", path, NULL);

	if (r.code != code)
		fail_msg("GET %s: %d, wanted %d: %s", path, r.code, code, r.body);
	assert_non_null(strstr(r.head, "Content-Type: application/json"));
	if (!r.json)
		fail_msg("GET %s: not JSON: %s", path, r.body);
	return r;
}

/* An error answer: CODE, JSON {"error": "...NEEDLE..."}. */
static void expect_error(struct reply *r, int code, const char *needle)
{
	const char *msg;

	if (r->code != code)
		fail_msg("got %d, wanted %d: %s", r->code, code, r->body);
	assert_non_null(r->json);
	msg = json_string_value(json_object_get(r->json, "error"));
	assert_non_null(msg);
	if (needle && !strstr(msg, needle))
		fail_msg("error '%s' lacks '%s'", msg, needle);
}

/* ---- fixture ------------------------------------------------------- */

static struct stat fake_stat(mode_t mode, size_t size)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_mode = mode;
	st.st_size = (off_t)size;
	st.st_uid = 1000;
	st.st_gid = 1000;
	st.st_mtim.tv_sec = 1700000000;
	return st;
}

static void put(struct journal *j, const char *vol, const char *path,
		const char *text)
{
	struct content c = { 0 };
	struct stat st = fake_stat(S_IFREG | 0644, strlen(text));

	assert_int_equal(content_hash_buf(text, strlen(text), &c), 0);
	assert_int_equal(journal_record_put(j, vol, path, &st, &c), 0);
	content_release(&c);
}

static int deliver_one(void *arg, const struct journal_change *c)
{
	return journal_add_remote(arg, c);
}

/*
 * vm1 (served): vol1 with dir/, dir/a.txt, b.txt (later deleted), a
 * symlink; vol2 with x.  vm2 made vol1 and its own dir/a.txt without
 * seeing vm1's: delivered to vm1, that is a conflict and pending jobs.
 */
static void fill_journal(struct fixture *f)
{
	struct stat dir = fake_stat(S_IFDIR | 0755, 0);
	struct stat lnk = fake_stat(S_IFLNK | 0777, 5);
	struct journal_info info;
	struct journal *j2;
	char db2[160];

	assert_int_equal(journal_record_volume(f->j, "vol1", true, &dir), 0);
	assert_int_equal(journal_record_mkdir(f->j, "vol1", "dir", &dir), 0);
	put(f->j, "vol1", "dir/a.txt", "alpha");
	put(f->j, "vol1", "b.txt", "bravo");
	assert_int_equal(journal_record_symlink(f->j, "vol1", "link", &lnk,
						"b.txt"), 0);
	assert_int_equal(journal_record_volume(f->j, "vol2", true, &dir), 0);
	put(f->j, "vol2", "x", "charlie");
	assert_int_equal(journal_record_delete(f->j, "vol1", "b.txt"), 0);
	assert_int_equal(journal_flush(f->j), 0);
	assert_int_equal(journal_mount_add(f->j, "vol1", "container-1"), 0);

	snprintf(db2, sizeof(db2), "%s/vm2.db", f->dir);
	assert_int_equal(journal_open(db2, "vm2", 0, &j2, NULL), 0);
	assert_int_equal(journal_record_volume(j2, "vol1", true, &dir), 0);
	put(j2, "vol1", "dir/a.txt", "delta");
	assert_int_equal(journal_flush(j2), 0);
	assert_int_equal(journal_info(j2, &info), 0);
	snprintf(f->origin2, sizeof(f->origin2), "%s", info.origin);
	assert_int_equal(journal_entries_since(j2, info.origin, 0, 100,
					       deliver_one, f->j), 0);
	assert_int_equal(journal_flush(f->j), 0);
	journal_close(j2);

	assert_int_equal(journal_info(f->j, &info), 0);
	snprintf(f->origin, sizeof(f->origin), "%s", info.origin);
	f->n_changes = (int64_t)info.n_changes;
	assert_int_equal(f->n_changes, 10);
}

static void write_token(struct fixture *f, const char *text)
{
	FILE *fp = fopen(f->token, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct api_options opt = { .node_id = "vm1", .listen_host = "127.0.0.1",
				   .listen_port = 0, .driver_name = "krakenfs" };
	char *err = NULL;

	snprintf(f->dir, sizeof(f->dir), "/tmp/kraken-api-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/journal.db", f->dir);
	snprintf(f->token, sizeof(f->token), "%s/token", f->dir);
	if (journal_open(f->db, "vm1", 0, &f->j, &err) != 0)
		return -1;
	fill_journal(f);
	write_token(f, TOKEN "\n");
	opt.journal_path = f->db;
	opt.root = f->dir;
	opt.token_file = f->token;
	if (api_new(&opt, &f->api, &err) != 0) {
		fprintf(stderr, "api_new: %s\n", err ? err : "?");
		free(err);
		return -1;
	}
	f->port = api_rest_port(f->api);
	*state = f;
	return f->port ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	api_free(f->api);
	journal_close(f->j);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	free(f);
	return system(cmd) == 0 ? 0 : -1;
}

static json_t *jget(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		fail_msg("no key '%s'", key);
	return v;
}

static json_int_t jint(json_t *o, const char *key)
{
	json_t *v = jget(o, key);

	assert_true(json_is_integer(v));
	return json_integer_value(v);
}

static const char *jstr(json_t *o, const char *key)
{
	json_t *v = jget(o, key);

	assert_true(json_is_string(v));
	return json_string_value(v);
}

/* ---- tests ----------------------------------------------------------- */

static void test_health(void **state)
{
	struct fixture *f = *state;
	struct reply r = get_json(f, "/health", 200);

	assert_string_equal(jstr(r.json, "status"), "ok");
	assert_string_equal(jstr(r.json, "node_id"), "vm1");
	reply_release(&r);
}

static void test_status_from_journal(void **state)
{
	struct fixture *f = *state;
	struct reply r = get_json(f, "/v1/status", 200);
	json_t *vec = jget(r.json, "version_vector");

	assert_string_equal(jstr(r.json, "node_id"), "vm1");
	assert_string_equal(jstr(r.json, "origin"), f->origin);
	assert_int_equal(json_object_size(vec), 2);
	assert_int_equal(jint(vec, f->origin), 8);
	assert_int_equal(jint(vec, f->origin2), 2);
	assert_true(jint(r.json, "uptime_s") >= 0);
	/* No snapshot yet: the backlog comes from the journal. */
	assert_true(jint(r.json, "jobs") >= 1);
	assert_int_equal(jint(r.json, "changes"), f->n_changes);
	assert_true(json_is_array(jget(r.json, "peers")));
	assert_int_equal(json_array_size(jget(r.json, "peers")), 0);
	assert_true(json_is_null(jget(r.json, "snapshot_age_s")));
	reply_release(&r);
}

static void publish_two_peers(struct fixture *f)
{
	struct api_snapshot *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	s->jobs = 7;
	s->changes_recorded = 11;
	s->changes_applied = 3;
	s->conflicts = 1;
	s->n_peers = 2;
	snprintf(s->peers[0].id, sizeof(s->peers[0].id), "vm2");
	snprintf(s->peers[0].address, sizeof(s->peers[0].address),
		 "127.0.0.2:6881");
	s->peers[0].connected = true;
	s->peers[0].last_seen_ns = 1767225600LL * 1000000000 + 250000000;
	s->peers[0].lag_entries = 5;
	s->peers[0].lag_bytes = 4096;
	s->peers[0].behind_entries = 2;
	s->peers[0].bytes_in = 1000;
	s->peers[0].bytes_out = 2000;
	snprintf(s->peers[1].id, sizeof(s->peers[1].id), "vm\"3");
	snprintf(s->peers[1].address, sizeof(s->peers[1].address),
		 "127.0.0.3:6881");
	hist_record(&s->commit_latency_us, 50);
	hist_record(&s->commit_latency_us, 50);
	hist_record(&s->commit_latency_us, 60);
	hist_record(&s->commit_latency_us, 2000);
	hist_record(&s->commit_latency_us, 20000000);
	s->published_ns = 1;
	api_publish(f->api, s);
	free(s);
}

static void check_peer_vm2(json_t *p)
{
	assert_string_equal(jstr(p, "node_id"), "vm2");
	assert_string_equal(jstr(p, "address"), "127.0.0.2:6881");
	assert_true(json_is_true(jget(p, "connected")));
	assert_string_equal(jstr(p, "last_seen"), "2026-01-01T00:00:00.250Z");
	assert_int_equal(jint(p, "lag_entries"), 5);
	assert_int_equal(jint(p, "lag_bytes"), 4096);
	assert_int_equal(jint(p, "behind_entries"), 2);
	assert_int_equal(jint(p, "bytes_in"), 1000);
	assert_int_equal(jint(p, "bytes_out"), 2000);
}

static void test_published_peers(void **state)
{
	struct fixture *f = *state;
	struct reply r;
	json_t *peers;

	publish_two_peers(f);
	r = get_json(f, "/v1/status", 200);
	peers = jget(r.json, "peers");
	assert_int_equal(json_array_size(peers), 2);
	check_peer_vm2(json_array_get(peers, 0));
	assert_int_equal(jint(r.json, "jobs"), 7);
	assert_int_equal(jint(r.json, "changes_recorded"), 11);
	assert_true(json_is_number(jget(r.json, "snapshot_age_s")));
	reply_release(&r);

	r = get_json(f, "/v1/peers", 200);
	assert_true(json_is_array(r.json));
	assert_int_equal(json_array_size(r.json), 2);
	check_peer_vm2(json_array_get(r.json, 0));
	peers = json_array_get(r.json, 1);
	assert_string_equal(jstr(peers, "node_id"), "vm\"3");
	assert_true(json_is_false(jget(peers, "connected")));
	assert_true(json_is_null(jget(peers, "last_seen")));
	reply_release(&r);
}

/* 2026-10-01T14:03:00Z and a compaction pass that ended 20 s later. */
#define COMPACTED_BEFORE_NS (1790863380LL * 1000000000)

static void publish_compaction(struct fixture *f)
{
	struct api_snapshot *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	s->retention_ns = 30LL * 86400 * 1000000000 + 999999999;
	s->compacted_before_ns = COMPACTED_BEFORE_NS;
	s->last_compaction_ns = COMPACTED_BEFORE_NS + 20LL * 1000000000 +
				125000000;
	s->compacting = true;
	s->compacted_changes = 120;
	s->compacted_tombstones = 7;
	s->compacted_contents = 33;
	s->compaction_pages_freed = 4096;
	s->exchanges_served = 2;
	s->exchanges_applied = 1;
	s->published_ns = 1;
	api_publish(f->api, s);
	free(s);
}

static void check_removed(json_t *ret, json_int_t changes,
			  json_int_t tombstones, json_int_t contents)
{
	json_t *removed = jget(ret, "removed");

	assert_int_equal(jint(removed, "changes"), changes);
	assert_int_equal(jint(removed, "tombstones"), tombstones);
	assert_int_equal(jint(removed, "contents"), contents);
}

/*
 * Before the loop's first snapshot the horizon comes from the journal
 * (a pass whose horizon, 2020-01-01, is older than every change: it
 * removes nothing but marks the journal); then from the snapshot.
 */
static void test_status_retention(void **state)
{
	struct fixture *f = *state;
	struct journal_retention ret = { .now_ns = 1577836800LL * 1000000000 };
	struct journal_compact_stats st;
	struct reply r = get_json(f, "/v1/status", 200);
	json_t *o = jget(r.json, "retention");

	assert_int_equal(jint(o, "retention_s"), 0);
	assert_true(json_is_null(jget(o, "compacted_before")));
	assert_true(json_is_null(jget(o, "last_compaction")));
	assert_true(json_is_false(jget(o, "compacting")));
	check_removed(o, 0, 0, 0);
	assert_int_equal(jint(o, "pages_freed"), 0);
	reply_release(&r);

	assert_int_equal(journal_compact(f->j, &ret, &st), 0);
	assert_int_equal(st.changes + st.tombstones, 0);
	r = get_json(f, "/v1/status", 200);
	assert_string_equal(jstr(jget(r.json, "retention"), "compacted_before"),
			    "2020-01-01T00:00:00.000Z");
	reply_release(&r);

	publish_compaction(f);
	r = get_json(f, "/v1/status", 200);
	o = jget(r.json, "retention");
	assert_int_equal(jint(o, "retention_s"), 30 * 86400);
	assert_string_equal(jstr(o, "compacted_before"),
			    "2026-10-01T14:03:00.000Z");
	assert_string_equal(jstr(o, "last_compaction"),
			    "2026-10-01T14:03:20.125Z");
	assert_true(json_is_true(jget(o, "compacting")));
	check_removed(o, 120, 7, 33);
	assert_int_equal(jint(o, "pages_freed"), 4096);
	assert_int_equal(jint(o, "exchanges_served"), 2);
	assert_int_equal(jint(o, "exchanges_applied"), 1);
	/* The rest of the document is still there. */
	assert_int_equal(jint(r.json, "changes"), f->n_changes);
	reply_release(&r);
}

static json_t *find_by(json_t *arr, const char *key, const char *value)
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v)
		if (strcmp(json_string_value(json_object_get(v, key)), value) == 0)
			return v;
	return NULL;
}

static void test_volumes(void **state)
{
	struct fixture *f = *state;
	struct reply r = get_json(f, "/v1/volumes", 200);
	json_t *v;

	assert_true(json_is_array(r.json));
	assert_int_equal(json_array_size(r.json), 2);
	v = find_by(r.json, "name", "vol1");
	assert_non_null(v);
	/* dir, dir/a.txt, link (b.txt was deleted) */
	assert_int_equal(jint(v, "paths"), 3);
	assert_int_equal(jint(v, "mounts"), 1);
	assert_non_null(strstr(jstr(v, "created"), "T"));
	assert_true(jint(v, "created_ns") > 0);
	v = find_by(r.json, "name", "vol2");
	assert_non_null(v);
	assert_int_equal(jint(v, "paths"), 1);
	assert_int_equal(jint(v, "bytes"), 7);
	assert_int_equal(jint(v, "mounts"), 0);
	reply_release(&r);

	r = get_json(f, "/v1/volumes/vol2", 200);
	assert_string_equal(jstr(r.json, "name"), "vol2");
	assert_int_equal(jint(r.json, "paths"), 1);
	reply_release(&r);

	r = http(f, "GET", "/v1/volumes/nope", NULL);
	expect_error(&r, 404, "nope");
	reply_release(&r);
	r = http(f, "GET", "/v1/volumes/vol1/dir", NULL);
	expect_error(&r, 404, NULL);
	reply_release(&r);
}

static size_t journal_count(struct fixture *f, const char *query)
{
	char path[512];
	struct reply r;
	size_t n;

	snprintf(path, sizeof(path), "/v1/journal?%s", query);
	r = get_json(f, path, 200);
	n = json_array_size(jget(r.json, "entries"));
	reply_release(&r);
	return n;
}

static void test_journal_entries(void **state)
{
	struct fixture *f = *state;
	struct reply r = get_json(f, "/v1/journal", 200);
	json_t *e = jget(r.json, "entries"), *first;
	size_t i;

	assert_int_equal(json_array_size(e), f->n_changes);
	assert_true(json_is_null(jget(r.json, "next")));
	/* Newest first: the last arrivals were vm2's put. */
	first = json_array_get(e, 0);
	assert_string_equal(jstr(first, "origin"), f->origin2);
	assert_int_equal(jint(first, "seq"), 2);
	assert_string_equal(jstr(first, "op"), "put");
	assert_string_equal(jstr(first, "path"), "dir/a.txt");
	assert_int_equal(jint(first, "size"), 5);
	assert_int_equal(strlen(jstr(first, "hash")), 64);
	json_array_foreach(e, i, first)
		if (i > 0)
			assert_true(jint(json_array_get(e, i - 1), "id") >
				    jint(first, "id"));
	e = find_by(e, "op", "symlink");
	assert_non_null(e);
	assert_string_equal(jstr(e, "target"), "b.txt");
	reply_release(&r);

	assert_int_equal(journal_count(f, "volume=vol2"), 2);
	assert_int_equal(journal_count(f, "op=delete"), 1);
	assert_int_equal(journal_count(f, "op=volume-create&volume=vol1"), 2);
	assert_int_equal(journal_count(f, "path=dir"), 3);
	assert_int_equal(journal_count(f, "origin=vm2"), 2);
	assert_int_equal(journal_count(f, "origin=vm1&limit=3"), 3);
	assert_int_equal(journal_count(f, "since=2200-01-01T00:00:00Z"), 0);
	assert_int_equal(journal_count(f, "until=@1"), 0);
	assert_int_equal(journal_count(f, "since=1h"), f->n_changes);
	assert_int_equal(journal_count(f, "since=2000-01-01"), f->n_changes);
}

/* The server's connection is long-lived: it must still see new commits. */
static void test_sees_new_commits(void **state)
{
	struct fixture *f = *state;
	struct reply r;

	assert_int_equal(journal_count(f, "limit=1000"), f->n_changes);
	put(f->j, "vol2", "late", "echo");
	assert_int_equal(journal_flush(f->j), 0);
	assert_int_equal(journal_count(f, "limit=1000"), f->n_changes + 1);
	r = get_json(f, "/v1/journal?limit=1", 200);
	assert_string_equal(jstr(json_array_get(jget(r.json, "entries"), 0),
				 "path"), "late");
	assert_non_null(strstr(jstr(r.json, "next"), ""));
	reply_release(&r);
	r = get_json(f, "/v1/volumes/vol2", 200);
	assert_int_equal(jint(r.json, "paths"), 2);
	reply_release(&r);
}

static void test_journal_bad_queries(void **state)
{
	static const struct { const char *query, *param; } bad[] = {
		{ "limit=0", "limit" }, { "limit=1001", "limit" },
		{ "limit=ten", "limit" }, { "before=-3", "before" },
		{ "before=1x", "before" }, { "op=rename", "op" },
		{ "since=yesterday", "since" }, { "until=2026-13-45", "until" },
		{ "since=2026-01-01T00:00:00+25:00", "since" },
		{ "volume=%ff%fe", "volume" },
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char path[256], quoted[64];
		struct reply r;

		snprintf(path, sizeof(path), "/v1/journal?%s", bad[i].query);
		snprintf(quoted, sizeof(quoted), "'%s'", bad[i].param);
		r = http(f, "GET", path, NULL);
		expect_error(&r, 400, quoted);
		reply_release(&r);
	}
}

static void test_journal_pagination(void **state)
{
	struct fixture *f = *state;
	json_t *seen = json_object();
	char path[128] = "/v1/journal?limit=3";
	int pages = 0;

	for (;;) {
		struct reply r = get_json(f, path, 200);
		json_t *e = jget(r.json, "entries"), *v, *next;
		size_t i;

		pages++;
		assert_true(json_array_size(e) <= 3);
		json_array_foreach(e, i, v) {
			char key[32];

			snprintf(key, sizeof(key), "%lld",
				 (long long)jint(v, "id"));
			assert_null(json_object_get(seen, key));
			json_object_set_new(seen, key, json_true());
		}
		next = jget(r.json, "next");
		if (json_is_null(next)) {
			reply_release(&r);
			break;
		}
		assert_int_equal(json_array_size(e), 3);
		snprintf(path, sizeof(path), "/v1/journal?limit=3&before=%s",
			 json_string_value(next));
		reply_release(&r);
		assert_true(pages < 100);
	}
	assert_int_equal(json_object_size(seen), f->n_changes);
	assert_int_equal(pages, (f->n_changes + 2) / 3);
	json_decref(seen);
}

static void test_conflicts(void **state)
{
	struct fixture *f = *state;
	struct reply r = get_json(f, "/v1/conflicts", 200);
	json_t *c;

	assert_true(json_is_array(r.json));
	c = find_by(r.json, "path", "dir/a.txt");
	assert_non_null(c);
	assert_string_equal(jstr(c, "volume"), "vol1");
	assert_int_equal(json_array_size(jget(c, "versions")), 2);
	reply_release(&r);

	r = get_json(f, "/v1/conflicts?volume=vol2", 200);
	assert_int_equal(json_array_size(r.json), 0);
	reply_release(&r);
}

static bool metrics_has(const char *body, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = body; (p = strstr(p, line)); p++)
		if ((p == body || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static void test_metrics(void **state)
{
	struct fixture *f = *state;
	struct reply r;
	regex_t re;
	int lines = 0;

	publish_two_peers(f);
	r = http(f, "GET", "/metrics", NULL);
	assert_int_equal(r.code, 200);
	assert_non_null(strstr(r.head,
			       "Content-Type: text/plain; version=0.0.4"));
	assert_true(metrics_has(r.body, "krakenfs_changes_recorded_total 11"));
	assert_true(metrics_has(r.body, "krakenfs_changes_applied_total 3"));
	assert_true(metrics_has(r.body, "krakenfs_conflicts_total 1"));
	assert_true(metrics_has(r.body, "krakenfs_jobs 7"));
	assert_true(metrics_has(r.body, "krakenfs_peer_connected{peer=\"vm2\"} 1"));
	assert_true(metrics_has(r.body,
				"krakenfs_peer_connected{peer=\"vm\\\"3\"} 0"));
	assert_true(metrics_has(r.body,
				"krakenfs_peer_bytes_in_total{peer=\"vm2\"} 1000"));
	assert_true(metrics_has(r.body,
				"krakenfs_peer_bytes_out_total{peer=\"vm2\"} 2000"));
	assert_true(metrics_has(r.body,
				"krakenfs_peer_lag_entries{peer=\"vm2\"} 5"));
	assert_true(metrics_has(r.body,
				"krakenfs_peer_lag_bytes{peer=\"vm2\"} 4096"));
	assert_true(metrics_has(r.body,
		"krakenfs_commit_latency_seconds_bucket{le=\"0.0001\"} 3"));
	assert_true(metrics_has(r.body,
		"krakenfs_commit_latency_seconds_bucket{le=\"0.0025\"} 4"));
	assert_true(metrics_has(r.body,
		"krakenfs_commit_latency_seconds_bucket{le=\"10\"} 4"));
	assert_true(metrics_has(r.body,
		"krakenfs_commit_latency_seconds_bucket{le=\"+Inf\"} 5"));
	assert_true(metrics_has(r.body, "krakenfs_commit_latency_seconds_count 5"));
	assert_true(metrics_has(r.body,
				"krakenfs_commit_latency_seconds_sum 20.002160"));
	assert_true(metrics_has(r.body, "krakenfs_apply_latency_seconds_count 0"));

	assert_int_equal(regcomp(&re, "^[a-zA-Z_:][a-zA-Z0-9_:]*"
		"(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\""
		"(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\")*\\})? "
		"([-+]?[0-9.]+([eE][-+]?[0-9]+)?|\\+Inf|-Inf|NaN)$",
		REG_EXTENDED | REG_NOSUB), 0);
	for (char *l = r.body, *nl; *l; l = nl + 1) {
		nl = strchr(l, '\n');
		assert_non_null(nl);   /* every line ends, the last one too */
		*nl = '\0';
		if (l[0] == '#') {
			assert_true(!strncmp(l, "# HELP ", 7) ||
				    !strncmp(l, "# TYPE ", 7));
			continue;
		}
		if (regexec(&re, l, 0, NULL, 0) != 0)
			fail_msg("not a Prometheus sample line: %s", l);
		lines++;
	}
	regfree(&re);
	assert_true(lines > 30);
	reply_release(&r);
}

static void test_metrics_compaction(void **state)
{
	struct fixture *f = *state;
	struct reply r = http(f, "GET", "/metrics", NULL);

	/* Before any pass: every series present, at zero. */
	assert_int_equal(r.code, 200);
	assert_true(metrics_has(r.body,
		"krakenfs_journal_compacted_before_seconds 0"));
	assert_true(metrics_has(r.body, "krakenfs_compacted_changes_total 0"));
	assert_true(metrics_has(r.body,
		"krakenfs_state_exchanges_total{direction=\"served\"} 0"));
	reply_release(&r);

	publish_compaction(f);
	r = http(f, "GET", "/metrics", NULL);
	assert_int_equal(r.code, 200);
	assert_true(metrics_has(r.body,
		"krakenfs_journal_compacted_before_seconds 1790863380"));
	assert_true(metrics_has(r.body,
		"# TYPE krakenfs_journal_compacted_before_seconds gauge"));
	assert_true(metrics_has(r.body,
		"krakenfs_compacted_changes_total 120"));
	assert_true(metrics_has(r.body,
		"# TYPE krakenfs_compacted_changes_total counter"));
	assert_true(metrics_has(r.body,
		"krakenfs_compacted_tombstones_total 7"));
	assert_true(metrics_has(r.body,
		"krakenfs_compacted_contents_total 33"));
	assert_true(metrics_has(r.body,
		"# TYPE krakenfs_state_exchanges_total counter"));
	assert_true(metrics_has(r.body,
		"krakenfs_state_exchanges_total{direction=\"served\"} 2"));
	assert_true(metrics_has(r.body,
		"krakenfs_state_exchanges_total{direction=\"applied\"} 1"));
	/* One HELP and TYPE for both directions. */
	{
		const char *p = strstr(r.body,
				       "# TYPE krakenfs_state_exchanges_total");

		assert_non_null(p);
		assert_null(strstr(p + 1,
				   "# TYPE krakenfs_state_exchanges_total"));
	}
	reply_release(&r);
}

static bool fd_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void test_admin_token(void **state)
{
	struct fixture *f = *state;
	int fd = api_command_fd(f->api);
	struct reply r;

	assert_true(fd >= 0);
	assert_false(fd_readable(fd));
	r = http(f, "POST", "/v1/admin/rescan", NULL);
	expect_error(&r, 401, NULL);
	assert_non_null(strstr(r.head, "WWW-Authenticate: Bearer"));
	reply_release(&r);
	r = http(f, "POST", "/v1/admin/rescan",
		 "Authorization: Bearer wrong\r\n");
	expect_error(&r, 401, NULL);
	reply_release(&r);
	/* Same length, one byte off; and a prefix of the token. */
	r = http(f, "POST", "/v1/admin/rescan",
		 "Authorization: Bearer s3cret-token-0123456788\r\n");
	expect_error(&r, 401, NULL);
	reply_release(&r);
	r = http(f, "POST", "/v1/admin/rescan",
		 "Authorization: Bearer s3cret\r\n");
	expect_error(&r, 401, NULL);
	reply_release(&r);
	r = http(f, "POST", "/v1/admin/rescan", "Authorization: " TOKEN "\r\n");
	expect_error(&r, 401, NULL);
	reply_release(&r);
	assert_false(fd_readable(fd));
	assert_int_equal(api_next_command(f->api), API_CMD_NONE);

	r = http(f, "POST", "/v1/admin/rescan",
		 "Authorization: Bearer " TOKEN "\r\n");
	assert_int_equal(r.code, 202);
	assert_string_equal(jstr(r.json, "queued"), "rescan");
	reply_release(&r);
	r = http(f, "POST", "/v1/admin/resync",
		 "Authorization: bearer " TOKEN "\r\n");
	assert_int_equal(r.code, 202);
	assert_string_equal(jstr(r.json, "queued"), "resync");
	reply_release(&r);

	assert_true(fd_readable(fd));
	assert_int_equal(api_next_command(f->api), API_CMD_RESCAN);
	assert_true(fd_readable(fd));
	assert_int_equal(api_next_command(f->api), API_CMD_RESYNC);
	assert_false(fd_readable(fd));
	assert_int_equal(api_next_command(f->api), API_CMD_NONE);
}

static void test_admin_compact(void **state)
{
	struct fixture *f = *state;
	int fd = api_command_fd(f->api);
	struct reply r = http(f, "POST", "/v1/admin/compact", NULL);

	expect_error(&r, 401, "bearer token");
	assert_non_null(strstr(r.head, "WWW-Authenticate: Bearer"));
	reply_release(&r);
	r = http(f, "POST", "/v1/admin/compact",
		 "Authorization: Bearer wrong\r\n");
	expect_error(&r, 401, NULL);
	reply_release(&r);
	r = http(f, "GET", "/v1/admin/compact",
		 "Authorization: Bearer " TOKEN "\r\n");
	expect_error(&r, 405, NULL);
	assert_non_null(strstr(r.head, "Allow: POST"));
	reply_release(&r);
	assert_false(fd_readable(fd));
	assert_int_equal(api_next_command(f->api), API_CMD_NONE);

	r = http(f, "POST", "/v1/admin/compact",
		 "Authorization: Bearer " TOKEN "\r\n");
	assert_int_equal(r.code, 202);
	assert_string_equal(jstr(r.json, "queued"), "compact");
	assert_int_equal(json_object_size(r.json), 1);
	reply_release(&r);
	assert_true(fd_readable(fd));
	assert_int_equal(api_next_command(f->api), API_CMD_COMPACT);
	assert_false(fd_readable(fd));
	assert_int_equal(api_next_command(f->api), API_CMD_NONE);

	/* Without a token file the admin API is off for this call too. */
	assert_int_equal(unlink(f->token), 0);
	r = http(f, "POST", "/v1/admin/compact",
		 "Authorization: Bearer " TOKEN "\r\n");
	expect_error(&r, 503, "api.token_file");
	reply_release(&r);
	assert_int_equal(api_next_command(f->api), API_CMD_NONE);
}

static void test_admin_disabled(void **state)
{
	struct fixture *f = *state;
	struct reply r;

	assert_int_equal(unlink(f->token), 0);
	r = http(f, "POST", "/v1/admin/resync",
		 "Authorization: Bearer " TOKEN "\r\n");
	expect_error(&r, 503, "admin API disabled: create api.token_file");
	reply_release(&r);
	/* An empty file is no token either. */
	write_token(f, "\n");
	r = http(f, "POST", "/v1/admin/resync", "Authorization: Bearer \r\n");
	expect_error(&r, 503, "api.token_file");
	reply_release(&r);
	/* Created later: picked up without a restart, CRLF stripped. */
	write_token(f, "later\r\n");
	r = http(f, "POST", "/v1/admin/resync",
		 "Authorization: Bearer later\r\n");
	assert_int_equal(r.code, 202);
	reply_release(&r);
	assert_int_equal(api_next_command(f->api), API_CMD_RESYNC);
}

static void test_http_errors(void **state)
{
	struct fixture *f = *state;
	struct reply r = http(f, "GET", "/nope", NULL);

	expect_error(&r, 404, NULL);
	reply_release(&r);
	r = http(f, "GET", "/v1", NULL);
	expect_error(&r, 404, NULL);
	reply_release(&r);
	r = http(f, "POST", "/v1/status", NULL);
	expect_error(&r, 405, NULL);
	assert_non_null(strstr(r.head, "Allow: GET, HEAD"));
	reply_release(&r);
	r = http(f, "DELETE", "/v1/volumes/vol1", NULL);
	expect_error(&r, 405, NULL);
	reply_release(&r);
	r = http(f, "GET", "/v1/admin/rescan", NULL);
	expect_error(&r, 405, NULL);
	assert_non_null(strstr(r.head, "Allow: POST"));
	reply_release(&r);

	/* Declared too big: answered before any of it is sent. */
	r = http(f, "POST", "/v1/admin/rescan",
		 "Authorization: Bearer " TOKEN "\r\nContent-Length: 65537\r\n");
	expect_error(&r, 413, NULL);
	reply_release(&r);
	/* libmicrohttpd answers this one itself, before any handler. */
	r = http(f, "POST", "/v1/admin/rescan",
		 "Content-Length: 99999999999999999999999\r\n");
	assert_int_equal(r.code, 413);
	reply_release(&r);
	assert_int_equal(api_next_command(f->api), API_CMD_NONE);

	/* A small body is read and ignored. */
	r = http_on("127.0.0.1", f->port, "POST", "/v1/admin/rescan",
		    "Authorization: Bearer " TOKEN "\r\nContent-Length: 4\r\n",
		    "{}\r\n");
	assert_int_equal(r.code, 202);
	reply_release(&r);
	assert_int_equal(api_next_command(f->api), API_CMD_RESCAN);
}

static void test_chunked_body_over_cap(void **state)
{
	struct fixture *f = *state;
	static char chunk[8200];
	int fd = http_connect("127.0.0.1", f->port);
	const char *head = "POST /v1/admin/rescan HTTP/1.1\r\nHost: localhost\r\n"
			   "Transfer-Encoding: chunked\r\n\r\n";
	size_t total = 0, len;
	char *answer;

	assert_true(fd >= 0);
	write_all(fd, head, strlen(head));
	memset(chunk, 'x', sizeof(chunk));
	memcpy(chunk, "2000\r\n", 6);
	memcpy(chunk + 6 + 0x2000, "\r\n", 2);
	/* The server hangs up once the body passes 64 KiB: writes then
	 * fail, which is the point (after the socket buffers fill, about a
	 * megabyte on loopback). */
	signal(SIGPIPE, SIG_IGN);
	while (total < 64 * 1024 * 1024) {
		ssize_t n = send(fd, chunk, 6 + 0x2000 + 2, MSG_NOSIGNAL);

		if (n <= 0)
			break;
		total += (size_t)n;
	}
	assert_true(total < 64 * 1024 * 1024);
	answer = read_all(fd, &len);
	assert_null(strstr(answer, "202"));
	free(answer);
	close(fd);
	assert_int_equal(api_next_command(f->api), API_CMD_NONE);
}

static void test_dashboard(void **state)
{
	struct fixture *f = *state;
	struct reply r = http(f, "GET", "/", NULL);

	assert_int_equal(r.code, 200);
	assert_non_null(strstr(r.head, "Content-Type: text/html"));
	assert_non_null(strstr(r.body, "<!DOCTYPE html>"));
	assert_non_null(strstr(r.body, "/v1/status"));
	assert_non_null(strstr(r.body, "</html>"));
	/* Self-contained: nothing fetched from anywhere else (the SVG
	 * namespace URI is a name, never fetched). */
	assert_null(strstr(r.body, "src=\"http"));
	assert_null(strstr(r.body, "href=\"http"));
	assert_null(strstr(r.body, "url("));
	assert_null(strstr(r.body, "@import"));
	/* With a read token the page's requests carry it, taken from the
	 * fragment, which no browser sends, never from the query string. */
	assert_non_null(strstr(r.body, "Authorization: \"Bearer \" + token"));
	assert_non_null(strstr(r.body, "/^#token=(.+)$/.exec(location.hash)"));
	assert_non_null(strstr(r.body, "sessionStorage"));
	assert_null(strstr(r.body, "?token="));
	reply_release(&r);

	r = http(f, "HEAD", "/health", NULL);
	assert_int_equal(r.code, 200);
	assert_string_equal(r.body, "");
	reply_release(&r);
}

static void test_journal_error_is_500(void **state)
{
	struct fixture *f = *state;
	struct api_options opt = { .node_id = "vm1", .listen_host = "127.0.0.1",
				   .journal_path = "/nonexistent/journal.db" };
	struct api *a = NULL;
	struct reply r;

	assert_int_equal(api_new(&opt, &a, NULL), 0);
	r = http_on("127.0.0.1", api_rest_port(a), "GET", "/v1/journal",
		    NULL, NULL);
	expect_error(&r, 500, "journal");
	reply_release(&r);
	r = http_on("127.0.0.1", api_rest_port(a), "GET", "/health", NULL,
		    NULL);
	assert_int_equal(r.code, 200);
	reply_release(&r);
	api_free(a);
	(void)f;
}

static void test_listen_errors(void **state)
{
	struct fixture *f = *state;
	struct api_options opt = { .node_id = "vm1", .listen_host = "127.0.0.1",
				   .listen_port = f->port,
				   .journal_path = f->db };
	struct api *a = (struct api *)1;
	char *err = NULL;

	assert_true(api_new(&opt, &a, &err) < 0);
	assert_null(a);
	assert_non_null(err);
	assert_non_null(strstr(err, "cannot listen on 127.0.0.1:"));
	free(err);
	err = NULL;
	opt.listen_host = "no-such-host.invalid";
	assert_true(api_new(&opt, &a, &err) < 0);
	assert_non_null(strstr(err, "cannot listen on no-such-host.invalid"));
	free(err);

	/* No REST server at all: the command queue still works. */
	opt.listen_host = NULL;
	assert_int_equal(api_new(&opt, &a, NULL), 0);
	assert_int_equal(api_rest_port(a), 0);
	assert_true(api_command_fd(a) >= 0);
	api_free(a);
	api_free(NULL);
}

static void test_ipv6(void **state)
{
	struct fixture *f = *state;
	struct api_options opt = { .node_id = "vm1", .listen_host = "[::1]",
				   .journal_path = f->db };
	struct api *a = NULL;
	struct reply r;
	int probe = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6,
				   .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	bool have_v6 = probe >= 0 &&
		       bind(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;

	if (probe >= 0)
		close(probe);
	/* A test that cannot run fails, so that nobody takes it as passed. */
	if (!have_v6)
		fail_msg("IPv6 loopback [::1] cannot be bound here: this test "
			 "needs it (sysctl net.ipv6.conf.lo.disable_ipv6=0)");
	assert_int_equal(api_new(&opt, &a, NULL), 0);
	r = http_on("::1", api_rest_port(a), "GET", "/health", NULL, NULL);
	assert_int_equal(r.code, 200);
	assert_string_equal(jstr(r.json, "status"), "ok");
	reply_release(&r);
	api_free(a);
}

/* GET PATH as HOST, the Host header line given as it is (NULL: none). */
static struct reply get_as(uint16_t port, const char *path, const char *host,
			   const char *extra)
{
	char req[1024];

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n%s%s%sConnection: "
		 "close\r\n%s\r\n", path, host ? "Host: " : "",
		 host ? host : "", host ? "\r\n" : "", extra ? extra : "");
	return http_raw("127.0.0.1", port, req);
}

static void test_host_header(void **state)
{
	struct fixture *f = *state;
	char good[6][64], bad[5][64], req[512];
	struct reply r;

	snprintf(good[0], sizeof(good[0]), "127.0.0.1:%u", f->port);
	snprintf(good[1], sizeof(good[1]), "localhost:%u", f->port);
	snprintf(good[2], sizeof(good[2]), "LocalHost");
	snprintf(good[3], sizeof(good[3]), "[::1]:%u", f->port);
	snprintf(good[4], sizeof(good[4]), "[0:0::1]");
	snprintf(good[5], sizeof(good[5]), "127.0.0.1");
	snprintf(bad[0], sizeof(bad[0]), "evil.example");
	snprintf(bad[1], sizeof(bad[1]), "evil.example:%u", f->port);
	snprintf(bad[2], sizeof(bad[2]), "127.0.0.1:%u", f->port + 1);
	snprintf(bad[3], sizeof(bad[3]), "127.0.0.1.evil.example:%u", f->port);
	snprintf(bad[4], sizeof(bad[4]), "::1");
	for (size_t i = 0; i < 6; i++) {
		r = get_as(f->port, "/v1/status", good[i], NULL);
		if (r.code != 200)
			fail_msg("Host %s: %d %s", good[i], r.code, r.body);
		reply_release(&r);
	}
	for (size_t i = 0; i < 5; i++) {
		r = get_as(f->port, "/v1/journal", bad[i], NULL);
		expect_error(&r, 403, "api.allowed_hosts");
		reply_release(&r);
	}
	r = get_as(f->port, "/", "evil.example", NULL);
	expect_error(&r, 403, "\"evil.example\"");
	reply_release(&r);
	r = get_as(f->port, "/metrics", "evil.example", NULL);
	expect_error(&r, 403, NULL);
	reply_release(&r);

	/* The admin calls too, token or not; nothing is queued. */
	snprintf(req, sizeof(req), "POST /v1/admin/rescan HTTP/1.1\r\nHost: "
		 "evil.example:%u\r\nAuthorization: Bearer " TOKEN "\r\n"
		 "Connection: close\r\n\r\n", f->port);
	r = http_raw("127.0.0.1", f->port, req);
	expect_error(&r, 403, "api.allowed_hosts");
	reply_release(&r);
	assert_int_equal(api_next_command(f->api), API_CMD_NONE);

	/* No Host: only HTTP/1.0 may; two Hosts: never. */
	r = get_as(f->port, "/v1/status", NULL, NULL);
	assert_int_equal(r.code, 400);
	reply_release(&r);
	r = http_raw("127.0.0.1", f->port, "GET /v1/status HTTP/1.0\r\n\r\n");
	assert_int_equal(r.code, 200);
	reply_release(&r);
	r = get_as(f->port, "/v1/status", "localhost",
		   "Host: evil.example\r\n");
	expect_error(&r, 400, "Host");
	reply_release(&r);
}

/* A second server on F's journal with a read token (and F's admin
 * token) that also answers to kraken.example. */
static struct api *read_guarded_api(struct fixture *f, char *read_file,
				    size_t size)
{
	static char *const allowed[] = { "kraken.example", "[fd00::7]" };
	struct api_options opt = { .node_id = "vm1", .listen_host = "127.0.0.1",
				   .journal_path = f->db, .token_file = f->token,
				   .read_token_file = read_file,
				   .allowed_hosts = allowed,
				   .n_allowed_hosts = 2 };
	struct api *a = NULL;
	FILE *fp;

	snprintf(read_file, size, "%s/read-token", f->dir);
	fp = fopen(read_file, "w");
	assert_non_null(fp);
	fputs(READ_TOKEN "\n", fp);
	fclose(fp);
	assert_int_equal(api_new(&opt, &a, NULL), 0);
	return a;
}

static void test_read_token(void **state)
{
	static const char *const reads[] = {
		"/health", "/v1/status", "/v1/peers", "/v1/volumes",
		"/v1/volumes/vol1", "/v1/journal", "/v1/journal?limit=1",
		"/v1/conflicts", "/metrics", "/nope",
	};
	struct fixture *f = *state;
	char read_file[192], host[64];
	struct api *a = read_guarded_api(f, read_file, sizeof(read_file));
	uint16_t port = api_rest_port(a);
	struct reply r;

	snprintf(host, sizeof(host), "127.0.0.1:%u", port);
	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
		int want = strcmp(reads[i], "/nope") ? 200 : 404;

		r = get_as(port, reads[i], host, NULL);
		expect_error(&r, 401, "api.read_token_file");
		assert_non_null(strstr(r.head, "WWW-Authenticate: Bearer"));
		reply_release(&r);
		r = get_as(port, reads[i], host,
			   "Authorization: Bearer wrong\r\n");
		expect_error(&r, 401, "api.token_file");
		reply_release(&r);
		r = get_as(port, reads[i], host,
			   "Authorization: Bearer " READ_TOKEN "\r\n");
		if (r.code != want)
			fail_msg("%s with the read token: %d", reads[i], r.code);
		reply_release(&r);
		r = get_as(port, reads[i], host,
			   "Authorization: bearer " TOKEN "\r\n");
		if (r.code != want)
			fail_msg("%s with the admin token: %d", reads[i],
				 r.code);
		reply_release(&r);
	}
	/* The page itself is a constant and needs none. */
	r = get_as(port, "/", host, NULL);
	assert_int_equal(r.code, 200);
	reply_release(&r);
	/* A listed name, with the token. */
	r = get_as(port, "/v1/status", "KRAKEN.example",
		   "Authorization: Bearer " READ_TOKEN "\r\n");
	assert_int_equal(r.code, 200);
	reply_release(&r);
	r = get_as(port, "/v1/status", "[fd00::7]",
		   "Authorization: Bearer " READ_TOKEN "\r\n");
	assert_int_equal(r.code, 200);
	reply_release(&r);

	/* The read token opens no admin call; the admin token does. */
	r = http_on("127.0.0.1", port, "POST", "/v1/admin/rescan",
		    "Authorization: Bearer " READ_TOKEN "\r\n", NULL);
	expect_error(&r, 401, "bearer token");
	reply_release(&r);
	assert_int_equal(api_next_command(a), API_CMD_NONE);
	r = http_on("127.0.0.1", port, "POST", "/v1/admin/rescan",
		    "Authorization: Bearer " TOKEN "\r\n", NULL);
	assert_int_equal(r.code, 202);
	reply_release(&r);
	assert_int_equal(api_next_command(a), API_CMD_RESCAN);

	/* Without its file reads stay shut, but for the admin token. */
	assert_int_equal(unlink(read_file), 0);
	r = get_as(port, "/v1/status", host,
		   "Authorization: Bearer " READ_TOKEN "\r\n");
	expect_error(&r, 503, "api.read_token_file");
	reply_release(&r);
	r = get_as(port, "/v1/status", host,
		   "Authorization: Bearer " TOKEN "\r\n");
	assert_int_equal(r.code, 200);
	reply_release(&r);
	api_free(a);
}

static void test_host_allowed(void **state)
{
	static char *const allowed[] = { "nas.lan", "[fd00::1]", "10.1.2.3" };
	static const struct {
		const char *listen;
		const char *host;
		bool ok;
	} cases[] = {
		{ "127.0.0.1", "127.0.0.1:6882", true },
		{ "127.0.0.1", "127.0.0.1", true },
		{ "127.0.0.1", "localhost:6882", true },
		{ "127.0.0.1", "LOCALHOST", true },
		{ "127.0.0.1", "[::1]:6882", true },
		{ "127.0.0.1", "[::0:1]", true },
		{ "127.0.0.1", "nas.lan:6882", true },
		{ "127.0.0.1", "NAS.LAN", true },
		{ "127.0.0.1", "[FD00::1]:6882", true },
		{ "127.0.0.1", "10.1.2.3", true },
		{ "127.0.0.1", "127.0.0.1:6883", false },
		{ "127.0.0.1", "127.0.0.1:", false },
		{ "127.0.0.1", "127.0.0.1:06882x", false },
		{ "127.0.0.1", "127.0.0.1:6882:6882", false },
		{ "127.0.0.1", "127.0.0.1:1006882", false },
		{ "127.0.0.1", "evil.example", false },
		{ "127.0.0.1", "evil.example:6882", false },
		{ "127.0.0.1", "nas.lan.evil.example", false },
		{ "127.0.0.1", "localhost.", false },
		{ "127.0.0.1", "::1", false },
		{ "127.0.0.1", "[::1", false },
		{ "127.0.0.1", "[localhost]", false },
		{ "127.0.0.1", "[::1]x", false },
		{ "127.0.0.1", "", false },
		{ "127.0.0.1", ":6882", false },
		{ "127.0.0.1", "10.0.0.5", false },
		{ "127.0.0.1", "nas lan", false },
		{ "10.0.0.5", "10.0.0.5:6882", true },
		{ "10.0.0.5", "10.0.0.6:6882", false },
		{ "box.example", "Box.Example:6882", true },
		{ "[::1]", "[::1]:6882", true },
		{ "::1", "[0::1]:6882", true },
		{ "0.0.0.0", "192.168.7.9:6882", true },
		{ "0.0.0.0", "[2001:db8::5]", true },
		{ "0.0.0.0", "some.name:6882", false },
		{ "0.0.0.0", "192.168.7.9:80", false },
		{ "::", "192.168.7.9", true },
		{ "[::]", "[fe80::2]:6882", true },
		{ "::", "nas.lan", true },
		{ "::", "box.example", false },
	};
	char big[400];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rest_hosts h = { .listen_host = cases[i].listen,
					.port = 6882, .allowed = allowed,
					.n_allowed = 3 };

		if (rest_host_allowed(&h, cases[i].host) != cases[i].ok)
			fail_msg("listen %s, Host \"%s\": wanted %s",
				 cases[i].listen, cases[i].host,
				 cases[i].ok ? "accepted" : "refused");
	}
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_false(rest_host_allowed(&(struct rest_hosts){
		.listen_host = big, .port = 6882 }, big));
	assert_false(rest_host_allowed(&(struct rest_hosts){
		.listen_host = "127.0.0.1", .port = 6882 }, NULL));
}

static void test_bearer(void **state)
{
	(void)state;
	assert_string_equal(rest_bearer("Bearer abc"), "abc");
	assert_string_equal(rest_bearer("bEaReR   abc "), "abc ");
	assert_null(rest_bearer("Basic abc"));
	assert_null(rest_bearer("Bearerabc"));
	assert_null(rest_bearer(NULL));
	assert_int_equal(rest_token_check(NULL, "x"), -ENOENT);
	assert_int_equal(rest_token_check("/nonexistent/token", "x"), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_allowed),
		cmocka_unit_test(test_bearer),
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_health),
		T(test_status_from_journal),
		T(test_published_peers),
		T(test_status_retention),
		T(test_volumes),
		T(test_journal_entries),
		T(test_sees_new_commits),
		T(test_journal_bad_queries),
		T(test_journal_pagination),
		T(test_conflicts),
		T(test_metrics),
		T(test_metrics_compaction),
		T(test_admin_token),
		T(test_admin_compact),
		T(test_admin_disabled),
		T(test_http_errors),
		T(test_chunked_body_over_cap),
		T(test_dashboard),
		T(test_journal_error_is_500),
		T(test_listen_errors),
		T(test_ipv6),
		T(test_host_header),
		T(test_read_token),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
