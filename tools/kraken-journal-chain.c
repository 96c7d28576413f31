/*
 * kraken-journal verify --chain: the journal's signed hash chains,
 * checked offline (the walk itself is src/journal/chain_verify.c).
 *
 * The certificates come from the journal's keys table, but only those
 * the cluster CA issued are used: a certificate planted there by whoever
 * edited the file is reported and ignored, so signatures by its key show
 * as made by a key this journal holds no certificate for.  Without a CA
 * nothing can tell a forged signature from a real one, so only the
 * chains are checked, and a note on stderr says so.
 *
 * Output: a line per problem as it is found, then a table per origin and
 * a summary; with --json one object at the end.  Exit 0 when all is well,
 * 1 on any problem, 2 when the CA cannot be read or the walk fails.
 */
#include "kraken-journal.h"

#include "err.h"
#include "keyring.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct chain_run {
	bool json;
	struct keyring *ring;     /* with a CA, else NULL */
	json_t *problems;         /* --json: the problem objects */
	json_t *origins;          /* the reports, in walk order */
	uint64_t key_problems;
	uint64_t changes, signatures;
	int64_t last_progress;
};

/* A node name from the keys table, which anyone may have edited:
 * control and non-ASCII bytes escaped, at most 64 shown. */
static void escape_name(const char *s, char *out, size_t cap)
{
	size_t n = 0, shown = 0;

	assert(cap > 0);
	for (; s && *s && shown < 64 && n + 5 < cap; s++, shown++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c >= 0x7f || c == '\\')
			n += (size_t)snprintf(out + n, cap - n, "\\x%02x", c);
		else
			out[n++] = (char)c;
	}
	out[n] = '\0';
}

static void progress(struct chain_run *r)
{
	int64_t now = (int64_t)time(NULL);

	if (!isatty(STDERR_FILENO) || now == r->last_progress)
		return;
	r->last_progress = now;
	fprintf(stderr, "\rverifying chains: %zu origins, %" PRIu64 " changes, "
		"%" PRIu64 " signatures", json_array_size(r->origins),
		r->changes, r->signatures);
}

static void key_problem(struct chain_run *r, const uint8_t *id,
			const char *node, const char *why)
{
	char name[64 * 4 + 8], hex[17];

	for (int i = 0; i < 8; i++)
		snprintf(hex + 2 * i, 3, "%02x", id[i]);
	escape_name(node, name, sizeof(name));
	r->key_problems++;
	if (r->json)
		json_array_append_new(r->problems, json_pack("{s:s,s:s,s:s}",
				      "node", name, "key", hex, "why", why));
	else
		printf("%s key %s: %s\n", name, hex, why);
}

/* journal_key_fn: one certificate of the keys table into the ring. */
static int load_key(void *arg, const uint8_t *id, const char *node,
		    const uint8_t *der, size_t len)
{
	struct chain_run *r = arg;
	char cert_node[KEYRING_NODE_MAX];
	uint8_t cert_id[CONTENT_HASH_LEN];
	bool added;
	int err = keyring_add(r->ring, der, len, cert_node, cert_id, &added);

	switch (err) {
	case 0:
		return 0;
	case -EACCES:
		key_problem(r, id, node, "its certificate was not issued by "
			    "the cluster CA: not used");
		return 0;
	case -EPROTO:
		key_problem(r, id, node, "its certificate does not parse or "
			    "names no node: not used");
		return 0;
	case -ENOSPC:
		key_problem(r, id, node, "more certificates than a keyring "
			    "holds: not used");
		return 0;
	default:
		return err;
	}
}

/* journal_sig_check_fn: keyring_check, counted for the progress line. */
static int check_sig(void *arg, const char *origin, uint64_t seq,
		     const uint8_t chain[CONTENT_HASH_LEN],
		     const uint8_t *key_id, const uint8_t *sig, size_t sig_len)
{
	struct chain_run *r = arg;

	r->signatures++;
	progress(r);
	return keyring_check(r->ring, origin, seq, chain, key_id, sig,
			     sig_len);
}

static void on_problem(void *arg, const char *origin, uint64_t seq,
		       const char *why)
{
	struct chain_run *r = arg;

	if (r->json)
		json_array_append_new(r->problems, json_pack("{s:s,s:I,s:s}",
				      "origin", origin, "seq", (json_int_t)seq,
				      "why", why));
	else
		printf("%s seq %" PRIu64 ": %s\n", origin, seq, why);
}

static int on_report(void *arg, const struct journal_chain_report *rep)
{
	struct chain_run *r = arg;
	json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
			      "origin", rep->origin,
			      "changes", (json_int_t)rep->changes,
			      "unchained", (json_int_t)rep->unchained,
			      "skips", (json_int_t)rep->skips,
			      "segments", (json_int_t)rep->segments,
			      "unsigned", (json_int_t)rep->unsigned_ends,
			      "unknown_keys", (json_int_t)rep->unknown_keys,
			      "problems", (json_int_t)rep->bad);

	if (!o || json_array_append_new(r->origins, o) != 0)
		return -ENOMEM;
	r->changes += rep->changes;
	progress(r);
	return 0;
}

struct totals {
	uint64_t changes, unchained, skips, segments, unsigned_ends, problems;
};

static uint64_t field(json_t *o, const char *name)
{
	return (uint64_t)json_integer_value(json_object_get(o, name));
}

static void sum_origins(json_t *origins, struct totals *t)
{
	size_t i;
	json_t *o;

	json_array_foreach(origins, i, o) {
		t->changes += field(o, "changes");
		t->unchained += field(o, "unchained");
		t->skips += field(o, "skips");
		t->segments += field(o, "segments");
		t->unsigned_ends += field(o, "unsigned");
		t->problems += field(o, "problems");
	}
}

static void print_table(json_t *origins)
{
	size_t i;
	json_t *o;

	if (json_array_size(origins) == 0)
		return;
	printf("%-28s %9s %9s %7s %8s %8s %8s\n", "ORIGIN", "CHANGES",
	       "UNCHAINED", "SKIPS", "SEGMENTS", "UNSIGNED", "PROBLEMS");
	json_array_foreach(origins, i, o)
		printf("%-28s %9" PRIu64 " %9" PRIu64 " %7" PRIu64 " %8" PRIu64
		       " %8" PRIu64 " %8" PRIu64 "\n",
		       json_string_value(json_object_get(o, "origin")),
		       field(o, "changes"), field(o, "unchained"),
		       field(o, "skips"), field(o, "segments"),
		       field(o, "unsigned"), field(o, "problems"));
}

static int print_result(struct chain_run *r, const char *ca_file)
{
	struct totals t = { 0 };
	size_t n = json_array_size(r->origins);
	uint64_t signed_ends, problems;
	bool checked = r->ring != NULL;
	char *text;
	json_t *o;

	sum_origins(r->origins, &t);
	signed_ends = t.segments - t.unsigned_ends;
	problems = t.problems + r->key_problems;
	if (!r->json) {
		print_table(r->origins);
		if (problems)
			printf("%" PRIu64 " problem%s in %zu origin%s\n", problems,
			       problems == 1 ? "" : "s", n, n == 1 ? "" : "s");
		else
			printf("chains of %zu origin%s verified: %" PRIu64
			       " changes, %" PRIu64 " signatures%s\n", n,
			       n == 1 ? "" : "s", t.changes, signed_ends,
			       !checked && signed_ends ? " not checked" : "");
		return 0;
	}
	o = json_pack("{s:s?,s:b,s:b,s:O,s:O,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
		      "s:I}}", "ca", ca_file, "signatures_checked", checked,
		      "ok", problems == 0, "problems", r->problems,
		      "origins", r->origins, "total",
		      "origins", (json_int_t)n,
		      "changes", (json_int_t)t.changes,
		      "unchained", (json_int_t)t.unchained,
		      "skips", (json_int_t)t.skips,
		      "segments", (json_int_t)t.segments,
		      "unsigned", (json_int_t)t.unsigned_ends,
		      "signatures", (json_int_t)signed_ends,
		      "problems", (json_int_t)problems);
	text = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(o);
	if (!text)
		return -ENOMEM;
	puts(text);
	free(text);
	return 0;
}

int kj_verify_chain(struct journal *j, const char *ca, const char *config_ca,
		    bool json)
{
	struct chain_run r = { .json = json };
	const char *ca_file = ca;
	char *errmsg = NULL;
	int err, verdict;

	if (!ca_file && config_ca && access(config_ca, F_OK) == 0)
		ca_file = config_ca;
	if (ca_file) {
		err = keyring_new(ca_file, &r.ring, &errmsg);
		if (err) {
			fprintf(stderr, "kraken-journal: verify: %s\n",
				errmsg ? errmsg : kr_strerror(err));
			free(errmsg);
			return 2;
		}
	} else {
		fprintf(stderr, "kraken-journal: no cluster CA (--ca or "
			"sync.tls.ca_file): signatures are not checked, only "
			"the chains\n");
	}
	r.problems = json_array();
	r.origins = json_array();
	err = r.problems && r.origins ? 0 : -ENOMEM;
	if (!err && r.ring)
		err = journal_keys(j, load_key, &r);
	verdict = err;
	if (!err)
		verdict = journal_verify_chain(j, r.ring ? check_sig : NULL, &r,
					       on_problem, on_report, &r);
	if (isatty(STDERR_FILENO) && r.last_progress)
		fputc('\n', stderr);
	err = verdict == KR_ECORRUPT ? 0 : verdict;
	if (!err)
		err = print_result(&r, ca_file);
	if (err)
		fprintf(stderr, "kraken-journal: verify: %s\n", kr_strerror(err));
	json_decref(r.problems);
	json_decref(r.origins);
	keyring_free(r.ring);
	if (err)
		return 2;
	return verdict == KR_ECORRUPT || r.key_problems ? 1 : 0;
}
