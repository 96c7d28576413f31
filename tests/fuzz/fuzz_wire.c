/*
 * libFuzzer target for the wire decoder.  Each input is tried as a frame
 * (header, then the payload it announces) and as the payload of every
 * message type, plus two type numbers that do not exist.
 *
 * The sanitizers catch crashes, leaks and undefined behaviour; run with
 * -malloc_limit_mb=64 so that a count trusted before it was checked shows
 * up as an oversized allocation.  On top of that the target checks what
 * the format promises:
 *  - a failure returns a documented code and leaves nothing allocated;
 *  - the encoding has no slack, so whatever decodes encodes back to exactly
 *    the bytes it came from, through wire_encode() and, for ENTRIES, through
 *    the incremental encoder too.  A difference means the decoder accepted
 *    something the encoder refuses, or dropped a field.
 */
#include "wire.h"

#include "err.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check(bool ok)
{
	if (!ok)
		abort();
}

static bool fuzz_same_payload(const struct wire_buf *b, const uint8_t *p,
			      size_t n)
{
	return b->len == WIRE_HEADER_LEN + n &&
	       (n == 0 || memcmp(b->data + WIRE_HEADER_LEN, p, n) == 0);
}

static void fuzz_reencode_entries(const struct wire_msg *m, const uint8_t *p,
				  size_t n)
{
	struct wire_buf b = { 0 };
	struct wire_entries e;

	fuzz_check(wire_entries_begin(&e, &b, n) == 0);
	for (uint32_t i = 0; i < m->entries.n; i++)
		fuzz_check(wire_entries_add(&e, &m->entries.v[i]) == 0);
	fuzz_check(wire_entries_end(&e) == m->entries.n);
	fuzz_check(fuzz_same_payload(&b, p, n));
	wire_buf_release(&b);
}

static void fuzz_payload(enum wire_type t, const uint8_t *p, size_t n)
{
	struct wire_msg m;
	struct wire_buf b = { 0 };
	int err = wire_decode(t, p, n, &m);

	if (err) {
		fuzz_check(err == -EPROTO || err == KR_EHOSTILE ||
			   err == -EMSGSIZE || err == -ENOMEM);
		fuzz_check(m.arena == NULL);
		return;
	}
	fuzz_check(wire_encode(&b, &m) == 0);
	fuzz_check(fuzz_same_payload(&b, p, n));
	if (t == WIRE_ENTRIES)
		fuzz_reencode_entries(&m, p, n);
	if (t == WIRE_CHUNK)
		fuzz_check(m.chunk.data == p + CONTENT_HASH_LEN + 4);
	wire_buf_release(&b);
	wire_msg_release(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum wire_type t;
	uint32_t len;

	if (size >= WIRE_HEADER_LEN) {
		int err = wire_header_parse(data, &t, &len);

		fuzz_check(err == 0 || err == -EPROTO ||
			   err == -EPROTONOSUPPORT || err == -EMSGSIZE);
		if (err == 0 && len <= size - WIRE_HEADER_LEN)
			fuzz_payload(t, data + WIRE_HEADER_LEN, len);
	}
	for (int i = 0; i <= WIRE_TYPE_LAST + 1; i++)
		fuzz_payload((enum wire_type)i, data, size);
	return 0;
}
