/*
 * libFuzzer target for the chunk-list messages of the wire format: the
 * input is the payload of a CHUNKLIST frame, and also of a GET_CHUNKLIST
 * frame (wire.h has the layouts).  fuzz_wire.c covers framing and every
 * type; this one knows what a chunk list means.
 *
 * Checked beyond "no crash, no leak":
 *  - a failure is -EPROTO (-EMSGSIZE past the type's cap) and leaves
 *    nothing allocated: no chunk-list field can be hostile;
 *  - a decoded list keeps the promises its user, apply.c, builds on
 *    without checking again: start <= total, and the items expand to at
 *    most the chunks from start to total; a chunk item is 1 to
 *    WIRE_MAX_CHUNK bytes; a run is not empty and appears only in a list
 *    that names a base; each item stands for at least one chunk;
 *  - it encodes back to exactly the input bytes;
 *  - the encoder refuses, with -EINVAL and nothing appended, the same
 *    list made wrong in the ways the decoder refuses: a run without a
 *    base, one chunk more than total allows, an empty chunk.
 */
#include "fuzz.h"

#include "wire.h"

#include <errno.h>
#include <string.h>

static bool fuzz_same_payload(const struct wire_buf *b, const uint8_t *p,
			      size_t n)
{
	return b->len == WIRE_HEADER_LEN + n &&
	       (n == 0 || memcmp(b->data + WIRE_HEADER_LEN, p, n) == 0);
}

/* No chunk-list field can be hostile: malformed, or past the type's cap
 * (which a frame header would have refused already). */
static bool fuzz_code_ok(enum wire_type t, int err, size_t n)
{
	if (n > wire_max_payload(t))
		return err == -EMSGSIZE;
	return err == -EPROTO;
}

/* M, changed by the caller, must not encode; B keeps what it held. */
static void fuzz_refused(const struct wire_msg *m)
{
	struct wire_buf b = { 0 };

	FUZZ_CHECK(wire_encode(&b, m) == -EINVAL);
	FUZZ_CHECK(b.len == 0);
	wire_buf_release(&b);
}

static void fuzz_items(const struct wire_chunklist *l)
{
	for (uint32_t i = 0; i < l->n; i++) {
		const struct wire_chunk_ref *c = &l->chunks[i];

		if (c->count)
			FUZZ_CHECK(l->has_base);
		else
			FUZZ_CHECK(c->len >= 1 && c->len <= WIRE_MAX_CHUNK);
	}
}

/* The list made invalid in three ways, each on a copy of its items. */
static void fuzz_break(const struct wire_msg *m)
{
	const struct wire_chunklist *l = &m->chunklist;
	struct wire_chunk_ref *v;
	struct wire_msg bad;

	if (l->n == 0)
		return;
	v = malloc(l->n * sizeof(*v));
	FUZZ_CHECK(v != NULL);
	memcpy(v, l->chunks, l->n * sizeof(*v));
	bad = *m;
	bad.chunklist.chunks = v;
	bad.chunklist.total = l->start + (uint32_t)wire_chunklist_span(l) - 1;
	fuzz_refused(&bad);
	bad.chunklist.total = l->total;
	if (v[0].count) {
		bad.chunklist.has_base = false;
		fuzz_refused(&bad);
		bad.chunklist.has_base = l->has_base;
	} else {
		v[0].len = 0;
		fuzz_refused(&bad);
	}
	free(v);
}

static void fuzz_chunklist(const uint8_t *p, size_t n)
{
	struct wire_msg m;
	struct wire_buf b = { 0 };
	const struct wire_chunklist *l = &m.chunklist;
	int err = wire_decode(WIRE_CHUNKLIST, p, n, &m);
	uint64_t span;

	if (err) {
		FUZZ_CHECK(fuzz_code_ok(WIRE_CHUNKLIST, err, n));
		FUZZ_CHECK(m.arena == NULL);
		return;
	}
	span = wire_chunklist_span(l);
	FUZZ_CHECK(l->start <= l->total);
	FUZZ_CHECK(span >= l->n && span <= l->total - l->start);
	FUZZ_CHECK(l->n == 0 || l->chunks != NULL);
	fuzz_items(l);
	FUZZ_CHECK(wire_encode(&b, &m) == 0);
	FUZZ_CHECK(fuzz_same_payload(&b, p, n));
	fuzz_break(&m);
	wire_buf_release(&b);
	wire_msg_release(&m);
}

static void fuzz_get_chunklist(const uint8_t *p, size_t n)
{
	struct wire_msg m;
	struct wire_buf b = { 0 };
	int err = wire_decode(WIRE_GET_CHUNKLIST, p, n, &m);

	if (err) {
		FUZZ_CHECK(fuzz_code_ok(WIRE_GET_CHUNKLIST, err, n));
		FUZZ_CHECK(m.arena == NULL);
		return;
	}
	FUZZ_CHECK(n == CONTENT_HASH_LEN + 5 +
			(m.get_chunklist.has_base ? CONTENT_HASH_LEN : 0));
	FUZZ_CHECK(wire_encode(&b, &m) == 0);
	FUZZ_CHECK(fuzz_same_payload(&b, p, n));
	wire_buf_release(&b);
	wire_msg_release(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_chunklist(data, size);
	fuzz_get_chunklist(data, size);
	return 0;
}
