/*
 * Watcher against a real temporary tree with real inotify: every
 * operation a container can do to a volume, an overflowed queue, and
 * changes made while no watcher ran.
 */
#include "content.h"
#include "err.h"
#include "hist.h"
#include "journal.h"
#include "loop.h"
#include "tempname.h"
#include "watch.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

struct fx {
	char dir[64];
	char root[96];
	char db[96];
	struct journal *j;
	struct watch *w;
	unsigned n_small;             /* small-file callbacks */
	size_t small_len;
	uint8_t small_hash[CONTENT_HASH_LEN];
	char small_data[WATCH_SMALL_MAX];
};

static void on_small(void *arg, const struct content *c, const void *data)
{
	struct fx *f = arg;

	assert_true(c->size > 0 && c->size <= WATCH_SMALL_MAX);
	f->n_small++;
	f->small_len = c->size;
	memcpy(f->small_hash, c->hash, CONTENT_HASH_LEN);
	memcpy(f->small_data, data, c->size);
}

static char *const excludes[] = { "*.tmp", "cache/*" };

static void fx_start_watch(struct fx *f)
{
	struct watch_options opt = {
		.root = f->root, .exclude = excludes, .n_exclude = 2,
		.settle_ms = 100, .small = on_small, .small_arg = f,
	};

	assert_int_equal(watch_new(f->j, &opt, &f->w), 0);
	assert_int_equal(watch_scan(f->w), 0);
	assert_int_equal(journal_flush(f->j), 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/kraken-watch-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->root, sizeof(f->root), "%s/volumes", f->dir);
	snprintf(f->db, sizeof(f->db), "%s/journal.db", f->dir);
	if (mkdir(f->root, 0755) || journal_open(f->db, "vm1", 0, &f->j, NULL))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[256];

	watch_free(f->w);
	journal_close(f->j);
	snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s'; rm -rf '%s'", f->dir,
		 f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* Runs the watcher as the agent's loop would until nothing is pending and
 * QUIET_MS passed without an event. */
static void pump(struct fx *f, int quiet_ms)
{
	int64_t quiet_until = loop_now_ns() + (int64_t)quiet_ms * 1000000;

	for (;;) {
		struct pollfd p = { .fd = watch_fd(f->w), .events = POLLIN };
		int64_t d = watch_next_deadline(f->w);
		int64_t now = loop_now_ns();
		int timeout = 10;

		if (d < 0 && now >= quiet_until)
			break;
		if (d >= 0 && d <= now)
			timeout = 0;
		if (poll(&p, 1, timeout) > 0) {
			assert_int_equal(watch_dispatch(f->w), 0);
			quiet_until = loop_now_ns() +
				      (int64_t)quiet_ms * 1000000;
		}
		assert_int_equal(watch_process(f->w, false), 0);
		assert_int_equal(journal_flush(f->j), 0);
	}
}

/* One loop turn without waiting: what is queued and due, then commit. */
static void pump_once(struct fx *f)
{
	assert_int_equal(watch_dispatch(f->w), 0);
	assert_int_equal(watch_process(f->w, false), 0);
	assert_int_equal(journal_flush(f->j), 0);
}

static void path_of(struct fx *f, const char *rel, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", f->root, rel);
}

static void write_file(struct fx *f, const char *rel, const char *text)
{
	char p[512];
	int fd;

	path_of(f, rel, p, sizeof(p));
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void make_dir(struct fx *f, const char *rel)
{
	char p[512];

	path_of(f, rel, p, sizeof(p));
	assert_int_equal(mkdir(p, 0755), 0);
}

/* Number of changes of OP (0: any) on VOLUME/PATH. */
struct count {
	enum journal_op op;
	int n;
	char last_op[16];
};

static int count_fn(void *arg, const struct journal_change *c)
{
	struct count *k = arg;

	if (k->op == 0 || k->op == c->op)
		k->n++;
	snprintf(k->last_op, sizeof(k->last_op), "%s", journal_op_name(c->op));
	return 0;
}

static int changes_of(struct fx *f, const char *vol, const char *path,
		      enum journal_op op)
{
	struct count k = { .op = op };

	assert_int_equal(journal_history(f->j, vol, path, count_fn, &k), 0);
	return k.n;
}

static const char *last_op(struct fx *f, const char *vol, const char *path)
{
	static struct count k;

	memset(&k, 0, sizeof(k));
	assert_int_equal(journal_history(f->j, vol, path, count_fn, &k), 0);
	return k.last_op;
}

static uint64_t total_changes(struct fx *f)
{
	struct journal_info info;

	assert_int_equal(journal_info(f->j, &info), 0);
	return info.n_changes;
}

static void assert_current_text(struct fx *f, const char *vol,
				const char *path, const char *text)
{
	struct journal_state st;
	struct content c = { 0 };

	assert_int_equal(journal_lookup(f->j, vol, path, &st), 0);
	assert_true(S_ISREG(st.mode));
	assert_int_equal(st.size, strlen(text));
	assert_int_equal(content_hash_buf(text, strlen(text), &c), 0);
	assert_memory_equal(st.hash, c.hash, CONTENT_HASH_LEN);
	content_release(&c);
	journal_state_release(&st);
}

static void test_volume_create_and_file_put(void **state)
{
	struct fx *f = *state;

	fx_start_watch(f);
	make_dir(f, "vol1");
	write_file(f, "vol1/hello.txt", "hello world\n");
	pump(f, 150);
	assert_int_equal(changes_of(f, "vol1", "", JOURNAL_VOLUME_CREATE), 1);
	assert_int_equal(changes_of(f, "vol1", "hello.txt", JOURNAL_PUT), 1);
	assert_current_text(f, "vol1", "hello.txt", "hello world\n");

	/* New content is a new put. */
	write_file(f, "vol1/hello.txt", "changed\n");
	pump(f, 150);
	assert_int_equal(changes_of(f, "vol1", "hello.txt", JOURNAL_PUT), 2);
	assert_current_text(f, "vol1", "hello.txt", "changed\n");
}

/* A small file's bytes, as read for its hash, go to the callback (for
 * peers); an empty or larger file's do not. */
static void test_small_file_bytes_offered(void **state)
{
	struct fx *f = *state;
	struct journal_state st;
	char big[3 * WATCH_SMALL_MAX];

	fx_start_watch(f);
	make_dir(f, "vol1");
	write_file(f, "vol1/empty.txt", "");
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	write_file(f, "vol1/big.txt", big);
	pump(f, 150);
	assert_int_equal(f->n_small, 0);

	write_file(f, "vol1/small.txt", "a small file\n");
	pump(f, 150);
	assert_int_equal(f->n_small, 1);
	assert_int_equal(f->small_len, strlen("a small file\n"));
	assert_memory_equal(f->small_data, "a small file\n", f->small_len);
	assert_int_equal(journal_lookup(f->j, "vol1", "small.txt", &st), 0);
	assert_true(st.has_hash);
	assert_memory_equal(st.hash, f->small_hash, CONTENT_HASH_LEN);
	journal_state_release(&st);
}

/* A burst is examined in turns: one call records part of it and leaves
 * the rest due at once, and later calls record every file once. */
static void test_burst_examined_in_turns(void **state)
{
	struct fx *f = *state;
	struct watch_options opt = {
		.root = f->root, .turn_ms = 1,
	};
	char name[32];
	uint64_t before, first;

	make_dir(f, "vol1");
	assert_int_equal(watch_new(f->j, &opt, &f->w), 0);
	assert_int_equal(watch_scan(f->w), 0);
	assert_int_equal(journal_flush(f->j), 0);
	before = total_changes(f);
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "vol1/f%04d", i);
		write_file(f, name, name);
	}
	pump_once(f);
	first = total_changes(f) - before;
	assert_true(first > 0 && first < 2000);
	assert_int_equal(watch_next_deadline(f->w), 0);

	pump(f, 100);
	assert_int_equal(total_changes(f) - before, 2000);
	assert_int_equal(changes_of(f, "vol1", "f1999", JOURNAL_PUT), 1);
	assert_current_text(f, "vol1", "f0000", "vol1/f0000");
}

static void test_slow_writer_recorded_once(void **state)
{
	struct fx *f = *state;
	char p[512];
	int fd;

	make_dir(f, "vol1");
	fx_start_watch(f);
	path_of(f, "vol1/slow.bin", p, sizeof(p));
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(write(fd, "part", 4), 4);
		usleep(30000);    /* well inside the 100 ms settle time */
		pump_once(f);
	}
	close(fd);
	pump(f, 150);
	assert_int_equal(changes_of(f, "vol1", "slow.bin", JOURNAL_PUT), 1);
	assert_current_text(f, "vol1", "slow.bin", "partpartpartpartpart");
}

static void test_modify_without_close_settles(void **state)
{
	struct fx *f = *state;
	char p[512];
	int fd;

	make_dir(f, "vol1");
	fx_start_watch(f);
	path_of(f, "vol1/open.log2", p, sizeof(p));
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(write(fd, "abc", 3), 3);
	/* Still open: recorded once the settle time passes quietly. */
	pump(f, 300);
	assert_current_text(f, "vol1", "open.log2", "abc");
	close(fd);
}

static void test_rename_delete_mkdir_rmdir(void **state)
{
	struct fx *f = *state;
	char a[512], b[512];

	make_dir(f, "vol1");
	fx_start_watch(f);
	write_file(f, "vol1/a", "content");
	pump(f, 150);
	path_of(f, "vol1/a", a, sizeof(a));
	path_of(f, "vol1/b", b, sizeof(b));
	assert_int_equal(rename(a, b), 0);
	pump(f, 150);
	assert_string_equal(last_op(f, "vol1", "a"), "delete");
	assert_current_text(f, "vol1", "b", "content");

	make_dir(f, "vol1/d");
	/* Made right after the directory, maybe before its watch exists. */
	write_file(f, "vol1/d/inner", "x");
	make_dir(f, "vol1/d/e");
	write_file(f, "vol1/d/e/deep", "y");
	pump(f, 150);
	assert_int_equal(changes_of(f, "vol1", "d", JOURNAL_MKDIR), 1);
	assert_current_text(f, "vol1", "d/inner", "x");
	assert_current_text(f, "vol1", "d/e/deep", "y");

	assert_int_equal(system("true"), 0);
	{
		char cmd[600];

		path_of(f, "vol1/d", a, sizeof(a));
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", a);
		assert_int_equal(system(cmd), 0);
	}
	assert_int_equal(unlink(b), 0);
	pump(f, 150);
	assert_string_equal(last_op(f, "vol1", "d"), "delete");
	assert_string_equal(last_op(f, "vol1", "d/e/deep"), "delete");
	assert_string_equal(last_op(f, "vol1", "d/inner"), "delete");
	assert_string_equal(last_op(f, "vol1", "b"), "delete");
}

static void test_directory_moved_within_volume(void **state)
{
	struct fx *f = *state;
	char a[512], b[512];

	make_dir(f, "vol1");
	make_dir(f, "vol1/old");
	write_file(f, "vol1/old/f", "moved");
	fx_start_watch(f);
	path_of(f, "vol1/old", a, sizeof(a));
	path_of(f, "vol1/new", b, sizeof(b));
	assert_int_equal(rename(a, b), 0);
	pump(f, 150);
	/* Events under the moved directory land on its new name. */
	write_file(f, "vol1/new/g", "after move");
	pump(f, 150);
	assert_string_equal(last_op(f, "vol1", "old/f"), "delete");
	assert_current_text(f, "vol1", "new/f", "moved");
	assert_current_text(f, "vol1", "new/g", "after move");
	assert_int_equal(changes_of(f, "vol1", "old/g", 0), 0);
}

static void test_symlink_recorded_not_followed(void **state)
{
	struct fx *f = *state;
	struct journal_state st;
	char p[512];

	make_dir(f, "vol1");
	fx_start_watch(f);
	path_of(f, "vol1/link", p, sizeof(p));
	assert_int_equal(symlink("/etc/passwd", p), 0);
	pump(f, 150);
	assert_int_equal(journal_lookup(f->j, "vol1", "link", &st), 0);
	assert_true(S_ISLNK(st.mode));
	assert_string_equal(st.target, "/etc/passwd");
	assert_false(st.has_hash);
	journal_state_release(&st);
}

static void test_chmod_chown_are_meta(void **state)
{
	struct fx *f = *state;
	struct journal_state st;
	char p[512];

	make_dir(f, "vol1");
	write_file(f, "vol1/m", "meta");
	fx_start_watch(f);
	path_of(f, "vol1/m", p, sizeof(p));
	assert_int_equal(chmod(p, 0600), 0);
	pump(f, 150);
	assert_int_equal(changes_of(f, "vol1", "m", JOURNAL_META), 1);
	assert_int_equal(lchown(p, 4321, 4322), 0);
	pump(f, 150);
	assert_int_equal(changes_of(f, "vol1", "m", JOURNAL_META), 2);
	assert_int_equal(changes_of(f, "vol1", "m", JOURNAL_PUT), 1);
	assert_int_equal(journal_lookup(f->j, "vol1", "m", &st), 0);
	assert_int_equal(st.mode & 07777, 0600);
	assert_int_equal(st.uid, 4321);
	assert_int_equal(st.gid, 4322);
	assert_true(st.has_hash);
	journal_state_release(&st);
}

static void test_fifo_and_excluded_skipped(void **state)
{
	struct fx *f = *state;
	uint64_t before;
	char p[512], tmp[TEMPNAME_MAX];

	make_dir(f, "vol1");
	make_dir(f, "vol1/cache");
	fx_start_watch(f);
	before = total_changes(f);
	path_of(f, "vol1/pipe", p, sizeof(p));
	assert_int_equal(mkfifo(p, 0644), 0);
	write_file(f, "vol1/x.tmp", "temp");
	write_file(f, "vol1/cache/blob", "cached");
	tempname_make(tmp, sizeof(tmp));
	snprintf(p, sizeof(p), "vol1/%s", tmp);
	write_file(f, p, "agent temp");
	pump(f, 150);
	assert_int_equal(total_changes(f), before);
	assert_int_equal(changes_of(f, "vol1", "pipe", 0), 0);
	/* Look-alikes of another tag, or none, are a user's files. */
	write_file(f, "vol1/.krakenfs-tmp-1", "user file");
	write_file(f, "vol1/.krakenfs-notes", "user file");
	pump(f, 150);
	assert_int_equal(changes_of(f, "vol1", ".krakenfs-tmp-1", JOURNAL_PUT), 1);
	assert_int_equal(changes_of(f, "vol1", ".krakenfs-notes", JOURNAL_PUT), 1);
}

static void test_odd_names(void **state)
{
	struct fx *f = *state;
	struct watch_stats ws;
	char name[300];

	make_dir(f, "vol1");
	fx_start_watch(f);
	write_file(f, "vol1/line\nbreak", "nl");
	write_file(f, "vol1/bad\xff\xfename", "bad");
	memset(name, 'n', 255);
	memcpy(name, "vol1/", 5);
	memset(name + 5, 'L', 255);
	name[260] = '\0';
	write_file(f, name, "long");
	pump(f, 150);
	assert_current_text(f, "vol1", "line\nbreak", "nl");
	assert_current_text(f, "vol1", name + 5, "long");
	assert_int_equal(changes_of(f, "vol1", "bad\xff\xfename", 0), 0);
	watch_stats(f->w, &ws);
	assert_true(ws.skipped >= 1);
}

static void test_overflow_leads_to_scan(void **state)
{
	struct fx *f = *state;
	struct watch_stats ws;
	struct journal_info info;
	char name[64];

	make_dir(f, "vol1");
	fx_start_watch(f);
	/* Far more events than the default queue (16384) holds, all made
	 * before the watcher reads any of them. */
	for (int i = 0; i < 9000; i++) {
		snprintf(name, sizeof(name), "vol1/f%05d", i);
		write_file(f, name, name);
	}
	pump(f, 200);
	watch_stats(f->w, &ws);
	assert_true(ws.overflows >= 1);
	assert_int_equal(journal_info(f->j, &info), 0);
	assert_int_equal(info.n_paths, 9000);
	assert_current_text(f, "vol1", "f04321", "vol1/f04321");
}

static void test_offline_changes_found_by_scan(void **state)
{
	struct fx *f = *state;
	char p[512];
	uint64_t before;

	make_dir(f, "vol1");
	write_file(f, "vol1/keep", "same");
	write_file(f, "vol1/edit", "v1");
	write_file(f, "vol1/gone", "bye");
	fx_start_watch(f);
	watch_free(f->w);
	f->w = NULL;
	before = total_changes(f);

	/* While no agent runs. */
	write_file(f, "vol1/edit", "v2 longer");
	path_of(f, "vol1/gone", p, sizeof(p));
	assert_int_equal(unlink(p), 0);
	write_file(f, "vol1/new", "fresh");
	make_dir(f, "vol2");

	fx_start_watch(f);
	/* edit put, gone delete, new put, vol2 create: nothing else. */
	assert_int_equal(total_changes(f), before + 4);
	assert_current_text(f, "vol1", "edit", "v2 longer");
	assert_string_equal(last_op(f, "vol1", "gone"), "delete");
	assert_int_equal(changes_of(f, "vol1", "keep", 0), 1);

	/* A second scan of the unchanged tree records nothing. */
	assert_int_equal(watch_scan(f->w), 0);
	assert_int_equal(journal_flush(f->j), 0);
	assert_int_equal(total_changes(f), before + 4);
}

static void test_volume_removed(void **state)
{
	struct fx *f = *state;
	struct journal_info info;
	char cmd[256];

	make_dir(f, "vol1");
	write_file(f, "vol1/a", "a");
	fx_start_watch(f);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s/vol1'", f->root);
	assert_int_equal(system(cmd), 0);
	pump(f, 150);
	assert_string_equal(last_op(f, "vol1", ""), "volume-remove");
	assert_int_equal(journal_info(f->j, &info), 0);
	assert_int_equal(info.n_volumes, 0);
}

static void test_missing_root_not_mass_removal(void **state)
{
	struct fx *f = *state;
	struct watch_options opt = { .root = f->root };
	char cmd[256];
	uint64_t before;

	make_dir(f, "vol1");
	fx_start_watch(f);
	watch_free(f->w);
	f->w = NULL;
	before = total_changes(f);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(watch_new(f->j, &opt, &f->w), 0);
	assert_int_equal(watch_scan(f->w), -ENOENT);
	assert_int_equal(total_changes(f), before);
}

static void test_latency_accounted(void **state)
{
	struct fx *f = *state;
	static struct hist h;

	make_dir(f, "vol1");
	fx_start_watch(f);
	write_file(f, "vol1/lat", "latency");
	for (int i = 0; i < 100 && h.count == 0; i++) {
		pump(f, 20);
		watch_committed(f->w, &h);
	}
	assert_int_equal(h.count, 1);
	assert_true(h.max < 5000000);   /* sanity: under 5 s */
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_volume_create_and_file_put),
		T(test_small_file_bytes_offered),
		T(test_burst_examined_in_turns),
		T(test_slow_writer_recorded_once),
		T(test_modify_without_close_settles),
		T(test_rename_delete_mkdir_rmdir),
		T(test_directory_moved_within_volume),
		T(test_symlink_recorded_not_followed),
		T(test_chmod_chown_are_meta),
		T(test_fifo_and_excluded_skipped),
		T(test_odd_names),
		T(test_overflow_leads_to_scan),
		T(test_offline_changes_found_by_scan),
		T(test_volume_removed),
		T(test_missing_root_not_mass_removal),
		T(test_latency_accounted),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
