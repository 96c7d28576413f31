/*
 * The journal when SQLite fails: real failures, provoked on the journal's
 * own connection, are returned as errors (never read as "no more rows"
 * or "no row") and the log says what SQLite said.
 *
 * A progress handler interrupts the one statement whose SQL holds a
 * given text, while it runs: SQLITE_INTERRUPT in the middle of a loop,
 * or on the one lookup a function depends on.
 */
#include "content.h"
#include "journal.h"
#include "journal_int.h"
#include "log.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/kraken-jerr-XXXXXX");
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

/* ---- interrupting one statement ---------------------------------------- */

struct trip {
	sqlite3 *db;
	const char *sql;          /* interrupt the statement holding this */
	bool armed;
	unsigned fired;
};

static int trip_progress(void *arg)
{
	struct trip *t = arg;

	if (!t->armed)
		return 0;
	for (sqlite3_stmt *s = sqlite3_next_stmt(t->db, NULL); s;
	     s = sqlite3_next_stmt(t->db, s)) {
		if (sqlite3_stmt_busy(s) && strstr(sqlite3_sql(s), t->sql)) {
			t->fired++;
			return 1;
		}
	}
	return 0;
}

static void trip_set(struct trip *t, struct journal *j, const char *sql,
		     bool armed)
{
	memset(t, 0, sizeof(*t));
	t->db = j->db;
	t->sql = sql;
	t->armed = armed;
	sqlite3_progress_handler(j->db, 1, trip_progress, t);
}

static void trip_clear(struct journal *j)
{
	sqlite3_progress_handler(j->db, 0, NULL, NULL);
}

/* ---- capturing the log -------------------------------------------------- */

struct captured {
	int saved;
	int rd;
	char buf[8192];
};

static void capture_start(struct captured *c)
{
	int p[2];

	assert_int_equal(pipe(p), 0);
	c->saved = dup(STDERR_FILENO);
	assert_true(c->saved >= 0);
	assert_true(dup2(p[1], STDERR_FILENO) >= 0);
	close(p[1]);
	c->rd = p[0];
}

/* Restores stderr; what was logged is in C->buf (echoed, for a failing
 * test's output). */
static const char *capture_end(struct captured *c)
{
	size_t n = 0;
	ssize_t r;

	assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
	close(c->saved);
	while (n < sizeof(c->buf) - 1 &&
	       (r = read(c->rd, c->buf + n, sizeof(c->buf) - 1 - n)) > 0)
		n += (size_t)r;
	close(c->rd);
	c->buf[n] = '\0';
	fputs(c->buf, stderr);
	return c->buf;
}

/* ---- helpers ------------------------------------------------------------ */

static void make_volume(struct journal *j, const char *vol)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFDIR | 0755;
	assert_int_equal(journal_record_volume(j, vol, true, &st), 0);
}

static int put_text(struct journal *j, const char *vol, const char *path,
		    const char *text)
{
	struct content c = { 0 };
	struct stat st;
	int err;

	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFREG | 0644;
	st.st_size = (off_t)strlen(text);
	st.st_mtim.tv_sec = 1000;
	st.st_ino = 42;
	assert_int_equal(content_hash_buf(text, strlen(text), &c), 0);
	err = journal_record_put(j, vol, path, &st, &c);
	content_release(&c);
	return err;
}

/* ---- the tests ---------------------------------------------------------- */

struct mounts_seen {
	struct trip *trip;
	unsigned n;
};

static int mount_seen(void *arg, const char *volume, const char *id,
		      int64_t created_ns)
{
	struct mounts_seen *m = arg;

	(void)volume;
	(void)id;
	(void)created_ns;
	m->n++;
	m->trip->armed = true;    /* the next row fails */
	return 0;
}

/* A walk that SQLite cuts short is an error, not the end of the rows. */
static void test_walk_interrupted_is_an_error(void **state)
{
	struct fixture *f = *state;
	struct mounts_seen m = { 0 };
	struct captured c;
	struct trip t;
	int err;

	assert_int_equal(journal_mount_add(f->j, "vol1", "a"), 0);
	assert_int_equal(journal_mount_add(f->j, "vol1", "b"), 0);
	assert_int_equal(journal_mount_add(f->j, "vol1", "c"), 0);
	trip_set(&t, f->j, "FROM mounts ORDER BY", false);
	m.trip = &t;
	capture_start(&c);
	err = journal_mounts(f->j, mount_seen, &m);
	capture_end(&c);
	trip_clear(f->j);
	assert_int_equal(m.n, 1);
	assert_true(t.fired > 0);
	assert_true(err < 0);
	/* What SQLite said, and which statement. */
	assert_non_null(strstr(c.buf, "interrupted"));
	assert_non_null(strstr(c.buf, "FROM mounts"));
	assert_non_null(strstr(c.buf, "SQLite error 9"));
}

/* A count that could not be read is no count of 0 (a mounted volume
 * would be taken for an unused one). */
static void test_count_interrupted_is_an_error(void **state)
{
	struct fixture *f = *state;
	struct captured c;
	struct trip t;
	uint64_t n = 99;
	int err;

	assert_int_equal(journal_mount_add(f->j, "vol1", "a"), 0);
	trip_set(&t, f->j, "count(*) FROM mounts", true);
	capture_start(&c);
	err = journal_mount_count(f->j, "vol1", &n);
	capture_end(&c);
	trip_clear(f->j);
	assert_true(t.fired > 0);
	assert_true(err < 0);
	assert_non_null(strstr(c.buf, "interrupted"));
	assert_int_equal(journal_mount_count(f->j, "vol1", &n), 0);
	assert_int_equal(n, 1);
}

/* A check that cannot run is no pass. */
static void test_check_interrupted_is_an_error(void **state)
{
	struct fixture *f = *state;
	struct captured c;
	char *why = NULL;
	struct trip t;
	int err;

	trip_set(&t, f->j, "quick_check", true);
	capture_start(&c);
	err = journal_check(f->j, &why);
	capture_end(&c);
	trip_clear(f->j);
	free(why);
	assert_true(t.fired > 0);
	assert_true(err < 0);
	assert_non_null(strstr(c.buf, "interrupted"));
	why = NULL;
	assert_int_equal(journal_check(f->j, &why), 0);
	free(why);
}

/* A local change whose base could not be read is not recorded without
 * one (it would stand beside its own previous version as a conflict). */
static void test_record_without_base_fails(void **state)
{
	struct fixture *f = *state;
	struct journal_state st;
	struct captured c;
	struct trip t;
	int err;

	make_volume(f->j, "vol1");
	assert_int_equal(put_text(f->j, "vol1", "a.txt", "one"), 0);
	assert_int_equal(journal_flush(f->j), 0);
	trip_set(&t, f->j, "SELECT change FROM current", true);
	capture_start(&c);
	err = put_text(f->j, "vol1", "a.txt", "two");
	capture_end(&c);
	trip_clear(f->j);
	assert_true(t.fired > 0);
	assert_true(err < 0);
	assert_non_null(strstr(c.buf, "interrupted"));
	/* Nothing of it stayed: the disk's version is still the first. */
	assert_int_equal(journal_lookup(f->j, "vol1", "a.txt", &st), 0);
	assert_int_equal(st.size, 3);
	journal_state_release(&st);
	assert_int_equal(put_text(f->j, "vol1", "a.txt", "three"), 0);
	assert_int_equal(journal_flush(f->j), 0);
}

/* Compaction that cannot count the live peers stops: "none" would take
 * every change as acknowledged by all and forget it. */
static void test_compaction_without_peer_count_stops(void **state)
{
	struct fixture *f = *state;
	struct journal_retention r = {
		.retention_ns = 0,
		.pin_max_ns = INT64_C(3600) * 1000000000,
		.now_ns = INT64_C(2000000000) * 1000000000,
	};
	struct journal_compact_stats st;
	struct captured c;
	struct trip t;
	int err;

	make_volume(f->j, "vol1");
	assert_int_equal(put_text(f->j, "vol1", "a.txt", "one"), 0);
	assert_int_equal(put_text(f->j, "vol1", "a.txt", "two"), 0);
	assert_int_equal(journal_flush(f->j), 0);
	memset(&st, 0, sizeof(st));
	trip_set(&t, f->j, "FROM peers WHERE reported_ns", true);
	capture_start(&c);
	err = journal_compact_step(f->j, &r, 1000, &st);
	capture_end(&c);
	trip_clear(f->j);
	assert_true(t.fired > 0);
	assert_true(err < 0);
	assert_int_equal(st.changes, 0);
	assert_non_null(strstr(c.buf, "interrupted"));
}

/* A kept version whose row could not be looked up stays in the store:
 * in doubt, keep (it was deleted as "no row"). */
static void test_version_store_keeps_on_doubt(void **state)
{
	struct fixture *f = *state;
	char dir[160], file[256], sql[256], hex[2 * CONTENT_HASH_LEN + 1];
	struct journal_versions *v = NULL;
	struct captured c;
	struct trip t;
	FILE *fp;
	int err;

	for (size_t i = 0; i < CONTENT_HASH_LEN; i++)
		snprintf(hex + 2 * i, 3, "ab");
	snprintf(dir, sizeof(dir), "%s/versions", f->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(file, sizeof(file), "%s/%s", dir, hex);
	fp = fopen(file, "w");
	assert_non_null(fp);
	fputs("old", fp);
	fclose(fp);
	snprintf(sql, sizeof(sql), "INSERT INTO versions (hash, size, "
		 "kept_ns, volume, path) VALUES (x'%s', 3, 1, 'vol1', 'a')",
		 hex);
	assert_int_equal(sqlite3_exec(f->j->db, sql, NULL, NULL, NULL),
			 SQLITE_OK);
	trip_set(&t, f->j, "SELECT 1 FROM versions WHERE hash", true);
	capture_start(&c);
	err = journal_versions_open(f->j, dir, true, &v);
	capture_end(&c);
	trip_clear(f->j);
	assert_true(t.fired > 0);
	assert_int_equal(err, 0);
	journal_versions_close(v);
	assert_int_equal(access(file, F_OK), 0);
	assert_non_null(strstr(c.buf, "interrupted"));
}

/* A job whose wanted-check failed is still wanted: "not wanted" would
 * drop its work, and a failed prepare already answered "cannot tell". */
static void test_job_wanted_on_doubt(void **state)
{
	struct fixture *f = *state;
	struct journal_job job;
	struct captured c;
	struct trip t;
	bool wanted;

	memset(&job, 0, sizeof(job));
	snprintf(job.volume, sizeof(job.volume), "vol1");
	job.path = "a.txt";
	job.change = 1;
	trip_set(&t, f->j, "SELECT 1 FROM jobs WHERE volume", true);
	capture_start(&c);
	wanted = journal_job_wanted(f->j, &job);
	capture_end(&c);
	trip_clear(f->j);
	assert_true(t.fired > 0);
	assert_true(wanted);
	assert_non_null(strstr(c.buf, "interrupted"));
	/* Not queued, and asked without a failure: not wanted. */
	assert_false(journal_job_wanted(f->j, &job));
}

/* A statement on a table that is gone: the log names SQLite's reason. */
static void test_log_says_no_such_table(void **state)
{
	struct fixture *f = *state;
	struct captured c;
	sqlite3 *other = NULL;
	uint64_t n = 0;
	int err;

	assert_int_equal(sqlite3_open(f->db, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "DROP TABLE mounts", NULL, NULL,
				      NULL), SQLITE_OK);
	sqlite3_close(other);
	capture_start(&c);
	err = journal_mount_count(f->j, "vol1", &n);
	capture_end(&c);
	assert_true(err < 0);
	assert_non_null(strstr(c.buf, "no such table: mounts"));
	assert_non_null(strstr(c.buf, "error journal:"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_walk_interrupted_is_an_error,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_count_interrupted_is_an_error,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_interrupted_is_an_error,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_without_base_fails,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_compaction_without_peer_count_stops, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_version_store_keeps_on_doubt,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_wanted_on_doubt,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_says_no_such_table,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
