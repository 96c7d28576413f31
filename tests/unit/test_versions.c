/*
 * The store of replaced content (src/journal/versions.c) on real files:
 * keeping by hard link, deduplication, what a crash can leave behind,
 * and pruning by age and by size, oldest first.
 */
#include "content.h"
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
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

#define SEC 1000000000LL

struct fixture {
	char dir[64], db[96], store[128], vol[96];
	struct journal *j;
	struct journal_versions *v;
	int volfd;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/kraken-versions-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof(f->db), "%s/journal.db", f->dir);
	snprintf(f->store, sizeof(f->store), "%s.versions", f->db);
	snprintf(f->vol, sizeof(f->vol), "%s/vol", f->dir);
	assert_int_equal(mkdir(f->vol, 0700), 0);
	f->volfd = open(f->vol, O_RDONLY | O_DIRECTORY);
	assert_true(f->volfd >= 0);
	assert_int_equal(journal_open(f->db, "n1", 0, &f->j, NULL), 0);
	assert_int_equal(journal_versions_open(f->j, f->store, true, &f->v), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	journal_versions_close(f->v);
	journal_close(f->j);
	close(f->volfd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* Writes TEXT to NAME in the volume; its content hash into HASH. */
static void put(struct fixture *f, const char *name, const char *text,
		uint8_t hash[CONTENT_HASH_LEN])
{
	int fd = openat(f->volfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	memset(hash, 0, CONTENT_HASH_LEN);
	memcpy(hash, text, strlen(text) < CONTENT_HASH_LEN ? strlen(text) :
	       CONTENT_HASH_LEN);
}

static void keep(struct fixture *f, const char *name, const char *text,
		 int64_t now)
{
	uint8_t hash[CONTENT_HASH_LEN];

	put(f, name, text, hash);
	assert_int_equal(journal_versions_keep(f->v, f->volfd, name, hash,
					       strlen(text), "vol", name, now),
			 0);
	assert_int_equal(unlinkat(f->volfd, name, 0), 0);
	assert_int_equal(journal_flush(f->j), 0);
}

/* What the store gives for TEXT's hash: its content, or "" when gone. */
static const char *kept(struct fixture *f, const char *text)
{
	static char buf[64];
	uint8_t hash[CONTENT_HASH_LEN] = { 0 };
	int fd;
	ssize_t n;

	memcpy(hash, text, strlen(text));
	fd = journal_versions_get(f->v, hash);
	if (fd < 0)
		return "";
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* A file kept before it goes is there byte for byte after it went, once
 * however often it is kept; a file that is not the version named (its
 * size differs) is not kept. */
static void test_keep_and_get(void **state)
{
	struct fixture *f = *state;
	uint8_t hash[CONTENT_HASH_LEN];
	uint64_t bytes, count;
	int64_t oldest;

	keep(f, "a", "first", 10 * SEC);
	keep(f, "b", "first", 20 * SEC);
	keep(f, "c", "second!", 30 * SEC);
	assert_string_equal(kept(f, "first"), "first");
	assert_string_equal(kept(f, "second!"), "second!");
	assert_string_equal(kept(f, "never"), "");
	assert_int_equal(journal_versions_usage(f->v, &bytes, &count, &oldest),
			 0);
	assert_true(bytes == 12 && count == 2 && oldest == 20 * SEC);
	put(f, "d", "third", hash);
	assert_int_equal(journal_versions_keep(f->v, f->volfd, "d", hash, 99,
					       "vol", "d", 40 * SEC), -ESTALE);
	assert_int_equal(journal_versions_keep(f->v, f->volfd, "gone", hash, 5,
					       "vol", "gone", 40 * SEC), -ENOENT);
}

/* By age, then by size: the oldest go first, the newest stays. */
static void test_prune(void **state)
{
	struct fixture *f = *state;
	uint64_t removed = 0, bytes, count;
	int64_t oldest;

	keep(f, "a", "one..", 10 * SEC);
	keep(f, "b", "two..", 20 * SEC);
	keep(f, "c", "three", 30 * SEC);
	keep(f, "d", "four.", 40 * SEC);
	assert_int_equal(journal_versions_prune(f->v, 25 * SEC, UINT64_MAX,
						50 * SEC, &removed), 0);
	assert_int_equal(removed, 2);
	assert_string_equal(kept(f, "one.."), "");
	assert_string_equal(kept(f, "two.."), "");
	assert_string_equal(kept(f, "three"), "three");
	assert_int_equal(journal_versions_prune(f->v, 100 * SEC, 5, 50 * SEC,
						&removed), 0);
	assert_int_equal(removed, 1);
	assert_string_equal(kept(f, "three"), "");
	assert_string_equal(kept(f, "four."), "four.");
	assert_int_equal(journal_flush(f->j), 0);
	assert_int_equal(journal_versions_usage(f->v, &bytes, &count, &oldest),
			 0);
	assert_true(bytes == 5 && count == 1 && oldest == 40 * SEC);
}

/* A crash between the link and its row leaves a file nobody names; one
 * between a row's removal (not committed yet) and its file's leaves a
 * row whose file is gone, which is never served.  Opening the store
 * removes both. */
static void test_crash_leftovers(void **state)
{
	struct fixture *f = *state;
	char orphan[256], hex[2 * CONTENT_HASH_LEN + 1];
	uint8_t hash[CONTENT_HASH_LEN] = { 0 };
	uint64_t removed = 0, bytes, count;
	int64_t oldest;
	int fd;

	keep(f, "a", "kept.", 10 * SEC);
	keep(f, "b", "lost.", 20 * SEC);
	memcpy(hash, "lost.", 5);
	content_hex(hash, hex);
	snprintf(orphan, sizeof(orphan), "%s/%s", f->store, hex);
	assert_int_equal(unlink(orphan), 0);
	assert_string_equal(kept(f, "lost."), "");
	memset(hash, 0x77, sizeof(hash));
	content_hex(hash, hex);
	snprintf(orphan, sizeof(orphan), "%s/%s", f->store, hex);
	fd = open(orphan, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	journal_versions_close(f->v);
	assert_int_equal(journal_versions_open(f->j, f->store, true, &f->v), 0);
	assert_int_equal(access(orphan, F_OK), -1);
	assert_string_equal(kept(f, "kept."), "kept.");
	assert_int_equal(journal_versions_usage(f->v, &bytes, &count, &oldest),
			 0);
	assert_true(bytes == 5 && count == 1 && oldest == 10 * SEC);
	assert_int_equal(journal_versions_prune(f->v, 100 * SEC, 5, 30 * SEC,
						&removed), 0);
	assert_int_equal(removed, 0);
	assert_string_equal(kept(f, "kept."), "kept.");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keep_and_get, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_leftovers, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
