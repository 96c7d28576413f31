/*
 * Tests for the wire format: every message round trips, the bytes match
 * the format table, and every rule the decoder enforces is refused with
 * its code.
 *
 * Malformed payloads are built with a small writer of our own (raw_*)
 * rather than the encoder, which refuses to produce them; a pin test checks
 * that writer against the encoder on a valid entry, so both follow the
 * table in wire.h.  Every payload handed to the decoder is copied into a
 * buffer of exactly its size, so the sanitizer build sees any over-read.
 */
#include "err.h"
#include "journal.h"
#include "path.h"
#include "wire.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#define ORIGIN1 "vm1@0123456789abcdef"
#define ORIGIN2 "vm2@fedcba9876543210"

/* Raw payload writer. */

struct raw {
	uint8_t d[1 << 15];
	size_t len;
};

static void raw_bytes(struct raw *r, const void *p, size_t n)
{
	assert_true(r->len + n <= sizeof(r->d));
	memcpy(r->d + r->len, p, n);
	r->len += n;
}

static void raw_u8(struct raw *r, uint8_t v)
{
	raw_bytes(r, &v, 1);
}

static void raw_u16(struct raw *r, uint16_t v)
{
	uint8_t p[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	raw_bytes(r, p, 2);
}

static void raw_u32(struct raw *r, uint32_t v)
{
	raw_u16(r, (uint16_t)(v >> 16));
	raw_u16(r, (uint16_t)v);
}

static void raw_u64(struct raw *r, uint64_t v)
{
	raw_u32(r, (uint32_t)(v >> 32));
	raw_u32(r, (uint32_t)v);
}

/* LEN 0 means strlen(S); a longer LEN carries embedded NULs. */
static void raw_str(struct raw *r, const char *s, size_t len)
{
	size_t n = len ? len : strlen(s);

	raw_u16(r, (uint16_t)n);
	raw_bytes(r, s, n);
}

static void raw_hash(struct raw *r, uint8_t fill)
{
	uint8_t h[CONTENT_HASH_LEN];

	memset(h, fill, sizeof(h));
	raw_bytes(r, h, sizeof(h));
}

/* An entry as raw field values, so any of them can be made wrong. */
struct rentry {
	const char *origin;
	uint64_t seq, lamport;
	int64_t wall_ns;
	const char *volume;
	size_t volume_len;
	const char *path;
	size_t path_len;
	uint8_t op;
	uint32_t mode, uid, gid;
	uint64_t size;
	int64_t mtime_ns;
	uint8_t has_hash, has_target;
	const char *target;
	uint16_t n_bases;
	const char *base_origin;
	uint64_t base_seq;
};

static struct rentry good_rentry(void)
{
	return (struct rentry){
		.origin = ORIGIN1, .seq = 7, .lamport = 42,
		.wall_ns = 1700000000123456789, .volume = "data",
		.path = "dir/file.txt", .op = JOURNAL_PUT,
		.mode = S_IFREG | 0644, .uid = 1000, .gid = 100, .size = 5,
		.mtime_ns = 1700000000000000000, .has_hash = 1,
		.n_bases = 1, .base_origin = ORIGIN2, .base_seq = 3,
	};
}

static void raw_entry(struct raw *r, const struct rentry *e)
{
	raw_str(r, e->origin, 0);
	raw_u64(r, e->seq);
	raw_u64(r, e->lamport);
	raw_u64(r, (uint64_t)e->wall_ns);
	raw_str(r, e->volume, e->volume_len);
	raw_str(r, e->path, e->path_len);
	raw_u8(r, e->op);
	raw_u32(r, e->mode);
	raw_u32(r, e->uid);
	raw_u32(r, e->gid);
	raw_u64(r, e->size);
	raw_u64(r, (uint64_t)e->mtime_ns);
	/* Optional parts follow a flag of exactly 1, so a decoder that took
	 * another value for "no" would find the rest aligned and accept. */
	raw_u8(r, e->has_hash);
	if (e->has_hash == 1)
		raw_hash(r, 0xab);
	raw_u8(r, e->has_target);
	if (e->has_target == 1)
		raw_str(r, e->target, 0);
	raw_u16(r, e->n_bases);
	for (uint16_t i = 0; i < e->n_bases; i++) {
		raw_str(r, e->base_origin, 0);
		raw_u64(r, e->base_seq);
	}
}

/* The chain fields after an entry: prev and seg_end, then (for a seg_end
 * of exactly 1) key_id and SIG_LEN bytes of signature. */
static void raw_chain(struct raw *r, uint8_t prev, uint8_t seg_end,
		      uint8_t key, uint16_t sig_len)
{
	raw_hash(r, prev);
	raw_u8(r, seg_end);
	if (seg_end != 1)
		return;
	raw_hash(r, key);
	raw_u16(r, sig_len);
	for (uint16_t i = 0; i < sig_len; i++)
		raw_u8(r, (uint8_t)(i * 3 + 1));
}

/* Decodes a copy of P in an exact-size buffer; returns the code. */
static int decode_bytes(enum wire_type t, const uint8_t *p, size_t n)
{
	uint8_t *copy = malloc(n ? n : 1);
	struct wire_msg m;
	int err;

	assert_non_null(copy);
	if (n)
		memcpy(copy, p, n);
	err = wire_decode(t, copy, n, &m);
	wire_msg_release(&m);
	free(copy);
	return err;
}

static int decode_raw(enum wire_type t, const struct raw *r)
{
	return decode_bytes(t, r->d, r->len);
}

static int decode_rentry(const struct rentry *e)
{
	struct raw r = { .len = 0 };

	raw_u32(&r, 1);
	raw_entry(&r, e);
	return decode_raw(WIRE_ENTRIES, &r);
}

/* Sample messages, one per type. */

static const struct journal_ref vec_refs[] = {
	{ ORIGIN1, 10 },
	{ "node-2.x_Y@fedcba9876543210", 0 },
	{ "a@0000000000000000", UINT64_MAX },
};

static const struct journal_ref bases2[] = {
	{ ORIGIN1, 6 },
	{ ORIGIN2, 3 },
};

static const struct wire_entry sample_entries[] = {
	{ .ref = { ORIGIN1, 7 }, .lamport = 42, .wall_ns = -5,
	  .volume = "data", .path = "dir/caf\xc3\xa9.txt", .op = JOURNAL_PUT,
	  .mode = S_IFREG | 0644, .uid = 1000, .gid = 100, .size = 123456,
	  .mtime_ns = INT64_MIN, .has_hash = true, .hash = { 1, 2, 3, 255 },
	  .n_bases = 2, .bases = bases2 },
	{ .ref = { ORIGIN1, 8 }, .lamport = 43, .wall_ns = INT64_MAX,
	  .volume = "data", .path = "dir/link", .op = JOURNAL_SYMLINK,
	  .mode = S_IFLNK | 0777, .has_target = true,
	  .target = "../elsewhere/x" },
	{ .ref = { ORIGIN2, 1 }, .lamport = JOURNAL_LAMPORT_MAX,
	  .volume = "v.2_x-y", .path = "d", .op = JOURNAL_MKDIR, .mode = S_IFDIR | 0755,
	  .uid = UINT32_MAX, .gid = 0 },
	{ .ref = { ORIGIN2, 2 }, .lamport = 2, .volume = "v.2_x-y",
	  .path = "d", .op = JOURNAL_DELETE, .n_bases = 1, .bases = bases2 },
	{ .ref = { ORIGIN2, 3 }, .lamport = 3, .volume = "v3", .path = "",
	  .op = JOURNAL_VOLUME_CREATE, .mode = S_IFDIR | 0755 },
	{ .ref = { ORIGIN2, 4 }, .lamport = 4, .volume = "v3", .path = "",
	  .op = JOURNAL_META, .mode = S_IFDIR | 0700 },
	{ .ref = { ORIGIN2, 5 }, .lamport = 5, .volume = "v3", .path = "",
	  .op = JOURNAL_VOLUME_REMOVE },
};

#define N_SAMPLE_ENTRIES (sizeof(sample_entries) / sizeof(sample_entries[0]))

/* A 72-byte signature, as long as a DER ECDSA P-256 one gets. */
static const uint8_t sample_sig[72] = { 0x30, 0x46, 0x02, 0x21, [71] = 0x5a };
static struct wire_entry sample_chain[2];         /* filled by sample() */
static struct wire_entry sample_chain_state[2];
static const uint8_t sample_after[3][CONTENT_HASH_LEN] = {
	{ 0x51 }, { 0x52 }, { 0x53, [31] = 0x54 },
};
static struct wire_seal sample_seals[2];
static uint8_t sample_cert[300];

/* Entry I of sample_entries, chained after a hash of FILL bytes. */
static struct wire_entry chained_entry(size_t i, uint8_t fill)
{
	struct wire_entry e = sample_entries[i];

	e.chained = true;
	memset(e.prev, fill, CONTENT_HASH_LEN);
	return e;
}

static const struct wire_chunk_ref sample_chunks[] = {
	{ { 0x11 }, 1, 0, 0 },
	{ { 0x22 }, 128 << 10, 0, 0 },
	{ { 0x33 }, WIRE_MAX_CHUNK, 0, 0 },
};

static const uint8_t sample_hashes[3][CONTENT_HASH_LEN] = {
	{ 0xa1 }, { 0xa2 }, { 0xa3, [31] = 0xff },
};

static const uint8_t sample_here[3] = { 1, 0, 1 };

static uint8_t sample_data[3000];
/* 10,000 bytes are 3 blocks, the last short: digests and a map for them. */
static const uint8_t sample_digests[3][DELTA_DIGEST] = {
	{ 1, 2, 3, 4, 5, 6, 7, 8 }, { 0 }, { 0xff, [7] = 0x80 },
};
static const uint8_t sample_map[1] = { 0x01 };

static void sample(enum wire_type t, struct wire_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = t;
	switch (t) {
	case WIRE_HELLO:
		m->hello = (struct wire_hello){ "vm1", "prod cluster \xc3\xa9",
			0x80000001u, { 3, vec_refs } };
		break;
	case WIRE_VECTOR:
	case WIRE_STATE_BEGIN:
	case WIRE_ACK:
		m->vector = (struct wire_vector){ 3, vec_refs };
		break;
	case WIRE_ENTRIES:
	case WIRE_STATE:
		m->entries = (struct wire_entry_list){ N_SAMPLE_ENTRIES,
						       sample_entries };
		break;
	case WIRE_STATE_END:
		m->token = 123456789;
		break;
	case WIRE_CLOCK:
		m->clock = (struct wire_clock){ 0x0102030405060708u, -7 };
		break;
	case WIRE_CHAIN_ENTRIES:
		/* One entry inside a segment, one ending it signed. */
		sample_chain[0] = chained_entry(0, 0x11);
		sample_chain[1] = chained_entry(1, 0x22);
		sample_chain[1].seg_end = true;
		memset(sample_chain[1].key_id, 0x33, CONTENT_HASH_LEN);
		sample_chain[1].sig_len = sizeof(sample_sig);
		sample_chain[1].sig = sample_sig;
		m->entries = (struct wire_entry_list){ 2, sample_chain };
		break;
	case WIRE_CHAIN_STATE:
		/* A run of two heads: two digests between them, one after
		 * the second up to its signature. */
		sample_chain_state[0] = chained_entry(2, 0x44);
		sample_chain_state[0].n_after = 2;
		sample_chain_state[0].after = sample_after;
		sample_chain_state[1] = chained_entry(3, 0x45);
		sample_chain_state[1].n_after = 1;
		sample_chain_state[1].after = &sample_after[2];
		sample_chain_state[1].seg_end = true;
		memset(sample_chain_state[1].key_id, 0x33, CONTENT_HASH_LEN);
		sample_chain_state[1].sig_len = sizeof(sample_sig);
		sample_chain_state[1].sig = sample_sig;
		m->entries = (struct wire_entry_list){ 2, sample_chain_state };
		break;
	case WIRE_SEALS:
		sample_seals[0] = (struct wire_seal){ .ref = { ORIGIN1, 9 },
			.sig_len = sizeof(sample_sig), .sig = sample_sig };
		memset(sample_seals[0].chain, 0x61, CONTENT_HASH_LEN);
		memset(sample_seals[0].key_id, 0x62, CONTENT_HASH_LEN);
		sample_seals[1] = sample_seals[0];
		sample_seals[1].ref = (struct journal_ref){ ORIGIN2, 1 };
		sample_seals[1].sig_len = 1;
		m->seals = (struct wire_seals){ 2, sample_seals };
		break;
	case WIRE_KEY:
		for (size_t i = 0; i < sizeof(sample_cert); i++)
			sample_cert[i] = (uint8_t)(i * 13 + 1);
		sample_cert[0] = 0x30;            /* looks like DER */
		m->key = (struct wire_key){ sizeof(sample_cert), sample_cert };
		break;
	case WIRE_GET_CHUNKLIST:
		memset(m->get_chunklist.hash, 0x5a, CONTENT_HASH_LEN);
		m->get_chunklist.start = 77;
		break;
	case WIRE_CHUNKLIST:
		m->chunklist = (struct wire_chunklist){ { 0x77 }, 5000000,
			10, 4, 3, sample_chunks, false, { 0 } };
		break;
	case WIRE_GET_CHUNKS:
		m->get_chunks = (struct wire_get_chunks){ 3, sample_hashes };
		break;
	case WIRE_CHUNK:
		for (size_t i = 0; i < sizeof(sample_data); i++)
			sample_data[i] = (uint8_t)(i * 7);
		m->chunk = (struct wire_chunk){ { 0xc4 }, sizeof(sample_data),
						sample_data };
		break;
	case WIRE_NOT_HERE:
		memset(m->not_here, 0xee, CONTENT_HASH_LEN);
		break;
	case WIRE_PING:
		m->token = 0x0102030405060708u;
		break;
	case WIRE_PONG:
		m->token = UINT64_MAX;
		break;
	case WIRE_ERROR:
		m->error = (struct wire_error){ WIRE_ERR_CLUSTER,
						"cluster id mismatch" };
		break;
	case WIRE_CHANGING:
		m->changing = (struct wire_changing){ "data", "db/main.sqlite",
						      { 0xb5, [31] = 1 },
						      3ull << 30 };
		break;
	case WIRE_ASK_KEPT:
		m->ask_kept = (struct wire_ask_kept){ 0xfedcba9876543210u,
			"data", "db/main.sqlite", 3, sample_hashes };
		break;
	case WIRE_KEPT:
		m->kept = (struct wire_kept){ 7, 3, sample_here };
		break;
	case WIRE_GET_DELTA:
		m->get_delta = (struct wire_get_delta){ { 0xd1 }, 10000,
							sample_digests };
		break;
	case WIRE_DELTA:
		for (size_t i = 0; i < sizeof(sample_data); i++)
			sample_data[i] = (uint8_t)(i * 7);
		/* 7,096 bytes: block 0 (4 KiB) the asker's, block 1 (the
		 * last, 3,000 bytes) sent. */
		m->delta = (struct wire_delta){ { 0xd2 }, 4096 + 3000,
						sample_map,
						sample_data, 3000 };
		break;
	}
}

/* Encodes M alone into B and returns its payload. */
static const uint8_t *encode_one(struct wire_buf *b, const struct wire_msg *m,
				 uint32_t *len)
{
	enum wire_type t;

	wire_buf_reset(b);
	assert_int_equal(wire_encode(b, m), 0);
	assert_int_equal(wire_header_parse(b->data, &t, len), 0);
	assert_int_equal(t, m->type);
	assert_int_equal(b->len, WIRE_HEADER_LEN + *len);
	return b->data + WIRE_HEADER_LEN;
}

static void assert_refs_equal(const struct journal_ref *a,
			      const struct journal_ref *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(a[i].origin, b[i].origin);
		assert_int_equal(a[i].seq, b[i].seq);
	}
}

static void assert_entry_equal(const struct wire_entry *a,
			       const struct wire_entry *b)
{
	assert_refs_equal(&a->ref, &b->ref, 1);
	assert_int_equal(a->lamport, b->lamport);
	assert_int_equal(a->wall_ns, b->wall_ns);
	assert_string_equal(a->volume, b->volume);
	assert_string_equal(a->path, b->path);
	assert_int_equal(a->op, b->op);
	assert_int_equal(a->mode, b->mode);
	assert_int_equal(a->uid, b->uid);
	assert_int_equal(a->gid, b->gid);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->mtime_ns, b->mtime_ns);
	assert_int_equal(a->has_hash, b->has_hash);
	if (a->has_hash)
		assert_memory_equal(a->hash, b->hash, CONTENT_HASH_LEN);
	assert_int_equal(a->has_target, b->has_target);
	if (a->has_target)
		assert_string_equal(a->target, b->target);
	else
		assert_null(b->target);
	assert_int_equal(a->n_bases, b->n_bases);
	assert_refs_equal(a->bases, b->bases, a->n_bases);
	assert_int_equal(a->chained, b->chained);
	assert_memory_equal(a->prev, b->prev, CONTENT_HASH_LEN);
	assert_int_equal(a->n_after, b->n_after);
	if (a->n_after)
		assert_memory_equal(a->after, b->after,
				    (size_t)a->n_after * CONTENT_HASH_LEN);
	assert_int_equal(a->seg_end, b->seg_end);
	if (!a->seg_end)
		return;
	assert_memory_equal(a->key_id, b->key_id, CONTENT_HASH_LEN);
	assert_int_equal(a->sig_len, b->sig_len);
	if (a->sig_len)
		assert_memory_equal(a->sig, b->sig, a->sig_len);
	else
		assert_null(b->sig);
}

static void assert_msg_equal(const struct wire_msg *a, const struct wire_msg *b)
{
	assert_int_equal(a->type, b->type);
	switch (a->type) {
	case WIRE_HELLO:
		assert_string_equal(a->hello.node_id, b->hello.node_id);
		assert_string_equal(a->hello.cluster_id, b->hello.cluster_id);
		assert_int_equal(a->hello.features, b->hello.features);
		assert_int_equal(a->hello.vector.n, b->hello.vector.n);
		assert_refs_equal(a->hello.vector.refs, b->hello.vector.refs,
				  a->hello.vector.n);
		break;
	case WIRE_VECTOR:
	case WIRE_STATE_BEGIN:
	case WIRE_ACK:
		assert_int_equal(a->vector.n, b->vector.n);
		assert_refs_equal(a->vector.refs, b->vector.refs, a->vector.n);
		break;
	case WIRE_ENTRIES:
	case WIRE_STATE:
	case WIRE_CHAIN_ENTRIES:
	case WIRE_CHAIN_STATE:
		assert_int_equal(a->entries.n, b->entries.n);
		for (uint32_t i = 0; i < a->entries.n; i++)
			assert_entry_equal(&a->entries.v[i], &b->entries.v[i]);
		break;
	case WIRE_GET_CHUNKLIST:
		assert_memory_equal(&a->get_chunklist, &b->get_chunklist,
				    sizeof(a->get_chunklist));
		break;
	case WIRE_CHUNKLIST:
		assert_memory_equal(a->chunklist.hash, b->chunklist.hash,
				    CONTENT_HASH_LEN);
		assert_int_equal(a->chunklist.size, b->chunklist.size);
		assert_int_equal(a->chunklist.total, b->chunklist.total);
		assert_int_equal(a->chunklist.start, b->chunklist.start);
		assert_int_equal(a->chunklist.n, b->chunklist.n);
		assert_memory_equal(a->chunklist.chunks, b->chunklist.chunks,
				    a->chunklist.n * sizeof(struct wire_chunk_ref));
		break;
	case WIRE_GET_CHUNKS:
		assert_int_equal(a->get_chunks.n, b->get_chunks.n);
		assert_memory_equal(a->get_chunks.hashes, b->get_chunks.hashes,
				    a->get_chunks.n * CONTENT_HASH_LEN);
		break;
	case WIRE_CHUNK:
		assert_memory_equal(a->chunk.hash, b->chunk.hash,
				    CONTENT_HASH_LEN);
		assert_int_equal(a->chunk.len, b->chunk.len);
		assert_memory_equal(a->chunk.data, b->chunk.data, a->chunk.len);
		break;
	case WIRE_NOT_HERE:
		assert_memory_equal(a->not_here, b->not_here, CONTENT_HASH_LEN);
		break;
	case WIRE_PING:
	case WIRE_PONG:
	case WIRE_STATE_END:
		assert_int_equal(a->token, b->token);
		break;
	case WIRE_CLOCK:
		assert_int_equal(a->clock.token, b->clock.token);
		assert_int_equal(a->clock.wall_ns, b->clock.wall_ns);
		break;
	case WIRE_KEY:
		assert_int_equal(a->key.len, b->key.len);
		assert_memory_equal(a->key.der, b->key.der, a->key.len);
		break;
	case WIRE_SEALS:
		assert_int_equal(a->seals.n, b->seals.n);
		for (uint32_t i = 0; i < a->seals.n; i++) {
			const struct wire_seal *x = &a->seals.v[i],
					       *y = &b->seals.v[i];

			assert_refs_equal(&x->ref, &y->ref, 1);
			assert_memory_equal(x->chain, y->chain,
					    CONTENT_HASH_LEN);
			assert_memory_equal(x->key_id, y->key_id,
					    CONTENT_HASH_LEN);
			assert_int_equal(x->sig_len, y->sig_len);
			assert_memory_equal(x->sig, y->sig, x->sig_len);
		}
		break;
	case WIRE_ERROR:
		assert_int_equal(a->error.code, b->error.code);
		assert_string_equal(a->error.text, b->error.text);
		break;
	case WIRE_CHANGING:
		assert_string_equal(a->changing.volume, b->changing.volume);
		assert_string_equal(a->changing.path, b->changing.path);
		assert_memory_equal(a->changing.base, b->changing.base,
				    CONTENT_HASH_LEN);
		assert_int_equal(a->changing.size, b->changing.size);
		break;
	case WIRE_ASK_KEPT:
		assert_int_equal(a->ask_kept.token, b->ask_kept.token);
		assert_string_equal(a->ask_kept.volume, b->ask_kept.volume);
		assert_string_equal(a->ask_kept.path, b->ask_kept.path);
		assert_int_equal(a->ask_kept.n, b->ask_kept.n);
		assert_memory_equal(a->ask_kept.hashes, b->ask_kept.hashes,
				    a->ask_kept.n * CONTENT_HASH_LEN);
		break;
	case WIRE_KEPT:
		assert_int_equal(a->kept.token, b->kept.token);
		assert_int_equal(a->kept.n, b->kept.n);
		assert_memory_equal(a->kept.here, b->kept.here, a->kept.n);
		break;
	case WIRE_GET_DELTA:
		assert_memory_equal(a->get_delta.hash, b->get_delta.hash,
				    CONTENT_HASH_LEN);
		assert_int_equal(a->get_delta.len, b->get_delta.len);
		assert_memory_equal(a->get_delta.digests, b->get_delta.digests,
				    delta_blocks(a->get_delta.len) *
				    DELTA_DIGEST);
		break;
	case WIRE_DELTA:
		assert_memory_equal(a->delta.hash, b->delta.hash,
				    CONTENT_HASH_LEN);
		assert_int_equal(a->delta.len, b->delta.len);
		assert_memory_equal(a->delta.map, b->delta.map,
				    delta_map_len(a->delta.len));
		assert_int_equal(a->delta.data_len, b->delta.data_len);
		assert_memory_equal(a->delta.data, b->delta.data,
				    a->delta.data_len);
		break;
	}
}

static void make_header(uint8_t h[WIRE_HEADER_LEN], uint8_t type,
			uint32_t len)
{
	memcpy(h, "KRFS", 4);
	h[4] = 1;
	h[5] = type;
	h[6] = h[7] = 0;
	h[8] = (uint8_t)(len >> 24);
	h[9] = (uint8_t)(len >> 16);
	h[10] = (uint8_t)(len >> 8);
	h[11] = (uint8_t)len;
}

/* Tests. */

static void test_header_parse(void **state)
{
	uint8_t h[WIRE_HEADER_LEN];
	enum wire_type t;
	uint32_t len;

	(void)state;
	make_header(h, WIRE_ENTRIES, WIRE_MAX_PAYLOAD);
	assert_int_equal(wire_header_parse(h, &t, &len), 0);
	assert_int_equal(t, WIRE_ENTRIES);
	assert_int_equal(len, WIRE_MAX_PAYLOAD);

	h[0] = 'k';
	assert_int_equal(wire_header_parse(h, &t, &len), -EPROTO);
	make_header(h, WIRE_PING, 8);
	h[4] = 2;
	assert_int_equal(wire_header_parse(h, &t, &len), -EPROTONOSUPPORT);
	h[4] = 0;
	assert_int_equal(wire_header_parse(h, &t, &len), -EPROTONOSUPPORT);
	make_header(h, WIRE_PING, 8);
	h[7] = 1;
	assert_int_equal(wire_header_parse(h, &t, &len), -EPROTO);
	make_header(h, WIRE_PING, 8);
	h[6] = 0x80;
	assert_int_equal(wire_header_parse(h, &t, &len), -EPROTO);

	make_header(h, 0, 0);
	assert_int_equal(wire_header_parse(h, &t, &len), -EPROTO);
	make_header(h, WIRE_TYPE_LAST + 1, 0);
	assert_int_equal(wire_header_parse(h, &t, &len), -EPROTO);
	make_header(h, 255, 0);
	assert_int_equal(wire_header_parse(h, &t, &len), -EPROTO);

	/* Refused from the header alone, before any payload is read. */
	make_header(h, WIRE_ENTRIES, WIRE_MAX_PAYLOAD + 1);
	assert_int_equal(wire_header_parse(h, &t, &len), -EMSGSIZE);
	make_header(h, WIRE_HELLO, UINT32_MAX);
	assert_int_equal(wire_header_parse(h, &t, &len), -EMSGSIZE);
	make_header(h, WIRE_PING, 9);
	assert_int_equal(wire_header_parse(h, &t, &len), -EMSGSIZE);
	make_header(h, WIRE_CHUNK, CONTENT_HASH_LEN + 4 + WIRE_MAX_CHUNK);
	assert_int_equal(wire_header_parse(h, &t, &len), 0);
	make_header(h, WIRE_CHUNK, CONTENT_HASH_LEN + 5 + WIRE_MAX_CHUNK);
	assert_int_equal(wire_header_parse(h, &t, &len), -EMSGSIZE);
	make_header(h, WIRE_NOT_HERE, 33);
	assert_int_equal(wire_header_parse(h, &t, &len), -EMSGSIZE);
	make_header(h, WIRE_GET_CHUNKS, 4 + 1025 * CONTENT_HASH_LEN);
	assert_int_equal(wire_header_parse(h, &t, &len), -EMSGSIZE);
}

static void test_round_trip_every_type(void **state)
{
	struct wire_buf b = { 0 };

	(void)state;
	for (int t = WIRE_HELLO; t <= WIRE_TYPE_LAST; t++) {
		struct wire_msg in, out;
		uint32_t len;
		const uint8_t *p;
		uint8_t *again;

		sample((enum wire_type)t, &in);
		p = encode_one(&b, &in, &len);
		assert_int_equal(wire_decode((enum wire_type)t, p, len, &out), 0);
		assert_msg_equal(&in, &out);
		/* The encoding is canonical: decoding then encoding gives
		 * back the same bytes. */
		again = malloc(len);
		assert_non_null(again);
		memcpy(again, p, len);
		p = encode_one(&b, &out, &len);
		assert_memory_equal(p, again, len);
		free(again);
		wire_msg_release(&out);
	}
	wire_buf_release(&b);
}

static void test_frames_concatenate(void **state)
{
	struct wire_buf b = { 0 };
	size_t off = 0;
	int t;

	(void)state;
	for (t = WIRE_HELLO; t <= WIRE_TYPE_LAST; t++) {
		struct wire_msg m;

		sample((enum wire_type)t, &m);
		assert_int_equal(wire_encode(&b, &m), 0);
	}
	for (t = WIRE_HELLO; off < b.len; t++) {
		enum wire_type type;
		uint32_t len;
		struct wire_msg m;

		assert_int_equal(wire_header_parse(b.data + off, &type, &len), 0);
		assert_int_equal(type, t);
		assert_int_equal(wire_decode(type, b.data + off + WIRE_HEADER_LEN,
					     len, &m), 0);
		wire_msg_release(&m);
		off += WIRE_HEADER_LEN + len;
	}
	assert_int_equal(t, WIRE_TYPE_LAST + 1);
	assert_int_equal(off, b.len);
	wire_buf_release(&b);
}

static void test_chunk_points_into_payload(void **state)
{
	struct wire_buf b = { 0 };
	struct wire_msg in, out;
	uint32_t len;
	const uint8_t *p;

	(void)state;
	sample(WIRE_CHUNK, &in);
	p = encode_one(&b, &in, &len);
	assert_int_equal(wire_decode(WIRE_CHUNK, p, len, &out), 0);
	assert_ptr_equal(out.chunk.data, p + CONTENT_HASH_LEN + 4);
	assert_int_equal(out.chunk.len, sizeof(sample_data));
	assert_null(out.arena);
	wire_msg_release(&out);
	wire_buf_release(&b);
}

/* A CHUNK payload written in place (head, then the bytes) is the one the
 * encoder makes, and decodes to the same chunk. */
static void test_chunk_head_matches_encoder(void **state)
{
	struct wire_buf b = { 0 };
	struct wire_msg in, out;
	uint32_t len;
	const uint8_t *p;
	uint8_t built[WIRE_CHUNK_HEAD + sizeof(sample_data)];

	(void)state;
	sample(WIRE_CHUNK, &in);
	p = encode_one(&b, &in, &len);
	wire_chunk_head(built, in.chunk.hash, in.chunk.len);
	memcpy(built + WIRE_CHUNK_HEAD, in.chunk.data, in.chunk.len);
	assert_int_equal(len, sizeof(built));
	assert_memory_equal(built, p, len);
	assert_int_equal(wire_decode(WIRE_CHUNK, built, sizeof(built), &out), 0);
	assert_memory_equal(out.chunk.hash, in.chunk.hash, CONTENT_HASH_LEN);
	assert_int_equal(out.chunk.len, in.chunk.len);
	wire_msg_release(&out);
	wire_buf_release(&b);
}

static void test_empty_lists_round_trip(void **state)
{
	struct wire_buf b = { 0 };
	struct wire_msg in = { .type = WIRE_VECTOR }, out;
	uint32_t len;
	const uint8_t *p;

	(void)state;
	p = encode_one(&b, &in, &len);
	assert_int_equal(len, 4);
	assert_int_equal(wire_decode(WIRE_VECTOR, p, len, &out), 0);
	assert_int_equal(out.vector.n, 0);
	assert_null(out.vector.refs);
	wire_msg_release(&out);

	in = (struct wire_msg){ .type = WIRE_ENTRIES };
	p = encode_one(&b, &in, &len);
	assert_int_equal(wire_decode(WIRE_ENTRIES, p, len, &out), 0);
	assert_int_equal(out.entries.n, 0);
	wire_msg_release(&out);

	/* An empty file's chunk list. */
	in = (struct wire_msg){ .type = WIRE_CHUNKLIST };
	p = encode_one(&b, &in, &len);
	assert_int_equal(wire_decode(WIRE_CHUNKLIST, p, len, &out), 0);
	assert_int_equal(out.chunklist.total, 0);
	wire_msg_release(&out);

	in = (struct wire_msg){ .type = WIRE_ERROR, .error = { 9, "" } };
	p = encode_one(&b, &in, &len);
	assert_int_equal(wire_decode(WIRE_ERROR, p, len, &out), 0);
	assert_string_equal(out.error.text, "");
	assert_int_equal(out.error.code, 9);
	wire_msg_release(&out);
	wire_buf_release(&b);
}

static void test_truncated_at_every_offset(void **state)
{
	struct wire_buf b = { 0 };

	(void)state;
	for (int t = WIRE_HELLO; t <= WIRE_TYPE_LAST; t++) {
		struct wire_msg m;
		uint32_t len;
		const uint8_t *p;

		sample((enum wire_type)t, &m);
		p = encode_one(&b, &m, &len);
		for (uint32_t cut = 0; cut < len; cut++)
			assert_int_equal(decode_bytes((enum wire_type)t, p, cut),
					 -EPROTO);
		assert_int_equal(decode_bytes((enum wire_type)t, p, len), 0);
	}
	wire_buf_release(&b);
}

static void test_trailing_bytes(void **state)
{
	struct wire_buf b = { 0 };

	(void)state;
	for (int t = WIRE_HELLO; t <= WIRE_TYPE_LAST; t++) {
		struct wire_msg m;
		uint32_t len;
		uint8_t *p;

		sample((enum wire_type)t, &m);
		wire_buf_reset(&b);
		assert_int_equal(wire_encode(&b, &m), 0);
		len = (uint32_t)(b.len - WIRE_HEADER_LEN);
		p = malloc(len + 1);
		assert_non_null(p);
		memcpy(p, b.data + WIRE_HEADER_LEN, len);
		p[len] = 0;
		/* Fixed-size types refuse the extra byte by their cap. */
		if (len + 1 > wire_max_payload((enum wire_type)t))
			assert_int_equal(decode_bytes((enum wire_type)t, p,
						      len + 1), -EMSGSIZE);
		else
			assert_int_equal(decode_bytes((enum wire_type)t, p,
						      len + 1), -EPROTO);
		free(p);
	}
	wire_buf_release(&b);
}

static void test_decode_refuses_type_and_size(void **state)
{
	uint8_t p[16] = { 0 };
	struct wire_msg m;

	(void)state;
	assert_int_equal(wire_decode((enum wire_type)0, p, 8, &m), -EPROTO);
	wire_msg_release(&m);
	assert_int_equal(wire_decode((enum wire_type)12, p, 8, &m), -EPROTO);
	wire_msg_release(&m);
	assert_int_equal(wire_decode(WIRE_PING, p, 9, &m), -EMSGSIZE);
	wire_msg_release(&m);
	assert_int_equal(wire_decode(WIRE_ENTRIES, p, WIRE_MAX_PAYLOAD + 1,
				     &m), -EMSGSIZE);
	wire_msg_release(&m);
	assert_int_equal(wire_decode(WIRE_PING, NULL, 0, &m), -EPROTO);
	wire_msg_release(&m);
}

/* Counts far past what the payload holds are refused before any array is
 * allocated for them: were they trusted, the allocation would fail with
 * -ENOMEM (or the sanitizer would abort) instead of -EPROTO. */
static void test_huge_counts(void **state)
{
	struct raw r = { .len = 0 };

	(void)state;
	raw_u32(&r, UINT32_MAX);
	raw_bytes(&r, "\0\0\0\0\0\0", 6);
	assert_int_equal(r.len, 10);
	assert_int_equal(decode_raw(WIRE_VECTOR, &r), -EPROTO);
	assert_int_equal(decode_raw(WIRE_ENTRIES, &r), -EPROTO);

	/* One more item than the bytes could hold. */
	r.len = 0;
	raw_u32(&r, 2);
	raw_str(&r, ORIGIN1, 0);
	raw_u64(&r, 1);
	assert_int_equal(decode_raw(WIRE_VECTOR, &r), -EPROTO);

	r.len = 0;
	raw_str(&r, "vm1", 0);
	raw_str(&r, "c", 0);
	raw_u32(&r, 0);
	raw_u32(&r, 0x40000000);
	assert_int_equal(decode_raw(WIRE_HELLO, &r), -EPROTO);

	r.len = 0;
	raw_hash(&r, 1);
	raw_u64(&r, 10);
	raw_u32(&r, UINT32_MAX);
	raw_u32(&r, 0);
	raw_u32(&r, UINT32_MAX);
	assert_int_equal(decode_raw(WIRE_CHUNKLIST, &r), -EPROTO);

	r.len = 0;
	raw_u32(&r, UINT32_MAX);
	raw_hash(&r, 1);
	assert_int_equal(decode_raw(WIRE_GET_CHUNKS, &r), -EPROTO);
}

/* Lamport values past JOURNAL_LAMPORT_MAX are malformed either way. */
static void test_lamport_bound(void **state)
{
	struct rentry e = good_rentry();

	(void)state;
	e.lamport = JOURNAL_LAMPORT_MAX;
	assert_int_equal(decode_rentry(&e), 0);
	e.lamport = JOURNAL_LAMPORT_MAX + 1;
	assert_int_equal(decode_rentry(&e), -EPROTO);
	e.lamport = UINT64_MAX;
	assert_int_equal(decode_rentry(&e), -EPROTO);
}

static void test_bases_count(void **state)
{
	struct rentry e = good_rentry();
	struct raw r = { .len = 0 };

	(void)state;
	e.n_bases = WIRE_MAX_BASES;
	assert_int_equal(decode_rentry(&e), 0);
	e.n_bases = WIRE_MAX_BASES + 1;
	assert_int_equal(decode_rentry(&e), -EPROTO);

	/* A base count the remaining bytes cannot hold. */
	e = good_rentry();
	e.n_bases = 0;
	raw_u32(&r, 1);
	raw_entry(&r, &e);
	r.d[r.len - 1] = 60;
	assert_int_equal(decode_raw(WIRE_ENTRIES, &r), -EPROTO);
}

static void test_raw_matches_encoder(void **state)
{
	struct rentry re = good_rentry();
	struct journal_ref base = { ORIGIN2, 3 };
	struct wire_entry e = {
		.ref = { ORIGIN1, 7 }, .lamport = 42,
		.wall_ns = 1700000000123456789, .volume = "data",
		.path = "dir/file.txt", .op = JOURNAL_PUT,
		.mode = S_IFREG | 0644, .uid = 1000, .gid = 100, .size = 5,
		.mtime_ns = 1700000000000000000, .has_hash = true,
		.n_bases = 1, .bases = &base,
	};
	struct wire_msg m = { .type = WIRE_ENTRIES, .entries = { 1, &e } };
	struct wire_buf b = { 0 };
	struct raw r = { .len = 0 };
	uint32_t len;
	const uint8_t *p;

	(void)state;
	memset(e.hash, 0xab, CONTENT_HASH_LEN);
	raw_u32(&r, 1);
	raw_entry(&r, &re);
	p = encode_one(&b, &m, &len);
	assert_int_equal(len, r.len);
	assert_memory_equal(p, r.d, r.len);
	/* And the header bytes of the format table. */
	assert_memory_equal(b.data, "KRFS\x01\x03\x00\x00", 8);
	assert_int_equal(b.data[11], len & 0xff);
	wire_buf_release(&b);
}

static void test_hostile_paths(void **state)
{
	static const struct {
		const char *path;
		size_t len;
	} bad[] = {
		{ "../x", 0 }, { "/abs", 0 }, { "a/../b", 0 }, { "..", 0 },
		{ "a/./b", 0 }, { "a//b", 0 }, { "a/", 0 }, { "bad\xff", 0 },
		{ "over\xc0\xaflong", 0 }, { "trunc\xe2\x82", 0 },
		{ "nul\0inside", 10 }, { "a\0", 2 },
	};
	struct rentry e = good_rentry();
	char *longp = malloc(PATH_REL_MAX + 2);

	(void)state;
	assert_int_equal(decode_rentry(&e), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e.path = bad[i].path;
		e.path_len = bad[i].len;
		assert_int_equal(decode_rentry(&e), KR_EHOSTILE);
	}
	/* Longer than any journal path: 4001 bytes, components of 1. */
	assert_non_null(longp);
	for (size_t i = 0; i <= PATH_REL_MAX; i++)
		longp[i] = i % 2 ? '/' : 'a';
	longp[PATH_REL_MAX + 1] = '\0';
	e.path = longp;
	e.path_len = 0;
	assert_int_equal(decode_rentry(&e), KR_EHOSTILE);
	longp[PATH_REL_MAX] = '\0';
	longp[PATH_REL_MAX - 1] = 'a';
	assert_int_equal(decode_rentry(&e), 0);
	free(longp);
}

static void test_hostile_volumes(void **state)
{
	static const char *const bad[] = {
		"..", ".", "a/b", "", "x", "-x", "/data", "caf\xc3\xa9",
	};
	struct rentry e = good_rentry();

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e.volume = bad[i];
		assert_int_equal(decode_rentry(&e), KR_EHOSTILE);
	}
	e.volume = "da\0ta";
	e.volume_len = 5;
	assert_int_equal(decode_rentry(&e), KR_EHOSTILE);
}

static const char *const bad_origins[] = {
	"vm1@0123456789abcde",            /* 15 digits */
	"vm1@0123456789abcdef0",          /* 17 digits */
	"vm1@0123456789ABCDEF",           /* upper case */
	"vm1@0123456789abcdeg",
	"@0123456789abcdef",              /* empty node */
	".@0123456789abcdef",             /* dot dirs: ids go in names */
	"..@0123456789abcdef",
	"vm 1@0123456789abcdef",
	"vm1#0123456789abcdef",
	"vm1@@0123456789abcdef",
	"a@b@0123456789abcdef",
	"vm1",
	"",
	"vm\xc3\xa9@0123456789abcdef",
	/* a node id of 65 */
	("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	 "@0123456789abcdef"),
};

static void test_bad_origins(void **state)
{
	struct rentry e = good_rentry();
	struct raw r = { .len = 0 };

	(void)state;
	e.origin = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		   "@0123456789abcdef";
	assert_int_equal(decode_rentry(&e), 0);
	for (size_t i = 0; i < sizeof(bad_origins) / sizeof(bad_origins[0]);
	     i++) {
		e = good_rentry();
		e.origin = bad_origins[i];
		assert_int_equal(decode_rentry(&e), -EPROTO);
		e = good_rentry();
		e.base_origin = bad_origins[i];
		assert_int_equal(decode_rentry(&e), -EPROTO);
		r.len = 0;
		raw_u32(&r, 1);
		raw_str(&r, bad_origins[i], 0);
		raw_u64(&r, 5);
		assert_int_equal(decode_raw(WIRE_VECTOR, &r), -EPROTO);
	}
	/* A NUL hidden in an origin, and one past JOURNAL_ORIGIN_MAX. */
	r.len = 0;
	raw_u32(&r, 1);
	raw_str(&r, "vm1@0123456789abcdef\0", 21);
	raw_u64(&r, 5);
	assert_int_equal(decode_raw(WIRE_VECTOR, &r), -EPROTO);
	r.len = 0;
	raw_u32(&r, 1);
	raw_u16(&r, 200);
	for (int i = 0; i < 200; i++)
		raw_u8(&r, 'a');
	raw_u64(&r, 5);
	assert_int_equal(decode_raw(WIRE_VECTOR, &r), -EPROTO);
}

static void test_hello_ids(void **state)
{
	static const struct {
		const char *node, *cluster;
		int want;
	} cases[] = {
		{ "vm1", "krakenfs", 0 },
		{ "a-b.c_D9", "any printable \xe2\x9c\x93", 0 },
		{ "", "krakenfs", -EPROTO },
		{ "vm 1", "krakenfs", -EPROTO },
		{ "vm1@x", "krakenfs", -EPROTO },
		{ ".", "krakenfs", -EPROTO },
		{ "..", "krakenfs", -EPROTO },
		{ "...", "krakenfs", 0 },
		{ "vm1", "", -EPROTO },
		{ "vm1", "new\nline", -EPROTO },
		{ "vm1", "bad\xff", -EPROTO },
	};
	struct raw r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r.len = 0;
		raw_str(&r, cases[i].node, 0);
		raw_str(&r, cases[i].cluster, 0);
		raw_u32(&r, 0);
		raw_u32(&r, 0);
		assert_int_equal(decode_raw(WIRE_HELLO, &r), cases[i].want);
	}
	r.len = 0;
	raw_u16(&r, 65);
	for (int i = 0; i < 65; i++)
		raw_u8(&r, 'n');
	raw_str(&r, "c", 0);
	raw_u32(&r, 0);
	raw_u32(&r, 0);
	assert_int_equal(decode_raw(WIRE_HELLO, &r), -EPROTO);
}

static void test_op_seq_and_flags(void **state)
{
	static const uint8_t bad_ops[] = { 0, 8, 9, 127, 255 };
	struct rentry e;

	(void)state;
	for (size_t i = 0; i < sizeof(bad_ops); i++) {
		e = good_rentry();
		e.op = bad_ops[i];
		assert_int_equal(decode_rentry(&e), -EPROTO);
	}
	e = good_rentry();
	e.seq = 0;
	assert_int_equal(decode_rentry(&e), -EPROTO);
	e = good_rentry();
	e.base_seq = 0;
	assert_int_equal(decode_rentry(&e), -EPROTO);
	/* META, which may go without a hash: read as "no hash", the flag
	 * would leave a valid entry, so only the flag rule refuses it. */
	e = good_rentry();
	e.op = JOURNAL_META;
	e.has_hash = 2;
	assert_int_equal(decode_rentry(&e), -EPROTO);
	e = good_rentry();
	e.has_target = 2;
	assert_int_equal(decode_rentry(&e), -EPROTO);
	e.has_target = 0xff;
	assert_int_equal(decode_rentry(&e), -EPROTO);
}

static void test_mode_agrees_with_op(void **state)
{
	static const struct {
		uint8_t op;
		uint32_t mode;
		const char *path;
		uint8_t hash, target;
		int want;
	} cases[] = {
		{ JOURNAL_PUT, S_IFREG | 0644, "f", 1, 0, 0 },
		{ JOURNAL_MKDIR, S_IFDIR | 0755, "d", 0, 0, 0 },
		{ JOURNAL_SYMLINK, S_IFLNK | 0777, "l", 0, 1, 0 },
		{ JOURNAL_DELETE, 0, "f", 0, 0, 0 },
		{ JOURNAL_META, S_IFREG | 0600, "f", 1, 0, 0 },
		{ JOURNAL_META, S_IFDIR | 0700, "d", 0, 0, 0 },
		{ JOURNAL_META, S_IFDIR | 0700, "", 0, 0, 0 },
		{ JOURNAL_META, S_IFLNK | 0777, "l", 0, 1, 0 },
		{ JOURNAL_VOLUME_CREATE, S_IFDIR | 0755, "", 0, 0, 0 },
		{ JOURNAL_VOLUME_CREATE, 0, "", 0, 0, 0 },
		{ JOURNAL_VOLUME_REMOVE, 0, "", 0, 0, 0 },

		{ JOURNAL_PUT, S_IFDIR | 0755, "f", 1, 0, -EPROTO },
		{ JOURNAL_PUT, S_IFREG | 0644, "f", 0, 0, -EPROTO },
		{ JOURNAL_PUT, S_IFREG | 0644, "", 1, 0, -EPROTO },
		{ JOURNAL_PUT, S_IFREG | 0644, "f", 1, 1, -EPROTO },
		{ JOURNAL_MKDIR, S_IFREG | 0644, "d", 0, 0, -EPROTO },
		{ JOURNAL_MKDIR, S_IFDIR | 0755, "", 0, 0, -EPROTO },
		{ JOURNAL_MKDIR, S_IFDIR | 0755, "d", 1, 0, -EPROTO },
		{ JOURNAL_SYMLINK, S_IFLNK | 0777, "l", 0, 0, -EPROTO },
		{ JOURNAL_SYMLINK, S_IFREG | 0777, "l", 0, 1, -EPROTO },
		{ JOURNAL_SYMLINK, S_IFLNK | 0777, "", 0, 1, -EPROTO },
		{ JOURNAL_DELETE, S_IFREG | 0644, "f", 0, 0, -EPROTO },
		{ JOURNAL_DELETE, 0644, "f", 0, 0, -EPROTO },
		{ JOURNAL_DELETE, 0, "", 0, 0, -EPROTO },
		{ JOURNAL_META, S_IFREG | 0644, "", 0, 0, -EPROTO },
		{ JOURNAL_META, 0, "f", 0, 0, -EPROTO },
		{ JOURNAL_META, S_IFIFO | 0644, "f", 0, 0, -EPROTO },
		{ JOURNAL_META, S_IFDIR | 0755, "d", 0, 1, -EPROTO },
		{ JOURNAL_VOLUME_CREATE, S_IFDIR | 0755, "x", 0, 0, -EPROTO },
		{ JOURNAL_VOLUME_CREATE, S_IFREG | 0644, "", 0, 0, -EPROTO },
		{ JOURNAL_VOLUME_REMOVE, S_IFDIR | 0755, "", 0, 0, -EPROTO },
		{ JOURNAL_VOLUME_REMOVE, 0, "x", 0, 0, -EPROTO },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rentry e = good_rentry();

		e.op = cases[i].op;
		e.mode = cases[i].mode;
		e.path = cases[i].path;
		e.has_hash = cases[i].hash;
		e.has_target = cases[i].target;
		e.target = "target";
		if (decode_rentry(&e) != cases[i].want)
			fail_msg("case %zu: op %u mode %o path '%s'", i,
				 cases[i].op, cases[i].mode, cases[i].path);
	}
}

static void test_symlink_targets(void **state)
{
	struct rentry e = good_rentry();
	char *big = malloc(WIRE_TARGET_MAX + 2);

	(void)state;
	e.op = JOURNAL_SYMLINK;
	e.mode = S_IFLNK | 0777;
	e.has_hash = 0;
	e.has_target = 1;
	/* A link's text may point anywhere; only its own encoding matters. */
	e.target = "/etc/../../x";
	assert_int_equal(decode_rentry(&e), 0);
	e.target = "";
	assert_int_equal(decode_rentry(&e), -EPROTO);
	e.target = "bad\xff";
	assert_int_equal(decode_rentry(&e), -EPROTO);
	assert_non_null(big);
	memset(big, 't', WIRE_TARGET_MAX + 1);
	big[WIRE_TARGET_MAX] = '\0';
	e.target = big;
	assert_int_equal(decode_rentry(&e), 0);
	big[WIRE_TARGET_MAX] = 't';
	big[WIRE_TARGET_MAX + 1] = '\0';
	assert_int_equal(decode_rentry(&e), -EPROTO);
	free(big);
}

static void test_chunk_fields(void **state)
{
	struct raw r;

	(void)state;
	/* CHUNK: len 0, past the cap, disagreeing with the bytes. */
	r.len = 0;
	raw_hash(&r, 1);
	raw_u32(&r, 0);
	assert_int_equal(decode_raw(WIRE_CHUNK, &r), -EPROTO);
	r.len = 0;
	raw_hash(&r, 1);
	raw_u32(&r, WIRE_MAX_CHUNK + 1);
	assert_int_equal(decode_raw(WIRE_CHUNK, &r), -EPROTO);
	r.len = 0;
	raw_hash(&r, 1);
	raw_u32(&r, 4);
	raw_u32(&r, 0xdeadbeef);
	assert_int_equal(decode_raw(WIRE_CHUNK, &r), 0);
	raw_u8(&r, 0);
	assert_int_equal(decode_raw(WIRE_CHUNK, &r), -EPROTO);

	/* CHUNKLIST: a chunk of length 0, a range past the total. */
	r.len = 0;
	raw_hash(&r, 1);
	raw_u64(&r, 10);
	raw_u32(&r, 1);
	raw_u32(&r, 0);
	raw_u8(&r, 0);                            /* no base */
	raw_u32(&r, 1);
	raw_u8(&r, 0);                            /* a chunk */
	raw_hash(&r, 2);
	raw_u32(&r, 10);
	assert_int_equal(decode_raw(WIRE_CHUNKLIST, &r), 0);
	r.d[r.len - 1] = 0;
	assert_int_equal(decode_raw(WIRE_CHUNKLIST, &r), -EPROTO);
	r.d[r.len - 1] = 10;
	r.d[CONTENT_HASH_LEN + 8 + 3] = 0;        /* total 0 */
	assert_int_equal(decode_raw(WIRE_CHUNKLIST, &r), -EPROTO);
	r.d[CONTENT_HASH_LEN + 8 + 3] = 1;
	r.d[CONTENT_HASH_LEN + 8 + 7] = 1;        /* start 1 of 1 */
	assert_int_equal(decode_raw(WIRE_CHUNKLIST, &r), -EPROTO);

	/* GET_CHUNKS: 0 and 1025 hashes. */
	r.len = 0;
	raw_u32(&r, 0);
	assert_int_equal(decode_raw(WIRE_GET_CHUNKS, &r), -EPROTO);
	r.len = 0;
	raw_u32(&r, WIRE_MAX_GET_CHUNKS + 1);
	for (int i = 0; i < 1000; i++)
		raw_hash(&r, (uint8_t)i);
	/* Refused by count before the (absent) bytes are looked at. */
	assert_int_equal(decode_raw(WIRE_GET_CHUNKS, &r), -EPROTO);
}

static void test_delta_fields(void **state)
{
	struct raw r;

	(void)state;
	/* GET_DELTA: one digest per block of LEN, no more, no fewer. */
	r.len = 0;
	raw_hash(&r, 1);
	raw_u32(&r, DELTA_BLOCK + 1);             /* 2 blocks */
	raw_u64(&r, 7);
	assert_int_equal(decode_raw(WIRE_GET_DELTA, &r), -EPROTO);
	raw_u64(&r, 8);
	assert_int_equal(decode_raw(WIRE_GET_DELTA, &r), 0);
	raw_u64(&r, 9);
	assert_int_equal(decode_raw(WIRE_GET_DELTA, &r), -EPROTO);
	r.len = 0;
	raw_hash(&r, 1);
	raw_u32(&r, 0);
	assert_int_equal(decode_raw(WIRE_GET_DELTA, &r), -EPROTO);
	r.len = 0;
	raw_hash(&r, 1);
	raw_u32(&r, WIRE_MAX_CHUNK + 1);
	assert_int_equal(decode_raw(WIRE_GET_DELTA, &r), -EPROTO);

	/* DELTA of 3 blocks (10,000 bytes): block 1 marked, so blocks 0
	 * and 2 are sent, 4,096 + 1,808 bytes. */
	r.len = 0;
	raw_hash(&r, 2);
	raw_u32(&r, 10000);
	raw_u8(&r, 0x02);
	for (int i = 0; i < 4096 + 1808; i++)
		raw_u8(&r, (uint8_t)i);
	assert_int_equal(decode_raw(WIRE_DELTA, &r), 0);
	r.len--;                                  /* a byte short */
	assert_int_equal(decode_raw(WIRE_DELTA, &r), -EPROTO);
	r.len += 2;                               /* a byte over */
	assert_int_equal(decode_raw(WIRE_DELTA, &r), -EPROTO);
	r.len--;
	r.d[CONTENT_HASH_LEN + 4] = 0x0a;         /* a bit past block 2 */
	assert_int_equal(decode_raw(WIRE_DELTA, &r), -EPROTO);
	r.d[CONTENT_HASH_LEN + 4] = 0x07;         /* all marked: 0 bytes */
	r.len = CONTENT_HASH_LEN + 4 + 1;
	assert_int_equal(decode_raw(WIRE_DELTA, &r), 0);
}

/* The holder of a chunk sends exactly the blocks the asker's bytes lack,
 * and the asker rebuilds the chunk from them. */
static void test_delta_rebuilds_chunk(void **state)
{
	enum { LEN = 5 * DELTA_BLOCK + 100 };
	static uint8_t theirs[LEN], ours[LEN], lit[LEN], out[LEN];
	uint8_t dig[DELTA_BLOCKS_MAX][DELTA_DIGEST], map[DELTA_MAP_MAX];
	uint32_t lit_len = 0;

	(void)state;
	assert_int_equal(delta_blocks(LEN), 6);
	assert_int_equal(delta_map_len(LEN), 1);
	assert_int_equal(delta_blocks(DELTA_LEN_MAX), DELTA_BLOCKS_MAX);
	assert_int_equal(delta_map_len(DELTA_LEN_MAX), DELTA_MAP_MAX);
	for (size_t i = 0; i < LEN; i++)
		theirs[i] = ours[i] = (uint8_t)(i * 31 + i / 4096);
	ours[DELTA_BLOCK + 17] ^= 1;              /* block 1 differs */
	ours[LEN - 1] ^= 0x80;                    /* block 5, the short one */
	assert_int_equal(delta_digests(theirs, LEN, dig), 0);
	assert_int_equal(delta_make(ours, LEN,
				    (const uint8_t (*)[DELTA_DIGEST])dig, map,
				    lit, &lit_len), 0);
	assert_int_equal(map[0], 0x1d);           /* 0, 2, 3, 4 */
	assert_int_equal(lit_len, DELTA_BLOCK + 100);
	assert_int_equal(delta_literal_len(LEN, map), lit_len);
	memcpy(lit + lit_len, "\xff", 1);          /* nothing past it read */
	memcpy(out, theirs, LEN);
	delta_apply(out, LEN, map, lit);
	assert_memory_equal(out, ours, LEN);
	map[0] |= 0x40;                           /* a block that is not */
	assert_int_equal(delta_literal_len(LEN, map), -1);
}

static void test_error_text(void **state)
{
	char big[WIRE_TEXT_MAX + 2];
	struct raw r;

	(void)state;
	r.len = 0;
	raw_u16(&r, 1);
	raw_str(&r, "line\none", 0);
	assert_int_equal(decode_raw(WIRE_ERROR, &r), -EPROTO);
	r.len = 0;
	raw_u16(&r, 1);
	raw_str(&r, "bad\xc3", 0);
	assert_int_equal(decode_raw(WIRE_ERROR, &r), -EPROTO);
	memset(big, 'e', sizeof(big));
	big[WIRE_TEXT_MAX] = '\0';
	r.len = 0;
	raw_u16(&r, 1);
	raw_str(&r, big, 0);
	assert_int_equal(decode_raw(WIRE_ERROR, &r), 0);
	big[WIRE_TEXT_MAX] = 'e';
	big[WIRE_TEXT_MAX + 1] = '\0';
	r.len = 0;
	raw_u16(&r, 1);
	raw_str(&r, big, 0);
	assert_int_equal(decode_raw(WIRE_ERROR, &r), -EMSGSIZE);
}

/* A failed encode leaves the buffer byte for byte as it was. */
static void assert_encode_fails(struct wire_buf *b, const struct wire_msg *m,
				int want)
{
	size_t len = b->len;
	uint8_t *copy = malloc(len);

	assert_non_null(copy);
	memcpy(copy, b->data, len);
	assert_int_equal(wire_encode(b, m), want);
	assert_int_equal(b->len, len);
	assert_memory_equal(b->data, copy, len);
	free(copy);
}

/* CHANGING names a file inside a volume: anything else is hostile, and
 * the encoder refuses to send it. */
static void test_changing_paths(void **state)
{
	static const struct { const char *volume, *path; } bad[] = {
		{ "data", "" }, { "data", "../x" }, { "data", "/etc/passwd" },
		{ "data", "a/../../b" }, { "..", "x" }, { "", "x" },
		{ "a/b", "x" },
	};
	struct wire_buf b = { 0 };
	struct wire_msg ping = { .type = WIRE_PING, .token = 1 };
	struct raw r;

	(void)state;
	assert_int_equal(wire_encode(&b, &ping), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct wire_msg m = { .type = WIRE_CHANGING };

		r.len = 0;
		raw_str(&r, bad[i].volume, 0);
		raw_str(&r, bad[i].path, 0);
		raw_hash(&r, 0x42);
		raw_u64(&r, 1);
		assert_int_equal(decode_raw(WIRE_CHANGING, &r), KR_EHOSTILE);
		m.changing = (struct wire_changing){ bad[i].volume,
						     bad[i].path, { 0 }, 1 };
		assert_encode_fails(&b, &m, -EINVAL);
	}
	r.len = 0;
	raw_str(&r, "data", 0);
	raw_str(&r, "ok/file", 0);
	raw_hash(&r, 0x42);
	raw_u64(&r, 1);
	assert_int_equal(decode_raw(WIRE_CHANGING, &r), 0);
	raw_u8(&r, 0);
	assert_int_equal(decode_raw(WIRE_CHANGING, &r), -EPROTO);
	wire_buf_release(&b);
}

/* ASK_KEPT names a file as CHANGING does, and bounds its count; KEPT's
 * flags are 0 or 1. */
static void test_ask_kept_fields(void **state)
{
	struct wire_buf b = { 0 };
	struct wire_msg m = { .type = WIRE_ASK_KEPT };
	struct wire_msg ping = { .type = WIRE_PING, .token = 1 };
	static const uint8_t two[1] = { 2 };
	struct raw r;

	(void)state;
	assert_int_equal(wire_encode(&b, &ping), 0);
	r.len = 0;
	raw_u64(&r, 1);
	raw_str(&r, "data", 0);
	raw_str(&r, "../x", 0);
	raw_u32(&r, 1);
	raw_hash(&r, 0x42);
	assert_int_equal(decode_raw(WIRE_ASK_KEPT, &r), KR_EHOSTILE);
	for (size_t k = 0; k < 4; k++) {
		static const uint32_t ns[] = { 0, 1, WIRE_MAX_ASK_KEPT,
					       WIRE_MAX_ASK_KEPT + 1 };
		uint32_t n = ns[k];
		int want = n == 0 || n > WIRE_MAX_ASK_KEPT ? -EPROTO : 0;

		r.len = 0;
		raw_u64(&r, 1);
		raw_str(&r, "data", 0);
		raw_str(&r, "ok/file", 0);
		raw_u32(&r, n);
		for (uint32_t i = 0; i < n; i++)
			raw_hash(&r, (uint8_t)i);
		assert_int_equal(decode_raw(WIRE_ASK_KEPT, &r), want);
	}
	m.ask_kept = (struct wire_ask_kept){ 1, "data", "", 1, sample_hashes };
	assert_encode_fails(&b, &m, -EINVAL);
	m.ask_kept = (struct wire_ask_kept){ 1, "data", "f", 0, sample_hashes };
	assert_encode_fails(&b, &m, -EINVAL);

	r.len = 0;
	raw_u64(&r, 1);
	raw_u32(&r, 1);
	raw_u8(&r, 2);
	assert_int_equal(decode_raw(WIRE_KEPT, &r), -EPROTO);
	r.len = 0;
	raw_u64(&r, 1);
	raw_u32(&r, 2);
	raw_u8(&r, 1);
	assert_int_equal(decode_raw(WIRE_KEPT, &r), -EPROTO);
	m = (struct wire_msg){ .type = WIRE_KEPT };
	m.kept = (struct wire_kept){ 1, 1, two };
	assert_encode_fails(&b, &m, -EINVAL);
	wire_buf_release(&b);
}

static void test_encode_refuses_bad_fields(void **state)
{
	struct wire_buf b = { 0 };
	struct wire_msg m, ping = { .type = WIRE_PING, .token = 1 };
	struct wire_entry e = sample_entries[0];
	struct journal_ref bad_ref = { "vm1@0123456789ABCDEF", 1 };

	(void)state;
	assert_int_equal(wire_encode(&b, &ping), 0);

	sample(WIRE_HELLO, &m);
	m.hello.node_id = "vm 1";
	assert_encode_fails(&b, &m, -EINVAL);
	m.hello.node_id = NULL;
	assert_encode_fails(&b, &m, -EINVAL);
	sample(WIRE_HELLO, &m);
	m.hello.vector.refs = &bad_ref;
	m.hello.vector.n = 1;
	assert_encode_fails(&b, &m, -EINVAL);

	m = (struct wire_msg){ .type = WIRE_ENTRIES, .entries = { 1, &e } };
	e.path = "../x";
	assert_encode_fails(&b, &m, KR_EHOSTILE);
	e.path = "ok";
	e.volume = "..";
	assert_encode_fails(&b, &m, KR_EHOSTILE);
	e = sample_entries[0];
	e.ref.seq = 0;
	assert_encode_fails(&b, &m, -EINVAL);
	e = sample_entries[0];
	e.op = (enum journal_op)9;
	assert_encode_fails(&b, &m, -EINVAL);
	e = sample_entries[0];
	e.mode = S_IFDIR | 0755;
	assert_encode_fails(&b, &m, -EINVAL);
	e = sample_entries[0];
	e.n_bases = WIRE_MAX_BASES + 1;
	assert_encode_fails(&b, &m, -EINVAL);

	e = sample_entries[0];
	e.bases = NULL;
	assert_encode_fails(&b, &m, -EINVAL);
	m.entries.v = NULL;
	assert_encode_fails(&b, &m, -EINVAL);
	m = (struct wire_msg){ .type = WIRE_VECTOR, .vector = { 2, NULL } };
	assert_encode_fails(&b, &m, -EINVAL);

	sample(WIRE_CHUNKLIST, &m);
	m.chunklist.start = m.chunklist.total - 1;
	assert_encode_fails(&b, &m, -EINVAL);
	sample(WIRE_CHUNKLIST, &m);
	m.chunklist.chunks = (const struct wire_chunk_ref[]){
		{ { 1 }, 5, 0, 0 }, { { 2 }, 0, 0, 0 }, { { 3 }, 5, 0, 0 } };
	assert_encode_fails(&b, &m, -EINVAL);
	/* A run needs a base, and must fit in the list. */
	sample(WIRE_CHUNKLIST, &m);
	m.chunklist.chunks = (const struct wire_chunk_ref[]){
		{ { 1 }, 5, 0, 0 }, { { 0 }, 0, 0, 2 }, { { 3 }, 5, 0, 0 } };
	assert_encode_fails(&b, &m, -EINVAL);
	m.chunklist.has_base = true;
	m.chunklist.chunks = (const struct wire_chunk_ref[]){
		{ { 1 }, 5, 0, 0 }, { { 0 }, 0, 0, 5 }, { { 3 }, 5, 0, 0 } };
	assert_encode_fails(&b, &m, -EINVAL);

	m = (struct wire_msg){ .type = WIRE_ERROR,
			       .error = { 1, "two\nlines" } };
	assert_encode_fails(&b, &m, -EINVAL);
	m.error.text = NULL;
	assert_encode_fails(&b, &m, -EINVAL);
	m = (struct wire_msg){ .type = WIRE_GET_CHUNKS };
	assert_encode_fails(&b, &m, -EINVAL);
	m = (struct wire_msg){ .type = WIRE_CHUNK,
			       .chunk = { { 0 }, 0, sample_data } };
	assert_encode_fails(&b, &m, -EINVAL);
	m = (struct wire_msg){ .type = (enum wire_type)42 };
	assert_encode_fails(&b, &m, -EINVAL);

	/* Only the PING is left. */
	assert_int_equal(b.len, WIRE_HEADER_LEN + 8);
	wire_buf_release(&b);
}

static void test_encode_over_cap(void **state)
{
	struct wire_buf b = { 0 };
	struct wire_msg ping = { .type = WIRE_PING, .token = 1 };
	/* Items of kind 0 take 37 bytes: one byte of kind, hash, length. */
	size_t n = WIRE_MAX_PAYLOAD / (CONTENT_HASH_LEN + 5) + 1;
	struct wire_chunk_ref *c = calloc(n, sizeof(*c));
	struct wire_msg m = { .type = WIRE_CHUNKLIST };

	(void)state;
	assert_non_null(c);
	for (size_t i = 0; i < n; i++)
		c[i].len = 1;
	m.chunklist = (struct wire_chunklist){ { 0 }, n, (uint32_t)n, 0,
					       (uint32_t)n, c, false, { 0 } };
	assert_int_equal(wire_encode(&b, &ping), 0);
	assert_encode_fails(&b, &m, -EMSGSIZE);
	/* The largest list that fits does. */
	m.chunklist.n = (WIRE_MAX_PAYLOAD - (CONTENT_HASH_LEN + 21)) /
			(CONTENT_HASH_LEN + 5);
	assert_int_equal(wire_encode(&b, &m), 0);
	free(c);
	wire_buf_release(&b);
}

/* A list given as runs of its base: round trip, and what is refused. */
static void test_chunklist_runs(void **state)
{
	static const struct wire_chunk_ref items[] = {
		{ { 0 }, 0, 0, 1000 },          /* base chunks 0..999 */
		{ { 0xab }, 4096, 0, 0 },       /* one new chunk */
		{ { 0 }, 0, 1001, 500 },        /* base chunks 1001..1500 */
	};
	struct wire_msg in = { .type = WIRE_CHUNKLIST }, out;
	struct wire_msg g = { .type = WIRE_GET_CHUNKLIST };
	struct wire_buf b = { 0 };
	const uint8_t *p;
	uint32_t len;
	uint8_t *bad;

	(void)state;
	in.chunklist = (struct wire_chunklist){ { 0x42 }, 6000000, 1501, 0, 3,
						items, true, { 0x41 } };
	assert_int_equal(wire_chunklist_span(&in.chunklist), 1501);
	p = encode_one(&b, &in, &len);
	/* Three items instead of 1,501 chunks of 36 bytes. */
	assert_true(len < 2 * CONTENT_HASH_LEN + 100);
	assert_int_equal(wire_decode(WIRE_CHUNKLIST, p, len, &out), 0);
	assert_true(out.chunklist.has_base);
	assert_int_equal(out.chunklist.base[0], 0x41);
	assert_int_equal(out.chunklist.n, 3);
	assert_memory_equal(out.chunklist.chunks, items, sizeof(items));
	wire_msg_release(&out);

	/* Each run must fit in what is left of the list. */
	bad = malloc(len);
	assert_non_null(bad);
	memcpy(bad, p, len);
	bad[CONTENT_HASH_LEN + 8 + 3] = 0xdc;   /* total: 1501 -> 1500 */
	assert_int_equal(decode_bytes(WIRE_CHUNKLIST, bad, len), -EPROTO);
	/* A count of zero, and a run in a list without a base. */
	memcpy(bad, p, len);
	memset(bad + len - 4, 0, 4);
	assert_int_equal(decode_bytes(WIRE_CHUNKLIST, bad, len), -EPROTO);
	memcpy(bad, p, len);
	bad[CONTENT_HASH_LEN + 16] = 0;         /* has_base 1 -> 0 */
	assert_int_equal(decode_bytes(WIRE_CHUNKLIST, bad, len), -EPROTO);
	/* An unknown item kind. */
	memcpy(bad, p, len);
	bad[2 * CONTENT_HASH_LEN + 17 + 4] = 2;
	assert_int_equal(decode_bytes(WIRE_CHUNKLIST, bad, len), -EPROTO);
	free(bad);

	memset(g.get_chunklist.hash, 0x42, CONTENT_HASH_LEN);
	g.get_chunklist.start = 9;
	g.get_chunklist.has_base = true;
	memset(g.get_chunklist.base, 0x41, CONTENT_HASH_LEN);
	p = encode_one(&b, &g, &len);
	assert_int_equal(len, 2 * CONTENT_HASH_LEN + 5);
	assert_int_equal(wire_decode(WIRE_GET_CHUNKLIST, p, len, &out), 0);
	assert_memory_equal(&out.get_chunklist, &g.get_chunklist,
			    sizeof(g.get_chunklist));
	wire_msg_release(&out);
	wire_buf_release(&b);
}

/* The chained payload is the plain one with each entry's chain fields
 * after it, and a decoded entry, signature included, outlives the
 * payload it came from. */
static void test_chain_round_trip(void **state)
{
	struct wire_buf b = { 0 };
	struct wire_msg in, out, one;
	struct raw want = { .len = 0 };
	const uint8_t *p;
	uint8_t *copy;
	uint32_t len;

	(void)state;
	raw_u32(&want, 2);
	for (uint32_t i = 0; i < 2; i++) {
		one = (struct wire_msg){ .type = WIRE_ENTRIES,
					 .entries = { 1, &sample_entries[i] } };
		p = encode_one(&b, &one, &len);
		raw_bytes(&want, p + 4, len - 4);
		raw_hash(&want, i ? 0x22 : 0x11);
		raw_u8(&want, (uint8_t)i);
	}
	raw_hash(&want, 0x33);
	raw_u16(&want, sizeof(sample_sig));
	raw_bytes(&want, sample_sig, sizeof(sample_sig));
	sample(WIRE_CHAIN_ENTRIES, &in);
	p = encode_one(&b, &in, &len);
	assert_int_equal(b.data[5], 20);
	assert_int_equal(len, want.len);
	assert_memory_equal(p, want.d, len);

	copy = malloc(len);
	assert_non_null(copy);
	memcpy(copy, p, len);
	assert_int_equal(wire_decode(WIRE_CHAIN_ENTRIES, copy, len, &out), 0);
	memset(copy, 0xa5, len);
	free(copy);
	assert_true(out.entries.v[0].chained);
	assert_false(out.entries.v[0].seg_end);
	assert_int_equal(out.entries.v[0].sig_len, 0);
	assert_null(out.entries.v[0].sig);
	assert_true(out.entries.v[1].seg_end);
	assert_int_equal(out.entries.v[1].sig_len, sizeof(sample_sig));
	assert_msg_equal(&in, &out);
	wire_msg_release(&out);
	wire_buf_release(&b);
}

/* A proven entry ending an unsigned segment (a plaintext cluster):
 * prev, n_after, the digests, seg_end, an all-zero key, no signature. */
static void test_chain_state_unsigned_end(void **state)
{
	static const uint8_t zero[CONTENT_HASH_LEN + 2];
	struct wire_buf b = { 0 };
	struct wire_msg in, out;
	struct wire_entry e;
	const uint8_t *p;
	uint32_t len;

	(void)state;
	sample(WIRE_CHAIN_STATE, &in);
	e = sample_chain_state[0];
	e.seg_end = true;
	in.entries = (struct wire_entry_list){ 1, &e };
	p = encode_one(&b, &in, &len);
	assert_int_equal(b.data[5], 21);
	assert_int_equal(p[len - sizeof(zero) - 1], 1);
	assert_memory_equal(p + len - sizeof(zero), zero, sizeof(zero));
	assert_memory_equal(p + len - sizeof(zero) - 1 - 2 * CONTENT_HASH_LEN,
			    sample_after, 2 * CONTENT_HASH_LEN);
	assert_int_equal(p[len - sizeof(zero) - 1 - 2 * CONTENT_HASH_LEN - 1],
			 2);
	assert_int_equal(p[len - sizeof(zero) - 1 - 2 * CONTENT_HASH_LEN - 3],
			 0x44);
	assert_int_equal(wire_decode(WIRE_CHAIN_STATE, p, len, &out), 0);
	assert_int_equal(out.entries.n, 1);
	assert_true(out.entries.v[0].chained);
	assert_true(out.entries.v[0].seg_end);
	assert_int_equal(out.entries.v[0].n_after, 2);
	assert_int_equal(out.entries.v[0].sig_len, 0);
	assert_null(out.entries.v[0].sig);
	assert_msg_equal(&in, &out);
	wire_msg_release(&out);
	wire_buf_release(&b);
}

/* A proof never claims more digests than a segment holds, and a seal
 * always carries a signature. */
static void test_proof_bounds(void **state)
{
	struct rentry e = good_rentry();
	struct raw r = { .len = 0 };
	struct wire_buf b = { 0 };
	struct wire_msg m;
	struct wire_entry w;
	struct wire_seal seal;

	(void)state;
	for (unsigned n = WIRE_AFTER_MAX; n <= WIRE_AFTER_MAX + 1; n++) {
		r.len = 0;
		raw_u32(&r, 1);
		raw_entry(&r, &e);
		raw_hash(&r, 0x11);
		raw_u16(&r, (uint16_t)n);
		for (unsigned i = 0; i < n; i++)
			raw_hash(&r, 0x22);
		raw_u8(&r, 0);
		assert_int_equal(decode_raw(WIRE_CHAIN_STATE, &r),
				 n == WIRE_AFTER_MAX ? 0 : -EPROTO);
	}
	sample(WIRE_CHAIN_STATE, &m);
	w = sample_chain_state[0];
	w.n_after = WIRE_AFTER_MAX + 1;
	m.entries = (struct wire_entry_list){ 1, &w };
	assert_int_equal(wire_encode(&b, &m), -EINVAL);
	sample(WIRE_SEALS, &m);
	seal = sample_seals[0];
	seal.sig_len = 0;
	m.seals = (struct wire_seals){ 1, &seal };
	assert_int_equal(wire_encode(&b, &m), -EINVAL);
	r.len = 0;
	raw_u32(&r, 1);
	raw_str(&r, ORIGIN1, strlen(ORIGIN1));
	raw_u64(&r, 3);
	raw_hash(&r, 0x61);
	raw_hash(&r, 0x62);
	raw_u16(&r, 0);
	assert_int_equal(decode_raw(WIRE_SEALS, &r), -EPROTO);
	wire_buf_release(&b);
}

/* A plain frame drops the chain fields: its bytes are those of the same
 * entries without them, and it decodes unchained. */
static void test_plain_frame_drops_chain(void **state)
{
	struct wire_buf b = { 0 };
	struct wire_msg chained, plain, out;
	const uint8_t *p;
	uint8_t *want;
	uint32_t len, want_len;

	(void)state;
	plain = (struct wire_msg){ .type = WIRE_ENTRIES,
				   .entries = { 2, sample_entries } };
	p = encode_one(&b, &plain, &want_len);
	want = malloc(want_len);
	assert_non_null(want);
	memcpy(want, p, want_len);
	sample(WIRE_CHAIN_ENTRIES, &chained);
	chained.type = WIRE_ENTRIES;
	p = encode_one(&b, &chained, &len);
	assert_int_equal(len, want_len);
	assert_memory_equal(p, want, len);
	assert_int_equal(wire_decode(WIRE_ENTRIES, p, len, &out), 0);
	for (uint32_t i = 0; i < 2; i++) {
		assert_false(out.entries.v[i].chained);
		assert_false(out.entries.v[i].seg_end);
		assert_entry_equal(&sample_entries[i], &out.entries.v[i]);
	}
	wire_msg_release(&out);
	free(want);
	wire_buf_release(&b);
}

/* One good entry with chain fields PREV, SEG_END, KEY, SIG_LEN. */
static int decode_chain(uint8_t prev, uint8_t seg_end, uint8_t key,
			uint16_t sig_len)
{
	struct rentry e = good_rentry();
	struct raw r = { .len = 0 };

	raw_u32(&r, 1);
	raw_entry(&r, &e);
	raw_chain(&r, prev, seg_end, key, sig_len);
	return decode_raw(WIRE_CHAIN_ENTRIES, &r);
}

static void test_chain_fields(void **state)
{
	struct rentry e = good_rentry();
	struct raw r = { .len = 0 };

	(void)state;
	assert_int_equal(decode_chain(0x11, 0, 0, 0), 0);
	assert_int_equal(decode_chain(0x11, 1, 0, 0), 0);
	assert_int_equal(decode_chain(0x11, 1, 0x33, 72), 0);
	assert_int_equal(decode_chain(0, 1, 0x33, WIRE_SIG_MAX), 0);
	assert_int_equal(decode_chain(0x11, 1, 0x33, WIRE_SIG_MAX + 1),
			 -EPROTO);
	/* A signature without a key, a key without a signature. */
	assert_int_equal(decode_chain(0x11, 1, 0, 72), -EPROTO);
	assert_int_equal(decode_chain(0x11, 1, 0x33, 0), -EPROTO);
	assert_int_equal(decode_chain(0x11, 2, 0, 0), -EPROTO);
	assert_int_equal(decode_chain(0x11, 0xff, 0x33, 72), -EPROTO);

	/* One non-zero byte, the last, makes a key. */
	raw_u32(&r, 1);
	raw_entry(&r, &e);
	raw_chain(&r, 0x11, 1, 0, 72);
	assert_int_equal(decode_raw(WIRE_CHAIN_ENTRIES, &r), -EPROTO);
	r.d[r.len - 72 - 3] = 1;
	assert_int_equal(decode_raw(WIRE_CHAIN_ENTRIES, &r), 0);

	/* prev cut short; a plain payload is a truncated chained one, and
	 * a chained one has trailing bytes as plain. */
	r.len = 0;
	raw_u32(&r, 1);
	raw_entry(&r, &e);
	assert_int_equal(decode_raw(WIRE_ENTRIES, &r), 0);
	assert_int_equal(decode_raw(WIRE_CHAIN_ENTRIES, &r), -EPROTO);
	raw_bytes(&r, sample_sig, CONTENT_HASH_LEN - 1);
	assert_int_equal(decode_raw(WIRE_CHAIN_STATE, &r), -EPROTO);
	raw_u8(&r, 0x11);
	raw_u8(&r, 0);
	assert_int_equal(decode_raw(WIRE_CHAIN_ENTRIES, &r), 0);
	assert_int_equal(decode_raw(WIRE_CHAIN_STATE, &r), -EPROTO);
	raw_u16(&r, 0);       /* with the 0 before: n_after 0, seg_end 0 */
	assert_int_equal(decode_raw(WIRE_CHAIN_STATE, &r), 0);
	assert_int_equal(decode_raw(WIRE_ENTRIES, &r), -EPROTO);
}

/* The encoder and the builder refuse what the decoder would; without
 * seg_end, key and signature are neither looked at nor sent. */
static void test_chain_encode_refusals(void **state)
{
	static const uint8_t big_sig[WIRE_SIG_MAX + 1];
	struct wire_buf b = { 0 };
	struct wire_msg m, out, ping = { .type = WIRE_PING, .token = 1 };
	struct wire_entry e;
	struct wire_entries w;

	(void)state;
	assert_int_equal(wire_encode(&b, &ping), 0);
	sample(WIRE_CHAIN_ENTRIES, &m);
	e = sample_chain[1];
	m.entries = (struct wire_entry_list){ 1, &e };
	e.sig_len = WIRE_SIG_MAX + 1;
	e.sig = big_sig;
	assert_encode_fails(&b, &m, -EINVAL);
	e = sample_chain[1];
	memset(e.key_id, 0, CONTENT_HASH_LEN);
	assert_encode_fails(&b, &m, -EINVAL);
	e = sample_chain[1];
	e.sig_len = 0;
	assert_encode_fails(&b, &m, -EINVAL);
	e = sample_chain[1];
	e.sig = NULL;
	assert_encode_fails(&b, &m, -EINVAL);
	e = sample_chain[1];
	e.path = "../x";
	assert_encode_fails(&b, &m, KR_EHOSTILE);
	assert_int_equal(b.len, WIRE_HEADER_LEN + 8);

	assert_int_equal(wire_chain_entries_begin(&w, &b, SIZE_MAX), 0);
	e = sample_chain[1];
	e.sig = NULL;
	assert_int_equal(wire_entries_add(&w, &e), -EINVAL);
	assert_int_equal(wire_entries_end(&w), 0);

	e.seg_end = false;
	e.sig_len = WIRE_SIG_MAX + 1;
	wire_buf_reset(&b);
	assert_int_equal(wire_encode(&b, &m), 0);
	assert_int_equal(wire_decode(WIRE_CHAIN_ENTRIES, b.data +
				     WIRE_HEADER_LEN, b.len - WIRE_HEADER_LEN,
				     &out), 0);
	assert_false(out.entries.v[0].seg_end);
	assert_int_equal(out.entries.v[0].sig_len, 0);
	assert_memory_equal(out.entries.v[0].prev, e.prev, CONTENT_HASH_LEN);
	wire_msg_release(&out);
	wire_buf_release(&b);
}

static void test_key_fields(void **state)
{
	static uint8_t der[WIRE_CERT_MAX + 1];
	struct wire_buf b = { 0 };
	struct wire_msg in = { .type = WIRE_KEY }, out;
	uint8_t h[WIRE_HEADER_LEN];
	static struct raw r;
	const uint8_t *p;
	enum wire_type t;
	uint32_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(der); i++)
		der[i] = (uint8_t)(i ^ 0x5c);
	in.key = (struct wire_key){ 1, der };
	p = encode_one(&b, &in, &len);
	assert_int_equal(len, 3);
	assert_int_equal(wire_decode(WIRE_KEY, p, len, &out), 0);
	assert_ptr_equal(out.key.der, p + 2);
	assert_null(out.arena);
	wire_msg_release(&out);
	in.key.len = WIRE_CERT_MAX;
	p = encode_one(&b, &in, &len);
	assert_int_equal(len, wire_max_payload(WIRE_KEY));
	assert_int_equal(wire_decode(WIRE_KEY, p, len, &out), 0);
	assert_msg_equal(&in, &out);
	wire_msg_release(&out);

	/* 0 bytes, and 4097 whether or not they are all there. */
	r.len = 0;
	raw_u16(&r, 0);
	assert_int_equal(decode_raw(WIRE_KEY, &r), -EPROTO);
	r.len = 0;
	raw_u16(&r, WIRE_CERT_MAX + 1);
	raw_bytes(&r, der, WIRE_CERT_MAX);
	assert_int_equal(decode_raw(WIRE_KEY, &r), -EPROTO);
	raw_u8(&r, 0);
	assert_int_equal(decode_raw(WIRE_KEY, &r), -EMSGSIZE);
	make_header(h, WIRE_KEY, 2 + WIRE_CERT_MAX);
	assert_int_equal(wire_header_parse(h, &t, &len), 0);
	make_header(h, WIRE_KEY, 2 + WIRE_CERT_MAX + 1);
	assert_int_equal(wire_header_parse(h, &t, &len), -EMSGSIZE);

	in.key.len = 0;
	assert_encode_fails(&b, &in, -EINVAL);
	in.key.len = WIRE_CERT_MAX + 1;
	assert_encode_fails(&b, &in, -EINVAL);
	in.key = (struct wire_key){ 10, NULL };
	assert_encode_fails(&b, &in, -EINVAL);
	wire_buf_release(&b);
}

static struct wire_entry file_entry(char *path, size_t cap, unsigned i)
{
	struct wire_entry e = sample_entries[0];

	snprintf(path, cap, "dir/file-%05u", i);
	e.path = path;
	e.ref.seq = i + 1;
	return e;
}

static void test_entries_respect_budget(void **state)
{
	struct wire_buf b = { 0 };
	struct wire_msg m = { .type = WIRE_PING, .token = 9 };
	struct wire_entries w;
	char path[32];
	size_t one, ping_len, before;
	uint8_t *snap;
	unsigned n = 0;
	struct wire_entry e;
	enum wire_type t;
	uint32_t len;
	int err;

	(void)state;
	/* The size of one entry of this shape, encoded alone. */
	e = file_entry(path, sizeof(path), 0);
	m = (struct wire_msg){ .type = WIRE_ENTRIES, .entries = { 1, &e } };
	encode_one(&b, &m, &len);
	one = len - 4;

	wire_buf_reset(&b);
	m = (struct wire_msg){ .type = WIRE_PING, .token = 9 };
	assert_int_equal(wire_encode(&b, &m), 0);
	ping_len = b.len;
	assert_int_equal(wire_entries_begin(&w, &b, 1000), 0);
	for (;;) {
		e = file_entry(path, sizeof(path), n);
		before = b.len;
		snap = malloc(before);
		assert_non_null(snap);
		memcpy(snap, b.data, before);
		err = wire_entries_add(&w, &e);
		if (err) {
			assert_int_equal(err, -EMSGSIZE);
			assert_int_equal(b.len, before);
			assert_memory_equal(b.data, snap, before);
			free(snap);
			break;
		}
		free(snap);
		n++;
	}
	/* Full: it stopped at the budget, not before it. */
	assert_true(n > 1);
	assert_true(b.len - ping_len - WIRE_HEADER_LEN <= 1000);
	assert_true(b.len - ping_len - WIRE_HEADER_LEN + one > 1000);
	assert_int_equal(wire_entries_end(&w), n);
	assert_int_equal(wire_entries_add(&w, &e), -EINVAL);

	assert_int_equal(wire_header_parse(b.data + ping_len, &t, &len), 0);
	assert_int_equal(t, WIRE_ENTRIES);
	assert_int_equal(ping_len + WIRE_HEADER_LEN + len, b.len);
	assert_int_equal(wire_decode(t, b.data + ping_len + WIRE_HEADER_LEN,
				     len, &m), 0);
	assert_int_equal(m.entries.n, n);
	for (unsigned i = 0; i < n; i++) {
		e = file_entry(path, sizeof(path), i);
		assert_entry_equal(&e, &m.entries.v[i]);
	}
	wire_msg_release(&m);
	wire_buf_release(&b);
}

/* Every budget from the smallest up: full to within one entry, never over. */
static void test_entries_budget_sweep(void **state)
{
	struct wire_buf b = { 0 };
	struct wire_msg m;
	struct wire_entries w;
	struct wire_entry e;
	char path[32];
	size_t one, used;
	uint32_t len, n;

	(void)state;
	e = file_entry(path, sizeof(path), 0);
	m = (struct wire_msg){ .type = WIRE_ENTRIES, .entries = { 1, &e } };
	encode_one(&b, &m, &len);
	one = len - 4;
	for (size_t budget = 4; budget <= 1000; budget++) {
		wire_buf_reset(&b);
		assert_int_equal(wire_entries_begin(&w, &b, budget), 0);
		while (wire_entries_add(&w, &e) == 0)
			;
		n = wire_entries_end(&w);
		used = b.len - WIRE_HEADER_LEN;
		assert_int_equal(used, 4 + n * one);
		assert_true(used <= budget);
		assert_true(used + one > budget);
		assert_int_equal(b.data[11], used & 0xff);
	}
	wire_buf_release(&b);
}

static void test_entries_frame_valid_after_refusal(void **state)
{
	struct wire_buf b = { 0 };
	struct wire_entries w;
	struct wire_entry e = sample_entries[1];
	struct wire_msg m;
	enum wire_type t;
	uint32_t len;

	(void)state;
	/* Empty frames are valid too; a budget too small for the count
	 * still leaves room for it. */
	assert_int_equal(wire_entries_begin(&w, &b, 0), 0);
	assert_int_equal(wire_entries_add(&w, &e), -EMSGSIZE);
	assert_int_equal(wire_entries_end(&w), 0);
	assert_int_equal(b.len, WIRE_HEADER_LEN + 4);

	wire_buf_reset(&b);
	assert_int_equal(wire_entries_begin(&w, &b, SIZE_MAX), 0);
	assert_int_equal(w.budget, WIRE_MAX_PAYLOAD);
	assert_int_equal(wire_entries_add(&w, &e), 0);
	e.path = "a/../b";
	assert_int_equal(wire_entries_add(&w, &e), KR_EHOSTILE);
	e = sample_entries[1];
	e.has_target = false;
	assert_int_equal(wire_entries_add(&w, &e), -EINVAL);
	e = sample_entries[2];
	assert_int_equal(wire_entries_add(&w, &e), 0);
	assert_int_equal(wire_entries_end(&w), 2);

	assert_int_equal(wire_header_parse(b.data, &t, &len), 0);
	assert_int_equal(wire_decode(t, b.data + WIRE_HEADER_LEN, len, &m), 0);
	assert_int_equal(m.entries.n, 2);
	assert_entry_equal(&sample_entries[1], &m.entries.v[0]);
	assert_entry_equal(&sample_entries[2], &m.entries.v[1]);
	wire_msg_release(&m);
	wire_buf_release(&b);
}

/* A file entry ending a signed segment: the chained frame's unit. */
static struct wire_entry signed_entry(char *path, size_t cap, unsigned i)
{
	struct wire_entry e = file_entry(path, cap, i);

	e.chained = e.seg_end = true;
	memset(e.prev, 0x11, CONTENT_HASH_LEN);
	memset(e.key_id, 0x33, CONTENT_HASH_LEN);
	e.sig_len = sizeof(sample_sig);
	e.sig = sample_sig;
	return e;
}

/* Chained frames: full to within one entry and never over, the same bytes
 * as the encoder's, and an entry's own chained flag does not matter. */
static void test_chain_budget_sweep(void **state)
{
	struct wire_buf b = { 0 }, whole = { 0 };
	struct wire_entry e, v[8];
	struct wire_msg m;
	struct wire_entries w;
	char path[32];
	size_t one, used;
	uint32_t len, n = 0;

	(void)state;
	e = signed_entry(path, sizeof(path), 0);
	m = (struct wire_msg){ .type = WIRE_CHAIN_ENTRIES,
			       .entries = { 1, &e } };
	encode_one(&b, &m, &len);
	one = len - 4;
	for (size_t budget = 4; budget <= 2000; budget++) {
		wire_buf_reset(&b);
		assert_int_equal(wire_chain_entries_begin(&w, &b, budget), 0);
		while (wire_entries_add(&w, &e) == 0)
			;
		n = wire_entries_end(&w);
		used = b.len - WIRE_HEADER_LEN;
		assert_int_equal(used, 4 + n * one);
		assert_true(used <= budget);
		assert_true(used + one > budget);
	}
	assert_true(n > 1 && n <= 8);
	for (uint32_t i = 0; i < n; i++)
		v[i] = e;
	m.entries = (struct wire_entry_list){ n, v };
	assert_int_equal(wire_encode(&whole, &m), 0);
	assert_int_equal(whole.len, b.len);
	assert_memory_equal(whole.data, b.data, b.len);

	wire_buf_reset(&b);
	e.chained = false;
	assert_int_equal(wire_chain_state_begin(&w, &b, 2000), 0);
	assert_int_equal(wire_entries_add(&w, &e), 0);
	assert_int_equal(wire_entries_end(&w), 1);
	assert_int_equal(b.data[5], WIRE_CHAIN_STATE);
	assert_int_equal(wire_decode(WIRE_CHAIN_STATE, b.data + WIRE_HEADER_LEN,
				     b.len - WIRE_HEADER_LEN, &m), 0);
	e.chained = true;
	assert_entry_equal(&e, &m.entries.v[0]);
	wire_msg_release(&m);
	wire_buf_release(&whole);
	wire_buf_release(&b);
}

/* An entry with every string and base at its cap and, chained, the
 * largest signature. */
struct big_entry {
	char vol[VOLUME_NAME_MAX + 1];
	char *path, *target;
	struct journal_ref bases[WIRE_MAX_BASES];
	uint8_t sig[WIRE_SIG_MAX];
	struct wire_entry e;
};

static void big_entry_make(struct big_entry *big, bool chained)
{
	char node[WIRE_NODE_ID_MAX + 1];
	struct wire_entry *e = &big->e;

	*e = (struct wire_entry){ .op = JOURNAL_SYMLINK,
				  .mode = S_IFLNK | 0777, .has_target = true };
	big->path = malloc(PATH_REL_MAX + 1);
	big->target = malloc(WIRE_TARGET_MAX + 1);
	assert_non_null(big->path);
	assert_non_null(big->target);
	memset(node, 'n', WIRE_NODE_ID_MAX);
	node[WIRE_NODE_ID_MAX] = '\0';
	snprintf(e->ref.origin, sizeof(e->ref.origin), "%s@0123456789abcdef",
		 node);
	e->ref.seq = UINT64_MAX;
	memset(big->vol, 'v', VOLUME_NAME_MAX);
	big->vol[VOLUME_NAME_MAX] = '\0';
	/* Components of 255 bytes and slashes, 4000 bytes in all. */
	for (size_t i = 0; i < PATH_REL_MAX; i++)
		big->path[i] = i % 256 == 255 ? '/' : 'p';
	big->path[PATH_REL_MAX] = '\0';
	memset(big->target, 't', WIRE_TARGET_MAX);
	big->target[WIRE_TARGET_MAX] = '\0';
	for (size_t i = 0; i < WIRE_MAX_BASES; i++)
		big->bases[i] = e->ref;
	e->volume = big->vol;
	e->path = big->path;
	e->target = big->target;
	e->n_bases = WIRE_MAX_BASES;
	e->bases = big->bases;
	if (!chained)
		return;
	memset(big->sig, 0xcd, sizeof(big->sig));
	e->chained = e->seg_end = true;
	memset(e->prev, 0xff, CONTENT_HASH_LEN);
	memset(e->key_id, 0xee, CONTENT_HASH_LEN);
	e->sig_len = WIRE_SIG_MAX;
	e->sig = big->sig;
}

/* A frame with the budget the bound promises takes the entry. */
static void check_largest_entry(bool chained)
{
	static struct big_entry big;
	size_t max = WIRE_ENTRY_MAX + (chained ? WIRE_CHAIN_EXTRA : 0);
	struct wire_buf b = { 0 };
	struct wire_entries w;
	struct wire_msg m;

	big_entry_make(&big, chained);
	if (chained)
		assert_int_equal(wire_chain_entries_begin(&w, &b, 4 + max), 0);
	else
		assert_int_equal(wire_entries_begin(&w, &b, 4 + max), 0);
	assert_int_equal(wire_entries_add(&w, &big.e), 0);
	assert_int_equal(wire_entries_end(&w), 1);
	assert_true(b.len - WIRE_HEADER_LEN - 4 <= max);
	assert_int_equal(wire_decode(chained ? WIRE_CHAIN_ENTRIES :
				     WIRE_ENTRIES, b.data + WIRE_HEADER_LEN,
				     b.len - WIRE_HEADER_LEN, &m), 0);
	assert_entry_equal(&big.e, &m.entries.v[0]);
	wire_msg_release(&m);
	wire_buf_release(&b);
	free(big.path);
	free(big.target);
}

/* Every string and base at its cap: WIRE_ENTRY_MAX is a true bound. */
static void test_largest_entry_fits(void **state)
{
	(void)state;
	check_largest_entry(false);
}

/* And WIRE_ENTRY_MAX + WIRE_CHAIN_EXTRA for a chained frame, with the
 * largest signature. */
static void test_largest_chained_entry_fits(void **state)
{
	(void)state;
	check_largest_entry(true);
}

static void test_encode_entries_over_cap(void **state)
{
	struct wire_buf b = { 0 };
	char *path = malloc(PATH_REL_MAX + 1);
	char *target = malloc(WIRE_TARGET_MAX + 1);
	struct wire_entry big = sample_entries[1], *v;
	struct wire_msg m = { .type = WIRE_ENTRIES, .entries = { 1, &big } };
	size_t one, n;
	uint32_t len;

	(void)state;
	assert_non_null(path);
	assert_non_null(target);
	for (size_t i = 0; i < PATH_REL_MAX; i++)
		path[i] = i % 128 == 127 ? '/' : 'p';
	path[PATH_REL_MAX] = '\0';
	memset(target, 't', WIRE_TARGET_MAX);
	target[WIRE_TARGET_MAX] = '\0';
	big.path = path;
	big.target = target;
	encode_one(&b, &m, &len);
	one = len - 4;
	wire_buf_reset(&b);

	/* As many as fit, then one more. */
	n = (WIRE_MAX_PAYLOAD - 4) / one;
	v = calloc(n + 1, sizeof(*v));
	assert_non_null(v);
	for (size_t i = 0; i <= n; i++)
		v[i] = big;
	m.entries = (struct wire_entry_list){ (uint32_t)n + 1, v };
	assert_encode_fails(&b, &m, -EMSGSIZE);
	assert_int_equal(b.len, 0);
	m.entries.n = (uint32_t)n;
	assert_int_equal(wire_encode(&b, &m), 0);
	assert_true(b.len - WIRE_HEADER_LEN <= WIRE_MAX_PAYLOAD);
	/* The largest frame decodes too: megabytes of strings in the arena. */
	assert_int_equal(wire_decode(WIRE_ENTRIES, b.data + WIRE_HEADER_LEN,
				     b.len - WIRE_HEADER_LEN, &m), 0);
	assert_int_equal(m.entries.n, n);
	assert_entry_equal(&big, &m.entries.v[0]);
	assert_entry_equal(&big, &m.entries.v[n - 1]);
	wire_msg_release(&m);
	free(v);
	free(path);
	free(target);
	wire_buf_release(&b);
}

static void test_names_and_release(void **state)
{
	struct wire_msg m = { 0 };
	struct wire_buf b = { 0 };

	(void)state;
	assert_string_equal(wire_type_name(WIRE_HELLO), "HELLO");
	assert_string_equal(wire_type_name(WIRE_GET_CHUNKLIST),
			    "GET_CHUNKLIST");
	assert_string_equal(wire_type_name(WIRE_NOT_HERE), "NOT_HERE");
	assert_string_equal(wire_type_name(WIRE_ERROR), "ERROR");
	assert_string_equal(wire_type_name(WIRE_CHAIN_ENTRIES),
			    "CHAIN_ENTRIES");
	assert_string_equal(wire_type_name(WIRE_CHAIN_STATE), "CHAIN_STATE");
	assert_string_equal(wire_type_name(WIRE_KEY), "KEY");
	assert_string_equal(wire_type_name(WIRE_SEALS), "SEALS");
	assert_string_equal(wire_type_name(WIRE_ASK_KEPT), "ASK_KEPT");
	assert_string_equal(wire_type_name(WIRE_KEPT), "KEPT");
	assert_string_equal(wire_type_name((enum wire_type)26), "unknown");
	assert_string_equal(wire_type_name((enum wire_type)0), "unknown");
	assert_string_equal(wire_type_name((enum wire_type)200), "unknown");
	assert_int_equal(wire_max_payload((enum wire_type)0), 0);
	assert_int_equal(wire_max_payload(WIRE_PING), 8);
	assert_int_equal(wire_max_payload(WIRE_CHAIN_ENTRIES),
			 WIRE_MAX_PAYLOAD);
	assert_int_equal(wire_max_payload(WIRE_CHAIN_STATE), WIRE_MAX_PAYLOAD);
	assert_int_equal(wire_max_payload(WIRE_KEY), 2 + WIRE_CERT_MAX);

	wire_msg_release(&m);
	wire_msg_release(&m);
	wire_buf_release(&b);
	wire_buf_release(&b);
	assert_null(b.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_parse),
		cmocka_unit_test(test_lamport_bound),
		cmocka_unit_test(test_round_trip_every_type),
		cmocka_unit_test(test_frames_concatenate),
		cmocka_unit_test(test_chunk_points_into_payload),
		cmocka_unit_test(test_chunk_head_matches_encoder),
		cmocka_unit_test(test_empty_lists_round_trip),
		cmocka_unit_test(test_truncated_at_every_offset),
		cmocka_unit_test(test_trailing_bytes),
		cmocka_unit_test(test_decode_refuses_type_and_size),
		cmocka_unit_test(test_huge_counts),
		cmocka_unit_test(test_bases_count),
		cmocka_unit_test(test_raw_matches_encoder),
		cmocka_unit_test(test_hostile_paths),
		cmocka_unit_test(test_hostile_volumes),
		cmocka_unit_test(test_bad_origins),
		cmocka_unit_test(test_hello_ids),
		cmocka_unit_test(test_op_seq_and_flags),
		cmocka_unit_test(test_mode_agrees_with_op),
		cmocka_unit_test(test_symlink_targets),
		cmocka_unit_test(test_chunk_fields),
		cmocka_unit_test(test_delta_fields),
		cmocka_unit_test(test_delta_rebuilds_chunk),
		cmocka_unit_test(test_error_text),
		cmocka_unit_test(test_changing_paths),
		cmocka_unit_test(test_ask_kept_fields),
		cmocka_unit_test(test_encode_refuses_bad_fields),
		cmocka_unit_test(test_encode_over_cap),
		cmocka_unit_test(test_chunklist_runs),
		cmocka_unit_test(test_chain_round_trip),
		cmocka_unit_test(test_chain_state_unsigned_end),
		cmocka_unit_test(test_proof_bounds),
		cmocka_unit_test(test_plain_frame_drops_chain),
		cmocka_unit_test(test_chain_fields),
		cmocka_unit_test(test_chain_encode_refusals),
		cmocka_unit_test(test_key_fields),
		cmocka_unit_test(test_entries_respect_budget),
		cmocka_unit_test(test_entries_budget_sweep),
		cmocka_unit_test(test_entries_frame_valid_after_refusal),
		cmocka_unit_test(test_chain_budget_sweep),
		cmocka_unit_test(test_largest_entry_fits),
		cmocka_unit_test(test_largest_chained_entry_fits),
		cmocka_unit_test(test_encode_entries_over_cap),
		cmocka_unit_test(test_names_and_release),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
