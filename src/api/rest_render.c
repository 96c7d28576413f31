/*
 * Journal records and the loop's snapshot as the REST API's documents.
 *
 * Field names follow `kraken-journal --json` where the same thing is
 * shown (origin, seq, lamport, op, ...), so a script can move between
 * the tool and the API.  Times appear twice: RFC 3339 for people and
 * browsers, and integer nanoseconds ("_ns") for exact comparisons.
 *
 * Metrics are rendered from the snapshot only: a scrape never waits on
 * the journal, so a busy or broken database cannot hide the numbers that
 * would explain it.
 */
#include "rest_render.h"
#include "content.h"
#include "err.h"
#include "loop.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef KRAKENFS_VERSION
#define KRAKENFS_VERSION "unknown"
#endif

#define REST_METRICS_MAX (1024 * 1024)

/* ---- time ------------------------------------------------------------ */

void rest_format_time(int64_t wall_ns, char *out, size_t cap)
{
	time_t sec = (time_t)(wall_ns / 1000000000);
	struct tm tm;
	size_t n;

	gmtime_r(&sec, &tm);
	n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, cap - n, ".%03dZ",
		 (int)(wall_ns % 1000000000 / 1000000));
}

static json_t *rest_time_json(int64_t wall_ns)
{
	char buf[64];

	if (wall_ns <= 0)
		return json_null();
	rest_format_time(wall_ns, buf, sizeof(buf));
	return json_string(buf);
}

/* ---- journal entries ------------------------------------------------- */

static json_t *rest_hash_json(bool has, const uint8_t *hash)
{
	char hex[CONTENT_HEX_LEN];

	if (!has)
		return json_null();
	content_hex(hash, hex);
	return json_string(hex);
}

/* The exact time of a change as restore's --at and ?at= take it,
 * "@SECONDS.NANOSECONDS": time_ns as a JSON number loses the last
 * digits in a browser, and a restore at a time a hair before the
 * version gives the one before it. */
static json_t *rest_at_json(int64_t wall_ns)
{
	char at[48];

	if (wall_ns < 0)
		return json_null();
	snprintf(at, sizeof(at), "@%lld.%09lld",
		 (long long)(wall_ns / 1000000000),
		 (long long)(wall_ns % 1000000000));
	return json_string(at);
}

json_t *rest_change_json(const struct journal_change *c)
{
	json_t *bases = json_array();

	for (size_t i = 0; bases && i < c->n_bases; i++)
		json_array_append_new(bases, json_pack("{s:s,s:I}",
			"origin", c->bases[i].origin,
			"seq", (json_int_t)c->bases[i].seq));
	return json_pack("{s:I,s:s,s:I,s:I,s:o,s:I,s:o,s:s,s:s,s:s,s:I,s:I,"
			 "s:I,s:I,s:I,s:o,s:s?,s:o}",
			 "id", (json_int_t)c->id,
			 "origin", c->ref.origin, "seq", (json_int_t)c->ref.seq,
			 "lamport", (json_int_t)c->lamport,
			 "time", rest_time_json(c->wall_ns),
			 "time_ns", (json_int_t)c->wall_ns,
			 "at", rest_at_json(c->wall_ns),
			 "volume", c->volume, "path", c->path,
			 "op", journal_op_name(c->op),
			 "size", (json_int_t)c->size, "mode", (json_int_t)c->mode,
			 "uid", (json_int_t)c->uid, "gid", (json_int_t)c->gid,
			 "mtime_ns", (json_int_t)c->mtime_ns,
			 "hash", rest_hash_json(c->has_hash, c->hash),
			 "target", c->target, "bases", bases);
}

struct rest_log {
	json_t *entries;
	int64_t limit;
	int64_t last_id;
	bool more;
};

static int rest_log_one(void *arg, const struct journal_change *c)
{
	struct rest_log *l = arg;

	/* The query asked for one row past the page: it only says that a
	 * next page exists. */
	if ((int64_t)json_array_size(l->entries) == l->limit) {
		l->more = true;
		return 0;
	}
	if (json_array_append_new(l->entries, rest_change_json(c)))
		return -ENOMEM;
	l->last_id = c->id;
	return 0;
}

int rest_log_json(struct journal *j, const struct journal_filter *f,
		  json_t **out)
{
	struct journal_filter page = *f;
	struct rest_log l = { .entries = json_array(), .limit = f->limit };
	char next[24];
	int err;

	*out = NULL;
	if (!l.entries)
		return -ENOMEM;
	page.oldest_first = false;
	page.limit = f->limit + 1;
	err = journal_log(j, &page, rest_log_one, &l);
	if (err) {
		json_decref(l.entries);
		return err;
	}
	snprintf(next, sizeof(next), "%" PRId64, l.last_id);
	*out = json_pack("{s:o,s:s?}", "entries", l.entries, "next",
			 l.more ? next : NULL);
	return *out ? 0 : -ENOMEM;
}

/* ---- status and peers ------------------------------------------------ */

static json_t *rest_peer_json(const struct api_peer *p)
{
	return json_pack("{s:s,s:s,s:b,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
			 "s:I,s:o,s:b}",
			 "node_id", p->id, "address", p->address,
			 "connected", p->connected,
			 "last_seen", rest_time_json(p->last_seen_ns),
			 "last_seen_ns", (json_int_t)p->last_seen_ns,
			 "lag_entries", (json_int_t)p->lag_entries,
			 "lag_bytes", (json_int_t)p->lag_bytes,
			 "behind_entries", (json_int_t)p->behind_entries,
			 "bytes_in", (json_int_t)p->bytes_in,
			 "bytes_out", (json_int_t)p->bytes_out,
			 "entries_in", (json_int_t)p->entries_in,
			 "entries_out", (json_int_t)p->entries_out,
			 "entries_refused", (json_int_t)p->entries_refused,
			 "clock_offset_ms", p->clock_known ?
			 json_integer(p->clock_offset_ns / 1000000) :
			 json_null(),
			 "clock_skewed", p->clock_skewed);
}

json_t *rest_peers_json(const struct api_snapshot *snap)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < snap->n_peers; i++) {
		struct api_peer p = snap->peers[i];

		/* The loop copied these from the wire: make sure they end. */
		p.id[sizeof(p.id) - 1] = '\0';
		p.address[sizeof(p.address) - 1] = '\0';
		if (json_array_append_new(arr, rest_peer_json(&p))) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

static int rest_vector_one(void *arg, const char *origin, uint64_t max_seq)
{
	return json_object_set_new(arg, origin,
				   json_integer((json_int_t)max_seq)) ?
	       -ENOMEM : 0;
}

static json_t *rest_quantiles_json(const struct hist *h)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:I}",
			 "count", (json_int_t)h->count,
			 "p50_us", (json_int_t)hist_quantile(h, 0.5),
			 "p90_us", (json_int_t)hist_quantile(h, 0.9),
			 "p99_us", (json_int_t)hist_quantile(h, 0.99),
			 "max_us", (json_int_t)h->max);
}

/* Compaction as the loop last saw it; COMPACTED_BEFORE_NS is passed
 * apart because before the first snapshot it comes from the journal. */
static json_t *rest_retention_json(const struct api_snapshot *snap,
				   int64_t compacted_before_ns)
{
	return json_pack("{s:I,s:o,s:o,s:b,s:{s:I,s:I,s:I},s:I,s:I,s:I}",
		"retention_s", (json_int_t)(snap->retention_ns / 1000000000),
		"compacted_before", rest_time_json(compacted_before_ns),
		"last_compaction", rest_time_json(snap->last_compaction_ns),
		"compacting", snap->compacting,
		"removed",
		"changes", (json_int_t)snap->compacted_changes,
		"tombstones", (json_int_t)snap->compacted_tombstones,
		"contents", (json_int_t)snap->compacted_contents,
		"pages_freed", (json_int_t)snap->compaction_pages_freed,
		"exchanges_served", (json_int_t)snap->exchanges_served,
		"exchanges_applied", (json_int_t)snap->exchanges_applied);
}

/* Stuck jobs listed in /v1/status at most; the count says if more. */
#define REST_STUCK_MAX 100

static int rest_stuck_one(void *arg, const struct journal_stuck_job *s)
{
	json_t *o = json_pack("{s:s,s:s,s:s?,s:s,s:I,s:o,s:o}",
		"volume", s->volume, "path", s->path, "copy_of", s->copy_of,
		"reason", s->reason ? s->reason : "", "failures",
		(json_int_t)s->failures, "since", rest_time_json(s->since_ns),
		"next_attempt", rest_time_json(s->retry_ns));

	return o && json_array_append_new(arg, o) == 0 ? 0 : -ENOMEM;
}

/* The stuck jobs, from the journal: what keeps failing and why. */
static json_t *rest_stuck_json(struct journal *j)
{
	json_t *a = json_array();

	if (a && journal_jobs_stuck(j, REST_STUCK_MAX, rest_stuck_one, a)) {
		json_decref(a);
		return NULL;
	}
	return a;
}

/* The scrub as the loop last saw it. */
static json_t *rest_scrub_json(const struct api_snapshot *snap)
{
	return json_pack("{s:I,s:b,s:I,s:o,s:I,s:I,s:I,s:I,s:I}",
		"period_s", (json_int_t)(snap->scrub_period_ns / 1000000000),
		"running", snap->scrubbing,
		"passes", (json_int_t)snap->scrub_passes,
		"last_pass", rest_time_json(snap->scrub_last_pass_ns),
		"files", (json_int_t)snap->scrub_files,
		"bytes", (json_int_t)snap->scrub_bytes,
		"damaged", (json_int_t)snap->scrub_damaged,
		"repaired", (json_int_t)snap->scrub_repaired,
		"damaged_chunks", (json_int_t)snap->damaged_chunks);
}

/* Whether a peer could forge another node's changes here: a plaintext
 * cluster chains entries (which catches corruption and honest mistakes)
 * but has no keys to sign them with. */
static json_t *rest_signing_json(const struct api *a)
{
	return json_pack("{s:b,s:s}", "signed", a->journal_signed, "note",
			 a->journal_signed ?
			 "every entry is checked against its origin's "
			 "signature" :
			 "plaintext cluster (sync.tls.enable is false): "
			 "entries are chained but not signed, so any peer "
			 "can forge another node's changes");
}

int rest_status_json(struct api *a, struct journal *j,
		     struct api_snapshot *snap, json_t **out)
{
	struct journal_info info;
	json_t *vec = json_object();
	bool have = api_snapshot_get(a, snap);
	uint64_t jobs = snap->jobs, stuck = snap->jobs_stuck;
	json_t *stuck_list = NULL;
	int64_t now = loop_now_ns();
	int64_t compacted_before = snap->compacted_before_ns;
	int err = vec ? journal_info(j, &info) : -ENOMEM;

	*out = NULL;
	if (!err)
		err = journal_vector(j, rest_vector_one, vec);
	/* Before the loop's first snapshot the journal knows the backlog,
	 * and how far back its history reaches. */
	if (!err && !have)
		err = journal_job_counts(j, NULL, &jobs, &stuck);
	if (!err) {
		stuck_list = rest_stuck_json(j);
		err = stuck_list ? 0 : -ENOMEM;
	}
	if (!err && !have)
		err = journal_compacted_before(j, &compacted_before);
	if (err) {
		json_decref(vec);
		return err;
	}
	*out = json_pack("{s:s,s:s,s:s,s:I,s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:I,"
		"s:o,s:I,s:I,s:I,s:o,s:I,s:I,s:I,s:o,s:o,s:o,s:o,s:b,s:o,s:o}",
		"node_id", a->node_id ? a->node_id : info.node_id,
		"origin", info.origin, "version", KRAKENFS_VERSION,
		"seq", (json_int_t)info.own_seq,
		"lamport", (json_int_t)info.lamport,
		"version_vector", vec,
		"uptime_s", (json_int_t)((now - a->started_ns) / 1000000000),
		"changes", (json_int_t)info.n_changes,
		"volumes", (json_int_t)info.n_volumes,
		"paths", (json_int_t)info.n_paths,
		"jobs", (json_int_t)jobs,
		"jobs_stuck", (json_int_t)stuck,
		"stuck_jobs", stuck_list,
		"jobs_bytes", (json_int_t)snap->jobs_bytes,
		"journal_bytes", (json_int_t)info.journal_bytes,
		"wal_bytes", (json_int_t)info.wal_bytes,
		"retention", rest_retention_json(snap, compacted_before),
		"changes_recorded", (json_int_t)snap->changes_recorded,
		"changes_applied", (json_int_t)snap->changes_applied,
		"conflicts", (json_int_t)snap->conflicts,
		"snapshot_age_s", have ? json_real((double)(now -
			snap->published_ns) / 1e9) : json_null(),
		"commit_latency", rest_quantiles_json(&snap->commit_latency_us),
		"apply_latency", rest_quantiles_json(&snap->apply_latency_us),
		"peers", rest_peers_json(snap),
		"rejoining", snap->rejoining,
		"scrub", rest_scrub_json(snap),
		"journal_signing", rest_signing_json(a));
	return *out ? 0 : -ENOMEM;
}

/* ---- volumes --------------------------------------------------------- */

static int rest_volume_name(void *arg, const char *volume, const char *path,
			    const struct journal_state *s)
{
	(void)path;
	(void)s;
	return json_array_append_new(arg, json_string(volume)) ? -ENOMEM : 0;
}

struct rest_usage {
	uint64_t paths, bytes;
};

static int rest_volume_usage(void *arg, const char *volume, const char *path,
			     const struct journal_state *s)
{
	struct rest_usage *u = arg;

	(void)volume;
	if (!path[0])
		return 0;   /* the volume root is not one of its paths */
	u->paths++;
	if (S_ISREG(s->mode))
		u->bytes += s->size;
	return 0;
}

static int rest_volume_created(void *arg, const struct journal_change *c)
{
	*(int64_t *)arg = c->wall_ns;
	return 0;
}

int rest_volume_json(struct journal *j, const char *name, json_t **out)
{
	struct journal_filter f = { .volume = name,
				    .op = JOURNAL_VOLUME_CREATE, .limit = 1 };
	struct journal_state st = { 0 };
	struct rest_usage u = { 0 };
	int64_t created = 0, oldest = 0;
	uint64_t mounts = 0, kept = 0, n_kept = 0;
	bool have_mounts;
	int err;

	*out = NULL;
	err = journal_lookup(j, name, "", &st);
	if (!err && !S_ISDIR(st.mode))
		err = -ENOENT;   /* removed, or never a volume */
	if (!err)
		err = journal_log(j, &f, rest_volume_created, &created);
	if (!err)
		err = journal_foreach_state(j, name, rest_volume_usage, &u);
	if (err)
		goto out;
	have_mounts = journal_mount_count(j, name, &mounts) == 0;
	err = journal_versions_stats(j, name, &kept, &n_kept, &oldest);
	if (err)
		goto out;
	*out = json_pack("{s:s,s:o,s:I,s:o,s:I,s:I,s:o,s:{s:I,s:I,s:o}}",
			 "name", name,
			 "created", rest_time_json(created),
			 "created_ns", (json_int_t)created,
			 "mtime", rest_time_json(st.mtime_ns),
			 "paths", (json_int_t)u.paths,
			 "bytes", (json_int_t)u.bytes,
			 "mounts", have_mounts ?
			 json_integer((json_int_t)mounts) : json_null(),
			 "versions", "bytes", (json_int_t)kept,
			 "count", (json_int_t)n_kept,
			 "oldest", rest_time_json(oldest));
	err = *out ? 0 : -ENOMEM;
out:
	journal_state_release(&st);
	return err;
}

int rest_volumes_json(struct journal *j, json_t **out)
{
	json_t *names = json_array(), *arr = json_array(), *v;
	size_t i;
	int err = names && arr ? 0 : -ENOMEM;

	*out = NULL;
	/* Names first: each volume's details are further queries, which
	 * should not run inside the walk's open statement. */
	if (!err)
		err = journal_foreach_volume(j, rest_volume_name, names);
	json_array_foreach(names, i, v) {
		json_t *o = NULL;

		if (err)
			break;
		err = rest_volume_json(j, json_string_value(v), &o);
		if (err == -ENOENT)
			err = 0;   /* removed in between */
		else if (!err && json_array_append_new(arr, o))
			err = -ENOMEM;
	}
	json_decref(names);
	if (err) {
		json_decref(arr);
		return err;
	}
	*out = arr;
	return 0;
}

/* ---- conflicts ------------------------------------------------------- */

static json_t *rest_conflict_version_json(const struct journal_conflict_version *v)
{
	return json_pack("{s:s,s:I,s:I,s:o,s:I,s:s,s:I,s:I,s:o,s:b,s:s?}",
			 "origin", v->ref.origin, "seq", (json_int_t)v->ref.seq,
			 "lamport", (json_int_t)v->lamport,
			 "time", rest_time_json(v->wall_ns),
			 "time_ns", (json_int_t)v->wall_ns,
			 "op", journal_op_name(v->op),
			 "mode", (json_int_t)v->mode, "size", (json_int_t)v->size,
			 "hash", rest_hash_json(v->has_hash, v->hash),
			 "winner", v->winner, "copy", v->copy[0] ? v->copy : NULL);
}

static json_t *rest_conflict_json(const struct journal_conflict *c)
{
	json_t *versions = json_array(), *merge = json_null();

	for (size_t i = 0; versions && i < c->n_versions; i++)
		json_array_append_new(versions,
				      rest_conflict_version_json(&c->versions[i]));
	if (c->resolved)
		merge = json_pack("{s:s,s:I,s:o}", "origin", c->merge.origin,
				  "seq", (json_int_t)c->merge.seq, "time",
				  rest_time_json(c->merge_wall_ns));
	return json_pack("{s:s,s:s,s:b,s:o,s:o}", "volume", c->volume,
			 "path", c->path, "resolved", c->resolved,
			 "merge", merge, "versions", versions);
}

static int rest_conflict_one(void *arg, const struct journal_conflict *c)
{
	json_t *arr = arg;

	/* Resolved ones come oldest first, then the open ones: keep the
	 * tail, which holds what someone is looking for. */
	if (json_array_size(arr) == REST_CONFLICTS_MAX)
		json_array_remove(arr, 0);
	return json_array_append_new(arr, rest_conflict_json(c)) ? -ENOMEM : 0;
}

int rest_conflicts_json(struct journal *j, const char *volume, json_t **out)
{
	json_t *arr = json_array();
	int err = arr ? journal_conflicts(j, volume, rest_conflict_one, arr) :
		  -ENOMEM;

	*out = NULL;
	if (err) {
		json_decref(arr);
		return err;
	}
	*out = arr;
	return 0;
}

/* ---- metrics --------------------------------------------------------- */

struct rest_text {
	char *p;
	size_t len, cap;
	int err;
};

static void rest_printf(struct rest_text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void rest_printf(struct rest_text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->err)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->err = -EINVAL;
			return;
		}
		if ((size_t)n < t->cap - t->len)
			break;
		if (t->cap * 2 > REST_METRICS_MAX) {
			t->err = -E2BIG;
			return;
		}
		char *np = realloc(t->p, t->cap * 2);

		if (!np) {
			t->err = -ENOMEM;
			return;
		}
		t->p = np;
		t->cap *= 2;
	}
	t->len += (size_t)n;
}

static void rest_metric_head(struct rest_text *t, const char *name,
			     const char *type, const char *help)
{
	rest_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void rest_metric(struct rest_text *t, const char *name,
			const char *type, const char *help, uint64_t v)
{
	rest_metric_head(t, name, type, help);
	rest_printf(t, "%s %" PRIu64 "\n", name, v);
}

/* A label value per the exposition format: \\, \" and \n escaped. */
static void rest_label(const char *s, char *out, size_t cap)
{
	size_t n = 0;

	for (; *s && n + 3 < cap; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			out[n++] = '\\';
			out[n++] = *s == '\n' ? 'n' : *s;
		} else {
			out[n++] = *s;
		}
	}
	out[n] = '\0';
}

enum rest_peer_field {
	PEER_CONNECTED, PEER_BYTES_IN, PEER_BYTES_OUT, PEER_LAG_ENTRIES,
	PEER_LAG_BYTES, PEER_BEHIND_ENTRIES, PEER_LAST_SEEN, PEER_SKEWED,
	PEER_REFUSED,
};

static uint64_t rest_peer_value(const struct api_peer *p,
				enum rest_peer_field f)
{
	switch (f) {
	case PEER_CONNECTED: return p->connected;
	case PEER_BYTES_IN: return p->bytes_in;
	case PEER_BYTES_OUT: return p->bytes_out;
	case PEER_LAG_ENTRIES: return p->lag_entries;
	case PEER_LAG_BYTES: return p->lag_bytes;
	case PEER_BEHIND_ENTRIES: return p->behind_entries;
	case PEER_LAST_SEEN: return p->last_seen_ns > 0 ?
				    (uint64_t)(p->last_seen_ns / 1000000000) : 0;
	case PEER_SKEWED: return p->clock_skewed;
	case PEER_REFUSED: return p->entries_refused;
	}
	return 0;
}

static void rest_peer_metrics(struct rest_text *t,
			      const struct api_snapshot *snap)
{
	static const struct {
		const char *name, *type, *help;
		enum rest_peer_field field;
	} m[] = {
		{ "krakenfs_peer_connected", "gauge",
		  "1 while the peer session is up and the peer answers "
		  "(something heard within 10 s).", PEER_CONNECTED },
		{ "krakenfs_peer_last_seen_seconds", "gauge",
		  "Wall time the peer was last heard from, 0 never.",
		  PEER_LAST_SEEN },
		{ "krakenfs_peer_bytes_in_total", "counter",
		  "Bytes received from the peer.", PEER_BYTES_IN },
		{ "krakenfs_peer_bytes_out_total", "counter",
		  "Bytes sent to the peer.", PEER_BYTES_OUT },
		{ "krakenfs_peer_lag_entries", "gauge",
		  "Journal entries we hold that the peer has not acknowledged.",
		  PEER_LAG_ENTRIES },
		{ "krakenfs_peer_lag_bytes", "gauge",
		  "Content size of the entries the peer lacks (measured on "
		  "the 64 origins it lags on that changed last, estimated "
		  "for any others).", PEER_LAG_BYTES },
		{ "krakenfs_peer_behind_entries", "gauge",
		  "Journal entries the peer holds that we lack.",
		  PEER_BEHIND_ENTRIES },
		{ "krakenfs_peer_clock_skewed", "gauge",
		  "1 while the peer's clock is off ours by more than "
		  "sync.max_clock_skew.", PEER_SKEWED },
		{ "krakenfs_peer_entries_refused_total", "counter",
		  "Entries from the peer that were refused: a forged or "
		  "broken chain, another node's entries without signatures, "
		  "a hostile path, or a clock value out of bounds.",
		  PEER_REFUSED },
	};
	char label[2 * sizeof(snap->peers[0].id)];

	for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
		rest_metric_head(t, m[k].name, m[k].type, m[k].help);
		for (size_t i = 0; i < snap->n_peers; i++) {
			struct api_peer p = snap->peers[i];

			p.id[sizeof(p.id) - 1] = '\0';
			rest_label(p.id, label, sizeof(label));
			rest_printf(t, "%s{peer=\"%s\"} %" PRIu64 "\n",
				    m[k].name, label,
				    rest_peer_value(&p, m[k].field));
		}
	}
	rest_metric_head(t, "krakenfs_peer_clock_offset_seconds", "gauge",
			 "The peer's wall clock minus ours, once measured.");
	for (size_t i = 0; i < snap->n_peers; i++) {
		struct api_peer p = snap->peers[i];

		if (!p.clock_known)
			continue;
		p.id[sizeof(p.id) - 1] = '\0';
		rest_label(p.id, label, sizeof(label));
		rest_printf(t, "krakenfs_peer_clock_offset_seconds{peer=\"%s\"} "
			    "%.3f\n", label, (double)p.clock_offset_ns / 1e9);
	}
}

/*
 * The largest value bucket IDX of a struct hist holds, from the layout
 * hist.h describes: one bucket per value below 16, then 16 buckets per
 * power of two.
 */
static uint64_t rest_hist_edge(unsigned idx)
{
	unsigned octave, step;

	if (idx < 16)
		return idx;
	octave = (idx - 16) / 16;     /* values in [16 << octave, 32 << octave) */
	step = (idx - 16) % 16;
	return ((uint64_t)(17 + step) << octave) - 1;
}

static void rest_histogram(struct rest_text *t, const char *name,
			   const char *help, const struct hist *h)
{
	/* Microseconds; 100 us to 10 s covers a commit and a large apply. */
	static const uint64_t le_us[] = {
		100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
		100000, 250000, 1000000, 2500000, 10000000,
	};
	unsigned idx = 0;
	uint64_t below = 0;

	rest_metric_head(t, name, "histogram", help);
	/* A bucket counts under a boundary once its whole range is below
	 * it: the count may lag by one bucket (about 6%), never overstate. */
	for (size_t k = 0; k < sizeof(le_us) / sizeof(le_us[0]); k++) {
		for (; idx < HIST_BUCKETS && rest_hist_edge(idx) <= le_us[k];
		     idx++)
			below += h->buckets[idx];
		rest_printf(t, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
			    (double)le_us[k] / 1e6, below);
	}
	rest_printf(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, h->count);
	rest_printf(t, "%s_sum %.6f\n", name, (double)h->sum / 1e6);
	rest_printf(t, "%s_count %" PRIu64 "\n", name, h->count);
}

static void rest_compaction_metrics(struct rest_text *t,
				    const struct api_snapshot *snap)
{
	static const char ex[] = "krakenfs_state_exchanges_total";

	rest_metric(t, "krakenfs_journal_compacted_before_seconds", "gauge",
		    "History before this Unix time may be compacted "
		    "(0: never compacted).",
		    snap->compacted_before_ns > 0 ?
		    (uint64_t)(snap->compacted_before_ns / 1000000000) : 0);
	rest_metric(t, "krakenfs_compacted_changes_total", "counter",
		    "Superseded versions removed by compaction since the "
		    "agent started.", snap->compacted_changes);
	rest_metric(t, "krakenfs_compacted_tombstones_total", "counter",
		    "Settled deletes removed by compaction since the agent "
		    "started.", snap->compacted_tombstones);
	rest_metric(t, "krakenfs_compacted_contents_total", "counter",
		    "Chunk lists removed by compaction since the agent "
		    "started.", snap->compacted_contents);
	/* One series per direction: served to a peer that asked below our
	 * floor, applied when we asked below a peer's. */
	rest_metric_head(t, ex, "counter",
			 "State exchanges since the agent started.");
	rest_printf(t, "%s{direction=\"served\"} %" PRIu64 "\n", ex,
		    snap->exchanges_served);
	rest_printf(t, "%s{direction=\"applied\"} %" PRIu64 "\n", ex,
		    snap->exchanges_applied);
}

/* What the version store keeps, from the journal (J may be NULL). */
static void rest_versions_metrics(struct rest_text *t, struct journal *j)
{
	uint64_t bytes = 0, count = 0;
	int64_t oldest = 0;

	if (j)
		journal_versions_stats(j, NULL, &bytes, &count, &oldest);
	rest_metric(t, "krakenfs_versions_bytes", "gauge",
		    "Bytes of replaced and deleted content kept restorable "
		    "(versions.keep, versions.max_bytes).", bytes);
	rest_metric(t, "krakenfs_versions_kept", "gauge",
		    "Contents kept restorable.", count);
	rest_metric(t, "krakenfs_versions_oldest_seconds", "gauge",
		    "Unix time the oldest content kept was replaced (0: none "
		    "kept).", oldest > 0 ? (uint64_t)(oldest / 1000000000) : 0);
}

int rest_metrics_text(const struct api_snapshot *snap, struct journal *j,
		      int64_t uptime_ns, char **text, size_t *len)
{
	struct rest_text t = { .cap = 8192 };

	*text = NULL;
	*len = 0;
	t.p = malloc(t.cap);
	if (!t.p)
		return -ENOMEM;
	rest_metric(&t, "krakenfs_changes_recorded_total", "counter",
		    "Local changes recorded since the agent started.",
		    snap->changes_recorded);
	rest_metric(&t, "krakenfs_changes_applied_total", "counter",
		    "Remote versions put on disk since the agent started.",
		    snap->changes_applied);
	rest_metric(&t, "krakenfs_conflicts_total", "counter",
		    "Conflicts resolved since the agent started.",
		    snap->conflicts);
	rest_metric(&t, "krakenfs_jobs", "gauge",
		    "Remote versions waiting to be applied.", snap->jobs);
	rest_metric(&t, "krakenfs_jobs_stuck", "gauge",
		    "Versions that failed to apply again and again (listed in "
		    "/v1/status with their reason).", snap->jobs_stuck);
	rest_metric(&t, "krakenfs_jobs_bytes", "gauge",
		    "Size of the versions waiting to be applied.",
		    snap->jobs_bytes);
	rest_metric(&t, "krakenfs_journal_bytes", "gauge",
		    "Size of the journal's database file.", snap->journal_bytes);
	rest_metric(&t, "krakenfs_journal_wal_bytes", "gauge",
		    "Size of the journal's write-ahead log.", snap->wal_bytes);
	rest_compaction_metrics(&t, snap);
	rest_versions_metrics(&t, j);
	rest_metric(&t, "krakenfs_scrub_bytes_total", "counter",
		    "Bytes of files read back and checked by the scrub since "
		    "the agent started.", snap->scrub_bytes);
	rest_metric(&t, "krakenfs_scrub_damaged_total", "counter",
		    "Files the scrub found damaged (bytes that do not match "
		    "their hash under unchanged metadata) since start.",
		    snap->scrub_damaged);
	rest_metric(&t, "krakenfs_repaired_total", "counter",
		    "Damaged files made again from peers since start.",
		    snap->scrub_repaired);
	rest_metric(&t, "krakenfs_damaged_chunks_total", "counter",
		    "Chunks reused from this disk for a new version that did "
		    "not match their hash (fetched from peers instead).",
		    snap->damaged_chunks);
	rest_metric(&t, "krakenfs_uptime_seconds", "gauge",
		    "Seconds since the API started.",
		    (uint64_t)(uptime_ns / 1000000000));
	rest_peer_metrics(&t, snap);
	rest_histogram(&t, "krakenfs_commit_latency_seconds",
		       "From a file event to its journal commit.",
		       &snap->commit_latency_us);
	rest_histogram(&t, "krakenfs_apply_latency_seconds",
		       "From a remote entry's arrival to its file in place.",
		       &snap->apply_latency_us);
	if (t.err) {
		free(t.p);
		return t.err;
	}
	*text = t.p;
	*len = t.len;
	return 0;
}
