/*
 * Replication semantics at the journal level: several journals standing
 * for nodes exchange entries the way peers do (per origin, in seq order),
 * "apply" their jobs, and must end identical however the deliveries were
 * ordered.  Conflicts must keep every version: the loser as a copy.
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
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "net_sim.h"

static void test_fast_forward(void **state)
{
	struct net *n = *state;
	static char snap[NET_SNAP_MAX];

	net_put(n, 0, "a.txt", 0);
	net_settle(n);
	net_put(n, 1, "a.txt", 1);     /* an edit of what node 1 received */
	net_settle(n);
	net_assert_converged(n);
	net_snapshot(n, 2, snap, sizeof(snap));
	assert_non_null(strstr(snap, "a.txt=1/"));
	assert_null(strstr(snap, "conflict"));
}

static void test_concurrent_edit_keeps_both(void **state)
{
	struct net *n = *state;
	static char snap[NET_SNAP_MAX];

	net_put(n, 0, "doc", 0);
	net_settle(n);
	/* Both edit the same version without seeing each other. */
	net_put(n, 0, "doc", 1);
	net_put(n, 1, "doc", 2);
	net_settle(n);
	net_assert_converged(n);
	net_snapshot(n, 0, snap, sizeof(snap));
	/* One wins at the path, the other lives at a conflict copy. */
	assert_non_null(strstr(snap, "doc.conflict-n"));
	assert_true((strstr(snap, "doc=1/") && strstr(snap, "=2/")) ||
		    (strstr(snap, "doc=2/") && strstr(snap, "=1/")));

	/* A later edit descends from the merge: no new conflict. */
	net_put(n, 2, "doc", 3);
	net_settle(n);
	net_assert_converged(n);
	net_snapshot(n, 1, snap, sizeof(snap));
	assert_non_null(strstr(snap, "doc=3/"));
	assert_int_equal(strstr(strstr(snap, "conflict") + 1, "conflict"), NULL);
}

static void test_identical_concurrent_is_no_conflict(void **state)
{
	struct net *n = *state;
	static char snap[NET_SNAP_MAX];

	net_put(n, 0, "same", 2);
	net_put(n, 1, "same", 2);
	net_put(n, 2, "same", 2);
	net_settle(n);
	net_assert_converged(n);
	net_snapshot(n, 0, snap, sizeof(snap));
	assert_null(strstr(snap, "conflict"));
}

static void test_modify_beats_delete(void **state)
{
	struct net *n = *state;
	static char snap[NET_SNAP_MAX];

	net_put(n, 0, "f", 0);
	net_settle(n);
	assert_int_equal(journal_record_delete(n->j[1], "vol", "f"), 0);
	net_put(n, 2, "f", 3);
	net_settle(n);
	net_assert_converged(n);
	net_snapshot(n, 0, snap, sizeof(snap));
	assert_non_null(strstr(snap, "f=3/"));
}

/* The conflict copies of PATH in SNAP. */
static int copies_of(const char *snap, const char *path)
{
	char prefix[64];
	int n = 0;

	snprintf(prefix, sizeof(prefix), ";%s.conflict-", path);
	for (const char *p = snap; (p = strstr(p, prefix)); p++)
		n++;
	return n + (strncmp(snap, prefix + 1, strlen(prefix) - 1) == 0);
}

/* Two sides of a partition write the same file five times each; after
 * the heal the path holds the newest version and there is one copy, of
 * the other side's last version: intermediate versions arriving in one
 * batch are history, not files. */
static void test_partition_one_copy_per_side(void **state)
{
	struct net *n = *state;
	static char snap[NET_SNAP_MAX];

	net_put(n, 0, "f", 0);
	net_settle(n);
	for (int round = 0; round < 5; round++) {
		net_put(n, 0, "f", round % TEXTS);
		net_put(n, 1, "f", (round + 1) % TEXTS);
		net_apply_jobs(n, 0);
		net_apply_jobs(n, 1);
	}
	net_settle(n);
	net_assert_converged(n);
	net_snapshot(n, 0, snap, sizeof(snap));
	/* n1 wrote last: its final text (1 after round 4) holds the path. */
	if (!strstr(snap, "f=1/") || copies_of(snap, "f") != 1)
		fail_msg("want f=1 and one copy of n0's last version: %s",
			 snap);
	assert_non_null(strstr(snap, ".conflict-n0-"));
}

/* A delete that meets a concurrent edit, then a re-creation after the
 * delete: the re-creation is the newest version and wins, as it would
 * had both arrived together, however the entries come in. */
static void test_delete_then_recreate_against_edit(void **state)
{
	struct net *n = *state;
	static char snap[NET_SNAP_MAX];

	net_put(n, 0, "f", 0);
	net_settle(n);
	net_put(n, 1, "f", 1);                       /* the edit */
	assert_int_equal(journal_record_delete(n->j[0], "vol", "f"), 0);
	net_put(n, 0, "f", 2);                       /* re-created, newest */
	net_settle(n);
	net_assert_converged(n);
	net_snapshot(n, 0, snap, sizeof(snap));
	if (!strstr(snap, "f=2/") || copies_of(snap, "f") != 1)
		fail_msg("want f=2 and one copy of the edit: %s", snap);
}

struct conflicts_seen {
	int n;
	int winners;
	char copy[PATH_REL_MAX + 1];
	char winner_origin[JOURNAL_ORIGIN_MAX];
};

static int conflict_cb(void *arg, const struct journal_conflict *c)
{
	struct conflicts_seen *cs = arg;

	cs->n++;
	for (size_t i = 0; i < c->n_versions; i++) {
		assert_true(c->versions[i].ref.seq > 0);
		if (c->versions[i].winner) {
			cs->winners++;
			snprintf(cs->winner_origin, sizeof(cs->winner_origin),
				 "%s", c->versions[i].ref.origin);
		} else if (c->versions[i].copy[0]) {
			snprintf(cs->copy, sizeof(cs->copy), "%s",
				 c->versions[i].copy);
		}
	}
	return 0;
}

/* Node 1 has a higher Lamport clock, node 0 writes later in wall time:
 * the strategy decides which concurrent version keeps the path. */
static void strategy_case(struct net *n, enum journal_strategy strategy,
			  int expect_winner)
{
	struct conflicts_seen cs = { 0 };
	static char snap[NET_SNAP_MAX];
	char want[64];

	for (int i = 0; i < NODES; i++)
		journal_set_strategy(n->j[i], strategy);
	net_put(n, 0, "s", 0);
	net_settle(n);
	for (int k = 0; k < 20; k++)
		net_put(n, 1, "busy", k % TEXTS);
	net_put(n, 1, "s", 2);
	usleep(2000);
	net_put(n, 0, "s", 1);
	net_settle(n);
	net_assert_converged(n);
	net_snapshot(n, 2, snap, sizeof(snap));
	snprintf(want, sizeof(want), "s=%d/", expect_winner == 0 ? 1 : 2);
	if (!strstr(snap, want))
		fail_msg("expected %s in %s", want, snap);
	assert_int_equal(journal_conflicts(n->j[2], "vol", conflict_cb, &cs), 0);
	assert_int_equal(cs.n, 1);
	assert_int_equal(cs.winners, 1);
	assert_string_equal(cs.winner_origin, n->origin[expect_winner]);
	assert_non_null(strstr(snap, cs.copy));   /* the copy exists */
}

static void test_strategy_timestamp(void **state)
{
	strategy_case(*state, JOURNAL_TIMESTAMP, 0);
}

static void test_strategy_lamport(void **state)
{
	strategy_case(*state, JOURNAL_LAMPORT, 1);
}

/* Random histories, random delivery orders: same end state everywhere,
 * and every content ever written survives somewhere. */
static void test_random_orders_converge(void **state)
{
	struct net *n = *state;
	static const char *const paths[] = { "p0", "p1", "d/p2" };
	unsigned seed = 12345;
	struct stat dir = { .st_mode = S_IFDIR | 0755 };

	for (int i = 0; i < NODES; i++)
		assert_int_equal(journal_record_mkdir(n->j[i], "vol", "d", &dir),
				 0);
	for (int step = 0; step < 300; step++) {
		int node = rand_r(&seed) % NODES;
		int what = rand_r(&seed) % 10;
		const char *path = paths[rand_r(&seed) % 3];

		if (what < 5) {
			net_put(n, node, path, rand_r(&seed) % TEXTS);
		} else if (what < 6) {
			struct journal_state st;

			if (journal_lookup(n->j[node], "vol", path, &st) == 0 &&
			    st.mode)
				assert_int_equal(journal_record_delete(
					n->j[node], "vol", path), 0);
			journal_state_release(&st);
		} else if (what < 9) {
			int to = rand_r(&seed) % NODES;

			if (to != node)
				net_deliver(n, node, to);
		} else {
			net_apply_jobs(n, node);
		}
		assert_int_equal(journal_flush(n->j[node]), 0);
	}
	net_settle(n);
	net_assert_converged(n);
	{
		static char snap[NET_SNAP_MAX];

		net_snapshot(n, 0, snap, sizeof(snap));
		/* The histories were concurrent enough to conflict. */
		assert_non_null(strstr(snap, ".conflict-n"));
		if (getenv("KRAKEN_TEST_VERBOSE"))
			printf("%s\n", snap);
	}
}

/* The mtime of a node's current version of PATH. */
static int64_t mtime_at(struct net *n, int node, const char *path)
{
	struct journal_state st;
	int64_t t;

	assert_int_equal(journal_lookup(n->j[node], "vol", path, &st), 0);
	t = st.mtime_ns;
	journal_state_release(&st);
	return t;
}

/* A touch (same content, new mtime) is applied everywhere, once; and
 * identical content written on two nodes is no conflict, yet every node
 * ends with the winner's mtime. */
static void test_mtime_reaches_everyone(void **state)
{
	struct net *n = *state;
	struct stat st = net_file_stat(0, 0);
	static char snap[NET_SNAP_MAX];

	net_put(n, 0, "t.txt", 0);
	net_settle(n);
	st.st_mtim.tv_sec += 60;
	assert_int_equal(journal_record_meta(n->j[0], "vol", "t.txt", &st),
			 0);
	net_settle(n);
	net_assert_converged(n);
	for (int i = 0; i < NODES; i++)
		assert_int_equal(mtime_at(n, i, "t.txt"),
				 (int64_t)st.st_mtim.tv_sec * 1000000000);

	net_put(n, 1, "u.txt", 2);
	st = net_file_stat(2, 0);
	st.st_mtim.tv_sec += 5;
	assert_int_equal(journal_record_put(n->j[2], "vol", "u.txt", &st,
					    &net_contents[2]), 0);
	net_settle(n);
	net_assert_converged(n);
	net_snapshot(n, 0, snap, sizeof(snap));
	assert_null(strstr(snap, ".conflict-n"));
	for (int i = 1; i < NODES; i++)
		assert_int_equal(mtime_at(n, i, "u.txt"),
				 mtime_at(n, 0, "u.txt"));
}

/* NODE's disk holds TEXT at PATH, unknown to its journal: how
 * journal_adopt judges it. */
static enum journal_adoption adopt(struct net *n, int node, const char *path,
				   int text)
{
	struct stat st = net_file_stat(text, 0);
	enum journal_adoption how;

	assert_int_equal(journal_adopt(n->j[node], "vol", path, &st,
				       net_contents[text].hash, NULL, &how), 0);
	return how;
}

/* A node with a new journal (n2) learns the history, then finds files on
 * its disk: the winner is taken as it is (no job, no change), an older
 * version is stale (the history's job replaces or deletes it), content
 * known nowhere is new, or kept aside where a version holds the path.
 * Once its jobs are done it is identical to the others and has published
 * nothing. */
static void test_adopt_judges_against_history(void **state)
{
	struct net *n = *state;
	struct journal_info info;
	struct stat dir;
	enum journal_adoption how;
	uint64_t jobs, stuck, own;

	net_put(n, 0, "same", 0);
	net_put(n, 0, "edited", 0);
	net_put(n, 0, "gone", 1);
	net_put(n, 0, "taken", 1);
	net_put(n, 0, "chmodded", 2);
	net_mkdir(n, 0, "d");
	net_deliver(n, 0, 1);
	net_apply_jobs(n, 1);
	net_put(n, 1, "edited", 2);
	assert_int_equal(journal_record_delete(n->j[1], "vol", "gone"), 0);
	net_deliver(n, 1, 0);
	net_apply_jobs(n, 0);
	net_deliver(n, 0, 2);
	net_deliver(n, 1, 2);
	assert_int_equal(journal_info(n->j[2], &info), 0);
	own = info.own_seq;

	assert_int_equal(adopt(n, 2, "same", 0), JOURNAL_ADOPT_CURRENT);
	assert_int_equal(adopt(n, 2, "edited", 0), JOURNAL_ADOPT_STALE);
	assert_int_equal(adopt(n, 2, "gone", 1), JOURNAL_ADOPT_STALE);
	assert_int_equal(adopt(n, 2, "taken", 3), JOURNAL_ADOPT_TAKEN);
	assert_int_equal(adopt(n, 2, "fresh", 3), JOURNAL_ADOPT_NEW);
	/* The winner's content under another mode: a job puts its mode back. */
	dir = net_file_stat(2, 0);
	dir.st_mode = S_IFREG | 0600;
	assert_int_equal(journal_adopt(n->j[2], "vol", "chmodded", &dir,
				       net_contents[2].hash, NULL, &how), 0);
	assert_int_equal(how, JOURNAL_ADOPT_CURRENT);
	memset(&dir, 0, sizeof(dir));
	dir.st_mode = S_IFDIR | 0755;
	assert_int_equal(journal_adopt(n->j[2], "vol", "d", &dir, NULL, NULL,
				       &how), 0);
	assert_int_equal(how, JOURNAL_ADOPT_CURRENT);
	assert_int_equal(journal_flush(n->j[2]), 0);
	/* Jobs left: edited (the newer text), gone (its delete), taken
	 * (written once the disk's file is kept aside), chmodded's mode. */
	assert_int_equal(journal_job_counts(n->j[2], "vol", &jobs, &stuck), 0);
	assert_int_equal(jobs, 4);

	net_settle(n);
	net_assert_converged(n);
	assert_int_equal(journal_info(n->j[2], &info), 0);
	assert_int_equal(info.own_seq, own);
}

/* NODE's disk holds TEXT at PATH (-1: nothing there), not its current
 * state: whether journal_adopt_applied takes it as applied. */
static bool applied(struct net *n, int node, const char *path, int text,
		    mode_t mode)
{
	struct stat st = net_file_stat(text < 0 ? 0 : text, 0);
	bool adopted;

	st.st_mode = mode;
	assert_int_equal(journal_adopt_applied(n->j[node], "vol", path,
					       text < 0 ? NULL : &st,
					       text < 0 ? NULL :
					       net_contents[text].hash, NULL,
					       &adopted), 0);
	return adopted;
}

/* The text NODE's job for PATH puts (the winner), -1 when none. */
static int job_text(struct net *n, int node, const char *path)
{
	struct journal_job jobs[16];
	int k = journal_jobs(n->j[node], NULL, jobs, 16), text = -1;

	assert_true(k >= 0);
	for (int i = 0; i < k; i++) {
		if (strcmp(jobs[i].path, path) == 0 && !jobs[i].copy_of)
			text = jobs[i].has_hash ? net_text_of(jobs[i].hash) :
			       -2;
		journal_job_release(&jobs[i]);
	}
	return text;
}

/* After a crash between putting a peer's version in place and the
 * commit saying so, the disk is ahead of the journal.  What the job puts,
 * or a version before it on its line, held whole, is taken as applied
 * (no change of n1's); anything else is a change of n1's: a version that
 * lost a conflict, the right content under another mode, the current
 * version, content known nowhere, a path with nothing to apply.  The
 * conflict's copy is still made, as n1's change, once it settles. */
static void test_adopt_applied_only_on_the_job_line(void **state)
{
	struct net *n = *state;
	struct journal_info info;
	uint64_t own;
	int win, lose;

	net_put(n, 0, "f", 0);
	net_put(n, 0, "h", 0);
	net_put(n, 0, "c", 0);
	net_put(n, 0, "quiet", 0);
	net_settle(n);
	net_put(n, 0, "f", 1);
	net_put(n, 0, "f", 2);
	assert_int_equal(journal_record_delete(n->j[0], "vol", "h"), 0);
	net_put(n, 0, "c", 3);
	net_put(n, 2, "c", 1);
	net_deliver(n, 0, 1);
	net_deliver(n, 2, 1);
	assert_int_equal(journal_info(n->j[1], &info), 0);
	own = info.own_seq;

	assert_false(applied(n, 1, "f", 2, S_IFREG | 0600));
	assert_false(applied(n, 1, "f", 0, S_IFREG | 0644));
	assert_false(applied(n, 1, "f", 3, S_IFREG | 0644));
	assert_false(applied(n, 1, "quiet", 1, S_IFREG | 0644));
	assert_true(applied(n, 1, "f", 1, S_IFREG | 0644));
	assert_int_equal(job_text(n, 1, "f"), 2);    /* still to come */
	assert_true(applied(n, 1, "f", 2, S_IFREG | 0644));
	assert_int_equal(job_text(n, 1, "f"), -1);
	assert_int_equal(job_text(n, 1, "h"), -2);
	assert_true(applied(n, 1, "h", -1, 0));
	assert_int_equal(job_text(n, 1, "h"), -1);
	win = job_text(n, 1, "c");
	assert_true(win == 3 || win == 1);
	lose = win == 3 ? 1 : 3;
	assert_false(applied(n, 1, "c", lose, S_IFREG | 0644));
	assert_true(applied(n, 1, "c", win, S_IFREG | 0644));
	assert_int_equal(journal_flush(n->j[1]), 0);
	assert_int_equal(journal_info(n->j[1], &info), 0);
	assert_int_equal(info.own_seq, own);

	net_settle(n);
	net_assert_converged(n);
}

/* NODE's job queue read in pages of PAGE: "path path ..." in order. */
static void queue_read(struct net *n, int node, int page, char *out,
		       size_t cap)
{
	struct journal_job jobs[8], last;
	bool first = true;
	int k;

	assert_true(page > 0 && page <= 8);
	memset(&last, 0, sizeof(last));
	out[0] = '\0';
	while ((k = journal_jobs(n->j[node], first ? NULL : &last, jobs,
				 page)) > 0) {
		journal_job_release(&last);
		for (int i = 0; i < k; i++) {
			snprintf(out + strlen(out), cap - strlen(out), "%s ",
				 jobs[i].path);
			if (i < k - 1)
				journal_job_release(&jobs[i]);
		}
		last = jobs[k - 1];
		first = false;
	}
	assert_int_equal(k, 0);
	journal_job_release(&last);
}

/* The applier's queue: parents before children whatever order the
 * entries came in, deletes last and deepest first, a deferred job behind
 * the others; read in pages, every job exactly once. */
static void test_job_queue_order(void **state)
{
	struct net *n = *state;
	struct journal_job job;
	char q[512];

	net_put(n, 0, "d/e/f.txt", 0);
	net_mkdir(n, 0, "d/e");
	net_mkdir(n, 0, "d");
	net_put(n, 0, "a.txt", 1);
	net_mkdir(n, 0, "b");
	net_deliver(n, 0, 1);
	for (int page = 1; page <= 8; page++) {
		queue_read(n, 1, page, q, sizeof(q));
		assert_string_equal(q, "b d d/e a.txt d/e/f.txt ");
	}

	assert_int_equal(journal_jobs(n->j[1], NULL, &job, 1), 1);
	assert_string_equal(job.path, "b");
	assert_int_equal(journal_job_defer(n->j[1], &job), 0);
	assert_int_equal(journal_flush(n->j[1]), 0);
	journal_job_release(&job);
	queue_read(n, 1, 2, q, sizeof(q));
	assert_string_equal(q, "d d/e a.txt d/e/f.txt b ");

	net_settle(n);
	assert_int_equal(journal_record_delete(n->j[0], "vol", "d/e/f.txt"),
			 0);
	assert_int_equal(journal_record_delete(n->j[0], "vol", "d/e"), 0);
	assert_int_equal(journal_record_delete(n->j[0], "vol", "d"), 0);
	net_mkdir(n, 0, "zz");
	net_deliver(n, 0, 1);
	queue_read(n, 1, 3, q, sizeof(q));
	assert_string_equal(q, "zz d/e/f.txt d/e d ");
	net_settle(n);
	net_assert_converged(n);
}

/* One entry of ORIGIN, the one after AFTER, offered to node TO: what
 * journal_add_remote said, twice in a row. */
struct offer {
	struct journal *to;
	int first, again;
};

static int offer_one(void *arg, const struct journal_change *c)
{
	struct offer *o = arg;

	o->first = journal_add_remote(o->to, c);
	o->again = journal_add_remote(o->to, c);
	return 0;
}

static void offer(struct net *n, int from, int origin, uint64_t after, int to,
		  int first, int again)
{
	struct offer o = { .to = n->j[to], .first = 1, .again = 1 };

	assert_int_equal(journal_entries_since(n->j[from], n->origin[origin],
					       after, 1, offer_one, &o), 0);
	assert_int_equal(o.first, first);
	assert_int_equal(o.again, again);
}

/* Entries of two origins interleaved, as two peers' frames arrive: each
 * is taken once and in seq order per origin, a repeat is refused as
 * held, one past a hole is refused as early, whichever origin came
 * last. */
static void test_entries_held_per_origin(void **state)
{
	struct net *n = *state;
	uint64_t h0, h1;

	net_put(n, 0, "a.txt", 0);
	net_put(n, 0, "b.txt", 1);
	net_put(n, 1, "c.txt", 2);
	h0 = journal_have(n->j[2], n->origin[0]);
	h1 = journal_have(n->j[2], n->origin[1]);
	assert_int_equal(h0, 0);

	offer(n, 0, 0, h0 + 1, 2, -EAGAIN, -EAGAIN);
	offer(n, 0, 0, h0, 2, 0, -EALREADY);
	offer(n, 1, 1, h1, 2, 0, -EALREADY);
	offer(n, 0, 0, h0 + 2, 2, -EAGAIN, -EAGAIN);
	offer(n, 0, 0, h0 + 1, 2, 0, -EALREADY);
	offer(n, 1, 1, h1, 2, -EALREADY, -EALREADY);
	offer(n, 0, 0, h0, 2, -EALREADY, -EALREADY);
	offer(n, 0, 0, h0 + 2, 2, 0, -EALREADY);
	offer(n, 1, 1, h1 + 1, 2, 0, -EALREADY);
	assert_int_equal(journal_flush(n->j[2]), 0);
	assert_int_equal(journal_have(n->j[2], n->origin[0]),
			 journal_have(n->j[0], n->origin[0]));
	assert_int_equal(journal_have(n->j[2], n->origin[1]),
			 journal_have(n->j[1], n->origin[1]));
	net_deliver(n, 0, 1);
	net_deliver(n, 1, 0);
	net_settle(n);
	net_assert_converged(n);
}

/* The first entry of node 0, offered to node 2 as made-up origin
 * "x@..." with Lamport LAMPORT: what journal_add_remote said. */
struct lamport_offer {
	struct journal *to;
	uint64_t lamport;
	const char *origin;
	int64_t wall_ns;          /* 0: the change's own */
	bool staged;              /* as a state exchange's head */
	int got;
};

static int offer_lamport(void *arg, const struct journal_change *c)
{
	struct lamport_offer *o = arg;
	struct journal_change x = *c;

	snprintf(x.ref.origin, sizeof(x.ref.origin), "%s", o->origin);
	x.ref.seq = 1;
	x.lamport = o->lamport;
	if (o->wall_ns)
		x.wall_ns = o->wall_ns;
	x.n_bases = 0;
	x.chain.chained = false;
	o->got = o->staged ? journal_exchange_stage(o->to, &x) :
		 journal_add_remote(o->to, &x);
	return 0;
}

/* A Lamport value near 2^64 once made the next local change wrap to 0:
 * past JOURNAL_LAMPORT_MAX an entry is refused, and the local clock only
 * ever grows. */
static void test_lamport_bounded(void **state)
{
	struct net *n = *state;
	struct lamport_offer o = { .to = n->j[2], .lamport = UINT64_MAX,
				   .origin = "x@0000000000000001" };
	struct journal_info info;

	net_put(n, 0, "a.txt", 0);
	assert_int_equal(journal_entries_since(n->j[0], n->origin[0], 0, 1,
					       offer_lamport, &o), 0);
	assert_int_equal(o.got, KR_EHOSTILE);
	o.lamport = JOURNAL_LAMPORT_MAX + 1;
	assert_int_equal(journal_entries_since(n->j[0], n->origin[0], 0, 1,
					       offer_lamport, &o), 0);
	assert_int_equal(o.got, KR_EHOSTILE);
	o.lamport = JOURNAL_LAMPORT_MAX;
	assert_int_equal(journal_entries_since(n->j[0], n->origin[0], 0, 1,
					       offer_lamport, &o), 0);
	assert_int_equal(o.got, 0);
	net_put(n, 2, "b.txt", 1);
	assert_int_equal(journal_info(n->j[2], &info), 0);
	assert_true(info.lamport > JOURNAL_LAMPORT_MAX);
}

/* A wall time of INT64_MAX won every concurrent write under the
 * timestamp strategy: a stamp more than a day ahead of our clock is
 * refused and nothing is stored; one an hour ahead is taken. */
static void test_wall_ahead_refused(void **state)
{
	struct net *n = *state;
	struct timespec now;
	struct lamport_offer o = { .to = n->j[2], .lamport = 5,
				   .origin = "x@0000000000000001",
				   .wall_ns = INT64_MAX };

	clock_gettime(CLOCK_REALTIME, &now);
	net_put(n, 0, "a.txt", 0);
	assert_int_equal(journal_entries_since(n->j[0], n->origin[0], 0, 1,
					       offer_lamport, &o), 0);
	assert_int_equal(o.got, -ERANGE);
	assert_int_equal(journal_have(n->j[2], o.origin), 0);
	o.wall_ns = (int64_t)now.tv_sec * 1000000000 + JOURNAL_WALL_AHEAD_MAX +
		    3600LL * 1000000000;
	assert_int_equal(journal_entries_since(n->j[0], n->origin[0], 0, 1,
					       offer_lamport, &o), 0);
	assert_int_equal(o.got, -ERANGE);
	o.wall_ns = (int64_t)now.tv_sec * 1000000000 + 3600LL * 1000000000;
	assert_int_equal(journal_entries_since(n->j[0], n->origin[0], 0, 1,
					       offer_lamport, &o), 0);
	assert_int_equal(o.got, 0);
	assert_int_equal(journal_have(n->j[2], o.origin), 1);
}

static uint64_t lamport_of(struct journal *j)
{
	struct journal_info info;

	assert_int_equal(journal_info(j, &info), 0);
	return info.lamport;
}

/* A member whose entries jump far past everyone's Lamport clock drags
 * every node towards JOURNAL_LAMPORT_MAX: past the bound an entry is
 * refused, nothing of it is stored and the local clock does not move;
 * at the bound it is taken; bound 0 takes any jump. */
static void test_lamport_jump_bounded(void **state)
{
	struct net *n = *state;
	struct lamport_offer o = { .to = n->j[2],
				   .origin = "x@0000000000000001" };
	uint64_t local;

	net_put(n, 0, "a.txt", 0);
	net_put(n, 2, "b.txt", 1);
	journal_set_lamport_jump(n->j[2], 1000);
	local = lamport_of(n->j[2]);
	assert_true(local > 0);

	o.lamport = local + 1001;
	assert_int_equal(journal_entries_since(n->j[0], n->origin[0], 0, 1,
					       offer_lamport, &o), 0);
	assert_int_equal(o.got, -ERANGE);
	assert_int_equal(journal_have(n->j[2], o.origin), 0);
	assert_true(lamport_of(n->j[2]) == local);
	net_put(n, 2, "c.txt", 2);
	assert_true(lamport_of(n->j[2]) == local + 1);
	local++;

	o.lamport = local + 1000;
	assert_int_equal(journal_entries_since(n->j[0], n->origin[0], 0, 1,
					       offer_lamport, &o), 0);
	assert_int_equal(o.got, 0);
	assert_int_equal(journal_have(n->j[2], o.origin), 1);
	assert_true(lamport_of(n->j[2]) == local + 1000);
	local += 1000;

	journal_set_lamport_jump(n->j[2], 0);
	o.origin = "y@0000000000000002";
	o.lamport = local + (UINT64_C(1) << 40);
	assert_int_equal(journal_entries_since(n->j[0], n->origin[0], 0, 1,
					       offer_lamport, &o), 0);
	assert_int_equal(o.got, 0);
	assert_int_equal(journal_have(n->j[2], o.origin), 1);
	net_put(n, 2, "d.txt", 3);
	assert_true(lamport_of(n->j[2]) == local + (UINT64_C(1) << 40) + 1);
}

/* A state exchange's heads are held to the same bounds as entries: a
 * stamp more than a day ahead, or a Lamport jump past the bound, is not
 * staged; what is within them is, and applies. */
static void test_exchange_heads_bounded(void **state)
{
	struct net *n = *state;
	struct lamport_offer o = { .to = n->j[2], .staged = true,
				   .origin = "x@0000000000000001" };
	struct journal_ref vector = { "x@0000000000000001", 1 };
	uint64_t changed = 0, local;

	net_put(n, 0, "a.txt", 0);
	net_put(n, 2, "b.txt", 1);
	journal_set_lamport_jump(n->j[2], 1000);
	local = lamport_of(n->j[2]);
	assert_int_equal(journal_exchange_begin(n->j[2]), 0);

	o.lamport = local + 1;
	o.wall_ns = INT64_MAX;
	assert_int_equal(journal_entries_since(n->j[0], n->origin[0], 0, 1,
					       offer_lamport, &o), 0);
	assert_int_equal(o.got, -ERANGE);
	o.wall_ns = 0;
	o.lamport = local + 1001;
	assert_int_equal(journal_entries_since(n->j[0], n->origin[0], 0, 1,
					       offer_lamport, &o), 0);
	assert_int_equal(o.got, -ERANGE);
	o.lamport = local + 1000;
	assert_int_equal(journal_entries_since(n->j[0], n->origin[0], 0, 1,
					       offer_lamport, &o), 0);
	assert_int_equal(o.got, 0);
	assert_int_equal(journal_exchange_apply(n->j[2], &vector, 1, &changed),
			 0);
	assert_int_equal(journal_have(n->j[2], vector.origin), 1);
	assert_true(lamport_of(n->j[2]) == local + 1000);
}

static int setup(void **state)
{
	return net_open((struct net **)state);
}

static int teardown(void **state)
{
	return net_close(*state);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_fast_forward),
		T(test_concurrent_edit_keeps_both),
		T(test_identical_concurrent_is_no_conflict),
		T(test_modify_beats_delete),
		T(test_partition_one_copy_per_side),
		T(test_delete_then_recreate_against_edit),
		T(test_strategy_timestamp),
		T(test_strategy_lamport),
		T(test_random_orders_converge),
		T(test_mtime_reaches_everyone),
		T(test_job_queue_order),
	T(test_adopt_judges_against_history),
	T(test_adopt_applied_only_on_the_job_line),
		T(test_entries_held_per_origin),
		T(test_lamport_bounded),
		T(test_lamport_jump_bounded),
		T(test_exchange_heads_bounded),
		T(test_wall_ahead_refused),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
