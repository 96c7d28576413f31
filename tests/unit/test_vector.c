/*
 * The version vector in memory (src/journal/vector.c) against the SQL it
 * replaced.
 *
 * Random operations on a three-node cluster (net_sim.c) and on made-up
 * origins: local records, remote entries of known and new origins,
 * flushes, compaction, state exchanges, a batch whose commit fails and
 * is rolled back, a remote entry refused inside its savepoint, and a
 * walk whose callback writes.  After each, on every node:
 *
 *  - the vector read from memory is the one the old query reads
 *    (journal_vector_sql), on the writer and on a read-only connection
 *    beside it;
 *  - journal_vector_since(G), G taken after the previous operation,
 *    names every origin whose value or floor changed (a peer below a
 *    floor raised needs the state, not entries), with its value now, in
 *    rising generations above G; and no other origin, except this
 *    node's own (a signature touches it) and, after operations that may
 *    touch without a change (compaction raises floors) or read
 *    everything again (exchange, rollback), any.
 *
 * A missed touch stalls replication of that origin to a peer, silently;
 * a needless rebuild makes every session walk every origin.
 */
#include "content.h"
#include "err.h"
#include "journal.h"
#include "journal_int.h"

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

#define STEPS 400
#define PATHS 6
#define GHOSTS 40

/* ---- vectors as arrays -------------------------------------------------- */

struct vec {
	struct journal_ref *refs;
	size_t n, cap;
};

static int vec_add(void *arg, const char *origin, uint64_t max_seq)
{
	struct vec *v = arg;

	if (v->n == v->cap) {
		v->cap = v->cap ? 2 * v->cap : 16;
		v->refs = realloc(v->refs, v->cap * sizeof(*v->refs));
		assert_non_null(v->refs);
	}
	snprintf(v->refs[v->n].origin, JOURNAL_ORIGIN_MAX, "%s", origin);
	v->refs[v->n++].seq = max_seq;
	return 0;
}

static uint64_t vec_value(const struct vec *v, const char *origin)
{
	for (size_t i = 0; i < v->n; i++)
		if (strcmp(v->refs[i].origin, origin) == 0)
			return v->refs[i].seq;
	return 0;
}

static void vec_free(struct vec *v)
{
	free(v->refs);
	memset(v, 0, sizeof(*v));
}

/* Memory and SQL agree on J; the vector into *OUT. */
static void same_as_sql(struct journal *j, const char *who, struct vec *out)
{
	struct vec sql = { 0 };

	memset(out, 0, sizeof(*out));
	assert_int_equal(journal_vector_copy(j, &out->refs, &out->n), 0);
	out->cap = out->n;
	assert_int_equal(journal_vector_sql(j, vec_add, &sql), 0);
	if (sql.n != out->n)
		fail_msg("%s: %zu origins in memory, %zu in SQL", who, out->n,
			 sql.n);
	for (size_t i = 0; i < sql.n; i++)
		if (strcmp(sql.refs[i].origin, out->refs[i].origin) != 0 ||
		    sql.refs[i].seq != out->refs[i].seq)
			fail_msg("%s: memory has %s:%llu, SQL %s:%llu", who,
				 out->refs[i].origin,
				 (unsigned long long)out->refs[i].seq,
				 sql.refs[i].origin,
				 (unsigned long long)sql.refs[i].seq);
	vec_free(&sql);
}

/* ---- journal_vector_since ------------------------------------------------ */

struct since {
	struct vec v;
	uint64_t gen[4096];
};

static int since_add(void *arg, const char *origin, uint64_t max_seq,
		     uint64_t gen)
{
	struct since *s = arg;

	assert_true(s->v.n < 4096);
	s->gen[s->v.n] = gen;
	return vec_add(&s->v, origin, max_seq);
}

/* What a node looked like after the last operation. */
struct seen {
	struct vec v;
	struct vec floors;        /* each origin of v's floor */
	uint64_t gen;
};

static void floors_of(struct journal *j, const struct vec *v, struct vec *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t k = 0; k < v->n; k++)
		vec_add(out, v->refs[k].origin,
			journal_floor(j, v->refs[k].origin));
}

static struct {
	struct net *n;
	struct journal *ro;       /* read-only, beside node 0 */
	struct seen seen[NODES];
	unsigned seed;
	unsigned ghosts;          /* made-up origins so far */
} t;

static void check_node(int i, bool any_touch)
{
	struct journal *j = t.n->j[i];
	struct seen *was = &t.seen[i];
	static struct since s;
	struct vec now, floors;
	char who[24];

	snprintf(who, sizeof(who), "node %d", i);
	same_as_sql(j, who, &now);
	floors_of(j, &now, &floors);
	memset(&s, 0, sizeof(s));
	assert_int_equal(journal_vector_since(j, was->gen, since_add, &s), 0);
	for (size_t k = 0; k < s.v.n; k++) {
		const char *o = s.v.refs[k].origin;

		assert_true(s.gen[k] > was->gen);
		assert_true(k == 0 || s.gen[k] > s.gen[k - 1]);
		if (s.v.refs[k].seq != vec_value(&now, o))
			fail_msg("%s: since says %s:%llu, the vector %llu", who,
				 o, (unsigned long long)s.v.refs[k].seq,
				 (unsigned long long)vec_value(&now, o));
		if (!any_touch && vec_value(&was->v, o) == s.v.refs[k].seq &&
		    strcmp(o, t.n->origin[i]) != 0)
			fail_msg("%s: %s touched, unchanged at %llu", who, o,
				 (unsigned long long)s.v.refs[k].seq);
	}
	for (size_t k = 0; k < now.n; k++) {
		const char *o = now.refs[k].origin;

		if (vec_value(&was->v, o) != now.refs[k].seq &&
		    vec_value(&s.v, o) != now.refs[k].seq)
			fail_msg("%s: %s went from %llu to %llu, not touched",
				 who, o,
				 (unsigned long long)vec_value(&was->v, o),
				 (unsigned long long)now.refs[k].seq);
		if (vec_value(&was->floors, o) != floors.refs[k].seq &&
		    vec_value(&s.v, o) == 0)
			fail_msg("%s: %s's floor rose to %llu, not touched",
				 who, o, (unsigned long long)floors.refs[k].seq);
	}
	vec_free(&s.v);
	vec_free(&was->v);
	vec_free(&was->floors);
	was->v = now;
	was->floors = floors;
	was->gen = journal_vector_gen(j);
}

static void check_all(bool any_touch)
{
	struct vec ro;

	for (int i = 0; i < NODES; i++)
		check_node(i, any_touch);
	same_as_sql(t.ro, "read-only", &ro);
	vec_free(&ro);
}

/* ---- operations --------------------------------------------------------- */

static unsigned pick(unsigned n)
{
	return (unsigned)rand_r(&t.seed) % n;
}

static void op_put(int i)
{
	char path[16];

	snprintf(path, sizeof(path), "p%u", pick(PATHS));
	net_put(t.n, i, path, (int)pick(TEXTS));
}

/* Entry SEQ of made-up origin G ("ghost@<G>") added to J: 0 or what
 * journal_add_remote said.  CHAINED with a prev that is no chain's. */
static int ghost_add(struct journal *j, unsigned g, uint64_t seq,
		     bool chained)
{
	struct journal_change c;
	char path[32];

	memset(&c, 0, sizeof(c));
	snprintf(c.ref.origin, sizeof(c.ref.origin), "ghost@%016x", g);
	snprintf(path, sizeof(path), "ghost-%u-%llu", g,
		 (unsigned long long)seq);
	c.ref.seq = seq;
	c.lamport = seq;
	c.wall_ns = net_now_ns() - 1000000000;
	c.volume = "vol";
	c.path = path;
	c.op = JOURNAL_PUT;
	c.mode = S_IFREG | 0644;
	c.size = strlen(net_texts[0]);
	c.has_hash = true;
	memcpy(c.hash, net_contents[0].hash, CONTENT_HASH_LEN);
	c.chain.chained = chained;
	return journal_add_remote(j, &c);
}

/* A new made-up origin, or the next entry of one. */
static void op_ghost(int i)
{
	unsigned g = t.ghosts < GHOSTS && pick(2) ? t.ghosts++ :
		     pick(t.ghosts + 1);
	char origin[JOURNAL_ORIGIN_MAX];
	uint64_t have;

	snprintf(origin, sizeof(origin), "ghost@%016x", g);
	have = journal_have(t.n->j[i], origin);
	assert_int_equal(ghost_add(t.n->j[i], g, have + 1, false), 0);
}

/* A chained entry of a new origin whose prev is not its anchor: refused
 * after it was inserted, inside its savepoint. */
static void op_refused(int i)
{
	assert_int_equal(ghost_add(t.n->j[i], 1000 + pick(1000), 1, true),
			 KR_EHOSTILE);
}

static void op_compact(int i)
{
	for (int p = 0; p < NODES; p++)
		if (p != i)
			net_ack(t.n, i, p, net_now_ns());
	net_compact(t.n, i, net_now_ns(), 3600LL * 1000000000, NULL);
}

/* A batch of own and remote changes whose commit fails (poison_setup):
 * all of it rolled back. */
static void op_rollback(int i)
{
	op_put(i);
	op_ghost(i);
	net_put(t.n, i, "poison", 0);
	assert_int_not_equal(journal_flush(t.n->j[i]), 0);
}

static int walk_writes(void *arg, const char *origin, uint64_t max_seq,
		       uint64_t gen)
{
	int *calls = arg;

	(void)origin;
	(void)max_seq;
	(void)gen;
	if ((*calls)++ == 0)
		op_put(0);
	else if (*calls == 2)
		op_ghost(0);
	return 0;
}

/* A walk of everything whose callback records and adds. */
static void op_walk_writing(void)
{
	int calls = 0;

	assert_int_equal(journal_vector_since(t.n->j[0], 0, walk_writes,
					      &calls), 0);
	assert_int_equal(journal_flush(t.n->j[0]), 0);
}

/* Node I's commits fail while they hold a change at "poison": a deferred
 * foreign key that a trigger breaks, checked only at COMMIT. */
static void poison_setup(int i)
{
	static const char sql[] =
		"CREATE TABLE poison_parent (id INTEGER PRIMARY KEY);"
		"CREATE TABLE poison (p INTEGER REFERENCES poison_parent(id) "
		"DEFERRABLE INITIALLY DEFERRED);"
		"CREATE TRIGGER poison_commit AFTER INSERT ON changes "
		"WHEN NEW.path = 'poison' BEGIN INSERT INTO poison "
		"VALUES (1); END;";
	char db[128];
	sqlite3 *h = NULL;

	snprintf(db, sizeof(db), "%s/n%d.db", t.n->dir, i);
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 10000);
	assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
}

static void test_vector_matches_sql(void **state)
{
	(void)state;
	for (int step = 0; step < STEPS; step++) {
		int i = (int)pick(NODES), k = (int)pick(NODES);
		int exchanges = t.n->exchanges;
		bool any = false;

		switch (pick(10)) {
		case 0: case 1:
			op_put(i);
			break;
		case 2:
			assert_int_equal(journal_flush(t.n->j[i]), 0);
			break;
		case 3: case 4:
			/* Nothing of a node's leaves it uncommitted (the
			 * pump syncs first). */
			assert_int_equal(journal_flush(t.n->j[i]), 0);
			if (i != k)
				net_deliver(t.n, i, k);
			break;
		case 5:
			op_ghost(i);
			break;
		case 6:
			op_compact(i);
			any = true;
			break;
		case 7:
			if (i != k)
				net_exchange(t.n, i, k);
			any = true;
			break;
		case 8:
			if (pick(2))
				op_rollback(i);
			else
				op_refused(i);
			any = true;
			break;
		case 9:
			op_walk_writing();
			break;
		}
		check_all(any || t.n->exchanges != exchanges);
	}
	/* Everything converges still. */
	net_settle(t.n);
	check_all(true);
}

/* Own changes leave the node once signed: a signature touches the own
 * origin although its seq stays. */
static void test_vector_signing_touches_own(void **state)
{
	struct journal *j = t.n->j[0];
	struct since s;
	uint64_t gen;

	(void)state;
	journal_set_sign_interval(j, 3600LL * 1000000000);
	net_put(t.n, 0, "a", 0);
	assert_int_equal(journal_flush(j), 0);      /* the first is signed */
	net_put(t.n, 0, "b", 1);
	assert_int_equal(journal_flush(j), 0);      /* this one waits */
	assert_true(journal_signed_seq(j) < journal_have(j, t.n->origin[0]));
	gen = journal_vector_gen(j);
	memset(&s, 0, sizeof(s));
	assert_int_equal(journal_vector_since(j, gen, since_add, &s), 0);
	assert_int_equal(s.v.n, 0);
	assert_int_equal(journal_chain_sign_due(j, true), 1);
	assert_int_equal(journal_flush(j), 0);
	assert_int_equal(journal_vector_since(j, gen, since_add, &s), 0);
	assert_int_equal(s.v.n, 1);
	assert_string_equal(s.v.refs[0].origin, t.n->origin[0]);
	vec_free(&s.v);
}

/* A made-up origin on one node costs the others nothing: their pumps
 * see only what changed on them. */
static void test_vector_since_is_what_changed(void **state)
{
	struct since s;
	uint64_t gen;

	(void)state;
	for (unsigned g = 0; g < 200; g++)
		assert_int_equal(ghost_add(t.n->j[1], g, 1, false), 0);
	assert_int_equal(journal_flush(t.n->j[1]), 0);
	gen = journal_vector_gen(t.n->j[1]);
	assert_int_equal(ghost_add(t.n->j[1], 7, 2, false), 0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(journal_vector_since(t.n->j[1], gen, since_add, &s),
			 0);
	assert_int_equal(s.v.n, 1);
	assert_string_equal(s.v.refs[0].origin, "ghost@0000000000000007");
	assert_int_equal(s.v.refs[0].seq, 2);
	vec_free(&s.v);
}

static int setup(void **state)
{
	char db[128];

	(void)state;
	memset(&t, 0, sizeof(t));
	t.seed = (unsigned)(getenv("KRAKEN_TEST_SEED") ?
			    atoi(getenv("KRAKEN_TEST_SEED")) : 18);
	if (net_open(&t.n))
		return -1;
	for (int i = 0; i < NODES; i++) {
		assert_int_equal(journal_flush(t.n->j[i]), 0);
		poison_setup(i);
		t.seen[i].gen = journal_vector_gen(t.n->j[i]);
		assert_int_equal(journal_vector_copy(t.n->j[i],
						     &t.seen[i].v.refs,
						     &t.seen[i].v.n), 0);
		floors_of(t.n->j[i], &t.seen[i].v, &t.seen[i].floors);
	}
	snprintf(db, sizeof(db), "%s/n0.db", t.n->dir);
	return journal_open(db, NULL, JOURNAL_READONLY, &t.ro, NULL);
}

static int teardown(void **state)
{
	(void)state;
	journal_close(t.ro);
	for (int i = 0; i < NODES; i++) {
		vec_free(&t.seen[i].v);
		vec_free(&t.seen[i].floors);
	}
	return net_close(t.n);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_vector_matches_sql),
		T(test_vector_signing_touches_own),
		T(test_vector_since_is_what_changed),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
