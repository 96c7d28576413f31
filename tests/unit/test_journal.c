/*
 * Journal: identity, migrations, recording, batching, queries, and a
 * writer killed with SIGKILL in the middle of a burst.
 */
#include "content.h"
#include "err.h"
#include "journal.h"
#include "journal_int.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

struct fixture {
	char dir[64];
	char db[128];
	struct journal *j;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char *err = NULL;

	snprintf(f->dir, sizeof(f->dir), "/tmp/kraken-journal-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/journal.db", f->dir);
	if (journal_open(f->db, "vm1", 0, &f->j, &err) != 0) {
		fprintf(stderr, "open: %s\n", err ? err : "?");
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	journal_close(f->j);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static struct stat file_stat(mode_t perm, off_t size, time_t mtime)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFREG | perm;
	st.st_size = size;
	st.st_uid = 1000;
	st.st_gid = 1000;
	st.st_mtim.tv_sec = mtime;
	st.st_ino = 42;
	return st;
}

static struct stat dir_stat(void)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFDIR | 0755;
	return st;
}

static void put_text(struct journal *j, const char *vol, const char *path,
		     const char *text)
{
	struct content c = { 0 };
	struct stat st = file_stat(0644, (off_t)strlen(text), 1000);

	assert_int_equal(content_hash_buf(text, strlen(text), &c), 0);
	assert_int_equal(journal_record_put(j, vol, path, &st, &c), 0);
	content_release(&c);
}

static void make_volume(struct journal *j, const char *vol)
{
	struct stat st = dir_stat();

	assert_int_equal(journal_record_volume(j, vol, true, &st), 0);
}

/* Collects log entries for assertions. */
struct seen {
	size_t n;
	char ops[64][16];
	char paths[64][64];
	uint64_t seq[64];
	uint64_t lamport[64];
	size_t n_bases[64];
	uint64_t base_seq[64];
};

static int collect(void *arg, const struct journal_change *c)
{
	struct seen *s = arg;

	if (s->n < 64) {
		snprintf(s->ops[s->n], 16, "%s", journal_op_name(c->op));
		snprintf(s->paths[s->n], 64, "%s/%s", c->volume, c->path);
		s->seq[s->n] = c->ref.seq;
		s->lamport[s->n] = c->lamport;
		s->n_bases[s->n] = c->n_bases;
		s->base_seq[s->n] = c->n_bases ? c->bases[0].seq : 0;
	}
	s->n++;
	return 0;
}

static void test_identity_and_reopen(void **state)
{
	struct fixture *f = *state;
	struct journal_info info;
	struct journal *other = NULL;
	char *err = NULL;
	char origin[JOURNAL_ORIGIN_MAX];

	assert_int_equal(journal_info(f->j, &info), 0);
	assert_string_equal(info.node_id, "vm1");
	assert_int_equal(strncmp(info.origin, "vm1@", 4), 0);
	assert_int_equal(strlen(info.origin), 4 + 16);
	snprintf(origin, sizeof(origin), "%s", info.origin);
	journal_close(f->j);

	/* The same node reopens with the same origin. */
	assert_int_equal(journal_open(f->db, "vm1", 0, &f->j, NULL), 0);
	assert_int_equal(journal_info(f->j, &info), 0);
	assert_string_equal(info.origin, origin);

	/* Another node id is refused with a message naming both. */
	assert_int_equal(journal_open(f->db, "vm2", 0, &other, &err),
			 KR_EIDENTITY);
	assert_null(other);
	assert_non_null(strstr(err, "vm1"));
	assert_non_null(strstr(err, "vm2"));
	free(err);
	err = NULL;

	/* Ids go into file names: "." and ".." are no node's (nodeid.h). */
	assert_int_equal(journal_open(f->db, "..", 0, &other, &err), -EINVAL);
	assert_null(other);
	assert_non_null(strstr(err, "invalid node id"));
	free(err);
}

/* Statements are cached by the address of their text, one per call
 * site: more call sites than any fixed room must not make the next one
 * fail (it failed with SQLITE_FULL, which reads as "disk full"). */
static void test_statement_cache_grows(void **state)
{
	struct fixture *f = *state;
	static char sql[300][32];
	sqlite3_stmt *s;

	for (int i = 0; i < 300; i++) {
		snprintf(sql[i], sizeof(sql[i]), "SELECT %d", i);
		assert_int_equal(journal_prepare_cached(f->j, sql[i], &s),
				 SQLITE_OK);
		assert_int_equal(sqlite3_step(s), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int(s, 0), i);
		journal_stmt_done(s);
	}
	/* Each text still finds its own statement. */
	assert_int_equal(journal_prepare_cached(f->j, sql[7], &s), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), 7);
	journal_stmt_done(s);
}

static void test_new_journal_new_epoch(void **state)
{
	struct fixture *f = *state;
	struct journal_info a, b;
	struct journal *j2 = NULL;
	char db2[160];

	snprintf(db2, sizeof(db2), "%s/second.db", f->dir);
	assert_int_equal(journal_open(db2, "vm1", 0, &j2, NULL), 0);
	assert_int_equal(journal_info(f->j, &a), 0);
	assert_int_equal(journal_info(j2, &b), 0);
	/* A lost journal recreated for the same node is a new origin. */
	assert_string_not_equal(a.origin, b.origin);
	journal_close(j2);
}

static void test_migrations(void **state)
{
	struct fixture *f = *state;
	struct journal_info info;
	struct journal *j = NULL;
	sqlite3 *db;
	char *err = NULL;

	assert_int_equal(journal_info(f->j, &info), 0);
	assert_true(info.schema_version >= 1);
	journal_close(f->j);
	f->j = NULL;

	/* Reopening applies nothing twice. */
	assert_int_equal(journal_open(f->db, "vm1", 0, &j, NULL), 0);
	journal_close(j);

	/* A schema from the future is refused, not damaged. */
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 999", NULL,
				      NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(journal_open(f->db, "vm1", 0, &j, &err), KR_ESCHEMA);
	assert_non_null(strstr(err, "999"));
	free(err);
}

extern const char *const journal_migrations[];
extern const size_t journal_migrations_count;

/* A journal made by schema VERSION's code, with ROWS, at DB. */
static void old_journal(struct fixture *f, int version, const char *rows,
			char *db, size_t cap)
{
	sqlite3 *s;

	snprintf(db, cap, "%s/v%d.db", f->dir, version);
	assert_int_equal(sqlite3_open(db, &s), SQLITE_OK);
	for (int v = 0; v < version; v++)
		assert_int_equal(sqlite3_exec(s, journal_migrations[v], NULL,
					      NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(s, rows, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(s);
}

/* A journal of schema 3 with jobs queued: opening it places every job in
 * the queue (schema 4), parents first and deletes last. */
static void test_migration_orders_jobs(void **state)
{
	static const char rows[] =
		"INSERT INTO origins (id, node, epoch) VALUES "
		"(1, 'vm2', '0123456789abcdef');"
		"INSERT INTO changes (id, origin, seq, lamport, wall_ns, volume, "
		"path, op, mode, uid, gid, size, mtime_ns) VALUES "
		"(1, 1, 1, 1, 1, 'data', 'd', 4, 0, 0, 0, 0, 0),"
		"(2, 1, 2, 2, 2, 'data', 'd/x.txt', 1, 33188, 0, 0, 0, 0),"
		"(3, 1, 3, 3, 3, 'data', 'e', 2, 16877, 0, 0, 0, 0);"
		"INSERT INTO jobs (volume, path, change) VALUES "
		"('data', 'd', 1), ('data', 'd/x.txt', 2), ('data', 'e', 3);"
		"PRAGMA user_version = 3;";
	static const char *const want[] = { "e", "d/x.txt", "d" };
	static const int64_t order[] = { 1, 7, (1 << 20) - 1 };
	struct fixture *f = *state;
	struct journal_job jobs[4];
	struct journal *j = NULL;
	char db[160];

	old_journal(f, 3, rows, db, sizeof(db));

	assert_int_equal(journal_open(db, "vm1", 0, &j, NULL), 0);
	assert_int_equal(journal_jobs(j, NULL, jobs, 4), 3);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(jobs[i].path, want[i]);
		assert_int_equal(jobs[i].order, order[i]);
		journal_job_release(&jobs[i]);
	}
	journal_close(j);
}

static int64_t query_one(const char *db, const char *sql)
{
	sqlite3 *s;
	sqlite3_stmt *st;
	int64_t v = -1;

	assert_int_equal(sqlite3_open(db, &s), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(s, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(s);
	return v;
}

/* A journal of schema 4 with history: opening it upgrades it in place,
 * with the counts status shows and the merges conflicts start from
 * taken from the rows already there, and kept from then on. */
static void test_migration_counts_and_merges(void **state)
{
	static const char rows[] =
		"INSERT INTO origins (id, node, epoch) VALUES "
		"(1, 'vm2', '0123456789abcdef');"
		"INSERT INTO changes (id, origin, seq, lamport, wall_ns, volume, "
		"path, op, mode, uid, gid, size, mtime_ns, hash) VALUES "
		"(1, 1, 1, 1, 1, 'data', '', 6, 16877, 0, 0, 0, 0, NULL),"
		"(2, 1, 2, 2, 2, 'data', 'a', 1, 33188, 0, 0, 2, 0, zeroblob(32)),"
		"(3, 1, 3, 3, 3, 'data', 'b', 1, 33188, 0, 0, 2, 0, zeroblob(32)),"
		"(4, 1, 4, 4, 4, 'data', 'b', 4, 0, 0, 0, 0, 0, NULL),"
		"(5, 1, 5, 5, 5, 'data', 'a', 1, 33188, 0, 0, 2, 0, zeroblob(32));"
		"INSERT INTO bases (change, origin, seq) VALUES "
		"(4, 1, 3), (5, 1, 2), (5, 1, 4);"
		"INSERT INTO contents (hash, size, n_chunks) VALUES "
		"(zeroblob(32), 2, 2);"
		"INSERT INTO content_chunks (content, idx, chunk, offset, len) "
		"VALUES (zeroblob(32), 0, zeroblob(32), 0, 1),"
		"(zeroblob(32), 1, zeroblob(32), 1, 1);"
		"INSERT INTO current (volume, path, change) VALUES "
		"('data', '', 1), ('data', 'a', 5), ('data', 'b', 4);"
		"INSERT INTO heads (volume, path, change) VALUES "
		"('data', '', 1), ('data', 'a', 5), ('data', 'b', 4);"
		"PRAGMA user_version = 4;";
	struct fixture *f = *state;
	struct journal_info info;
	struct journal *j = NULL;
	char db[160];

	old_journal(f, 4, rows, db, sizeof(db));

	assert_int_equal(journal_open(db, "vm1", 0, &j, NULL), 0);
	assert_int_equal(journal_info(j, &info), 0);
	assert_int_equal(info.schema_version, (int)journal_migrations_count);
	assert_int_equal(info.n_changes, 5);
	assert_int_equal(info.n_paths, 1);        /* a; b was deleted */
	assert_int_equal(info.n_volumes, 1);
	assert_int_equal(info.n_contents, 1);
	assert_int_equal(info.n_chunks, 2);
	assert_int_equal(query_one(db, "SELECT group_concat(change) FROM merges"),
			 5);
	/* And kept from then on by the triggers. */
	put_text(j, "data", "c", "c");
	assert_int_equal(journal_record_delete(j, "data", "a"), 0);
	make_volume(j, "more");
	assert_int_equal(journal_flush(j), 0);
	assert_int_equal(journal_info(j, &info), 0);
	assert_int_equal(info.n_changes, 8);
	assert_int_equal(info.n_paths, 1);        /* c */
	assert_int_equal(info.n_volumes, 2);
	assert_int_equal(info.n_contents, 2);
	assert_int_equal(info.n_chunks, 3);
	assert_int_equal(journal_record_volume(j, "more", false, NULL), 0);
	assert_int_equal(journal_flush(j), 0);
	assert_int_equal(journal_info(j, &info), 0);
	assert_int_equal(info.n_volumes, 1);
	journal_close(j);
	/* The same numbers as counting every row. */
	assert_int_equal(query_one(db, "SELECT count(*) FROM changes"),
			 query_one(db, "SELECT n FROM counts WHERE name = 'changes'"));
	assert_int_equal(query_one(db, "SELECT count(*) FROM current cur JOIN "
				   "changes c ON c.id = cur.change WHERE "
				   "cur.path != '' AND c.mode != 0"),
			 query_one(db, "SELECT n FROM counts WHERE name = 'paths'"));
}

static void test_record_seq_lamport_bases(void **state)
{
	struct fixture *f = *state;
	struct seen s = { 0 };
	struct journal_filter all = { .oldest_first = true };

	make_volume(f->j, "data");
	put_text(f->j, "data", "a.txt", "one");
	put_text(f->j, "data", "a.txt", "two");
	put_text(f->j, "data", "b.txt", "bee");
	assert_int_equal(journal_flush(f->j), 0);

	assert_int_equal(journal_log(f->j, &all, collect, &s), 0);
	assert_int_equal(s.n, 4);
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(s.seq[i], i + 1);       /* gapless */
		if (i)
			assert_true(s.lamport[i] > s.lamport[i - 1]);
	}
	assert_string_equal(s.ops[0], "volume-create");
	/* The second version of a.txt names the first as its base. */
	assert_int_equal(s.n_bases[1], 0);
	assert_int_equal(s.n_bases[2], 1);
	assert_int_equal(s.base_seq[2], 2);
	assert_int_equal(s.n_bases[3], 0);
}

static void test_lookup_current(void **state)
{
	struct fixture *f = *state;
	struct journal_state st;
	struct content c = { 0 };

	make_volume(f->j, "data");
	put_text(f->j, "data", "x", "hello");
	assert_int_equal(content_hash_buf("hello", 5, &c), 0);
	assert_int_equal(journal_lookup(f->j, "data", "x", &st), 0);
	assert_true(S_ISREG(st.mode));
	assert_int_equal(st.size, 5);
	assert_int_equal(st.uid, 1000);
	assert_true(st.has_hash);
	assert_memory_equal(st.hash, c.hash, CONTENT_HASH_LEN);
	journal_state_release(&st);
	content_release(&c);
	assert_int_equal(journal_lookup(f->j, "data", "nope", &st), -ENOENT);

	assert_int_equal(journal_record_delete(f->j, "data", "x"), 0);
	assert_int_equal(journal_lookup(f->j, "data", "x", &st), 0);
	assert_int_equal(st.mode, 0);     /* a tombstone */
	journal_state_release(&st);
}

static void test_meta_keeps_content(void **state)
{
	struct fixture *f = *state;
	struct journal_state before, after;
	struct stat st = file_stat(0600, 5, 1000);

	make_volume(f->j, "data");
	put_text(f->j, "data", "m", "hello");
	assert_int_equal(journal_lookup(f->j, "data", "m", &before), 0);
	assert_int_equal(journal_record_meta(f->j, "data", "m", &st), 0);
	assert_int_equal(journal_lookup(f->j, "data", "m", &after), 0);
	assert_int_equal(after.mode & 07777, 0600);
	assert_true(after.has_hash);
	assert_memory_equal(after.hash, before.hash, CONTENT_HASH_LEN);
	journal_state_release(&before);
	journal_state_release(&after);
}

static void test_delete_directory_takes_subtree(void **state)
{
	struct fixture *f = *state;
	struct stat d = dir_stat();
	struct journal_state st;
	struct seen s = { 0 };
	struct journal_filter dels = { .op = JOURNAL_DELETE,
				       .oldest_first = true };

	make_volume(f->j, "data");
	assert_int_equal(journal_record_mkdir(f->j, "data", "d", &d), 0);
	assert_int_equal(journal_record_mkdir(f->j, "data", "d/e", &d), 0);
	put_text(f->j, "data", "d/e/f", "f");
	put_text(f->j, "data", "d/g", "g");
	put_text(f->j, "data", "dz", "not below d");
	assert_int_equal(journal_record_delete(f->j, "data", "d"), 0);

	assert_int_equal(journal_log(f->j, &dels, collect, &s), 0);
	assert_int_equal(s.n, 4);
	/* Deepest first, the directory itself last. */
	assert_string_equal(s.paths[0], "data/d/g");
	assert_string_equal(s.paths[1], "data/d/e/f");
	assert_string_equal(s.paths[2], "data/d/e");
	assert_string_equal(s.paths[3], "data/d");
	assert_int_equal(journal_lookup(f->j, "data", "dz", &st), 0);
	assert_true(S_ISREG(st.mode));
	journal_state_release(&st);
}

static int count_state(void *arg, const char *v, const char *p,
		       const struct journal_state *s)
{
	(void)v;
	(void)p;
	(void)s;
	(*(int *)arg)++;
	return 0;
}

static void test_volume_remove_and_recreate(void **state)
{
	struct fixture *f = *state;
	struct stat d = dir_stat();
	struct journal_info info;
	int n = 0;

	make_volume(f->j, "data");
	put_text(f->j, "data", "a", "a");
	put_text(f->j, "data", "b", "b");
	assert_int_equal(journal_record_volume(f->j, "data", false, NULL), 0);
	assert_int_equal(journal_info(f->j, &info), 0);
	assert_int_equal(info.n_volumes, 0);
	assert_int_equal(info.n_paths, 0);
	assert_int_equal(journal_record_volume(f->j, "data", true, &d), 0);
	assert_int_equal(journal_foreach_state(f->j, "data", count_state, &n), 0);
	assert_int_equal(n, 1);           /* only the new volume root */
}

static void test_batch_invisible_until_flush(void **state)
{
	struct fixture *f = *state;
	struct journal *reader = NULL;
	struct journal_info info;

	make_volume(f->j, "data");
	assert_int_equal(journal_flush(f->j), 0);
	for (int i = 0; i < 2000; i++) {
		char name[32];

		snprintf(name, sizeof(name), "f%04d", i);
		put_text(f->j, "data", name, name);
	}
	assert_int_equal(journal_pending(f->j), 2000);
	assert_int_equal(journal_open(f->db, NULL, JOURNAL_READONLY, &reader,
				      NULL), 0);
	assert_int_equal(journal_info(reader, &info), 0);
	assert_int_equal(info.n_changes, 1);
	assert_int_equal(journal_flush(f->j), 0);
	assert_int_equal(journal_pending(f->j), 0);
	assert_int_equal(journal_info(reader, &info), 0);
	assert_int_equal(info.n_changes, 2001);
	/* Identical small contents are stored once each: 2000 distinct. */
	assert_int_equal(info.n_contents, 2000);
	journal_close(reader);
}

static int collect_vector(void *arg, const char *origin, uint64_t max_seq)
{
	(void)origin;
	*(uint64_t *)arg = max_seq;
	return 0;
}

static void test_vector_and_filters(void **state)
{
	struct fixture *f = *state;
	struct journal_filter flt = { 0 };
	struct seen s = { 0 };
	uint64_t max = 0;

	make_volume(f->j, "one");
	make_volume(f->j, "two");
	put_text(f->j, "one", "docs/a", "a");
	put_text(f->j, "one", "docs/b", "b");
	put_text(f->j, "one", "src/c", "c");
	put_text(f->j, "two", "docs/d", "d");
	assert_int_equal(journal_record_delete(f->j, "one", "docs/a"), 0);
	assert_int_equal(journal_flush(f->j), 0);

	assert_int_equal(journal_vector(f->j, collect_vector, &max), 0);
	assert_int_equal(max, 7);

	flt.volume = "one";
	flt.path_prefix = "docs/";
	assert_int_equal(journal_log(f->j, &flt, collect, &s), 0);
	assert_int_equal(s.n, 3);         /* put a, put b, delete a */
	assert_string_equal(s.ops[0], "delete");   /* newest first */

	memset(&s, 0, sizeof(s));
	flt = (struct journal_filter){ .op = JOURNAL_PUT, .limit = 2 };
	assert_int_equal(journal_log(f->j, &flt, collect, &s), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.paths[0], "two/docs/d");

	memset(&s, 0, sizeof(s));
	flt = (struct journal_filter){ .origin = "vm2" };
	assert_int_equal(journal_log(f->j, &flt, collect, &s), 0);
	assert_int_equal(s.n, 0);
	flt.origin = "vm1";
	assert_int_equal(journal_log(f->j, &flt, collect, &s), 0);
	assert_int_equal(s.n, 7);

	memset(&s, 0, sizeof(s));
	flt = (struct journal_filter){ .since_ns = INT64_MAX / 2 };
	assert_int_equal(journal_log(f->j, &flt, collect, &s), 0);
	assert_int_equal(s.n, 0);
}

static void test_history_links(void **state)
{
	struct fixture *f = *state;
	struct seen s = { 0 };

	make_volume(f->j, "data");
	put_text(f->j, "data", "h", "1");
	put_text(f->j, "data", "h", "2");
	assert_int_equal(journal_record_delete(f->j, "data", "h"), 0);
	put_text(f->j, "data", "h", "3");
	assert_int_equal(journal_history(f->j, "data", "h", collect, &s), 0);
	assert_int_equal(s.n, 4);
	assert_string_equal(s.ops[2], "delete");
	/* Each version names the one before it, through the delete. */
	assert_int_equal(s.base_seq[1], s.seq[0]);
	assert_int_equal(s.base_seq[2], s.seq[1]);
	assert_int_equal(s.base_seq[3], s.seq[2]);
}

static void test_check_finds_gap(void **state)
{
	struct fixture *f = *state;
	char *why = NULL;
	sqlite3 *db;

	make_volume(f->j, "data");
	put_text(f->j, "data", "a", "a");
	put_text(f->j, "data", "b", "b");
	assert_int_equal(journal_flush(f->j), 0);
	assert_int_equal(journal_check(f->j, &why), 0);
	assert_null(why);

	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DELETE FROM bases; DELETE FROM "
				      "current; DELETE FROM changes WHERE "
				      "seq = 2", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(journal_check(f->j, &why), KR_ECORRUPT);
	assert_non_null(strstr(why, "seq"));
	free(why);
}

static void test_readonly_refuses_writes(void **state)
{
	struct fixture *f = *state;
	struct journal *ro = NULL;
	struct stat d = dir_stat();

	make_volume(f->j, "data");
	assert_int_equal(journal_flush(f->j), 0);
	assert_int_equal(journal_open(f->db, NULL, JOURNAL_READONLY, &ro, NULL),
			 0);
	assert_int_equal(journal_record_volume(ro, "other", true, &d), -EROFS);
	journal_close(ro);
}

static void test_mount_references(void **state)
{
	struct fixture *f = *state;
	struct journal *other = NULL;
	uint64_t n = 0;

	/* A second connection, as the API thread has one. */
	assert_int_equal(journal_open(f->db, NULL, 0, &other, NULL), 0);
	assert_int_equal(journal_mount_add(other, "web", "c1"), 0);
	assert_int_equal(journal_mount_add(other, "web", "c2"), 0);
	assert_int_equal(journal_mount_add(other, "web", "c2"), 0);
	assert_int_equal(journal_mount_count(f->j, "web", &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(journal_mount_remove(other, "web", "c1"), 0);
	assert_int_equal(journal_mount_remove(other, "web", "c1"), -ENOENT);
	assert_int_equal(journal_mount_count(f->j, "web", &n), 0);
	assert_int_equal(n, 1);
	journal_close(other);
}

/* The agent keeps writing after another connection (the API's) commits
 * between its reads: no read may leave a stale snapshot behind. */
static void test_writes_after_other_connection_commits(void **state)
{
	struct fixture *f = *state;
	struct journal *other = NULL;
	struct journal_state st;

	make_volume(f->j, "web");
	put_text(f->j, "web", "a", "a");
	assert_int_equal(journal_flush(f->j), 0);
	assert_int_equal(journal_lookup(f->j, "web", "a", &st), 0);
	journal_state_release(&st);
	assert_int_equal(journal_open(f->db, NULL, 0, &other, NULL), 0);
	assert_int_equal(journal_mount_add(other, "web", "c1"), 0);
	put_text(f->j, "web", "a", "b");
	assert_int_equal(journal_flush(f->j), 0);
	journal_close(other);
}

/* A synthetic chunk list: N chunks of 32 KiB named by (TAG, i). */
static void fake_list(struct content *c, size_t n, uint32_t tag)
{
	memset(c, 0, sizeof(*c));
	c->chunks = calloc(n, sizeof(*c->chunks));
	assert_non_null(c->chunks);
	c->n_chunks = c->cap_chunks = n;
	for (size_t i = 0; i < n; i++) {
		struct content_chunk *k = &c->chunks[i];

		memcpy(k->hash, &tag, sizeof(tag));
		memcpy(k->hash + 8, &i, sizeof(i));
		k->len = 32768;
		k->offset = i ? c->chunks[i - 1].offset + c->chunks[i - 1].len : 0;
	}
	c->size = c->chunks[n - 1].offset + c->chunks[n - 1].len;
	memcpy(c->hash, &tag, sizeof(tag));
	c->hash[31] = 0xcc;
}

static void fake_fix_offsets(struct content *c, uint32_t tag)
{
	for (size_t i = 0; i < c->n_chunks; i++)
		c->chunks[i].offset = i ? c->chunks[i - 1].offset +
					   c->chunks[i - 1].len : 0;
	c->size = c->chunks[c->n_chunks - 1].offset +
		  c->chunks[c->n_chunks - 1].len;
	memset(c->hash, 0, sizeof(c->hash));
	memcpy(c->hash, &tag, sizeof(tag));
	c->hash[31] = 0xcc;
}

static int64_t db_bytes(const char *db)
{
	return query_one(db, "PRAGMA page_count") *
	       query_one(db, "PRAGMA page_size");
}

static void assert_loads_as(struct journal *j, const struct content *want)
{
	struct content got;

	assert_int_equal(journal_content_load(j, want->hash, &got), 0);
	assert_int_equal(got.n_chunks, want->n_chunks);
	assert_int_equal(got.size, want->size);
	for (size_t i = 0; i < want->n_chunks; i++) {
		assert_memory_equal(got.chunks[i].hash, want->chunks[i].hash,
				    CONTENT_HASH_LEN);
		assert_int_equal(got.chunks[i].offset, want->chunks[i].offset);
		assert_int_equal(got.chunks[i].len, want->chunks[i].len);
	}
	content_release(&got);
}

static int64_t rows_of(const char *db, const uint8_t *hash)
{
	char hex[CONTENT_HEX_LEN], sql[160];

	content_hex(hash, hex);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM content_chunks "
		 "WHERE content = X'%s'", hex);
	return query_one(db, sql);
}

static void put_list(struct journal *j, const char *path,
		     const struct content *c)
{
	struct stat st = file_stat(0644, (off_t)c->size, 2000);

	assert_int_equal(journal_record_put(j, "web", path, &st, c), 0);
	assert_int_equal(journal_flush(j), 0);
}

static void assert_source(struct journal *j, const struct content_chunk *k,
			  const char *path)
{
	const uint8_t *chunk = k->hash;
	char vol[64], *p = NULL;
	uint64_t off = 0;
	uint32_t len = 0;

	assert_int_equal(journal_chunk_source(j, chunk, vol, sizeof(vol), &p,
					      &off, &len), 0);
	assert_string_equal(vol, "web");
	assert_string_equal(p, path);
	assert_int_equal(off, k->offset);
	assert_int_equal(len, k->len);
	free(p);
}

/*
 * Compact chunk lists.  A 1 GiB file (32,768 chunks), then a 1 MiB
 * overwrite in its middle, a 100 KiB insert, and an edit of that: each
 * edit adds under 64 KiB to the journal (the first version, stored whole,
 * adds megabytes), every version loads back as exactly its list, runs
 * point only at stored rows (never at runs), and chunk lookups find the
 * right offsets in the current version, which holds no rows of its own
 * for them.
 */
static void test_chunk_lists_as_runs(void **state)
{
	struct fixture *f = *state;
	struct content v1, v2, v3, v4;
	int64_t before, after;
	const size_t n = 32768, mid = 16384;

	make_volume(f->j, "web");
	assert_int_equal(journal_flush(f->j), 0);
	before = db_bytes(f->db);
	fake_list(&v1, n, 1);
	put_list(f->j, "big", &v1);
	after = db_bytes(f->db);
	print_message("1 GiB list stored whole: %lld bytes\n",
		      (long long)(after - before));
	assert_true(after - before > 2 << 20);

	/* 1 MiB overwritten: 32 new chunks, plus a changed edge chunk. */
	fake_list(&v2, n, 1);
	for (size_t i = mid; i < mid + 33; i++)
		v2.chunks[i].hash[20] = 2;
	v2.chunks[mid + 32].len = 20000;
	fake_fix_offsets(&v2, 2);
	before = db_bytes(f->db);
	put_list(f->j, "big", &v2);
	after = db_bytes(f->db);
	print_message("1 MiB edit: %lld bytes\n", (long long)(after - before));
	assert_true(after - before < 64 << 10);
	assert_loads_as(f->j, &v2);
	assert_loads_as(f->j, &v1);

	/* 100 KiB inserted: every later chunk moves. */
	memset(&v3, 0, sizeof(v3));
	v3.chunks = calloc(n + 4, sizeof(*v3.chunks));
	v3.cap_chunks = n + 4;
	memcpy(v3.chunks, v2.chunks, 100 * sizeof(*v3.chunks));
	for (size_t i = 0; i < 4; i++) {
		v3.chunks[100 + i].len = 25600;
		v3.chunks[100 + i].hash[0] = 3;
		v3.chunks[100 + i].hash[1] = (uint8_t)i;
	}
	memcpy(v3.chunks + 104, v2.chunks + 100,
	       (n - 100) * sizeof(*v3.chunks));
	v3.n_chunks = n + 4;
	fake_fix_offsets(&v3, 3);
	before = db_bytes(f->db);
	put_list(f->j, "big", &v3);
	after = db_bytes(f->db);
	print_message("100 KiB insert: %lld bytes\n", (long long)(after - before));
	assert_true(after - before < 64 << 10);
	assert_loads_as(f->j, &v3);

	/* An edit of a version that is itself runs: composed, not chained. */
	memset(&v4, 0, sizeof(v4));
	v4.chunks = calloc(n + 4, sizeof(*v4.chunks));
	v4.cap_chunks = v4.n_chunks = n + 4;
	memcpy(v4.chunks, v3.chunks, (n + 4) * sizeof(*v4.chunks));
	v4.chunks[30000].hash[21] = 4;
	fake_fix_offsets(&v4, 4);
	before = db_bytes(f->db);
	put_list(f->j, "big", &v4);
	after = db_bytes(f->db);
	assert_true(after - before < 64 << 10);
	assert_loads_as(f->j, &v4);
	assert_loads_as(f->j, &v3);
	assert_loads_as(f->j, &v1);
	/* Runs point at rows only: each run's range is all rows. */
	assert_int_equal(query_one(f->db, "SELECT count(*) FROM content_runs r "
		"WHERE r.n != (SELECT count(*) FROM content_chunks cc WHERE "
		"cc.content = r.holder AND cc.idx >= r.holder_idx AND "
		"cc.idx < r.holder_idx + r.n)"), 0);
	assert_true(query_one(f->db, "SELECT count(*) FROM content_runs") > 0);
	/* v4 has rows only for its own new chunk. */
	assert_int_equal(rows_of(f->db, v4.hash), 1);
	assert_int_equal(rows_of(f->db, v3.hash), 4);
	assert_int_equal(rows_of(f->db, v2.hash), 33);
	assert_int_equal(rows_of(f->db, v1.hash), (int64_t)n);

	/* Lookups: big is now v4; chunk 0 and a chunk past the insert are
	 * rows of v1, chunk 101 one of v3 (the insert), found in big at
	 * their v4 offsets; chunk 30000 is v4's own. */
	assert_source(f->j, &v4.chunks[0], "big");
	assert_source(f->j, &v4.chunks[20000], "big");
	assert_source(f->j, &v4.chunks[30000], "big");
	assert_source(f->j, &v4.chunks[101], "big");

	/* A list learned from a peer, stored against its base the same way. */
	memcpy(v4.chunks[5].hash, "peer", 4);
	fake_fix_offsets(&v4, 5);
	before = db_bytes(f->db);
	assert_int_equal(journal_content_store(f->j, &v4, v3.hash), 0);
	assert_int_equal(journal_flush(f->j), 0);
	after = db_bytes(f->db);
	assert_true(after - before < 64 << 10);
	assert_loads_as(f->j, &v4);
	content_release(&v1);
	content_release(&v2);
	content_release(&v3);
	content_release(&v4);
}

static void exec_sql(const char *db, const char *sql)
{
	sqlite3 *s;

	assert_int_equal(sqlite3_open(db, &s), SQLITE_OK);
	assert_int_equal(sqlite3_exec(s, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(s);
}

/* A list from a peer that fails half way through being stored leaves
 * nothing behind: a half list would count as known and never be stored
 * again.  The failure is a real SQLite error, raised by a trigger. */
static void test_content_store_all_or_nothing(void **state)
{
	struct fixture *f = *state;
	struct content c, got;

	make_volume(f->j, "web");
	assert_int_equal(journal_flush(f->j), 0);
	fake_list(&c, 10, 7);
	exec_sql(f->db, "CREATE TRIGGER fail BEFORE INSERT ON content_chunks "
		 "WHEN NEW.idx = 5 BEGIN SELECT RAISE(ABORT, 'injected'); END");
	assert_int_not_equal(journal_content_store(f->j, &c, NULL), 0);
	assert_int_equal(journal_flush(f->j), 0);
	assert_int_equal(journal_content_load(f->j, c.hash, &got), -ENOENT);
	assert_int_equal(rows_of(f->db, c.hash), 0);
	exec_sql(f->db, "DROP TRIGGER fail");
	assert_int_equal(journal_content_store(f->j, &c, NULL), 0);
	assert_int_equal(journal_flush(f->j), 0);
	assert_loads_as(f->j, &c);
	content_release(&c);
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : 0;
}

/*
 * Under a sustained write load the WAL stays bounded and its pages reach
 * the database file while the writer runs (not only at close): a commit
 * per change, the way the agent commits when changes trickle in, at about
 * 40 KiB of WAL each, well past 64 MiB of frames in all.  The background
 * checkpointer once ran on a connection that had never read the database,
 * where a checkpoint returns OK and copies nothing.
 */
static void test_checkpoint_bounds_wal(void **state)
{
	struct fixture *f = *state;
	struct journal *j = NULL;
	struct journal_info info;
	char wal[160], path[32];
	off_t peak = 0;

	journal_close(f->j);
	f->j = NULL;
	assert_int_equal(journal_open(f->db, "vm1",
				      JOURNAL_BACKGROUND_CHECKPOINT, &j, NULL), 0);
	snprintf(wal, sizeof(wal), "%s-wal", f->db);
	make_volume(j, "web");
	for (int i = 0; i < 4000; i++) {
		snprintf(path, sizeof(path), "d%d/f%d", i % 97, i);
		put_text(j, "web", path, path);
		assert_int_equal(journal_flush(j), 0);
		if (i % 50 == 0) {
			off_t w = file_size(wal);

			peak = w > peak ? w : peak;
		}
	}
	peak = file_size(wal) > peak ? file_size(wal) : peak;
	print_message("WAL peak %lld bytes, journal %lld bytes, 4000 commits\n",
		      (long long)peak, (long long)file_size(f->db));
	assert_true(peak <= 64 << 20);
	/* The journal's pages were copied into the database as it ran. */
	assert_true(file_size(f->db) > 1 << 20);
	/* What journal_info reports is the files' sizes; the checkpointer
	 * may still be copying (the database grows, the WAL restarts), so
	 * it is compared with sizes taken just before and just after. */
	{
		off_t db0 = file_size(f->db), wal0 = file_size(wal);
		off_t db1, wal1;

		assert_int_equal(journal_info(j, &info), 0);
		db1 = file_size(f->db);
		wal1 = file_size(wal);
		assert_true(info.journal_bytes >= (uint64_t)db0 &&
			    info.journal_bytes <= (uint64_t)db1);
		assert_true(info.wal_bytes == (uint64_t)wal0 ||
			    info.wal_bytes == (uint64_t)wal1);
	}
	journal_close(j);
}

/* Where a chunk can be copied from locally: found in the current file
 * that holds it, on a read-only connection too.  Lookups grouped in a
 * read transaction see the same, keep no other writer out once it ends,
 * and a record in the middle ends it and is committed as usual. */
static void test_chunk_source(void **state)
{
	struct fixture *f = *state;
	struct journal *ro = NULL, *other = NULL;
	struct journal_state st;
	struct content c = { 0 };
	uint8_t unknown[CONTENT_HASH_LEN];
	char volume[64], *path = NULL;
	uint64_t off = 99;
	uint32_t len = 0;

	make_volume(f->j, "web");
	put_text(f->j, "web", "dir-less", "hello chunk");
	assert_int_equal(journal_flush(f->j), 0);
	assert_int_equal(content_hash_buf("hello chunk", 11, &c), 0);
	assert_int_equal(journal_read_begin(f->j), 0);
	assert_int_equal(journal_chunk_source(f->j, c.chunks[0].hash, volume,
					      sizeof(volume), &path, &off,
					      &len), 0);
	assert_string_equal(volume, "web");
	assert_string_equal(path, "dir-less");
	assert_int_equal(off, 0);
	assert_int_equal(len, 11);
	free(path);
	memset(unknown, 0x5a, sizeof(unknown));
	assert_int_equal(journal_chunk_source(f->j, unknown, volume,
					      sizeof(volume), &path, &off,
					      &len), -ENOENT);
	assert_null(path);
	journal_read_end(f->j);
	assert_int_equal(journal_pending(f->j), 0);
	assert_int_equal(journal_open(f->db, NULL, 0, &other, NULL), 0);
	assert_int_equal(journal_mount_add(other, "web", "c1"), 0);
	journal_close(other);
	/* A record inside the read transaction. */
	assert_int_equal(journal_read_begin(f->j), 0);
	put_text(f->j, "web", "second", "more");
	journal_read_end(f->j);
	assert_int_equal(journal_flush(f->j), 0);
	assert_int_equal(journal_open(f->db, NULL, JOURNAL_READONLY, &ro, NULL),
			 0);
	assert_int_equal(journal_lookup(ro, "web", "second", &st), 0);
	journal_state_release(&st);
	assert_int_equal(journal_read_begin(ro), 0);
	assert_int_equal(journal_chunk_source(ro, c.chunks[0].hash, volume,
					      sizeof(volume), &path, &off,
					      &len), 0);
	journal_read_end(ro);
	assert_string_equal(path, "dir-less");
	free(path);
	journal_close(ro);
	content_release(&c);
}

/*
 * A writer is killed with SIGKILL in the middle of a burst.  Every batch
 * it reported committed must be there, the half-written batch must be
 * gone entirely, and seqs must stay gapless.
 */
static void crash_writer(const char *db, int report_fd)
{
	struct journal *j = NULL;

	if (journal_open(db, "vm1", 0, &j, NULL) != 0)
		_exit(1);
	make_volume(j, "data");
	for (int batch = 0;; batch++) {
		for (int i = 0; i < 100; i++) {
			char name[32];

			snprintf(name, sizeof(name), "b%d/f%d", batch, i);
			put_text(j, "data", name, name);
		}
		if (journal_flush(j) != 0)
			_exit(1);
		if (write(report_fd, &batch, sizeof(batch)) != sizeof(batch))
			_exit(1);
	}
}

static void test_kill_during_burst(void **state)
{
	struct fixture *f = *state;
	struct journal_info info;
	struct journal *j = NULL;
	char db[160], *why = NULL;
	int fds[2], batch = -1, last = -1;
	pid_t pid;

	snprintf(db, sizeof(db), "%s/crash.db", f->dir);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		crash_writer(db, fds[1]);
	}
	close(fds[1]);
	while (last < 20 && read(fds[0], &batch, sizeof(batch)) ==
	       sizeof(batch))
		last = batch;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	while (read(fds[0], &batch, sizeof(batch)) == sizeof(batch))
		last = batch;
	close(fds[0]);

	assert_int_equal(journal_open(db, "vm1", 0, &j, NULL), 0);
	assert_int_equal(journal_check(j, &why), 0);
	assert_int_equal(journal_info(j, &info), 0);
	/* Whole batches only: the volume plus 100 per batch. */
	assert_int_equal((info.n_changes - 1) % 100, 0);
	assert_true(info.n_changes >= 1 + 100 * (uint64_t)(last + 1));
	assert_int_equal(info.own_seq, info.n_changes);
	/* And the journal goes on from there without a gap. */
	put_text(j, "data", "after", "after");
	assert_int_equal(journal_flush(j), 0);
	assert_int_equal(journal_check(j, &why), 0);
	journal_close(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity_and_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_statement_cache_grows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_journal_new_epoch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_orders_jobs, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_migration_counts_and_merges,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_seq_lamport_bases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookup_current, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_keeps_content, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_directory_takes_subtree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_volume_remove_and_recreate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_invisible_until_flush, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vector_and_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_history_links, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_finds_gap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_refuses_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mount_references, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writes_after_other_connection_commits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunk_source, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint_bounds_wal, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_chunk_lists_as_runs, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_content_store_all_or_nothing,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill_during_burst, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
