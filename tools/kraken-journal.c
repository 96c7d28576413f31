/*
 * kraken-journal: read-only questions to a node's journal.
 *
 *   log      the audit log, newest first, with filters
 *   history  every version of one path with its base links
 *   status   node identity, peers, version vector, counts
 *   conflicts  concurrent versions and where each one went
 *   verify   re-hash the volumes and compare them with the journal;
 *            with --chain check the signed hash chains instead
 *            (kraken-journal-chain.c)
 *
 * It opens the database read-only (WAL lets it run beside the agent) and
 * goes through the journal module's queries; it never runs SQL itself.
 * The agent compacts history older than journal.retention, so log and
 * history say when theirs is incomplete: in the table a line before it,
 * with --json a note on stderr, because stdout holds only changes there.
 * Table output is for people (control characters in names are escaped);
 * --json prints one object per line for scripts.
 */
#include "config.h"
#include "content.h"
#include "err.h"
#include "journal.h"
#include "kraken-journal.h"
#include "loop.h"
#include "path.h"
#include "timefmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_JOURNAL "/var/lib/krakenfs/journal.db"

struct cli {
	const char *db;
	const char *config;
	bool json;
	struct journal *journal;
	struct config *cfg;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: kraken-journal [--db PATH | --config FILE] [--json] COMMAND [ARGS]\n"
		"\n"
		"Commands:\n"
		"  log [FILTERS]          changes, newest first\n"
		"      --volume NAME      only this volume\n"
		"      --path PREFIX      only paths starting with PREFIX\n"
		"      --origin NODE      only changes made on NODE (id or id@epoch)\n"
		"      --since TIME       at or after TIME\n"
		"      --until TIME       before TIME\n"
		"      --op OP            put, mkdir, symlink, delete, meta,\n"
		"                         volume-create, volume-remove\n"
		"      --limit N          at most N changes\n"
		"      --reverse          oldest first\n"
		"  history VOLUME PATH    every version of one path, with bases\n"
		"  versions VOLUME PATH   every version of one path and whether\n"
		"                         its content is live, kept (replaced\n"
		"                         or deleted by a peer, versions.keep),\n"
		"                         on which peers, or gone; the peers are\n"
		"                         asked through the running agent that\n"
		"                         --config names\n"
		"  restore VOLUME [PATH] --at TIME --to DEST\n"
		"                         write PATH as it was at TIME to DEST,\n"
		"                         a new file checked against its hash;\n"
		"                         without PATH the whole volume (files,\n"
		"                         directories, symlinks, modes, owners,\n"
		"                         mtimes) to DEST, a new directory; exit\n"
		"                         1 when something cannot be had;\n"
		"                         with --config, content only peers\n"
		"                         keep is fetched by the running agent\n"
		"  status                 node, peers, version vector, counts, stuck jobs,\n"
		"                         and before when history is compacted\n"
		"  conflicts [--volume V] concurrent versions: which was kept,\n"
		"                         where each other one was copied\n"
		"  verify [--root DIR]    re-hash the volumes and compare with the\n"
		"                         journal; exit 1 on any mismatch\n"
		"  verify --chain [--ca FILE]\n"
		"                         check each origin's signed hash chain:\n"
		"                         every held change is the one its origin\n"
		"                         signed, none inserted, altered or\n"
		"                         reordered; exit 1 on any problem.\n"
		"      --ca FILE          the cluster CA (default: sync.tls.ca_file\n"
		"                         of the config, else %s,\n"
		"                         if it exists); without one only the\n"
		"                         chains are checked\n"
		"\n"
		"TIME is 2026-11-26T10:00:00Z, '2026-11-26 10:00:00' (UTC),\n"
		"a fraction and an offset optional (10:00:00.5+01:00),\n"
		"2026-11-26, @UNIXSECONDS[.NANOS] (the journal's 'at'), or an\n"
		"age like 90s, 15m, 2h, 3d: as the REST API takes it.\n"
		"\n"
		"The agent compacts history older than journal.retention once\n"
		"every peer holds it: superseded versions and settled deletes\n"
		"go.  log and history then print 'history before TIME UTC\n"
		"compacted' (on stderr with --json).\n"
		"\n"
		"Options:\n"
		"  --db PATH      journal database (default: journal.path of the\n"
		"                 config, else %s)\n"
		"  --config FILE  read journal.path, volume.root_path and\n"
		"                 sync.tls.ca_file from FILE\n"
		"  --json         one JSON object per line (verify --chain: one\n"
		"                 object)\n"
		"  -h, --help     this text\n"
		"\n"
		"Exit status: 0 success; 1 verify found a problem (or history\n"
		"found no such path); 2 bad usage, or the journal or CA cannot\n"
		"be read.\n",
		KJ_DEFAULT_CA, DEFAULT_JOURNAL);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "kraken-journal: MESSAGE" and returns the usage-error status. */
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("kraken-journal: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 2;
}

/* ---- time ------------------------------------------------------------ */

int kj_parse_time(const char *s, int64_t *out_ns)
{
	return timefmt_parse(s, loop_wall_ns(), out_ns);
}

static void format_time(int64_t ns, char *out, size_t cap, bool iso)
{
	time_t sec = (time_t)(ns / 1000000000);
	struct tm tm;
	size_t n;

	gmtime_r(&sec, &tm);
	n = strftime(out, cap, iso ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S",
		     &tm);
	if (iso)
		snprintf(out + n, cap - n, ".%09lldZ", (long long)(ns % 1000000000));
	else
		snprintf(out + n, cap - n, ".%03lld", (long long)(ns % 1000000000 /
							       1000000));
}

/* ---- output ---------------------------------------------------------- */

/* Names may hold newlines and other control bytes: show them escaped. */
static void print_escaped(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\\')
			fputs("\\\\", stdout);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static void human_size(uint64_t v, char *out, size_t cap)
{
	static const char units[] = "BKMGTP";
	double d = (double)v;
	int u = 0;

	while (d >= 1024 && u < 5) {
		d /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, cap, "%llu", (unsigned long long)v);
	else
		snprintf(out, cap, "%.1f%c", d, units[u]);
}

static json_t *change_json(const struct journal_change *c)
{
	char hex[CONTENT_HEX_LEN], when[64];
	json_t *bases = json_array();
	json_t *o;

	for (size_t i = 0; i < c->n_bases; i++)
		json_array_append_new(bases, json_pack("{s:s,s:I}",
			"origin", c->bases[i].origin,
			"seq", (json_int_t)c->bases[i].seq));
	format_time(c->wall_ns, when, sizeof(when), true);
	o = json_pack("{s:s,s:I,s:I,s:s,s:I,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:o}",
		      "origin", c->ref.origin, "seq", (json_int_t)c->ref.seq,
		      "lamport", (json_int_t)c->lamport, "time", when,
		      "time_ns", (json_int_t)c->wall_ns,
		      "volume", c->volume, "path", c->path,
		      "op", journal_op_name(c->op),
		      "size", (json_int_t)c->size, "mode", (json_int_t)c->mode,
		      "uid", (json_int_t)c->uid, "gid", (json_int_t)c->gid,
		      "mtime_ns", (json_int_t)c->mtime_ns, "base", bases);
	if (!o)
		return NULL;
	if (c->has_hash) {
		content_hex(c->hash, hex);
		json_object_set_new(o, "hash", json_string(hex));
	} else {
		json_object_set_new(o, "hash", json_null());
	}
	json_object_set_new(o, "target", c->target ? json_string(c->target) :
			    json_null());
	return o;
}

static int print_json_line(json_t *o)
{
	char *text;

	if (!o)
		return -EINVAL;   /* invalid UTF-8 never reaches the journal */
	text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(o);
	if (!text)
		return -ENOMEM;
	puts(text);
	free(text);
	return 0;
}

static void print_change_row(const struct journal_change *c, bool bases)
{
	char when[64], size[32], hex[CONTENT_HEX_LEN] = "-";

	format_time(c->wall_ns, when, sizeof(when), false);
	human_size(c->size, size, sizeof(size));
	if (c->has_hash) {
		content_hex(c->hash, hex);
		hex[12] = '\0';
	}
	printf("%-23s  %-28s %6" PRIu64 " %7" PRIu64 "  %-13s %7s  %06o  %-12s  ",
	       when, c->ref.origin, c->ref.seq, c->lamport,
	       journal_op_name(c->op), c->op == JOURNAL_PUT ||
	       c->op == JOURNAL_META ? size : "-", c->mode, hex);
	print_escaped(c->volume);
	if (c->path[0]) {
		putchar('/');
		print_escaped(c->path);
	}
	if (c->target) {
		fputs(" -> ", stdout);
		print_escaped(c->target);
	}
	for (size_t i = 0; bases && i < c->n_bases; i++)
		printf("%s%s:%" PRIu64, i ? ", " : "  (base ",
		       c->bases[i].origin, c->bases[i].seq);
	if (bases && c->n_bases)
		putchar(')');
	putchar('\n');
}

static void print_header(void)
{
	printf("%-23s  %-28s %6s %7s  %-13s %7s  %-6s  %-12s  %s\n", "TIME (UTC)",
	       "ORIGIN", "SEQ", "LAMPORT", "OP", "SIZE", "MODE", "HASH",
	       "VOLUME/PATH");
}

/*
 * Says that history before the compaction horizon may be gone, unless
 * the question starts after it (SINCE_NS): a missing old version then
 * has an answer instead of looking like a bug.
 */
static int print_compacted(struct cli *cli, int64_t since_ns)
{
	char when[64];
	int64_t before;
	int err = journal_compacted_before(cli->journal, &before);

	if (err || before == 0 || (since_ns && since_ns >= before))
		return err;
	format_time(before, when, sizeof(when), false);
	if (cli->json)
		fprintf(stderr, "kraken-journal: history before %.19s UTC "
			"compacted\n", when);
	else
		printf("history before %.19s UTC compacted\n", when);
	return 0;
}

struct printer {
	bool json;
	bool bases;
	uint64_t count;
};

static int print_change(void *arg, const struct journal_change *c)
{
	struct printer *p = arg;

	p->count++;
	if (p->json)
		return print_json_line(change_json(c));
	print_change_row(c, p->bases);
	return 0;
}

/* ---- commands -------------------------------------------------------- */

static int parse_limit(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v <= 0)
		return -EINVAL;
	*out = v;
	return 0;
}

static int cmd_log(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "volume", required_argument, NULL, 'v' },
		{ "path", required_argument, NULL, 'p' },
		{ "origin", required_argument, NULL, 'o' },
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "op", required_argument, NULL, 'O' },
		{ "limit", required_argument, NULL, 'n' },
		{ "reverse", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct journal_filter f = { 0 };
	struct printer p = { .json = cli->json };
	int c, err;

	optind = 1;
	while ((c = getopt_long(argc, argv, "n:h", opts, NULL)) != -1) {
		switch (c) {
		case 'v': f.volume = optarg; break;
		case 'p': f.path_prefix = optarg; break;
		case 'o': f.origin = optarg; break;
		case 's':
			if (kj_parse_time(optarg, &f.since_ns))
				return fail("--since: cannot read time '%s'", optarg);
			break;
		case 'u':
			if (kj_parse_time(optarg, &f.until_ns))
				return fail("--until: cannot read time '%s'", optarg);
			break;
		case 'O':
			f.op = journal_op_parse(optarg);
			if (!f.op)
				return fail("--op: unknown operation '%s' (put, "
					    "mkdir, symlink, delete, meta, "
					    "volume-create, volume-remove)", optarg);
			break;
		case 'n':
			if (parse_limit(optarg, &f.limit))
				return fail("--limit: expected a positive "
					    "number, got '%s'", optarg);
			break;
		case 'r': f.oldest_first = true; break;
		case 'h': usage(stdout); return 0;
		default: return 2;
		}
	}
	if (optind < argc)
		return fail("log: unexpected argument '%s'", argv[optind]);
	err = print_compacted(cli, f.since_ns);
	if (err)
		return fail("log: %s", kr_strerror(err));
	if (!cli->json)
		print_header();
	err = journal_log(cli->journal, &f, print_change, &p);
	if (err)
		return fail("log: %s", kr_strerror(err));
	if (!cli->json && p.count == 0)
		printf("(no changes match)\n");
	return 0;
}

static int cmd_history(struct cli *cli, int argc, char **argv)
{
	struct printer p = { .json = cli->json, .bases = true };
	const char *path;
	int err;

	if (argc != 3)
		return fail("%s", "history: expected VOLUME PATH (use '' for the "
			    "volume itself)");
	path = argv[2];
	while (path[0] == '/')
		path++;   /* "/a/b" is how people write a path in a volume */
	err = print_compacted(cli, 0);
	if (err)
		return fail("history: %s", kr_strerror(err));
	if (!cli->json)
		print_header();
	err = journal_history(cli->journal, argv[1], path, print_change, &p);
	if (err)
		return fail("history: %s", kr_strerror(err));
	if (p.count == 0) {
		fprintf(stderr, "kraken-journal: no history for %s/%s\n",
			argv[1], path);
		return 1;
	}
	return 0;
}

static int collect_vector(void *arg, const char *origin, uint64_t max_seq)
{
	json_object_set_new(arg, origin, json_integer((json_int_t)max_seq));
	return 0;
}

/* The agent's last peer report (src/agent/report.h): the document, or
 * NULL when there is none this tool can read (said on stderr). */
static json_t *peer_report(struct cli *cli)
{
	char *text = NULL;
	json_t *doc;

	if (journal_meta_get(cli->journal, "peer_report", &text) != 0)
		return NULL;
	doc = json_loads(text, 0, NULL);
	free(text);
	if (doc && json_integer_value(json_object_get(doc, "format")) == 1 &&
	    json_is_array(json_object_get(doc, "peers")))
		return doc;
	fprintf(stderr, "kraken-journal: the agent's peer report is in a "
		"format this tool does not read (a newer agent?)\n");
	json_decref(doc);
	return NULL;
}

/* The peers of the report, a new reference (an empty array when none). */
static json_t *peers_json(json_t *report)
{
	json_t *peers = json_object_get(report, "peers");

	return peers ? json_incref(peers) : json_array();
}

static void print_peers(json_t *peers)
{
	size_t i;
	json_t *p;

	if (json_array_size(peers) == 0)
		return;
	printf("peers:\n  %-16s %-22s %-9s %-20s %8s %10s %8s %12s  %s\n",
	       "NODE", "ADDRESS", "STATE", "LAST SEEN (UTC)", "LAG",
	       "LAG BYTES", "BEHIND", "BYTES IN", "CLOCK");
	json_array_foreach(peers, i, p) {
		char when[64] = "never", clock[48] = "?";
		json_int_t seen = json_integer_value(json_object_get(p,
							"last_seen_ns"));
		json_t *off = json_object_get(p, "clock_offset_ms");

		if (seen)
			format_time(seen, when, sizeof(when), false);
		if (json_is_integer(off))
			snprintf(clock, sizeof(clock), "%+.1f s%s",
				 (double)json_integer_value(off) / 1000,
				 json_is_true(json_object_get(p, "clock_skewed")) ?
				 " (skewed)" : "");
		printf("  %-16s %-22s %-9s %-20.19s %8lld %10lld %8lld %12lld  "
		       "%s\n", json_string_value(json_object_get(p, "node_id")),
		       json_string_value(json_object_get(p, "address")),
		       json_is_true(json_object_get(p, "connected")) ?
		       "connected" : "down", when,
		       (long long)json_integer_value(json_object_get(p,
							"lag_entries")),
		       (long long)json_integer_value(json_object_get(p,
							"lag_bytes")),
		       (long long)json_integer_value(json_object_get(p,
							"behind_entries")),
		       (long long)json_integer_value(json_object_get(p,
							"bytes_in")), clock);
	}
}

/* The compaction horizon for people ("never" when there is none) and
 * for --json (RFC 3339, or NULL for null). */
static void compacted_text(int64_t before, char *human, size_t hcap,
			   char *iso, size_t icap, const char **json)
{
	char when[64];

	*json = NULL;
	snprintf(human, hcap, "never");
	if (before == 0)
		return;
	format_time(before, when, sizeof(when), false);
	snprintf(human, hcap, "%.19s UTC", when);
	format_time(before, iso, icap, true);
	*json = iso;
}

/* Stuck jobs shown by status at most (the count says if there are more). */
#define STATUS_STUCK_MAX 20

static int stuck_collect(void *arg, const struct journal_stuck_job *s)
{
	char since[64], next[64];
	json_t *o;

	format_time(s->since_ns, since, sizeof(since), true);
	format_time(s->retry_ns, next, sizeof(next), true);
	o = json_pack("{s:s,s:s,s:s?,s:s,s:I,s:s,s:s}", "volume", s->volume,
		      "path", s->path, "copy_of", s->copy_of, "reason",
		      s->reason ? s->reason : "", "failures",
		      (json_int_t)s->failures, "since", since,
		      "next_attempt", next);
	return o && json_array_append_new(arg, o) == 0 ? 0 : -ENOMEM;
}

/* Jobs that keep failing, with why: what a user must look at. */
static void print_stuck(json_t *stuck, uint64_t n)
{
	size_t i;
	json_t *o;

	if (!n)
		return;
	printf("stuck (failing again and again, retried every few minutes): "
	       "%llu\n", (unsigned long long)n);
	json_array_foreach(stuck, i, o) {
		printf("  ");
		print_escaped(json_string_value(json_object_get(o, "volume")));
		putchar('/');
		print_escaped(json_string_value(json_object_get(o, "path")));
		printf(": %s (%lld failures since %s)\n",
		       json_string_value(json_object_get(o, "reason")),
		       (long long)json_integer_value(json_object_get(o,
		       "failures")), json_string_value(json_object_get(o,
		       "since")));
	}
	if (n > json_array_size(stuck))
		printf("  ... and %llu more\n",
		       (unsigned long long)(n - json_array_size(stuck)));
}

static int cmd_status(struct cli *cli)
{
	struct journal_info info;
	json_t *vec = json_object(), *stuck = json_array();
	const char *origin, *compacted_json;
	char compacted[64], compacted_iso[64];
	json_t *v;
	uint64_t jobs = 0, n_stuck = 0;
	int64_t before = 0;
	int err = vec && stuck ? journal_info(cli->journal, &info) : -ENOMEM;
	json_t *report = peer_report(cli), *seq;
	int rc;

	if (!err)
		err = journal_vector(cli->journal, collect_vector, vec);
	if (!err)
		err = journal_job_counts(cli->journal, NULL, &jobs, &n_stuck);
	if (!err)
		err = journal_jobs_stuck(cli->journal, STATUS_STUCK_MAX,
					 stuck_collect, stuck);
	if (!err)
		err = journal_compacted_before(cli->journal, &before);
	if (err) {
		json_decref(vec);
		json_decref(stuck);
		json_decref(report);
		return fail("status: %s", kr_strerror(err));
	}
	compacted_text(before, compacted, sizeof(compacted), compacted_iso,
		       sizeof(compacted_iso), &compacted_json);
	/* Which report the peers are from: a test that waits for a newer
	 * one knows the figures describe the moment after its action. */
	seq = json_object_get(report, "seq");
	if (cli->json) {
		rc = print_json_line(json_pack("{s:s,s:s,s:I,s:I,s:o,s:I,s:I,"
			"s:I,s:I,s:I,s:i,s:o,s:O?,s:I,s:I,s:o,s:I,s:I,s:s?}",
			"node_id", info.node_id,
			"origin", info.origin, "seq", (json_int_t)info.own_seq,
			"lamport", (json_int_t)info.lamport, "version_vector", vec,
			"changes", (json_int_t)info.n_changes,
			"paths", (json_int_t)info.n_paths,
			"volumes", (json_int_t)info.n_volumes,
			"contents", (json_int_t)info.n_contents,
			"chunks", (json_int_t)info.n_chunks,
			"schema_version", info.schema_version,
			"peers", peers_json(report), "peer_report_seq", seq,
			"jobs", (json_int_t)jobs,
			"jobs_stuck", (json_int_t)n_stuck,
			"stuck_jobs", stuck,
			"journal_bytes", (json_int_t)info.journal_bytes,
			"wal_bytes", (json_int_t)info.wal_bytes,
			"compacted_before", compacted_json)) ? 1 : 0;
		json_decref(report);
		return rc;
	}
	printf("node:      %s\norigin:    %s (last seq %" PRIu64 ")\n"
	       "lamport:   %" PRIu64 "\nchanges:   %" PRIu64 "\n"
	       "volumes:   %" PRIu64 "\npaths:     %" PRIu64 "\n"
	       "contents:  %" PRIu64 " (%" PRIu64 " chunks)\nschema:    %d\n"
	       "journal:   %" PRIu64 " bytes (WAL %" PRIu64 " bytes)\n"
	       "compacted before: %s\n"
	       "version vector:\n", info.node_id, info.origin, info.own_seq,
	       info.lamport, info.n_changes, info.n_volumes, info.n_paths,
	       info.n_contents, info.n_chunks, info.schema_version,
	       info.journal_bytes, info.wal_bytes, compacted);
	json_object_foreach(vec, origin, v)
		printf("  %-32s %lld\n", origin, (long long)json_integer_value(v));
	json_decref(vec);
	printf("waiting to apply: %llu\n", (unsigned long long)jobs);
	print_stuck(stuck, n_stuck);
	json_decref(stuck);
	print_peers(json_object_get(report, "peers"));
	json_decref(report);
	return 0;
}

/* ---- conflicts ------------------------------------------------------- */

static json_t *conflict_json(const struct journal_conflict *c)
{
	json_t *versions = json_array();
	json_t *o;

	for (size_t i = 0; i < c->n_versions; i++) {
		const struct journal_conflict_version *v = &c->versions[i];
		char hex[CONTENT_HEX_LEN], when[64];

		content_hex(v->hash, hex);
		format_time(v->wall_ns, when, sizeof(when), true);
		json_array_append_new(versions, json_pack(
			"{s:s,s:I,s:I,s:s,s:s,s:I,s:s?,s:b,s:s?}",
			"origin", v->ref.origin, "seq", (json_int_t)v->ref.seq,
			"lamport", (json_int_t)v->lamport, "time", when,
			"op", journal_op_name(v->op), "size", (json_int_t)v->size,
			"hash", v->has_hash ? hex : NULL, "winner", v->winner,
			"copy", v->copy[0] ? v->copy : NULL));
	}
	o = json_pack("{s:s,s:s,s:b,s:o}", "volume", c->volume, "path", c->path,
		      "resolved", c->resolved, "versions", versions);
	if (o && c->resolved)
		json_object_set_new(o, "merge", json_pack("{s:s,s:I}", "origin",
				    c->merge.origin, "seq",
				    (json_int_t)c->merge.seq));
	return o;
}

static void print_conflict(const struct journal_conflict *c)
{
	char when[64];

	print_escaped(c->volume);
	putchar('/');
	print_escaped(c->path);
	if (c->resolved) {
		format_time(c->merge_wall_ns, when, sizeof(when), false);
		printf("  resolved %s by %s:%llu\n", when, c->merge.origin,
		       (unsigned long long)c->merge.seq);
	} else {
		printf("  unresolved (versions still arriving or being "
		       "fetched)\n");
	}
	for (size_t i = 0; i < c->n_versions; i++) {
		const struct journal_conflict_version *v = &c->versions[i];
		char hex[CONTENT_HEX_LEN] = "-", size[32];

		if (v->has_hash) {
			content_hex(v->hash, hex);
			hex[12] = '\0';
		}
		format_time(v->wall_ns, when, sizeof(when), false);
		human_size(v->size, size, sizeof(size));
		printf("    %-6s %s:%llu  lamport %llu  %s  %-7s %7s  %s",
		       v->winner ? "kept" : v->copy[0] ? "copy" : "lost",
		       v->ref.origin, (unsigned long long)v->ref.seq,
		       (unsigned long long)v->lamport, when,
		       journal_op_name(v->op), size, hex);
		if (v->copy[0]) {
			fputs("  -> ", stdout);
			print_escaped(c->volume);
			putchar('/');
			print_escaped(v->copy);
		}
		putchar('\n');
	}
}

static int print_conflict_cb(void *arg, const struct journal_conflict *c)
{
	struct printer *p = arg;

	p->count++;
	if (p->json)
		return print_json_line(conflict_json(c));
	print_conflict(c);
	return 0;
}

static int cmd_conflicts(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "volume", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct printer p = { .json = cli->json };
	const char *volume = NULL;
	int c, err;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'v': volume = optarg; break;
		case 'h': usage(stdout); return 0;
		default: return 2;
		}
	}
	if (optind < argc)
		return fail("conflicts: unexpected argument '%s'", argv[optind]);
	err = journal_conflicts(cli->journal, volume, print_conflict_cb, &p);
	if (err)
		return fail("conflicts: %s", kr_strerror(err));
	if (!cli->json && p.count == 0)
		printf("(no conflicts)\n");
	return 0;
}

/* ---- verify ---------------------------------------------------------- */

struct verify {
	struct cli *cli;
	const char *root;
	char **exclude;
	size_t n_exclude;
	uint64_t files, bytes, problems;
	int64_t last_progress;
	const char *volume;
	json_t *seen;             /* "volume/path" -> true, for the disk walk */
};

static void verify_problem(struct verify *v, const char *what,
			   const char *volume, const char *path)
{
	v->problems++;
	if (v->cli->json) {
		print_json_line(json_pack("{s:s,s:s,s:s}", "problem", what,
					  "volume", volume, "path", path));
		return;
	}
	printf("%-10s ", what);
	print_escaped(volume);
	if (path[0]) {
		putchar('/');
		print_escaped(path);
	}
	putchar('\n');
}

static void verify_progress(struct verify *v)
{
	int64_t now = (int64_t)time(NULL);

	if (!isatty(STDERR_FILENO) || now == v->last_progress)
		return;
	v->last_progress = now;
	fprintf(stderr, "\rverified %" PRIu64 " files, %.1f MB", v->files,
		(double)v->bytes / 1e6);
}

static int verify_file(struct verify *v, const char *full,
		       const struct journal_state *s, const char **what)
{
	struct content c = { 0 };
	int fd = open(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int err;

	if (fd < 0) {
		*what = errno == ENOENT ? "missing" : "unreadable";
		return 0;
	}
	err = content_hash_fd(fd, &c);
	close(fd);
	v->files++;
	v->bytes += c.size;
	verify_progress(v);
	if (err)
		*what = err == KR_ECHANGED ? "changing" : "unreadable";
	else if (!s->has_hash || memcmp(c.hash, s->hash, CONTENT_HASH_LEN))
		*what = "content";
	content_release(&c);
	return 0;
}

static int verify_one(void *arg, const char *volume, const char *path,
		      const struct journal_state *s)
{
	struct verify *v = arg;
	char rel[PATH_MAX], full[PATH_MAX], target[PATH_MAX];
	const char *what = NULL;
	struct stat st;
	ssize_t n;

	if (path_join(rel, sizeof(rel), volume, path) ||
	    path_join(full, sizeof(full), v->root, rel))
		return 0;
	json_object_set_new(v->seen, rel, json_true());
	if (lstat(full, &st) != 0) {
		verify_problem(v, "missing", volume, path);
		return 0;
	}
	if ((st.st_mode & S_IFMT) != (s->mode & S_IFMT))
		what = "type";
	else if (S_ISREG(st.st_mode))
		verify_file(v, full, s, &what);
	else if (S_ISLNK(st.st_mode)) {
		n = readlink(full, target, sizeof(target) - 1);
		if (n < 0 || !s->target || (size_t)n != strlen(s->target) ||
		    memcmp(target, s->target, (size_t)n) != 0)
			what = "target";
	}
	if (!what && !S_ISLNK(st.st_mode) && (st.st_mode != s->mode ||
	    st.st_uid != s->uid || st.st_gid != s->gid))
		what = "metadata";
	if (what)
		verify_problem(v, what, volume, path);
	return 0;
}

static bool verify_excluded(const struct verify *v, const char *path)
{
	const char *base = path_basename(path);

	if (strncmp(base, ".krakenfs-", 10) == 0)
		return true;
	for (size_t i = 0; i < v->n_exclude; i++)
		if (fnmatch(v->exclude[i], path, 0) == 0 ||
		    fnmatch(v->exclude[i], base, 0) == 0)
			return true;
	return false;
}

static bool is_dir(DIR *d, const struct dirent *de)
{
	struct stat st;

	if (de->d_type != DT_UNKNOWN)
		return de->d_type == DT_DIR;
	return fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISDIR(st.st_mode);
}

/* Files on disk that the journal does not hold. */
static void verify_walk(struct verify *v, const char *volume, const char *path)
{
	char rel[PATH_MAX], full[PATH_MAX], child[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (path_join(rel, sizeof(rel), volume, path) ||
	    path_join(full, sizeof(full), v->root, rel))
		return;
	d = opendir(full);
	if (!d)
		return;
	while ((de = readdir(d))) {
		char crel[PATH_MAX];

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (path_join(child, sizeof(child), path, de->d_name) ||
		    path_join(crel, sizeof(crel), volume, child) ||
		    verify_excluded(v, child))
			continue;
		if (!json_object_get(v->seen, crel))
			verify_problem(v, "untracked", volume, child);
		else if (is_dir(d, de))
			verify_walk(v, volume, child);
	}
	closedir(d);
}

static int verify_volume(void *arg, const char *volume, const char *path,
			 const struct journal_state *s)
{
	struct verify *v = arg;
	int err;

	(void)path;
	(void)s;
	err = journal_foreach_state(v->cli->journal, volume, verify_one, v);
	if (!err)
		verify_walk(v, volume, "");
	return err;
}

static int split_lines(char *text, char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	for (char *line = text; line && *line;) {
		char *nl = strchr(line, '\n');
		char **p = realloc(*out, (*n + 1) * sizeof(*p));

		if (!p)
			return -ENOMEM;
		*out = p;
		if (nl)
			*nl = '\0';
		p[(*n)++] = line;
		line = nl ? nl + 1 : NULL;
	}
	return 0;
}

static int cmd_verify(struct cli *cli, int argc, char **argv)
{
	struct verify v = { .cli = cli };
	char *stored_root = NULL, *patterns = NULL, *why = NULL;
	const char *ca = NULL;
	bool chain = false;
	int err;

	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'R' },
		{ "chain", no_argument, NULL, 'C' },
		{ "ca", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'R': v.root = optarg; break;
		case 'C': chain = true; break;
		case 'A': ca = optarg; break;
		case 'h': usage(stdout); return 0;
		default: return 2;
		}
	}
	if (optind < argc)
		return fail("verify: unexpected argument '%s'", argv[optind]);
	if (ca && !chain)
		return fail("%s", "verify: --ca goes with --chain");
	if (chain && v.root)
		return fail("%s", "verify: --chain checks the journal alone; "
			    "it takes no --root");
	if (chain)
		return kj_verify_chain(cli->journal, ca, cli->cfg ?
				       cli->cfg->tls_ca_file : KJ_DEFAULT_CA,
				       cli->json);
	if (!v.root && cli->cfg)
		v.root = cli->cfg->root_path;
	if (!v.root && journal_meta_get(cli->journal, "volume_root",
					&stored_root) == 0)
		v.root = stored_root;
	if (!v.root)
		return fail("%s", "verify: the journal does not name its volume "
			    "root; pass --root DIR");
	if (journal_check(cli->journal, &why) != 0) {
		v.problems++;
		printf("journal    %s\n", why ? why : "consistency check failed");
		free(why);
	}
	if (journal_meta_get(cli->journal, "exclude_patterns", &patterns) == 0)
		split_lines(patterns, &v.exclude, &v.n_exclude);
	v.seen = json_object();
	err = journal_foreach_volume(cli->journal, verify_volume, &v);
	if (isatty(STDERR_FILENO) && v.last_progress)
		fputc('\n', stderr);
	json_decref(v.seen);
	free(v.exclude);
	free(patterns);
	if (err) {
		free(stored_root);
		return fail("verify: %s", kr_strerror(err));
	}
	if (!cli->json)
		printf("%s: %" PRIu64 " files (%.1f MB) checked, %" PRIu64
		       " problems\n", v.root, v.files, (double)v.bytes / 1e6,
		       v.problems);
	free(stored_root);
	return v.problems ? 1 : 0;
}

/* ---- main ------------------------------------------------------------ */

static int cli_open(struct cli *cli)
{
	struct config_diag diag = { 0 };
	char *errmsg = NULL;
	const char *db = cli->db;
	int err;

	if (cli->config) {
		err = config_load(cli->config, NULL, NULL, &cli->cfg, &diag);
		if (diag.text)
			fputs(diag.text, stderr);
		config_diag_release(&diag);
		if (err)
			return 2;
		if (!db)
			db = cli->cfg->journal_path;
	}
	if (!db)
		db = DEFAULT_JOURNAL;
	cli->db = db;
	if (access(db, F_OK) != 0)
		return fail("no journal at %s (pass --db PATH or --config FILE)",
			    db);
	err = journal_open(db, NULL, JOURNAL_READONLY, &cli->journal, &errmsg);
	if (err) {
		fprintf(stderr, "kraken-journal: %s\n",
			errmsg ? errmsg : kr_strerror(err));
		free(errmsg);
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct cli cli = { 0 };
	const char *cmd;
	int c, rc;

	/* '+' stops at the command so its own options are parsed later. */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': cli.db = optarg; break;
		case 'c': cli.config = optarg; break;
		case 'j': cli.json = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "log") && strcmp(cmd, "history") &&
	    strcmp(cmd, "status") && strcmp(cmd, "verify") &&
	    strcmp(cmd, "conflicts") && strcmp(cmd, "versions") &&
	    strcmp(cmd, "restore"))
		return fail("unknown command '%s' (log, history, versions, "
			    "restore, status, conflicts, verify)", cmd);
	rc = cli_open(&cli);
	if (rc)
		return rc;
	if (strcmp(cmd, "log") == 0)
		rc = cmd_log(&cli, argc, argv);
	else if (strcmp(cmd, "history") == 0)
		rc = cmd_history(&cli, argc, argv);
	else if (strcmp(cmd, "versions") == 0)
		rc = argc == 3 ? kj_versions(cli.journal, cli.cfg, cli.cfg ?
					     cli.cfg->root_path : NULL, argv[1],
					     argv[2] + strspn(argv[2], "/"),
					     cli.json) :
		     fail("%s", "versions: expected VOLUME PATH");
	else if (strcmp(cmd, "restore") == 0)
		rc = kj_restore_cmd(cli.journal, cli.cfg, cli.cfg ?
				    cli.cfg->root_path : NULL, argc, argv);
	else if (strcmp(cmd, "status") == 0)
		rc = cmd_status(&cli);
	else if (strcmp(cmd, "conflicts") == 0)
		rc = cmd_conflicts(&cli, argc, argv);
	else
		rc = cmd_verify(&cli, argc, argv);
	journal_close(cli.journal);
	config_free(cli.cfg);
	return rc;
}
