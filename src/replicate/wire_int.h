/*
 * Internals shared by wire.c (framing, field rules, every message but the
 * entry lists) and wire_entry.c (the entry codec and the ENTRIES builder).
 * Nothing here is part of the wire API: only those two files include it.
 *
 * Both cursors keep a sticky error: the first failure is kept, later reads
 * return zeros and later writes do nothing (wire.c says why).
 */
#ifndef KRAKEN_WIRE_INT_H
#define KRAKEN_WIRE_INT_H

#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Smallest encodings, for checking counts against the bytes left: an
 * origin "n@" + 16 hex digits. */
#define WIRE_ORIGIN_MIN (1 + 1 + 16)
#define WIRE_REF_MIN (2 + WIRE_ORIGIN_MIN + 8)

struct wire_rd {
	const uint8_t *p;
	size_t left;
	int err;
	struct wire_msg *m;       /* owner of the arena */
};

struct wire_wr {
	struct wire_buf *b;
	size_t start;             /* offset of the frame's header */
	size_t limit;             /* payload bytes allowed */
	int err;
};

/* Big-endian helpers; the casts keep shifts out of signed int. */

static inline void wire_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void wire_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void wire_put_be64(uint8_t *p, uint64_t v)
{
	wire_put_be32(p, (uint32_t)(v >> 32));
	wire_put_be32(p + 4, (uint32_t)v);
}

static inline uint16_t wire_get_be16(const uint8_t *p)
{
	return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t wire_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t wire_get_be64(const uint8_t *p)
{
	return (uint64_t)wire_get_be32(p) << 32 | wire_get_be32(p + 4);
}

/* Field rules (wire.c), shared by both directions. */
bool wire_ref_ok(const struct journal_ref *r, bool need_seq);
bool wire_text_ok(const char *s, size_t min, size_t max, bool ctrl);

/* Reading (wire.c). */
void rd_fail(struct wire_rd *r, int err);
const uint8_t *rd_take(struct wire_rd *r, size_t n);
uint8_t rd_u8(struct wire_rd *r);
uint16_t rd_u16(struct wire_rd *r);
uint32_t rd_u32(struct wire_rd *r);
uint64_t rd_u64(struct wire_rd *r);
void rd_hash(struct wire_rd *r, uint8_t out[CONTENT_HASH_LEN]);
bool rd_flag(struct wire_rd *r);
void *rd_alloc(struct wire_rd *r, size_t n);
uint32_t rd_count(struct wire_rd *r, uint32_t n, size_t item_min,
		  uint32_t max);
const char *rd_str(struct wire_rd *r, size_t max, int bad);
struct journal_ref *rd_refs(struct wire_rd *r, uint32_t n, bool need_seq);
void rd_ref(struct wire_rd *r, struct journal_ref *ref, bool need_seq);

/* Writing (wire.c). */
void wr_fail(struct wire_wr *w, int err);
void wr_put(struct wire_wr *w, const void *p, size_t n);
void wr_u8(struct wire_wr *w, uint8_t v);
void wr_u16(struct wire_wr *w, uint16_t v);
void wr_u32(struct wire_wr *w, uint32_t v);
void wr_u64(struct wire_wr *w, uint64_t v);
void wr_str(struct wire_wr *w, const char *s);
void wr_ref(struct wire_wr *w, const struct journal_ref *r, bool need_seq);
void wr_begin(struct wire_wr *w, struct wire_buf *b, enum wire_type type,
	      size_t limit);
int wr_end(struct wire_wr *w);

/* The entry lists (wire_entry.c), for wire.c's table of types:
 * ENTRIES and STATE, and their chained forms. */
void rd_entries(struct wire_rd *r, struct wire_msg *m);
void rd_chain_entries(struct wire_rd *r, struct wire_msg *m);
void wr_entries(struct wire_wr *w, const struct wire_msg *m);
void wr_chain_entries(struct wire_wr *w, const struct wire_msg *m);
void rd_seals(struct wire_rd *r, struct wire_msg *m);
void wr_seals(struct wire_wr *w, const struct wire_msg *m);

#endif
