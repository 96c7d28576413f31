/*
 * kraken-journal versions VOLUME PATH: every version of one path, when
 * and where it was made, its size, and whether its content can be had
 * here: "live" (what the volume holds now), "kept" (in the store of
 * replaced content, src/journal/versions.c) or "gone".  Read-only, with
 * the agent running or not.
 */
#include "kraken-journal.h"

#include "content.h"
#include "err.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct vlist {
	struct journal_versions *store;   /* NULL: nothing kept here */
	struct journal_state live;
	bool has_live;
	bool json;
	json_t *rows;
	unsigned count;
};

static const char *where(struct vlist *v, const struct journal_change *c)
{
	int fd;

	if (!c->has_hash)
		return "-";
	if (v->has_live && v->live.has_hash &&
	    memcmp(v->live.hash, c->hash, CONTENT_HASH_LEN) == 0)
		return "live";
	fd = v->store ? journal_versions_get(v->store, c->hash) : -ENOENT;
	if (fd < 0)
		return "gone";
	close(fd);
	return "kept";
}

static void utc(int64_t ns, char *out, size_t cap)
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int on_version(void *arg, const struct journal_change *c)
{
	struct vlist *v = arg;
	const char *here = where(v, c);
	char when[32], hex[2 * CONTENT_HASH_LEN + 1] = "-";

	utc(c->wall_ns, when, sizeof(when));
	if (c->has_hash)
		content_hex(c->hash, hex);
	v->count++;
	if (v->json)
		return json_array_append_new(v->rows, json_pack(
			"{s:s,s:I,s:s,s:I,s:s,s:I,s:s,s:s}", "time", when,
			"wall_ns", (json_int_t)c->wall_ns, "origin",
			c->ref.origin, "seq", (json_int_t)c->ref.seq, "op",
			journal_op_name(c->op), "size", (json_int_t)c->size,
			"hash", hex, "content", here)) ? -ENOMEM : 0;
	printf("%-20s  %-28s  %-8s  %12llu  %.12s  %s\n", when, c->ref.origin,
	       journal_op_name(c->op), (unsigned long long)c->size, hex, here);
	return 0;
}

int kj_versions(struct journal *j, const char *db, const char *volume,
		const char *path, bool json)
{
	struct vlist v = { .json = json };
	char dir[4096];
	int err;

	snprintf(dir, sizeof(dir), "%s.versions", db);
	if (access(dir, F_OK) == 0 &&
	    journal_versions_open(j, dir, false, &v.store) != 0)
		v.store = NULL;
	v.has_live = journal_lookup(j, volume, path, &v.live) == 0;
	v.rows = json ? json_array() : NULL;
	if (!json)
		printf("%-20s  %-28s  %-8s  %12s  %-12s  %s\n", "TIME (UTC)",
		       "ORIGIN", "OP", "SIZE", "CONTENT", "HERE");
	err = journal_history(j, volume, path, on_version, &v);
	if (!err && json)
		json_dumpf(v.rows, stdout, JSON_INDENT(2));
	if (!err && json)
		putchar('\n');
	json_decref(v.rows);
	if (v.has_live)
		journal_state_release(&v.live);
	journal_versions_close(v.store);
	if (err) {
		fprintf(stderr, "kraken-journal: versions: %s\n",
			kr_strerror(err));
		return 2;
	}
	if (v.count == 0) {
		fprintf(stderr, "kraken-journal: no versions of %s/%s\n",
			volume, path);
		return 1;
	}
	return 0;
}
