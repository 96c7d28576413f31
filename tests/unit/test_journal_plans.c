/*
 * No statement of the journal may cost more as history grows.
 *
 * White-box: the test reaches the journal's SQLite connection through
 * journal_int.h, and watches every statement the journal runs with
 * sqlite3_trace_v2.  Two guards:
 *
 *  - Cost.  The same operations (a local re-create after a delete, an
 *    edit, a delete, a remote entry applied, a catch-up read, the API's
 *    reads) are run on a journal with a short history and on one with
 *    ten times more, and the SQLite VM steps they take are compared:
 *    steps count every row a statement visits, so a lookup that walks
 *    history shows up here however the plan reads (an index search on a
 *    value most rows share does not show in a query plan).
 *
 *    No statement may be compiled again by SQLite while the test runs
 *    (a plan that depends on a bound value is, at every new binding).
 *
 *  - Plans.  Every statement run during the test is given to EXPLAIN
 *    QUERY PLAN, and a full scan of changes, bases, content_chunks or
 *    current fails it, unless the statement is one of the few that read
 *    everything on purpose (listed with the reason).
 */
#include "content.h"
#include "journal.h"
#include "journal_int.h"

#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#define MAX_SQL 256

/* Every distinct statement text seen, and VM steps counted. */
static struct {
	char *sql[MAX_SQL];
	int n;
	uint64_t steps;
} seen;

static int on_trace(unsigned type, void *ctx, void *p, void *x)
{
	sqlite3_stmt *s = p;
	const char *sql;

	(void)ctx;
	(void)x;
	if (type == SQLITE_TRACE_PROFILE) {
		uint64_t k = (uint64_t)sqlite3_stmt_status(
			s, SQLITE_STMTSTATUS_VM_STEP, 1);

		seen.steps += k;
		if (getenv("PLANS_DEBUG") && k > 1000)
			fprintf(stderr, "%llu steps: %s\n",
				(unsigned long long)k, sqlite3_sql(s));
		return 0;
	}
	sql = sqlite3_sql(s);
	if (!sql)
		return 0;
	for (int i = 0; i < seen.n; i++)
		if (strcmp(seen.sql[i], sql) == 0)
			return 0;
	if (seen.n < MAX_SQL)
		seen.sql[seen.n++] = strdup(sql);
	return 0;
}

static void watch(struct journal *j)
{
	/* Steps counted before now (building the history) are not ours. */
	for (sqlite3_stmt *s = sqlite3_next_stmt(j->db, NULL); s;
	     s = sqlite3_next_stmt(j->db, s))
		sqlite3_stmt_status(s, SQLITE_STMTSTATUS_VM_STEP, 1);
	sqlite3_trace_v2(j->db, SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE,
			 on_trace, NULL);
}

static struct stat stat_of(mode_t mode, off_t size)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_mode = mode;
	st.st_size = size;
	st.st_mtim.tv_sec = 1000;
	st.st_ino = 7;
	return st;
}

static void put(struct journal *j, const char *path, const char *text)
{
	struct content c = { 0 };
	struct stat st = stat_of(S_IFREG | 0644, (off_t)strlen(text));

	assert_int_equal(content_hash_buf(text, strlen(text), &c), 0);
	assert_int_equal(journal_record_put(j, "web", path, &st, &c), 0);
	content_release(&c);
}

static void mkdir_rec(struct journal *j, const char *path)
{
	struct stat st = stat_of(S_IFDIR | 0755, 0);

	assert_int_equal(journal_record_mkdir(j, "web", path, &st), 0);
}

/* ROUNDS times: a tree of 100 directories with a file each, then rm -rf
 * of it: history that is mostly rows without a hash (mkdir, delete),
 * the case where re-creating a path once cost time per row of history. */
static void make_history(struct journal *j, int rounds)
{
	char p[64];

	for (int r = 0; r < rounds; r++) {
		mkdir_rec(j, "t");
		for (int k = 0; k < 100; k++) {
			snprintf(p, sizeof(p), "t/d%d", k);
			mkdir_rec(j, p);
			snprintf(p, sizeof(p), "t/d%d/f", k);
			put(j, p, p);
		}
		assert_int_equal(journal_record_delete(j, "web", "t"), 0);
		assert_int_equal(journal_flush(j), 0);
	}
}

struct node {
	char dir[64];
	struct journal *j, *peer;
	char peer_origin[JOURNAL_ORIGIN_MAX];
};

static void node_open(struct node *n, int rounds)
{
	char db[128];
	struct journal_info info;
	struct stat st = stat_of(S_IFDIR | 0755, 0);

	snprintf(n->dir, sizeof(n->dir), "/tmp/kraken-plans-XXXXXX");
	assert_non_null(mkdtemp(n->dir));
	snprintf(db, sizeof(db), "%s/vm1.db", n->dir);
	assert_int_equal(journal_open(db, "vm1", 0, &n->j, NULL), 0);
	snprintf(db, sizeof(db), "%s/vm2.db", n->dir);
	assert_int_equal(journal_open(db, "vm2", 0, &n->peer, NULL), 0);
	assert_int_equal(journal_info(n->peer, &info), 0);
	snprintf(n->peer_origin, sizeof(n->peer_origin), "%s", info.origin);
	assert_int_equal(journal_record_volume(n->j, "web", true, &st), 0);
	assert_int_equal(journal_record_volume(n->peer, "web", true, &st), 0);
	make_history(n->j, rounds);
	make_history(n->peer, rounds);
	watch(n->j);
}

static void node_close(struct node *n)
{
	char cmd[128];

	journal_close(n->j);
	journal_close(n->peer);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", n->dir);
	assert_int_equal(system(cmd), 0);
}

static int add_one(void *arg, const struct journal_change *c)
{
	int err = journal_add_remote(arg, c);

	assert_true(err == 0 || err == -EALREADY);
	return 0;
}

static int count_one(void *arg, const struct journal_change *c)
{
	(void)c;
	++*(int *)arg;
	return 0;
}

static int count_state(void *arg, const char *v, const char *p,
		       const struct journal_state *s)
{
	(void)v;
	(void)p;
	(void)s;
	++*(int *)arg;
	return 0;
}

static int count_vec(void *arg, const char *o, uint64_t seq)
{
	(void)o;
	(void)seq;
	++*(int *)arg;
	return 0;
}

static int count_mount(void *arg, const char *v, const char *id, int64_t ns)
{
	(void)v;
	(void)id;
	(void)ns;
	++*(int *)arg;
	return 0;
}

static int count_conflict(void *arg, const struct journal_conflict *c)
{
	(void)c;
	++*(int *)arg;
	return 0;
}

/* The peer's newest entries, as a peer session delivers them. */
static void deliver(struct node *n)
{
	uint64_t have = journal_have(n->j, n->peer_origin);

	assert_int_equal(journal_entries_since(n->peer, n->peer_origin, have,
					       1000, add_one, n->j), 0);
	assert_int_equal(journal_flush(n->j), 0);
}

static void apply_jobs(struct node *n)
{
	struct journal_job jobs[16];
	int k = journal_jobs(n->j, NULL, jobs, 16);

	assert_true(k >= 0);
	for (int i = 0; i < k; i++) {
		struct stat st = stat_of(jobs[i].mode, (off_t)jobs[i].size);

		if (i == 0)
			assert_int_equal(journal_job_defer(n->j, &jobs[i]), 0);
		assert_int_equal(journal_job_done(n->j, &jobs[i],
			jobs[i].op == JOURNAL_DELETE ? NULL : &st), 0);
		journal_job_release(&jobs[i]);
	}
	assert_int_equal(journal_flush(n->j), 0);
}

/* The operations whose cost must not depend on history; returns the VM
 * steps they took.  Each is something a node does all day. */
static int stage_one(void *arg, const struct journal_change *c)
{
	return journal_exchange_stage(arg, c);
}

static uint64_t operations(struct node *n)
{
	struct journal_filter f = { .volume = "web", .limit = 20 };
	struct journal_state st;
	struct journal_info info;
	struct content c = { 0 };
	char volume[256], *path = NULL;
	uint8_t hash[CONTENT_HASH_LEN];
	uint64_t off, count, steps;
	uint32_t len;
	int k = 0;

	seen.steps = 0;
	/* Local: re-create what was deleted, edit, chmod, delete. */
	mkdir_rec(n->j, "t");
	mkdir_rec(n->j, "t/d1");
	put(n->j, "t/d1/f", "new");
	put(n->j, "t/d1/f", "newer");
	{
		struct stat m = stat_of(S_IFREG | 0600, 5);

		assert_int_equal(journal_record_meta(n->j, "web", "t/d1/f", &m),
				 0);
	}
	{
		struct stat s = stat_of(S_IFLNK | 0777, 1);

		assert_int_equal(journal_record_symlink(n->j, "web", "t/l", &s,
							"f"), 0);
	}
	assert_int_equal(journal_record_delete(n->j, "web", "t/l"), 0);
	assert_int_equal(journal_flush(n->j), 0);
	assert_int_equal(journal_sync(n->j), 0);
	/* A scan's look at a path. */
	assert_int_equal(journal_lookup(n->j, "web", "t/d1/f", &st), 0);
	journal_state_release(&st);
	{
		struct stat s = stat_of(S_IFREG | 0600, 5);

		assert_int_equal(journal_touch_state(n->j, "web", "t/d1/f", &s),
				 0);
	}
	/* Remote: the peer re-creates the same tree concurrently, a
	 * conflict on t/d1/f; its entries are applied. */
	mkdir_rec(n->peer, "t");
	mkdir_rec(n->peer, "t/d1");
	put(n->peer, "t/d1/f", "theirs");
	put(n->peer, "t/d2", "a file");
	assert_int_equal(journal_flush(n->peer), 0);
	deliver(n);
	apply_jobs(n);
	assert_int_equal(journal_job_count(n->j, &count), 0);
	/* A state exchange from the peer (what a node that was away past
	 * the pin, or is new, receives). */
	{
		struct journal_exchange *x = NULL;
		const struct journal_ref *vec;
		size_t n_vec;
		uint64_t changed;

		assert_int_equal(journal_exchange_open(n->peer, &x, &vec,
						       &n_vec), 0);
		assert_int_equal(journal_exchange_begin(n->j), 0);
		while (journal_exchange_next(n->peer, x, 64, stage_one,
					     n->j) > 0)
			;
		assert_int_equal(journal_exchange_apply(n->j, vec, n_vec,
							&changed), 0);
		journal_exchange_close(n->peer, x);
		assert_int_equal(journal_flush(n->j), 0);
	}
	/* Catch-up: what a peer asks for after HELLO. */
	assert_int_equal(journal_range_bytes(n->j, journal_origin(n->j),
					     n->j->next_seq - 5, &off), 0);
	assert_int_equal(journal_entries_since(n->j, journal_origin(n->j),
					       n->j->next_seq - 5, 100,
					       count_one, &k), 0);
	assert_true(journal_last_change_id(n->j) > 0);
	/* Content: a transfer's chunk lookups. */
	assert_int_equal(content_hash_buf("newer", 5, &c), 0);
	memcpy(hash, c.hash, sizeof(hash));
	content_release(&c);
	assert_int_equal(journal_content_load(n->j, hash, &c), 0);
	if (journal_chunk_source(n->j, c.chunks[0].hash, volume,
				 sizeof(volume), &path, &off, &len) == 0)
		free(path);
	content_release(&c);
	/* Start-up and rollback: the counters read back. */
	assert_int_equal(journal_load_counters(n->j), 0);
	/* Retention: a peer's report and a compaction pass, with the
	 * default retention, over history that is all recent. */
	{
		static const char *const ids[] = { "vm1", "vm2" };
		struct journal_ref ack = { .seq = 1 };
		struct journal_retention r = { 30 * 86400LL * 1000000000, 0,
					       0 };
		struct journal_compact_stats cs;
		int64_t at = 0;

		snprintf(ack.origin, sizeof(ack.origin), "%s",
			 journal_origin(n->j));
		r.now_ns = (int64_t)time(NULL) * 1000000000;
		r.pin_max_ns = 3 * r.retention_ns;
		assert_int_equal(journal_peers_set(n->j, ids, 2, r.now_ns), 0);
		assert_int_equal(journal_peer_report(n->j, "vm2", &ack, 1,
						     r.now_ns), 0);
		assert_int_equal(journal_compact(n->j, &r, &cs), 0);
		assert_int_equal(cs.changes + cs.tombstones, 0);
		assert_int_equal(journal_compacted_before(n->j, &at), 0);
		assert_true(journal_floor(n->j, journal_origin(n->j)) == 0);
	}
	/* A volume made and removed; the agent's facts beside the journal. */
	{
		struct stat d = stat_of(S_IFDIR | 0755, 0);
		char *v = NULL;

		assert_int_equal(journal_record_volume(n->j, "tmpvol", true, &d),
				 0);
		assert_int_equal(journal_record_volume(n->j, "tmpvol", false,
						       &d), 0);
		assert_int_equal(journal_meta_set(n->j, "volume_root", "/x"), 0);
		assert_int_equal(journal_meta_get(n->j, "volume_root", &v), 0);
		free(v);
		assert_int_equal(journal_flush(n->j), 0);
	}
	/* A chunk list learned from a peer, and lookups grouped. */
	assert_int_equal(content_hash_buf("from a peer", 11, &c), 0);
	assert_int_equal(journal_content_store(n->j, &c, NULL), 0);
	content_release(&c);
	assert_int_equal(journal_flush(n->j), 0);
	assert_int_equal(journal_read_begin(n->j), 0);
	assert_int_equal(journal_lookup(n->j, "web", "t/d2", &st), 0);
	journal_state_release(&st);
	journal_read_end(n->j);
	/* The API's reads. */
	assert_int_equal(journal_foreach_state(n->j, "web", count_state, &k),
			 0);
	assert_int_equal(journal_mounts(n->j, count_mount, &k), 0);
	assert_int_equal(journal_log(n->j, &f, count_one, &k), 0);
	f.path_prefix = "t/d1";
	f.origin = "vm2";
	f.op = JOURNAL_PUT;
	assert_int_equal(journal_log(n->j, &f, count_one, &k), 0);
	assert_int_equal(journal_vector(n->j, count_vec, &k), 0);
	assert_int_equal(journal_foreach_volume(n->j, count_state, &k), 0);
	assert_int_equal(journal_conflicts(n->j, "web", count_conflict, &k), 0);
	assert_int_equal(journal_mount_add(n->j, "web", "c1"), 0);
	assert_int_equal(journal_mount_count(n->j, "web", &count), 0);
	assert_int_equal(journal_mount_remove(n->j, "web", "c1"), 0);
	assert_int_equal(journal_info(n->j, &info), 0);
	steps = seen.steps;
	/* Every version of one path: reads as many rows as it returns. */
	assert_int_equal(journal_history(n->j, "web", "t/d1/f", count_one, &k),
			 0);
	/* The audit log without a volume: the dashboard's newest page, and
	 * the searches of kraken-journal log (see whole_reads). */
	{
		struct journal_filter g = { .limit = 20 };

		assert_int_equal(journal_log(n->j, &g, count_one, &k), 0);
		g.before_id = journal_last_change_id(n->j) - 5;
		assert_int_equal(journal_log(n->j, &g, count_one, &k), 0);
		g.before_id = 0;
		g.since_ns = 1;
		g.until_ns = INT64_MAX;
		assert_int_equal(journal_log(n->j, &g, count_one, &k), 0);
		g.since_ns = g.until_ns = 0;
		g.origin = "vm2";
		assert_int_equal(journal_log(n->j, &g, count_one, &k), 0);
		g.origin = NULL;
		g.op = JOURNAL_DELETE;
		g.path_prefix = "t/";
		assert_int_equal(journal_log(n->j, &g, count_one, &k), 0);
	}
	return steps;
}

/* Statements of the connection that SQLite had to compile again: a
 * plan that depends on a bound value (a partial index whose WHERE names a
 * column that the statement compares with a parameter) is recompiled at
 * every new binding, which cost a third of a record's time. */
static int reprepared(struct journal *j)
{
	int n = 0;

	for (sqlite3_stmt *s = sqlite3_next_stmt(j->db, NULL); s;
	     s = sqlite3_next_stmt(j->db, s)) {
		if (sqlite3_stmt_status(s, SQLITE_STMTSTATUS_REPREPARE, 0) > 0) {
			print_error("re-prepared: %s\n", sqlite3_sql(s));
			n++;
		}
	}
	return n;
}

static void test_cost_flat_with_history(void **state)
{
	struct node small, large;
	uint64_t s, l;

	(void)state;
	node_open(&small, 5);
	node_open(&large, 50);
	s = operations(&small);
	if (getenv("PLANS_DEBUG"))
		fprintf(stderr, "---- large\n");
	l = operations(&large);
	if (getenv("PLANS_DEBUG"))
		fprintf(stderr, "---- end\n");
	print_message("VM steps: %llu with %d rounds of history, %llu with %d\n",
		      (unsigned long long)s, 5, (unsigned long long)l, 50);
	/* Ten times the history: a B-tree one level deeper at most. */
	assert_true(l <= s + s / 10);
	assert_int_equal(reprepared(small.j), 0);
	assert_int_equal(reprepared(large.j), 0);
	node_close(&small);
	node_close(&large);
}

/* Table and alias names of the tables that grow with history, as they
 * appear in SQL text: "changes", "changes c", "changes AS c". */
static const char *const guarded[] = { "changes", "bases", "content_chunks",
				       "current" };

static bool is_guarded(const char *name)
{
	for (size_t i = 0; i < sizeof(guarded) / sizeof(guarded[0]); i++)
		if (strcmp(name, guarded[i]) == 0)
			return true;
	return false;
}

static bool keyword(const char *w)
{
	static const char *const kw[] = { "WHERE", "JOIN", "ON", "LEFT",
		"CROSS", "INNER", "USING", "GROUP", "ORDER", "LIMIT", "SET",
		"VALUES", "AS", "UNION", "SELECT", "NOT", "INDEXED", "JOIN",
		"DEFAULT", "EXCEPT", "INTERSECT", "WINDOW", "HAVING", NULL };

	for (int i = 0; kw[i]; i++)
		if (strcasecmp(w, kw[i]) == 0)
			return true;
	return false;
}

/* Does NAME in a plan line ("SCAN c") stand for a guarded table in SQL? */
static bool names_guarded(const char *sql, const char *name)
{
	char words[512][64];
	int n = 0;
	const char *p = sql;

	if (is_guarded(name))
		return true;
	while (*p && n < 512) {
		size_t k = 0;

		while (*p && !(isalnum((unsigned char)*p) || *p == '_'))
			p++;
		while (*p && (isalnum((unsigned char)*p) || *p == '_')) {
			if (k < 63)
				words[n][k++] = *p;
			p++;
		}
		words[n][k] = '\0';
		if (k)
			n++;
	}
	for (int i = 0; i + 1 < n; i++) {
		int a = i + 1;

		if (!is_guarded(words[i]))
			continue;
		if (strcasecmp(words[a], "AS") == 0 && a + 1 < n)
			a++;
		if (!keyword(words[a]) && strcmp(words[a], name) == 0)
			return true;
	}
	return false;
}

/* Statements that read a whole table on purpose, none of them on the
 * record, apply, catch-up or API paths that run all day. */
static const char *const whole_reads[] = {
	/* journal_check (kraken-journal verify): every origin's seqs. */
	"HAVING count(*) != max(c.seq)",
};

/* A scan of a partial index reads only the rows it holds (the volume
 * roots, say), not the table. */
static bool partial_index_scan(sqlite3 *db, const char *detail)
{
	const char *at = strstr(detail, "INDEX ");
	sqlite3_stmt *s = NULL;
	bool partial = false;

	if (!at)
		return false;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_schema "
		"WHERE type = 'index' AND name = ?1 AND sql LIKE '% WHERE %'",
		-1, &s, NULL), SQLITE_OK);
	sqlite3_bind_text(s, 1, at + 6, (int)strcspn(at + 6, " "),
			  SQLITE_STATIC);
	partial = sqlite3_step(s) == SQLITE_ROW;
	sqlite3_finalize(s);
	return partial;
}

static bool allowed(const char *sql)
{
	for (size_t i = 0; i < sizeof(whole_reads) / sizeof(whole_reads[0]);
	     i++)
		if (strstr(sql, whole_reads[i]))
			return true;
	return false;
}

static void test_no_full_scans(void **state)
{
	struct node n;
	char *why = NULL;
	int bad = 0;
	sqlite3 *db;
	char path[128];

	(void)state;
	node_open(&n, 3);
	operations(&n);
	assert_int_equal(journal_check(n.j, &why), 0);
	snprintf(path, sizeof(path), "%s/vm1.db", n.dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	print_message("%d statements checked\n", seen.n);
	assert_true(seen.n >= 40);
	for (int i = 0; i < seen.n; i++) {
		char *eqp = sqlite3_mprintf("EXPLAIN QUERY PLAN %s",
					    seen.sql[i]);
		sqlite3_stmt *s = NULL;

		if (strncmp(seen.sql[i], "PRAGMA", 6) == 0 ||
		    strncmp(seen.sql[i], "SAVEPOINT", 9) == 0 ||
		    strncmp(seen.sql[i], "RELEASE", 7) == 0 ||
		    strncmp(seen.sql[i], "ROLLBACK", 8) == 0 ||
		    strncmp(seen.sql[i], "BEGIN", 5) == 0 ||
		    strncmp(seen.sql[i], "COMMIT", 6) == 0) {
			sqlite3_free(eqp);
			continue;
		}
		assert_int_equal(sqlite3_prepare_v2(db, eqp, -1, &s, NULL),
				 SQLITE_OK);
		while (sqlite3_step(s) == SQLITE_ROW) {
			const char *d = (const char *)sqlite3_column_text(s, 3);
			char name[64];

			if (sscanf(d, "SCAN %63s", name) != 1 ||
			    !names_guarded(seen.sql[i], name) ||
			    allowed(seen.sql[i]) || partial_index_scan(db, d))
				continue;
			print_error("full scan (%s) in: %s\n", d, seen.sql[i]);
			bad++;
		}
		sqlite3_finalize(s);
		sqlite3_free(eqp);
	}
	sqlite3_close(db);
	node_close(&n);
	assert_int_equal(bad, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cost_flat_with_history),
		cmocka_unit_test(test_no_full_scans),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	if (getenv("PLANS_LIST"))
		for (int i = 0; i < seen.n; i++)
			printf("SQL: %s\n", seen.sql[i]);

	for (int i = 0; i < seen.n; i++)
		free(seen.sql[i]);
	return rc;
}
