/*
 * libFuzzer target for chunk deltas (delta.h) and their two messages,
 * GET_DELTA and DELTA (wire.h).  Each input is used twice:
 *
 * 1. As the payload of a DELTA and of a GET_DELTA frame.  A failure is
 *    -EPROTO (-EMSGSIZE past the cap) with nothing allocated; what
 *    decodes points into the payload where the layout says, announces
 *    exactly the bytes that follow (delta_literal_len), encodes back to
 *    the same bytes, and a DELTA applied to a chunk-sized buffer
 *    overwrites exactly its unmarked blocks, in order, from its data.
 *
 * 2. As a recipe for a chunk edit, the whole exchange end to end:
 *      bytes 0-2  LEN - 1, modulo 17 blocks (so a map can reach into a
 *                 third byte, and the last block is often short)
 *      bytes 3-6  which blocks the asker already holds: bit i % 32
 *      the rest   seed of the new chunk's bytes
 *    The asker's old bytes equal the new ones in the marked blocks and
 *    differ in every byte elsewhere.  Its digests travel in a GET_DELTA,
 *    the answer from delta_make in a DELTA, and delta_apply on the old
 *    bytes must rebuild the new chunk exactly, with the map marking
 *    precisely the blocks that were held.
 */
#include "fuzz.h"

#include "delta.h"
#include "wire.h"

#include <errno.h>
#include <string.h>

#define FUZZ_RECIPE_HEAD 7
#define FUZZ_RECIPE_BLOCKS 17

static bool fuzz_code_ok(enum wire_type t, int err, size_t n)
{
	if (n > wire_max_payload(t))
		return err == -EMSGSIZE;
	return err == -EPROTO;
}

static bool fuzz_bit(const uint8_t *map, uint32_t i)
{
	return (map[i / 8] >> (i % 8)) & 1;
}

static uint32_t fuzz_block_len(uint32_t len, uint32_t i)
{
	uint32_t left = len - i * DELTA_BLOCK;

	return left < DELTA_BLOCK ? left : DELTA_BLOCK;
}

static void fuzz_reencodes(const struct wire_msg *m, const uint8_t *p,
			   size_t n)
{
	struct wire_buf b = { 0 };

	FUZZ_CHECK(wire_encode(&b, m) == 0);
	FUZZ_CHECK(b.len == WIRE_HEADER_LEN + n &&
		   memcmp(b.data + WIRE_HEADER_LEN, p, n) == 0);
	wire_buf_release(&b);
}

/* 0xa5 stands for the asker's bytes: held blocks keep it, the others
 * take the data in order, and nothing past the chunk is written. */
static void fuzz_apply_decoded(const struct wire_delta *d)
{
	uint8_t *out = malloc(d->len);
	const uint8_t *lit = d->data;

	FUZZ_CHECK(out != NULL);
	memset(out, 0xa5, d->len);
	delta_apply(out, d->len, d->map, d->data);
	for (uint32_t i = 0; i < delta_blocks(d->len); i++) {
		const uint8_t *blk = out + (size_t)i * DELTA_BLOCK;
		uint32_t bl = fuzz_block_len(d->len, i);

		if (fuzz_bit(d->map, i)) {
			for (uint32_t k = 0; k < bl; k++)
				FUZZ_CHECK(blk[k] == 0xa5);
			continue;
		}
		FUZZ_CHECK(memcmp(blk, lit, bl) == 0);
		lit += bl;
	}
	FUZZ_CHECK(lit == d->data + d->data_len);
	free(out);
}

static void fuzz_decode_delta(const uint8_t *p, size_t n)
{
	struct wire_msg m;
	const struct wire_delta *d = &m.delta;
	int err = wire_decode(WIRE_DELTA, p, n, &m);

	if (err) {
		FUZZ_CHECK(fuzz_code_ok(WIRE_DELTA, err, n) && !m.arena);
		return;
	}
	FUZZ_CHECK(d->len >= 1 && d->len <= WIRE_MAX_CHUNK);
	FUZZ_CHECK(d->map == p + CONTENT_HASH_LEN + 4);
	FUZZ_CHECK(d->data == d->map + delta_map_len(d->len));
	FUZZ_CHECK(delta_literal_len(d->len, d->map) == d->data_len);
	FUZZ_CHECK(d->data + d->data_len == p + n);
	fuzz_reencodes(&m, p, n);
	fuzz_apply_decoded(d);
	wire_msg_release(&m);
}

static void fuzz_decode_get_delta(const uint8_t *p, size_t n)
{
	struct wire_msg m;
	const struct wire_get_delta *g = &m.get_delta;
	int err = wire_decode(WIRE_GET_DELTA, p, n, &m);

	if (err) {
		FUZZ_CHECK(fuzz_code_ok(WIRE_GET_DELTA, err, n) && !m.arena);
		return;
	}
	FUZZ_CHECK(g->len >= 1 && g->len <= WIRE_MAX_CHUNK);
	FUZZ_CHECK((const uint8_t *)g->digests == p + CONTENT_HASH_LEN + 4);
	FUZZ_CHECK(n == CONTENT_HASH_LEN + 4 +
			(size_t)delta_blocks(g->len) * DELTA_DIGEST);
	fuzz_reencodes(&m, p, n);
	wire_msg_release(&m);
}

/* One chunk edit: the new bytes, the asker's old ones, which it holds. */
struct fuzz_edit {
	uint32_t len;
	uint32_t held;            /* bit i % 32: block i unchanged */
	uint8_t *now, *old;
};

/* The seed over and over; blocks are compared only with the asker's
 * block at the same place, so repeats elsewhere change nothing. */
static void fuzz_fill(uint8_t *out, uint32_t len, const uint8_t *seed,
		      size_t n)
{
	size_t have = n < len ? n : len;

	memset(out, 0, len);
	memcpy(out, seed, have);
	while (have > 0 && have < len) {
		size_t k = have < len - have ? have : len - have;

		memcpy(out + have, out, k);
		have += k;
	}
}

static bool fuzz_edit_make(const uint8_t *data, size_t size,
			   struct fuzz_edit *e)
{
	if (size < FUZZ_RECIPE_HEAD)
		return false;
	e->len = 1 + ((uint32_t)data[0] << 16 | (uint32_t)data[1] << 8 |
		      data[2]) % (FUZZ_RECIPE_BLOCKS * DELTA_BLOCK);
	e->held = (uint32_t)data[3] << 24 | (uint32_t)data[4] << 16 |
		  (uint32_t)data[5] << 8 | data[6];
	e->now = malloc(e->len);
	e->old = malloc(e->len);
	FUZZ_CHECK(e->now && e->old);
	fuzz_fill(e->now, e->len, data + FUZZ_RECIPE_HEAD,
		  size - FUZZ_RECIPE_HEAD);
	memcpy(e->old, e->now, e->len);
	for (uint32_t b = 0; b < delta_blocks(e->len); b++) {
		uint8_t *blk = e->old + (size_t)b * DELTA_BLOCK;

		if ((e->held >> (b % 32)) & 1)
			continue;
		for (uint32_t k = 0; k < fuzz_block_len(e->len, b); k++)
			blk[k] ^= 0x5a;
	}
	return true;
}

/* The asker's question: the digests of its old bytes, encoded into B
 * and decoded into *M, whose digests then point into B as they would
 * into a received frame. */
static void fuzz_ask(const struct fuzz_edit *e, struct wire_buf *b,
		     struct wire_msg *m)
{
	size_t n = (size_t)delta_blocks(e->len) * DELTA_DIGEST;
	uint8_t (*dig)[DELTA_DIGEST] = malloc(n);
	struct wire_msg ask = { .type = WIRE_GET_DELTA };

	FUZZ_CHECK(dig != NULL);
	FUZZ_CHECK(delta_digests(e->old, e->len, dig) == 0);
	ask.get_delta.len = e->len;
	ask.get_delta.digests = (const uint8_t (*)[DELTA_DIGEST])dig;
	FUZZ_CHECK(wire_encode(b, &ask) == 0);
	FUZZ_CHECK(wire_decode(WIRE_GET_DELTA, b->data + WIRE_HEADER_LEN,
			       b->len - WIRE_HEADER_LEN, m) == 0);
	FUZZ_CHECK(m->get_delta.len == e->len &&
		   memcmp(m->get_delta.digests, dig, n) == 0);
	free(dig);
}

static void fuzz_map_matches(const struct fuzz_edit *e, const uint8_t *map)
{
	uint32_t blocks = delta_blocks(e->len);

	for (uint32_t i = 0; i < delta_map_len(e->len) * 8; i++)
		FUZZ_CHECK(fuzz_bit(map, i) ==
			   (i < blocks && ((e->held >> (i % 32)) & 1)));
}

/* The answer through a DELTA, applied to the old bytes. */
static void fuzz_answer(const struct fuzz_edit *e,
			const uint8_t (*theirs)[DELTA_DIGEST])
{
	struct wire_msg ans = { .type = WIRE_DELTA }, got;
	struct wire_buf b = { 0 };
	uint8_t *map = malloc(delta_map_len(e->len)), *lit = malloc(e->len);
	uint32_t lit_len = 0;

	FUZZ_CHECK(map && lit);
	FUZZ_CHECK(delta_make(e->now, e->len, theirs, map, lit, &lit_len) == 0);
	fuzz_map_matches(e, map);
	FUZZ_CHECK(delta_literal_len(e->len, map) == lit_len);
	ans.delta.len = e->len;
	ans.delta.map = map;
	ans.delta.data = lit;
	ans.delta.data_len = lit_len;
	FUZZ_CHECK(wire_encode(&b, &ans) == 0);
	FUZZ_CHECK(wire_decode(WIRE_DELTA, b.data + WIRE_HEADER_LEN,
			       b.len - WIRE_HEADER_LEN, &got) == 0);
	FUZZ_CHECK(got.delta.data_len == lit_len);
	delta_apply(e->old, e->len, got.delta.map, got.delta.data);
	FUZZ_CHECK(memcmp(e->old, e->now, e->len) == 0);
	wire_msg_release(&got);
	wire_buf_release(&b);
	free(map);
	free(lit);
}

static void fuzz_recipe(const uint8_t *data, size_t size)
{
	struct fuzz_edit e;
	struct wire_buf b = { 0 };
	struct wire_msg ask;

	if (!fuzz_edit_make(data, size, &e))
		return;
	fuzz_ask(&e, &b, &ask);
	fuzz_answer(&e, ask.get_delta.digests);
	wire_msg_release(&ask);
	wire_buf_release(&b);
	free(e.now);
	free(e.old);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_decode_delta(data, size);
	fuzz_decode_get_delta(data, size);
	fuzz_recipe(data, size);
	return 0;
}
