/*
 * Retention at the journal level: compaction never changes what a
 * cluster converges to, never brings back what was deleted, waits for
 * the nodes that still lack a change, and a node that was away past the
 * pin catches up by state exchange with its own unsent changes kept.
 * Each scenario runs twice, on a cluster that compacts and on one that
 * keeps all history, and the two must end with the same files.
 */
#include "content.h"
#include "err.h"
#include "journal.h"

#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "net_sim.h"

#define HOUR_NS (3600LL * 1000000000)
#define DAY_NS (24 * HOUR_NS)

static int setup(void **state)
{
	return net_open((struct net **)state);
}

static int teardown(void **state)
{
	return net_close(*state);
}

static void assert_checks(struct net *n)
{
	for (int i = 0; i < NODES; i++) {
		char *why = NULL;

		if (journal_check(n->j[i], &why))
			fail_msg("node %d: %s", i, why ? why : "?");
		free(why);
	}
}

static void ack_all(struct net *n, int64_t now)
{
	for (int a = 0; a < NODES; a++)
		for (int b = 0; b < NODES; b++)
			if (a != b)
				net_ack(n, a, b, now);
}

/* The mode of PATH on NODE: 0 deleted, -1 forgotten (no row at all). */
static int path_mode(struct net *n, int node, const char *path)
{
	struct journal_state st;
	int err = journal_lookup(n->j[node], "vol", path, &st);
	int mode;

	if (err == -ENOENT)
		return -1;
	assert_int_equal(err, 0);
	mode = (int)st.mode;
	journal_state_release(&st);
	return mode;
}

/* ---- random histories ------------------------------------------------ */

static const char *const paths[] = { "p0", "p1", "d/p2", "d/p3" };

/* One random step of SEED's script on N; COMPACT adds acknowledgements
 * and compaction passes at random points, which must change nothing. */
static void script_step(struct net *n, unsigned *seed, bool compact,
			uint64_t *removed)
{
	int node = rand_r(seed) % NODES;
	int what = rand_r(seed) % 12;
	const char *path = paths[rand_r(seed) % 4];
	int to = rand_r(seed) % NODES;
	struct journal_compact_stats st;

	if (what < 5) {
		net_put(n, node, path, rand_r(seed) % TEXTS);
	} else if (what < 6) {
		if (path_mode(n, node, path) > 0)
			assert_int_equal(journal_record_delete(n->j[node],
							       "vol", path), 0);
	} else if (what < 9) {
		if (to != node)
			net_deliver(n, node, to);
	} else if (what < 10) {
		net_apply_jobs(n, node);
	} else if (compact && what < 11) {
		if (to != node)
			net_ack(n, node, to, net_now_ns());
	} else if (compact) {
		net_compact(n, node, net_now_ns() + HOUR_NS, DAY_NS, &st);
		*removed += st.changes + st.tombstones;
	}
	assert_int_equal(journal_flush(n->j[node]), 0);
}

/* KRAKEN_TEST_SEED replays another script. */
static unsigned seed_base(void)
{
	const char *s = getenv("KRAKEN_TEST_SEED");

	return s ? (unsigned)strtoul(s, NULL, 10) : 1000;
}

/* Same script, same deliveries: with compaction at random points the
 * cluster converges to exactly the files and conflict copies it reaches
 * with all history kept, and nobody needed a state exchange. */
static void test_random_histories_compacted(void **state)
{
	struct net *full = *state, *compacted = NULL;
	struct stat dir = { .st_mode = S_IFDIR | 0755 };
	uint64_t removed = 0;
	static char a[NET_SNAP_MAX], b[NET_SNAP_MAX];

	assert_int_equal(net_open(&compacted), 0);
	for (int i = 0; i < NODES; i++) {
		assert_int_equal(journal_record_mkdir(full->j[i], "vol", "d",
						      &dir), 0);
		assert_int_equal(journal_record_mkdir(compacted->j[i], "vol",
						      "d", &dir), 0);
	}
	for (unsigned round = 0; round < 6; round++) {
		unsigned s1 = seed_base() + round, s2 = s1;

		/* Interleaved so that both clusters see wall times in the
		 * same order: the ranking of concurrent versions uses them. */
		for (int step = 0; step < 150; step++) {
			script_step(full, &s1, false, &removed);
			script_step(compacted, &s2, true, &removed);
		}
		net_settle(full);
		net_settle(compacted);
		ack_all(compacted, net_now_ns());
		net_compact(compacted, round % NODES, net_now_ns() + HOUR_NS,
			    DAY_NS, NULL);
	}
	net_settle(full);
	net_settle(compacted);
	net_assert_converged(full);
	net_assert_converged(compacted);
	net_snapshot(full, 0, a, sizeof(a));
	net_snapshot(compacted, 0, b, sizeof(b));
	if (strcmp(a, b) != 0)
		net_fail_diff(a, b, 0, 0);
	assert_non_null(strstr(a, ".conflict-n"));
	assert_true(removed > 0);
	assert_int_equal(compacted->exchanges, 0);
	assert_checks(compacted);
	net_close(compacted);
}

/* SEED's script with n2 cut off for its second half: the others go on
 * (and, with COMPACT, compact as if n2 had been away past the pin),
 * n2 keeps writing and deleting on its own, then everyone meets again. */
static void away_script(struct net *n, unsigned seed, bool compact)
{
	int64_t later = net_now_ns() + 100 * DAY_NS;
	uint64_t removed = 0;

	for (int step = 0; step < 300; step++) {
		int node = rand_r(&seed) % NODES;
		int what = rand_r(&seed) % 12;
		const char *path = paths[rand_r(&seed) % 4];
		int to = rand_r(&seed) % NODES;
		bool away = step >= 100;

		if (what < 5) {
			net_put(n, node, path, rand_r(&seed) % TEXTS);
		} else if (what < 6) {
			if (path_mode(n, node, path) > 0)
				assert_int_equal(journal_record_delete(
					n->j[node], "vol", path), 0);
		} else if (what < 9) {
			if (to != node && !(away && (to == 2 || node == 2)))
				net_deliver(n, node, to);
		} else if (what < 10) {
			net_apply_jobs(n, node);
		} else if (compact && node != 2 && to != 2 && to != node) {
			struct journal_compact_stats st;

			net_ack(n, node, to, away ? later : net_now_ns());
			net_compact(n, node, away ? later + DAY_NS :
				    net_now_ns() + DAY_NS, 90 * DAY_NS, &st);
			removed += st.changes + st.tombstones;
		}
		assert_int_equal(journal_flush(n->j[node]), 0);
		if (step == 99 && compact)
			ack_all(n, net_now_ns());
	}
	if (compact)
		assert_true(removed > 0);
}

/* The versions of one path every node of a cluster holds, from which
 * the outcome any correct catch-up must reach is read. */
struct version {
	char origin[JOURNAL_ORIGIN_MAX];
	uint64_t seq;
	bool present;
	int text;
	struct journal_ref bases[8];
	size_t n_bases;
};

struct versions {
	struct version v[4096];
	size_t n;
};

static int version_add(void *arg, const struct journal_change *c)
{
	struct versions *vs = arg;
	struct version *v;

	for (size_t i = 0; i < vs->n; i++)
		if (vs->v[i].seq == c->ref.seq &&
		    strcmp(vs->v[i].origin, c->ref.origin) == 0)
			return 0;
	assert_true(vs->n < 4096 && c->n_bases <= 8);
	v = &vs->v[vs->n++];
	snprintf(v->origin, sizeof(v->origin), "%s", c->ref.origin);
	v->seq = c->ref.seq;
	v->present = c->mode != 0;
	v->text = c->has_hash ? net_text_of(c->hash) : -1;
	memcpy(v->bases, c->bases, c->n_bases * sizeof(c->bases[0]));
	v->n_bases = c->n_bases;
	return 0;
}

static bool superseded(const struct versions *vs, const struct version *x)
{
	for (size_t i = 0; i < vs->n; i++)
		for (size_t k = 0; k < vs->v[i].n_bases; k++)
			if (vs->v[i].bases[k].seq == x->seq &&
			    strcmp(vs->v[i].bases[k].origin, x->origin) == 0)
				return true;
	return false;
}

/* Bit T set: some version of PATH no version anywhere replaced holds
 * text T.  Read from FULL, which kept all history, before it settles. */
static unsigned union_heads(struct net *full, const char *path)
{
	static struct versions vs;
	unsigned texts = 0;

	vs.n = 0;
	for (int i = 0; i < NODES; i++)
		assert_int_equal(journal_history(full->j[i], "vol", path,
						 version_add, &vs), 0);
	for (size_t i = 0; i < vs.n; i++)
		if (vs.v[i].present && vs.v[i].text >= 0 &&
		    !superseded(&vs, &vs.v[i]))
			texts |= 1u << vs.v[i].text;
	return texts;
}

/* The texts N ends with at PATH (bit 8: at PATH itself, bits 0-3) and
 * at PATH's conflict copies (bits 4-7). */
static unsigned outcome(struct net *n, const char *path, int *at_path)
{
	static char snap[NET_SNAP_MAX];
	char *save = NULL, prefix[64];
	unsigned texts = 0;

	*at_path = -1;
	snprintf(prefix, sizeof(prefix), "%s.conflict-", path);
	net_snapshot(n, 0, snap, sizeof(snap));
	for (char *tok = strtok_r(snap, ";", &save); tok;
	     tok = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(tok, '=');
		int text = eq ? atoi(eq + 1) : -1;

		if (!eq || text < 0)
			continue;
		*eq = '\0';
		if (strcmp(tok, path) == 0)
			*at_path = text;
		if (strcmp(tok, path) == 0 || strncmp(tok, prefix,
						      strlen(prefix)) == 0)
			texts |= 1u << text;
	}
	return texts;
}

static void assert_outcome(struct net *n, unsigned seed, const char *path,
			   unsigned expect)
{
	int at;
	unsigned got = outcome(n, path, &at);

	if ((got & expect) != expect ||
	    (expect && (at < 0 || !(expect & 1u << at))) ||
	    (!expect && at >= 0))
		fail_msg("seed %u, %s: versions nobody replaced hold texts "
			 "%#x; after catching up: %#x, %d at the path", seed,
			 path, expect, got, at);
}

/* A node away past the pin meets a cluster that compacted without it:
 * it catches up by state exchange.  Whatever each side did meanwhile,
 * every version nobody replaced survives (at its path or as a conflict
 * copy), the path holds one of them, and a path whose every last
 * version is a delete stays deleted: the outcome the cluster that kept
 * all history reaches too. */
static void test_random_long_absence(void **state)
{
	struct net *n = *state;
	struct stat dir = { .st_mode = S_IFDIR | 0755 };
	int exchanges = 0;

	for (unsigned k = 0; k < 4; k++) {
		struct net *full = NULL, *compacted = NULL;
		unsigned expect[4];

		assert_int_equal(net_open(&full), 0);
		assert_int_equal(net_open(&compacted), 0);
		for (int i = 0; i < NODES; i++) {
			assert_int_equal(journal_record_mkdir(full->j[i], "vol",
							      "d", &dir), 0);
			assert_int_equal(journal_record_mkdir(compacted->j[i],
							      "vol", "d", &dir),
					 0);
		}
		away_script(full, seed_base() + 77 * k, false);
		away_script(compacted, seed_base() + 77 * k, true);
		for (int p = 0; p < 4; p++)
			expect[p] = union_heads(full, paths[p]);
		net_settle(full);
		net_settle(compacted);
		net_assert_converged(compacted);
		assert_checks(compacted);
		for (int p = 0; p < 4; p++) {
			assert_outcome(full, seed_base() + 77 * k, paths[p],
				       expect[p]);
			assert_outcome(compacted, seed_base() + 77 * k,
				       paths[p], expect[p]);
		}
		exchanges += compacted->exchanges;
		net_close(full);
		net_close(compacted);
	}
	(void)n;
	assert_true(exchanges > 0);
}

/* ---- a node down within the pin --------------------------------------- */

static void test_tombstone_waits_for_down_node(void **state)
{
	struct net *n = *state;
	int64_t now = net_now_ns();
	struct journal_compact_stats st;

	net_put(n, 0, "a.txt", 0);
	net_put(n, 0, "b.txt", 1);
	net_settle(n);
	ack_all(n, now);
	/* n2 goes down; a.txt is edited then deleted, b.txt deleted. */
	net_put(n, 0, "a.txt", 2);
	assert_int_equal(journal_record_delete(n->j[0], "vol", "a.txt"), 0);
	assert_int_equal(journal_record_delete(n->j[1], "vol", "b.txt"), 0);
	for (int k = 0; k < 3; k++) {
		net_deliver(n, 0, 1);
		net_deliver(n, 1, 0);
		net_apply_jobs(n, 0);
		net_apply_jobs(n, 1);
	}
	net_ack(n, 0, 1, now + HOUR_NS);
	net_ack(n, 1, 0, now + HOUR_NS);
	for (int i = 0; i < 2; i++) {
		net_compact(n, i, now + 2 * HOUR_NS, DAY_NS, &st);
		assert_int_equal(st.tombstones, 0);
		assert_int_equal(path_mode(n, i, "a.txt"), 0);
		assert_int_equal(path_mode(n, i, "b.txt"), 0);
	}
	/* n2 is back: plain catch-up, and the files stay deleted. */
	net_settle(n);
	assert_int_equal(n->exchanges, 0);
	net_assert_converged(n);
	assert_int_equal(path_mode(n, 2, "a.txt"), 0);
	assert_int_equal(path_mode(n, 2, "b.txt"), 0);
	/* Once n2 has said it holds them, the tombstones go everywhere. */
	ack_all(n, now + 3 * HOUR_NS);
	for (int i = 0; i < NODES; i++) {
		net_compact(n, i, now + 4 * HOUR_NS, DAY_NS, &st);
		assert_int_equal(st.tombstones, 2);
		assert_int_equal(path_mode(n, i, "a.txt"), -1);
		assert_int_equal(path_mode(n, i, "b.txt"), -1);
	}
	net_settle(n);
	net_assert_converged(n);
	assert_checks(n);
}

/* A compacted change offered again (by a peer that kept it) is held
 * already: it can never become a head again. */
struct reoffer {
	struct journal *to;
	int added, held;
};

static int reoffer_one(void *arg, const struct journal_change *c)
{
	struct reoffer *r = arg;
	int err = journal_add_remote(r->to, c);

	r->added += err == 0;
	r->held += err == -EALREADY;
	return 0;
}

static void test_compacted_change_never_returns(void **state)
{
	struct net *n = *state;
	int64_t now = net_now_ns();
	struct journal_compact_stats st;
	struct reoffer r = { .to = NULL };
	struct content c;

	net_put(n, 1, "a.txt", 0);
	net_put(n, 1, "a.txt", 1);
	net_put(n, 1, "a.txt", 2);
	assert_int_equal(journal_record_delete(n->j[1], "vol", "a.txt"), 0);
	net_settle(n);
	ack_all(n, now);
	net_compact(n, 0, now + HOUR_NS, DAY_NS, &st);
	assert_int_equal(st.changes, 3);
	assert_int_equal(st.tombstones, 1);
	assert_int_equal(st.contents, 3);
	assert_int_equal(journal_floor(n->j[0], n->origin[1]), 5);
	assert_int_equal(journal_content_load(n->j[0], net_contents[0].hash,
					      &c), -ENOENT);
	/* n2 kept every version of n1's; offered to n0 again, each is
	 * held already. */
	r.to = n->j[0];
	assert_int_equal(journal_entries_since(n->j[2], n->origin[1], 0, 100,
					       reoffer_one, &r), 0);
	assert_int_equal(journal_flush(n->j[0]), 0);
	assert_int_equal(r.added, 0);
	assert_int_equal(r.held, 5);
	assert_int_equal(path_mode(n, 0, "a.txt"), -1);
	/* Asking n0 for n1's range from below what it forgot fails... */
	assert_int_equal(journal_entries_since(n->j[0], n->origin[1], 0, 100,
					       reoffer_one, &r),
			 KR_ECOMPACTED);
	/* ...and n1, compacting its own, numbers on past what it forgot. */
	net_compact(n, 1, now + HOUR_NS, DAY_NS, &st);
	assert_int_equal(st.changes + st.tombstones, 4);
	journal_close(n->j[1]);
	{
		char db[128];

		snprintf(db, sizeof(db), "%s/n1.db", n->dir);
		assert_int_equal(journal_open(db, "n1", 0, &n->j[1], NULL), 0);
	}
	net_put(n, 1, "b.txt", 3);
	assert_int_equal(journal_have(n->j[1], n->origin[1]), 6);
	net_settle(n);
	net_assert_converged(n);
	assert_checks(n);
}

/* ---- a node down past the pin ----------------------------------------- */

/* The scenario of test_long_down_peer on N; COMPACT: n0 and n1 compact
 * while n2 is away (past the pin, so it holds nothing back). */
static void long_down_script(struct net *n, bool compact)
{
	int64_t now = net_now_ns();
	struct journal_compact_stats st;

	net_put(n, 0, "a.txt", 0);
	net_put(n, 0, "b.txt", 0);
	net_put(n, 1, "c.txt", 0);
	net_put(n, 1, "d.txt", 0);
	net_mkdir(n, 0, "dir");
	net_put(n, 0, "dir/f.txt", 0);
	net_settle(n);
	ack_all(n, now);
	/* n2 is away.  The others edit, delete and create... */
	net_put(n, 0, "a.txt", 1);
	assert_int_equal(journal_record_delete(n->j[0], "vol", "b.txt"), 0);
	net_put(n, 1, "c.txt", 2);
	assert_int_equal(journal_record_delete(n->j[1], "vol", "dir/f.txt"),
			 0);
	assert_int_equal(journal_record_delete(n->j[1], "vol", "dir"), 0);
	net_put(n, 1, "new.txt", 3);
	/* ...and n2, on its own, edits a.txt too (a conflict to keep), edits
	 * d.txt, and creates e.txt: changes nobody has seen yet. */
	net_put(n, 2, "a.txt", 3);
	net_put(n, 2, "d.txt", 2);
	net_put(n, 2, "e.txt", 1);
	for (int k = 0; k < 3; k++) {
		net_deliver(n, 0, 1);
		net_deliver(n, 1, 0);
		net_apply_jobs(n, 0);
		net_apply_jobs(n, 1);
	}
	if (compact) {
		int64_t later = now + 100 * DAY_NS;

		net_ack(n, 0, 1, later);
		net_ack(n, 1, 0, later);
		for (int i = 0; i < 2; i++) {
			net_compact(n, i, later + HOUR_NS, 90 * DAY_NS, &st);
			assert_true(st.changes > 0);
			assert_true(st.tombstones >= 2);
		}
	}
	net_settle(n);
}

static void test_long_down_peer_state_exchange(void **state)
{
	struct net *n = *state, *full = NULL;
	static char a[NET_SNAP_MAX], b[NET_SNAP_MAX];

	assert_int_equal(net_open(&full), 0);
	long_down_script(full, false);
	long_down_script(n, true);
	assert_int_equal(full->exchanges, 0);
	assert_true(n->exchanges >= 1);
	net_assert_converged(full);
	net_assert_converged(n);
	net_snapshot(full, 0, a, sizeof(a));
	net_snapshot(n, 0, b, sizeof(b));
	assert_string_equal(a, b);
	/* Nothing deleted came back, nothing of n2's was lost. */
	assert_null(strstr(b, "b.txt="));
	assert_null(strstr(b, "dir/f.txt="));
	assert_null(strstr(b, "dir="));
	assert_non_null(strstr(b, "e.txt=1/"));
	assert_non_null(strstr(b, "d.txt=2/"));
	assert_non_null(strstr(b, "new.txt=3/"));
	assert_non_null(strstr(b, "a.conflict-n"));
	assert_checks(n);
	net_close(full);
}

/* A node new to the cluster after compaction (or one whose journal was
 * lost) starts from nothing: a state exchange gives it every file. */
/* NODE loses its journal and opens a fresh one: a new epoch. */
static void lose_journal(struct net *n, int node)
{
	struct journal_info info;
	char db[128], name[8];

	journal_close(n->j[node]);
	snprintf(name, sizeof(name), "n%d", node);
	snprintf(db, sizeof(db), "%s/%s.db", n->dir, name);
	assert_int_equal(unlink(db), 0);
	unlink(strcat(db, "-wal"));
	snprintf(db, sizeof(db), "%s/%s.db", n->dir, name);
	assert_int_equal(journal_open(db, name, 0, &n->j[node], NULL), 0);
	assert_int_equal(journal_info(n->j[node], &info), 0);
	snprintf(n->origin[node], sizeof(n->origin[node]), "%s", info.origin);
}

static int add_one(void *arg, const struct journal_change *c)
{
	int err = journal_add_remote(arg, c);

	assert_true(err == 0 || err == -EALREADY);
	return 0;
}

/* The simulation delivers only current origins: ORIGIN's changes from
 * FROM to TO, as a peer relays an old epoch. */
static void deliver_origin(struct net *n, int from, int to, const char *origin)
{
	assert_int_equal(journal_entries_since(n->j[from], origin,
					       journal_have(n->j[to], origin),
					       1000, add_one, n->j[to]), 0);
	assert_int_equal(journal_flush(n->j[to]), 0);
}

static int vector_has(void *arg, const char *origin, uint64_t seq)
{
	(void)seq;
	return strcmp(arg, origin) == 0 ? 1 : 0;
}

/* An old epoch (its node lost its journal) stays in every vector for
 * good unless retired: once a newer epoch of its node holds a later
 * change, compaction removed everything of it and every peer
 * acknowledged it, it leaves the vector, while its floor still marks a
 * late copy of its change as held.  An old epoch that still holds a
 * current version (here node 1's first, whose a.txt is still current)
 * stays.
 * The cluster still converges. */
static void test_old_epoch_retired(void **state)
{
	struct net *n = *state;
	int64_t now = net_now_ns();
	struct journal_compact_stats st = { 0 };
	char first[JOURNAL_ORIGIN_MAX], old[JOURNAL_ORIGIN_MAX];

	net_put(n, 1, "a.txt", 0);
	net_settle(n);
	snprintf(first, sizeof(first), "%s", n->origin[1]);
	lose_journal(n, 1);
	net_settle(n);
	net_put(n, 1, "b.txt", 1);
	net_settle(n);
	net_put(n, 2, "b.txt", 2);
	net_settle(n);
	snprintf(old, sizeof(old), "%s", n->origin[1]);
	lose_journal(n, 1);
	net_settle(n);
	net_put(n, 1, "c.txt", 3);
	net_settle(n);
	deliver_origin(n, 0, 1, first);
	deliver_origin(n, 0, 1, old);
	assert_int_equal(journal_vector(n->j[0], vector_has, old), 1);
	ack_all(n, now);
	net_compact(n, 0, now + HOUR_NS, DAY_NS, &st);
	assert_int_equal(st.retired, 1);
	assert_int_equal(journal_vector(n->j[0], vector_has, old), 0);
	assert_int_equal(journal_vector(n->j[0], vector_has, first), 1);
	assert_int_equal(journal_have(n->j[0], old), 1);
	/* Node 2 still names it, and would send it (node 0's vector now
	 * lacks it); once node 2 holds nothing more of it either, node 0
	 * holds it whole as far as node 2 can tell. */
	assert_int_equal(journal_vector(n->j[2], vector_has, old), 1);
	assert_false(journal_epoch_acked(n->j[2], "n0", old));
	net_compact(n, 2, now + HOUR_NS, DAY_NS, NULL);
	assert_true(journal_epoch_acked(n->j[2], "n0", old));
	assert_false(journal_epoch_acked(n->j[2], "n0", n->origin[1]));
	assert_false(journal_epoch_acked(n->j[2], "n0", first));
	net_put(n, 2, "d.txt", 3);
	net_settle(n);
	net_assert_converged(n);
	assert_checks(n);
}

static void test_new_node_after_compaction(void **state)
{
	struct net *n = *state;
	int64_t now = net_now_ns();
	static char a[NET_SNAP_MAX], b[NET_SNAP_MAX];

	for (int v = 0; v < 3; v++)
		net_put(n, 0, "a.txt", v);
	net_put(n, 1, "b.txt", 1);
	net_put(n, 1, "gone.txt", 1);
	assert_int_equal(journal_record_delete(n->j[1], "vol", "gone.txt"), 0);
	net_settle(n);
	ack_all(n, now);
	for (int i = 0; i < NODES; i++)
		net_compact(n, i, now + HOUR_NS, DAY_NS, NULL);
	lose_journal(n, 2);
	net_settle(n);
	assert_true(n->exchanges >= 1);
	net_assert_converged(n);
	net_snapshot(n, 0, a, sizeof(a));
	net_snapshot(n, 2, b, sizeof(b));
	assert_string_equal(a, b);
	assert_non_null(strstr(b, "a.txt=2/"));
	assert_null(strstr(b, "gone.txt"));
	assert_checks(n);
}

/* Freed pages go back to the file system: the journal file shrinks. */
static void test_compaction_shrinks_file(void **state)
{
	struct net *n = *state;
	int64_t now = net_now_ns();
	struct journal_compact_stats st;
	struct stat before, after;
	char db[128];

	for (int v = 0; v < 3000; v++) {
		char text[32];
		struct content c;
		struct stat fst = net_file_stat(0, 0);

		snprintf(text, sizeof(text), "version %d", v);
		assert_int_equal(content_hash_buf(text, strlen(text), &c), 0);
		fst.st_size = (off_t)strlen(text);
		assert_int_equal(journal_record_put(n->j[0], "vol", "big.txt",
						    &fst, &c), 0);
		content_release(&c);
		if (v % 500 == 0)
			assert_int_equal(journal_flush(n->j[0]), 0);
	}
	assert_int_equal(journal_flush(n->j[0]), 0);
	snprintf(db, sizeof(db), "%s/n0.db", n->dir);
	journal_close(n->j[0]);
	assert_int_equal(stat(db, &before), 0);
	assert_int_equal(journal_open(db, "n0", 0, &n->j[0], NULL), 0);
	/* Only n0 is configured now: nobody else needs to acknowledge. */
	{
		const char *self[] = { "n0" };

		assert_int_equal(journal_peers_set(n->j[0], self, 1, now), 0);
	}
	net_compact(n, 0, now + HOUR_NS, DAY_NS, &st);
	assert_int_equal(st.changes, 2999);
	assert_true(st.pages_freed > 0);
	journal_close(n->j[0]);
	assert_int_equal(stat(db, &after), 0);
	assert_int_equal(journal_open(db, "n0", 0, &n->j[0], NULL), 0);
	if (after.st_size * 2 > before.st_size)
		fail_msg("journal %lld bytes before compaction, %lld after",
			 (long long)before.st_size, (long long)after.st_size);
	{
		int64_t at = 0;

		assert_int_equal(journal_compacted_before(n->j[0], &at), 0);
		assert_true(at > now);
	}
}

/* Acknowledgements: only configured peers count, they never go down,
 * and a peer dropped from the configuration stops holding history. */
static void test_peer_acknowledgements(void **state)
{
	struct net *n = *state;
	int64_t now = net_now_ns();
	struct journal_compact_stats st;
	struct journal_ref lower = { .seq = 1 }, high = { .seq = 1000 };
	const char *pair[] = { "n0", "n1" };

	net_put(n, 0, "a.txt", 0);
	net_put(n, 0, "a.txt", 1);
	net_settle(n);
	net_ack(n, 0, 1, now);
	/* n2 never acknowledged: the old version stays. */
	net_compact(n, 0, now + HOUR_NS, DAY_NS, &st);
	assert_int_equal(st.changes, 0);
	/* A lower report from n1 changes nothing; a stranger's counts for
	 * nothing, however much it claims. */
	snprintf(lower.origin, sizeof(lower.origin), "%s", n->origin[0]);
	snprintf(high.origin, sizeof(high.origin), "%s", n->origin[0]);
	assert_int_equal(journal_peer_report(n->j[0], "n1", &lower, 1, now), 0);
	assert_int_equal(journal_peer_report(n->j[0], "n9", &high, 1, now), 0);
	assert_int_equal(journal_flush(n->j[0]), 0);
	net_compact(n, 0, now + HOUR_NS, DAY_NS, &st);
	assert_int_equal(st.changes, 0);
	net_ack(n, 0, 2, now);
	net_compact(n, 0, now + HOUR_NS, DAY_NS, &st);
	assert_int_equal(st.changes, 1);

	/* Two more versions that only n1 gets: the one n2 holds may go
	 * (it is superseded and everybody has it), the next may not. */
	net_put(n, 0, "a.txt", 2);
	net_put(n, 0, "a.txt", 3);
	net_deliver(n, 0, 1);
	net_ack(n, 0, 1, now);
	net_compact(n, 0, now + HOUR_NS, DAY_NS, &st);
	assert_int_equal(st.changes, 1);
	net_compact(n, 0, now + HOUR_NS, DAY_NS, &st);
	assert_int_equal(st.changes, 0);
	/* n2 leaves the cluster: it holds nothing back any more. */
	assert_int_equal(journal_peers_set(n->j[0], pair, 2, now), 0);
	net_compact(n, 0, now + HOUR_NS, DAY_NS, &st);
	assert_int_equal(st.changes, 1);
	/* Silent past the pin counts the same. */
	net_put(n, 0, "a.txt", 0);
	net_deliver(n, 0, 1);
	net_compact(n, 0, now + HOUR_NS, DAY_NS, &st);
	assert_int_equal(st.changes, 1);   /* what n1 acknowledged */
	net_put(n, 0, "a.txt", 1);
	net_compact(n, 0, now + 2 * DAY_NS, DAY_NS, &st);
	assert_int_equal(st.changes, 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_random_histories_compacted),
		T(test_random_long_absence),
		T(test_tombstone_waits_for_down_node),
		T(test_compacted_change_never_returns),
		T(test_long_down_peer_state_exchange),
		T(test_new_node_after_compaction),
		T(test_old_epoch_retired),
		T(test_compaction_shrinks_file),
		T(test_peer_acknowledgements),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
