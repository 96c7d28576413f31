/*
 * Tests for content hashing: chunk bounds, stability of chunk boundaries
 * under edits, fd and buffer paths agreeing, change detection, hex.
 *
 * Data comes from a seeded splitmix64 so every run sees the same bytes and
 * the format pins below stay meaningful.
 */
#include "content.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#define MIB (1u << 20)

static const char sha256_empty_hex[] =
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static uint32_t cmin, cavg, cmax;

static int setup_bounds(void **state)
{
	(void)state;
	content_chunk_bounds(&cmin, &cavg, &cmax);
	return 0;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = splitmix64(&seed);
		size_t k = n - i < 8 ? n - i : 8;

		memcpy(p + i, &v, k);
	}
}

static uint8_t *random_buf(size_t n, uint64_t seed)
{
	uint8_t *p = malloc(n ? n : 1);

	assert_non_null(p);
	fill_random(p, n, seed);
	return p;
}

static void sha256(const void *p, size_t n, uint8_t out[CONTENT_HASH_LEN])
{
	assert_int_equal(EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL), 1);
}

static int temp_fd(void)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/test_content.XXXXXX",
		 dir && *dir ? dir : "/tmp");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static int file_with(const uint8_t *p, size_t n)
{
	int fd = temp_fd();
	size_t done = 0;

	while (done < n) {
		ssize_t w = pwrite(fd, p + done, n - done, (off_t)done);

		assert_true(w > 0);
		done += (size_t)w;
	}
	return fd;
}

/* Every structural promise of a chunk list over SIZE bytes. */
static void check_chunks(const struct content *c, uint64_t size)
{
	uint64_t off = 0;

	assert_int_equal(c->size, size);
	assert_true(c->n_chunks <= c->cap_chunks);
	if (size == 0)
		assert_int_equal(c->n_chunks, 0);
	for (size_t i = 0; i < c->n_chunks; i++) {
		const struct content_chunk *k = &c->chunks[i];

		assert_int_equal(k->offset, off);
		assert_true(k->len > 0);
		assert_true(k->len <= cmax);
		if (i + 1 < c->n_chunks)
			assert_true(k->len >= cmin);
		off += k->len;
	}
	assert_int_equal(off, size);
}

/* The file hash must be SHA-256 over the chunk names, in order. */
static void check_file_hash(const struct content *c)
{
	uint8_t *names = malloc(c->n_chunks * CONTENT_HASH_LEN + 1);
	uint8_t want[CONTENT_HASH_LEN];

	assert_non_null(names);
	for (size_t i = 0; i < c->n_chunks; i++)
		memcpy(names + i * CONTENT_HASH_LEN, c->chunks[i].hash,
		       CONTENT_HASH_LEN);
	sha256(names, c->n_chunks * CONTENT_HASH_LEN, want);
	assert_memory_equal(c->hash, want, CONTENT_HASH_LEN);
	free(names);
}

/* Chunk names must be SHA-256 of the bytes they cover. */
static void check_chunk_names(const struct content *c, const uint8_t *data)
{
	uint8_t want[CONTENT_HASH_LEN];

	for (size_t i = 0; i < c->n_chunks; i++) {
		sha256(data + c->chunks[i].offset, c->chunks[i].len, want);
		assert_memory_equal(c->chunks[i].hash, want, CONTENT_HASH_LEN);
	}
}

static void hash_buf_checked(const uint8_t *p, size_t n, struct content *c)
{
	assert_int_equal(content_hash_buf(p, n, c), 0);
	check_chunks(c, n);
	check_file_hash(c);
}

static void assert_same_content(const struct content *a,
				const struct content *b)
{
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->n_chunks, b->n_chunks);
	assert_memory_equal(a->hash, b->hash, CONTENT_HASH_LEN);
	for (size_t i = 0; i < a->n_chunks; i++) {
		assert_int_equal(a->chunks[i].offset, b->chunks[i].offset);
		assert_int_equal(a->chunks[i].len, b->chunks[i].len);
		assert_memory_equal(a->chunks[i].hash, b->chunks[i].hash,
				    CONTENT_HASH_LEN);
	}
}

static bool has_chunk(const struct content *c, const uint8_t *hash)
{
	for (size_t i = 0; i < c->n_chunks; i++)
		if (!memcmp(c->chunks[i].hash, hash, CONTENT_HASH_LEN))
			return true;
	return false;
}

/* What replicating NEW to a holder of OLD costs: chunks and bytes. */
static void new_chunks(const struct content *old, const struct content *new,
		       size_t *count, uint64_t *bytes)
{
	*count = 0;
	*bytes = 0;
	for (size_t i = 0; i < new->n_chunks; i++) {
		if (!has_chunk(old, new->chunks[i].hash)) {
			(*count)++;
			*bytes += new->chunks[i].len;
		}
	}
}

static size_t common_prefix(const struct content *a, const struct content *b)
{
	size_t i = 0;

	while (i < a->n_chunks && i < b->n_chunks &&
	       !memcmp(a->chunks[i].hash, b->chunks[i].hash, CONTENT_HASH_LEN))
		i++;
	return i;
}

static size_t common_suffix(const struct content *a, const struct content *b)
{
	size_t i = 0;

	while (i < a->n_chunks && i < b->n_chunks &&
	       !memcmp(a->chunks[a->n_chunks - 1 - i].hash,
		       b->chunks[b->n_chunks - 1 - i].hash, CONTENT_HASH_LEN))
		i++;
	return i;
}

static void test_bounds(void **state)
{
	(void)state;
	/* Part of the replication format: changing them renames all data. */
	assert_int_equal(cmin, 8 * 1024);
	assert_int_equal(cavg, 32 * 1024);
	assert_int_equal(cmax, 128 * 1024);
	content_chunk_bounds(NULL, NULL, NULL);
}

static void test_empty(void **state)
{
	struct content c = { 0 };
	char hex[CONTENT_HEX_LEN];
	int fd = temp_fd();

	(void)state;
	assert_int_equal(content_hash_buf(NULL, 0, &c), 0);
	assert_int_equal(c.n_chunks, 0);
	assert_int_equal(c.size, 0);
	content_hex(c.hash, hex);
	assert_string_equal(hex, sha256_empty_hex);
	content_release(&c);

	assert_int_equal(content_hash_fd(fd, &c), 0);
	assert_int_equal(c.n_chunks, 0);
	assert_int_equal(c.size, 0);
	content_hex(c.hash, hex);
	assert_string_equal(hex, sha256_empty_hex);
	content_release(&c);
	close(fd);
}

/* A one-chunk file: chunk name SHA256(data), file hash SHA256(name). */
static void check_single_chunk(const uint8_t *p, size_t n)
{
	struct content c = { 0 };
	uint8_t name[CONTENT_HASH_LEN], file[CONTENT_HASH_LEN];
	int fd = file_with(p, n);

	sha256(p, n, name);
	sha256(name, sizeof(name), file);

	hash_buf_checked(p, n, &c);
	assert_int_equal(c.n_chunks, 1);
	assert_int_equal(c.chunks[0].len, n);
	assert_memory_equal(c.chunks[0].hash, name, CONTENT_HASH_LEN);
	assert_memory_equal(c.hash, file, CONTENT_HASH_LEN);
	content_release(&c);

	assert_int_equal(content_hash_fd(fd, &c), 0);
	assert_int_equal(c.n_chunks, 1);
	assert_memory_equal(c.hash, file, CONTENT_HASH_LEN);
	content_release(&c);
	close(fd);
}

static void test_small_sizes(void **state)
{
	uint8_t *p = random_buf(cmin + 1, 1);
	const uint8_t one = 'x';

	(void)state;
	check_single_chunk(&one, 1);
	check_single_chunk(p, 1000);
	check_single_chunk(p, cmin - 1);
	check_single_chunk(p, cmin);
	/* The first possible cut is after byte cmin, i.e. the whole buffer. */
	check_single_chunk(p, cmin + 1);
	free(p);
}

/* A constant buffer never matches the gear condition: only max cuts it. */
static void test_zeros_hit_max(void **state)
{
	size_t n = 3 * MIB + 5;
	uint8_t *p = calloc(1, n);
	struct content c = { 0 };

	(void)state;
	assert_non_null(p);
	hash_buf_checked(p, n, &c);
	assert_int_equal(c.n_chunks, (n + cmax - 1) / cmax);
	for (size_t i = 0; i + 1 < c.n_chunks; i++) {
		assert_int_equal(c.chunks[i].len, cmax);
		/* Identical bytes, identical names: dedup sees one chunk. */
		assert_memory_equal(c.chunks[i].hash, c.chunks[0].hash,
				    CONTENT_HASH_LEN);
	}
	assert_int_equal(c.chunks[c.n_chunks - 1].len, n % cmax);
	check_chunk_names(&c, p);
	content_release(&c);
	free(p);
}

static void test_random_distribution(void **state)
{
	size_t n = 6 * MIB + 321;
	uint8_t *p = random_buf(n, 2);
	struct content c = { 0 };
	size_t near_min = 0, at_max = 0;
	double mean;

	(void)state;
	hash_buf_checked(p, n, &c);
	check_chunk_names(&c, p);
	for (size_t i = 0; i + 1 < c.n_chunks; i++) {
		near_min += c.chunks[i].len < cmin + cmin / 8;
		at_max += c.chunks[i].len == cmax;
	}
	mean = (double)n / (double)c.n_chunks;
	/* About 39 KiB is expected; the min skip adds to the nominal avg. */
	assert_true(mean > 0.9 * cavg);
	assert_true(mean < 1.6 * cavg);
	/* Normalised chunking keeps nearly all cuts away from the bounds. */
	assert_true(near_min * 20 <= c.n_chunks);
	assert_true(at_max * 50 <= c.n_chunks);
	content_release(&c);
	free(p);
}

/*
 * Pins the format: any change to the gear table, masks or bounds moves
 * these values, and every node would disagree with older ones.
 */
static void test_known_answer(void **state)
{
	size_t n = 2 * MIB + 12345;
	uint8_t *p = random_buf(n, 0x1234);
	struct content c = { 0 };
	char hex[CONTENT_HEX_LEN];
	static const uint32_t first_lens[] = {
		41090, 32800, 22204, 69332, 43000, 67648, 37259, 40355,
	};

	(void)state;
	hash_buf_checked(p, n, &c);
	assert_int_equal(c.n_chunks, 57);
	for (size_t i = 0; i < sizeof(first_lens) / sizeof(first_lens[0]); i++)
		assert_int_equal(c.chunks[i].len, first_lens[i]);
	content_hex(c.hash, hex);
	assert_string_equal(hex, "df94c0fc6fdbd12f8bfe3dc2641f49c9"
				 "f7e664111ad5f1a672b1c2c7562c008c");
	content_release(&c);
	free(p);
}

/*
 * Applies an edit at POS to an 8 MiB random buffer: remove DEL bytes, then
 * insert INS fresh bytes.  Only chunks around the edit may change.
 */
static void check_edit(size_t pos, size_t del, size_t ins, size_t max_new)
{
	size_t n = 8 * MIB;
	uint8_t *a = random_buf(n, 3);
	uint8_t *b = malloc(n + ins);
	struct content ca = { 0 }, cb = { 0 };
	size_t count, kept, suffix;
	uint64_t bytes;

	assert_non_null(b);
	memcpy(b, a, pos);
	fill_random(b + pos, ins, 4);
	memcpy(b + pos + ins, a + pos + del, n - pos - del);
	hash_buf_checked(a, n, &ca);
	hash_buf_checked(b, n - del + ins, &cb);

	new_chunks(&ca, &cb, &count, &bytes);
	assert_true(count >= 1);
	assert_true(count <= max_new);
	suffix = common_suffix(&ca, &cb);
	kept = common_prefix(&ca, &cb) + suffix;
	/* Everything but a few chunks around the edit is unchanged... */
	assert_true(kept + max_new >= ca.n_chunks);
	assert_true(kept + max_new >= cb.n_chunks);
	/* ...and what follows it has only moved by the size difference. */
	for (size_t i = 1; i <= suffix; i++)
		assert_int_equal(cb.chunks[cb.n_chunks - i].offset,
				 ca.chunks[ca.n_chunks - i].offset + ins - del);
	assert_true(bytes <= ins + max_new * cmax);
	content_release(&ca);
	content_release(&cb);
	free(a);
	free(b);
}

static void test_insert_near_start(void **state)
{
	(void)state;
	check_edit(1000, 0, 1, 2);
	check_edit(5000, 0, 100, 2);
	check_edit(40000, 0, 1, 3);
}

static void test_delete_near_start(void **state)
{
	(void)state;
	check_edit(1000, 1, 0, 2);
	check_edit(5000, 100, 0, 2);
	check_edit(60000, 100, 0, 3);
}

static void test_overwrite_middle(void **state)
{
	(void)state;
	check_edit(4 * MIB, 1, 1, 3);
	check_edit(4 * MIB + 777, 4096, 4096, 3);
}

/* The budget the bounds were chosen for: a 1 MiB edit costs < 1.25 MiB. */
static void test_edit_transfer_budget(void **state)
{
	size_t n = 32 * MIB;
	uint8_t *a = random_buf(n, 5);
	uint8_t *b = malloc(n);
	struct content ca = { 0 }, cb = { 0 };
	size_t count;
	uint64_t bytes;

	(void)state;
	assert_non_null(b);
	hash_buf_checked(a, n, &ca);
	for (uint64_t seed = 10; seed < 16; seed++) {
		uint64_t s = seed;
		size_t pos = (size_t)(splitmix64(&s) % (n - MIB));

		memcpy(b, a, n);
		fill_random(b + pos, MIB, seed);
		hash_buf_checked(b, n, &cb);
		new_chunks(&ca, &cb, &count, &bytes);
		assert_true(bytes >= MIB);
		assert_true(bytes <= MIB + MIB / 4);
		content_release(&cb);
	}
	content_release(&ca);
	free(a);
	free(b);
}

/* Inline, multi-slot and pipelined fd paths all agree with the buffer. */
static void test_fd_matches_buf(void **state)
{
	static const size_t sizes[] = {
		1, 100000, MIB / 2, MIB / 2 + 1, 1 * MIB, 1 * MIB + 1,
		3 * MIB + 17, 4 * MIB - 1, 4 * MIB, 9 * MIB + 12345, 16 * MIB,
	};
	uint8_t *p = random_buf(16 * MIB, 6);

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct content cb = { 0 }, cf = { 0 };
		int fd = file_with(p, sizes[i]);

		hash_buf_checked(p, sizes[i], &cb);
		/* pread: the file position must not matter. */
		assert_true(lseek(fd, 12345, SEEK_SET) == 12345);
		assert_int_equal(content_hash_fd(fd, &cf), 0);
		assert_same_content(&cb, &cf);
		content_release(&cb);
		content_release(&cf);
		close(fd);
	}
	free(p);
}

/* A small file hashed with its bytes kept: the hash is content_hash_fd's,
 * the bytes are the file's, and a file over the cap is refused whole. */
static void test_fd_keep(void **state)
{
	static const size_t sizes[] = { 0, 1, 4096, 8191, 8192 };
	uint8_t *p = random_buf(8193, 8), buf[8192];

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct content cf = { 0 }, ck = { 0 };
		int fd = file_with(p, sizes[i]);
		size_t len = 99;

		assert_int_equal(content_hash_fd(fd, &cf), 0);
		assert_int_equal(content_hash_fd_keep(fd, buf, sizeof(buf),
						      &len, &ck), 0);
		assert_same_content(&cf, &ck);
		assert_int_equal(len, sizes[i]);
		if (sizes[i])
			assert_memory_equal(buf, p, sizes[i]);
		content_release(&cf);
		content_release(&ck);
		close(fd);
	}
	{
		struct content ck = { 0 };
		int fd = file_with(p, 8193);
		size_t len = 99;

		assert_int_equal(content_hash_fd_keep(fd, buf, sizeof(buf),
						      &len, &ck), -EFBIG);
		assert_int_equal(len, 0);
		assert_int_equal(ck.n_chunks, 0);
		close(fd);
	}
	free(p);
}

#define WRITER_BLOCK 4096
#define WRITER_SEED 7

struct writer {
	int fd;
	uint64_t end;
	bool append;
	atomic_bool stop;
	atomic_bool started;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct timespec pause = { 0, 200 * 1000 };
	uint8_t block[WRITER_BLOCK];
	uint64_t seed = WRITER_SEED, off = 0;

	while (!atomic_load(&w->stop)) {
		fill_random(block, sizeof(block), seed++);
		if (w->append) {
			off = w->end;
			w->end += sizeof(block);
		} else {
			off = (off + 65536 * 7) % (w->end - sizeof(block));
		}
		if (pwrite(w->fd, block, sizeof(block), (off_t)off) < 0)
			break;
		atomic_store(&w->started, true);
		nanosleep(&pause, NULL);
	}
	return NULL;
}

/*
 * A success while appends run must describe a state the file really had:
 * the original bytes followed by whole appended blocks, which the writer
 * makes deterministically from its block number.
 */
static void check_append_snapshot(const struct content *c,
				  const uint8_t *orig, size_t n)
{
	uint8_t *want = malloc(c->size);
	struct content cw = { 0 };

	assert_non_null(want);
	assert_true(c->size >= n);
	assert_int_equal((c->size - n) % WRITER_BLOCK, 0);
	memcpy(want, orig, n);
	for (uint64_t k = 0; n + k * WRITER_BLOCK < c->size; k++)
		fill_random(want + n + k * WRITER_BLOCK, WRITER_BLOCK,
			    WRITER_SEED + k);
	hash_buf_checked(want, c->size, &cw);
	assert_same_content(c, &cw);
	content_release(&cw);
	free(want);
}

/* Hashes while another thread writes; returns how often KR_ECHANGED. */
static int hash_while_writing(struct writer *w, const uint8_t *orig,
			      size_t n, int tries)
{
	pthread_t tid;
	int changed = 0;

	assert_int_equal(pthread_create(&tid, NULL, writer_main, w), 0);
	while (!atomic_load(&w->started))
		sched_yield();
	for (int i = 0; i < tries; i++) {
		struct content c = { 0 };
		int rc = content_hash_fd(w->fd, &c);

		if (rc == KR_ECHANGED) {
			changed++;
			/* Released on error. */
			assert_null(c.chunks);
			assert_int_equal(c.n_chunks, 0);
			continue;
		}
		assert_int_equal(rc, 0);
		if (w->append)
			check_append_snapshot(&c, orig, n);
		content_release(&c);
	}
	atomic_store(&w->stop, true);
	pthread_join(tid, NULL);
	return changed;
}

static void test_append_while_hashing(void **state)
{
	size_t n = 24 * MIB;
	uint8_t *p = random_buf(n, 8);
	struct writer w = { .fd = file_with(p, n), .end = n, .append = true };
	uint8_t *all;
	struct content c = { 0 }, want = { 0 };

	(void)state;
	assert_true(hash_while_writing(&w, p, n, 5) >= 1);

	/* Quiet again: the file hashes to exactly its final bytes. */
	all = malloc(w.end);
	assert_non_null(all);
	assert_true(pread(w.fd, all, w.end, 0) == (ssize_t)w.end);
	assert_memory_equal(all, p, n);
	assert_int_equal(content_hash_fd(w.fd, &c), 0);
	hash_buf_checked(all, w.end, &want);
	assert_same_content(&c, &want);
	content_release(&c);
	content_release(&want);
	free(all);
	free(p);
	close(w.fd);
}

static void test_overwrite_while_hashing(void **state)
{
	size_t n = 24 * MIB;
	uint8_t *p = random_buf(n, 9);
	struct writer w = { .fd = file_with(p, n), .end = n, .append = false };

	(void)state;
	/* Same size throughout: only mtime and ctime can tell. */
	assert_true(hash_while_writing(&w, p, n, 5) >= 1);
	free(p);
	close(w.fd);
}

static void test_read_errors(void **state)
{
	struct content c = { 0 };
	const char *dir = getenv("TMPDIR");
	int fd = open(dir && *dir ? dir : "/tmp", O_RDONLY | O_DIRECTORY);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(content_hash_fd(fd, &c), -EISDIR);
	assert_null(c.chunks);
	assert_int_equal(c.n_chunks, 0);
	assert_int_equal(c.size, 0);
	close(fd);
	assert_int_equal(content_hash_fd(-1, &c), -EBADF);
	assert_null(c.chunks);
}

static void test_hex(void **state)
{
	uint8_t h[CONTENT_HASH_LEN], back[CONTENT_HASH_LEN];
	char hex[CONTENT_HEX_LEN], upper[CONTENT_HEX_LEN];

	(void)state;
	for (uint64_t seed = 0; seed < 20; seed++) {
		fill_random(h, sizeof(h), seed);
		content_hex(h, hex);
		assert_int_equal(strlen(hex), 64);
		for (size_t i = 0; i < 64; i++)
			assert_true(strchr("0123456789abcdef", hex[i]));
		assert_int_equal(content_unhex(hex, back), 0);
		assert_memory_equal(h, back, sizeof(h));
	}
	/* Upper case is the same number. */
	for (size_t i = 0; i < sizeof(hex); i++)
		upper[i] = (char)(hex[i] >= 'a' && hex[i] <= 'f' ?
				  hex[i] - 'a' + 'A' : hex[i]);
	memset(back, 0, sizeof(back));
	assert_int_equal(content_unhex(upper, back), 0);
	assert_memory_equal(h, back, sizeof(h));

	sha256("", 0, h);
	content_hex(h, hex);
	assert_string_equal(hex, sha256_empty_hex);
}

static void test_unhex_rejects(void **state)
{
	static const char *bad[] = {
		"",
		"e3b0",
		/* 63 digits */
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
		/* 65 digits */
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8550",
		"g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
		" 3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"0xb0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85\n",
	};
	uint8_t h[CONTENT_HASH_LEN], keep[CONTENT_HASH_LEN];

	(void)state;
	memset(h, 0xa5, sizeof(h));
	memcpy(keep, h, sizeof(h));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(content_unhex(bad[i], h), -EINVAL);
		/* Nothing half-written on failure. */
		assert_memory_equal(h, keep, sizeof(h));
	}
	assert_int_equal(content_unhex(NULL, h), -EINVAL);
}

static void test_release(void **state)
{
	struct content c = { 0 };
	uint8_t *p = random_buf(300000, 10);

	(void)state;
	hash_buf_checked(p, 300000, &c);
	assert_true(c.n_chunks > 1);
	content_release(&c);
	assert_null(c.chunks);
	assert_int_equal(c.n_chunks, 0);
	assert_int_equal(c.cap_chunks, 0);
	assert_int_equal(c.size, 0);
	content_release(&c);
	content_release(NULL);
	free(p);
}

/* The index by hash finds every chunk, repeats as one range, and
 * nothing for a hash the content lacks. */
static void test_index(void **state)
{
	const size_t block = 200000;
	uint8_t *p = random_buf(3 * block, 11), absent[CONTENT_HASH_LEN];
	struct content c = { 0 };
	uint32_t *ix = NULL;
	size_t first, n, i;

	(void)state;
	memcpy(p + 2 * block, p, block);   /* the first block's chunks again */
	hash_buf_checked(p, 3 * block, &c);
	assert_int_equal(content_index_build(&c, &ix), 0);
	for (i = 0; i < c.n_chunks; i++) {
		bool seen = false;

		content_index_find(&c, ix, c.chunks[i].hash, &first, &n);
		assert_true(n >= 1);
		for (size_t k = first; k < first + n; k++) {
			assert_memory_equal(c.chunks[ix[k]].hash,
					    c.chunks[i].hash, CONTENT_HASH_LEN);
			seen |= ix[k] == i;
		}
		assert_true(seen);
	}
	/* A chunk well inside block 0 is cut the same way in block 2. */
	for (i = 0; c.chunks[i].offset + c.chunks[i].len < block / 2; i++)
		;
	assert_true(c.chunks[i].offset + c.chunks[i].len < block);
	content_index_find(&c, ix, c.chunks[i].hash, &first, &n);
	assert_int_equal(n, 2);
	memset(absent, 0xff, sizeof(absent));
	content_index_find(&c, ix, absent, &first, &n);
	assert_int_equal(n, 0);
	free(ix);
	content_release(&c);
	free(p);
}

/* ---- hashing from the previous version --------------------------------- */

/* An edit of BASE (N bytes): DEL bytes at POS replaced by INS bytes of
 * seed SEED.  *OUT_N gets the new size. */
static uint8_t *edited(const uint8_t *base, size_t n, size_t pos, size_t del,
		       size_t ins, uint64_t seed, size_t *out_n)
{
	uint8_t *p = malloc(n - del + ins + 1);

	assert_non_null(p);
	memcpy(p, base, pos);
	fill_random(p + pos, ins, seed);
	memcpy(p + pos + ins, base + pos + del, n - pos - del);
	*out_n = n - del + ins;
	return p;
}

/* Hashing NEW from PREV must give exactly what a fresh hash gives. */
static void check_from(const struct content *prev, const uint8_t *p,
		       size_t n)
{
	struct content fresh = { 0 }, got = { 0 };
	int fd = file_with(p, n);

	hash_buf_checked(p, n, &fresh);
	assert_int_equal(content_hash_fd_from(fd, prev, &got), 0);
	assert_same_content(&fresh, &got);
	content_release(&fresh);
	content_release(&got);
	close(fd);
}

/* A base of random data with a run of zeros (cut at the maximum size)
 * in its middle third, so guesses meet both kinds of cut. */
static uint8_t *mixed_buf(size_t n, uint64_t seed)
{
	uint8_t *p = random_buf(n, seed);

	memset(p + n / 3, 0, n / 6);
	return p;
}

/* Every kind of edit, on files that take one slot, the two-slot ring
 * without a helper, and the threaded ring: the result never depends on
 * the guesses, right or wrong. */
static void test_from_previous(void **state)
{
	static const size_t sizes[] = { 300000, 3 * MIB + 5, 9 * MIB + 123 };

	(void)state;
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		size_t n = sizes[si], m = n / 2;
		uint8_t *base = mixed_buf(n, 21 + si);
		struct content prev = { 0 };
		const struct { size_t pos, del, ins; } edits[] = {
			{ 0, 0, 0 },                     /* unchanged */
			{ m, n / 8, n / 8 },             /* overwrite, middle */
			{ 0, 5000, 5000 },               /* overwrite, start */
			{ n - 3000, 3000, 3000 },        /* overwrite, end */
			{ m, 0, 5000 },                  /* insert */
			{ m, 70000, 0 },                 /* delete */
			{ n, 0, 100000 },                /* append */
			{ n - 50000, 50000, 0 },         /* truncate */
			{ n / 3 + 1000, 100, 100 },      /* inside the zeros */
			{ 0, n, n },                     /* all new */
			{ 100, n - 100, 10 },            /* almost all gone */
		};

		hash_buf_checked(base, n, &prev);
		for (size_t e = 0; e < sizeof(edits) / sizeof(edits[0]); e++) {
			size_t nn;
			uint8_t *p = edited(base, n, edits[e].pos,
					    edits[e].del, edits[e].ins,
					    100 + e, &nn);

			check_from(&prev, p, nn);
			free(p);
		}
		/* Many small overwrites: more wrong guesses than are
		 * allowed, the rest hashed without guessing. */
		{
			uint8_t *p = malloc(n);

			assert_non_null(p);
			memcpy(p, base, n);
			for (size_t k = 1; k < 40; k++)
				p[k * (n / 40)] ^= 0x5a;
			check_from(&prev, p, n);
			free(p);
		}
		content_release(&prev);
		free(base);
	}
}

/* A previous list that lies (wrong names), has an impossible shape, or
 * is another file's: ignored or outvoted by the SHA-256 checks.  A list
 * of the same bytes cut elsewhere keeps its cut points, names right. */
static void test_from_bad_previous(void **state)
{
	const size_t n = 6 * MIB + 77;
	uint8_t *p = mixed_buf(n, 31), *other = random_buf(n, 32);
	struct content prev = { 0 }, got = { 0 };
	int fd = file_with(p, n);

	(void)state;
	hash_buf_checked(p, n, &prev);
	for (size_t i = 0; i < prev.n_chunks; i++)
		prev.chunks[i].hash[7] ^= 1;
	check_from(&prev, p, n);
	prev.chunks[1].len = 100;          /* not contiguous any more */
	check_from(&prev, p, n);
	content_release(&prev);

	hash_buf_checked(other, n, &prev);
	check_from(&prev, p, n);
	content_release(&prev);

	/* Fixed 64 KiB pieces of the same bytes, named correctly. */
	prev.size = n;
	prev.n_chunks = prev.cap_chunks = (n + 65535) / 65536;
	prev.chunks = calloc(prev.n_chunks, sizeof(*prev.chunks));
	assert_non_null(prev.chunks);
	for (size_t i = 0; i < prev.n_chunks; i++) {
		struct content_chunk *k = &prev.chunks[i];

		k->offset = (uint64_t)i * 65536;
		k->len = (uint32_t)(n - k->offset < 65536 ? n - k->offset
							  : 65536);
		sha256(p + k->offset, k->len, k->hash);
	}
	assert_int_equal(content_hash_fd_from(fd, &prev, &got), 0);
	check_chunks(&got, n);
	check_file_hash(&got);
	check_chunk_names(&got, p);
	assert_int_equal(got.n_chunks, prev.n_chunks);
	for (size_t i = 0; i < got.n_chunks; i++)
		assert_int_equal(got.chunks[i].len, prev.chunks[i].len);
	content_release(&got);
	content_release(&prev);
	close(fd);
	free(other);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_small_sizes),
		cmocka_unit_test(test_zeros_hit_max),
		cmocka_unit_test(test_random_distribution),
		cmocka_unit_test(test_known_answer),
		cmocka_unit_test(test_insert_near_start),
		cmocka_unit_test(test_delete_near_start),
		cmocka_unit_test(test_overwrite_middle),
		cmocka_unit_test(test_edit_transfer_budget),
		cmocka_unit_test(test_fd_keep),
		cmocka_unit_test(test_fd_matches_buf),
		cmocka_unit_test(test_append_while_hashing),
		cmocka_unit_test(test_overwrite_while_hashing),
		cmocka_unit_test(test_read_errors),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_unhex_rejects),
		cmocka_unit_test(test_release),
		cmocka_unit_test(test_index),
		cmocka_unit_test(test_from_previous),
		cmocka_unit_test(test_from_bad_previous),
	};

	return cmocka_run_group_tests(tests, setup_bounds, NULL);
}
