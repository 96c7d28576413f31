/*
 * Wire format encoding and decoding; the format itself is documented in
 * wire.h.  Framing, the field rules, the cursors and every message but the
 * entry lists live here; the entry codec and the incremental ENTRIES
 * builder are in wire_entry.c, which shares the cursors through wire_int.h.
 *
 * Both directions keep a sticky error in their cursor: the first failure
 * is kept, later reads return zeros and later writes do nothing, so a
 * message's fields can be read or written in the order of the format table
 * and the error checked where it matters (before an allocation, before a
 * semantic check, at the end).
 *
 * A decoded message owns one arena: a chain of blocks that every string
 * and array of the message is carved from, released in one call.  The
 * decoder never trusts a count before it has checked that the bytes left
 * could hold that many items, so the arena grows with the bytes received:
 * under four and a half times the payload, whatever the counts claim.
 *
 * The encoder applies the decoder's field checks before writing, so a
 * frame this node sends is one its peers accept.
 */
#include "wire_int.h"

#include "err.h"
#include "nodeid.h"
#include "path.h"

#include <errno.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define WIRE_CHUNK_ITEM_MIN 9       /* u8 kind, u32 index, u32 count */

#define ARENA_FIRST (4u << 10)
#define ARENA_STEP_MAX (1u << 20)

struct wire_arena {
	struct wire_arena *next;
	size_t used, cap;
	max_align_t mem[];
};

/* Field rules, shared by both directions. */

/* NODE "@" 16 lowercase hex digits; the node id never holds '@', so the
 * separator sits exactly 17 bytes from the end. */
static bool wire_origin_ok(const char *s)
{
	size_t len = strnlen(s, JOURNAL_ORIGIN_MAX);
	const char *hex;

	if (len < WIRE_ORIGIN_MIN || len >= JOURNAL_ORIGIN_MAX)
		return false;
	hex = s + len - 16;
	if (hex[-1] != '@' || !node_id_ok(s, len - 17))
		return false;
	for (size_t i = 0; i < 16; i++) {
		char c = hex[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

bool wire_ref_ok(const struct journal_ref *r, bool need_seq)
{
	return wire_origin_ok(r->origin) && (!need_seq || r->seq > 0);
}

/* UTF-8 of MIN..MAX bytes.  Text that ends up in logs also refuses
 * control characters, so a peer cannot forge log lines. */
bool wire_text_ok(const char *s, size_t min, size_t max, bool ctrl)
{
	size_t len;

	if (!s)
		return false;
	len = strnlen(s, max + 1);
	if (len < min || len > max || !path_utf8_ok(s, len))
		return false;
	for (size_t i = 0; i < len && !ctrl; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	}
	return true;
}

/* Arena. */

static void *wire_arena_alloc(struct wire_arena **head, size_t n)
{
	struct wire_arena *a = *head;
	const size_t align = alignof(max_align_t);
	void *p;

	n = (n + align - 1) / align * align;
	if (!a || a->cap - a->used < n) {
		size_t cap = a ? a->cap * 2 : ARENA_FIRST;

		if (cap > ARENA_STEP_MAX)
			cap = ARENA_STEP_MAX;
		if (cap < n)
			cap = n;
		a = malloc(sizeof(*a) + cap);
		if (!a)
			return NULL;
		a->next = *head;
		a->used = 0;
		a->cap = cap;
		*head = a;
	}
	p = (char *)a->mem + a->used;
	a->used += n;
	return p;
}

void wire_msg_release(struct wire_msg *m)
{
	struct wire_arena *a = m->arena;

	while (a) {
		struct wire_arena *next = a->next;

		free(a);
		a = next;
	}
	memset(m, 0, sizeof(*m));
}

/* Reading. */

void rd_fail(struct wire_rd *r, int err)
{
	if (!r->err)
		r->err = err;
}

/* N bytes from the payload, or NULL (and -EPROTO) when fewer are left. */
const uint8_t *rd_take(struct wire_rd *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->err)
		return NULL;
	if (n > r->left) {
		rd_fail(r, -EPROTO);
		return NULL;
	}
	if (n) {
		r->p += n;
		r->left -= n;
	}
	return p;
}

uint8_t rd_u8(struct wire_rd *r)
{
	const uint8_t *p = rd_take(r, 1);

	return p ? p[0] : 0;
}

uint16_t rd_u16(struct wire_rd *r)
{
	const uint8_t *p = rd_take(r, 2);

	return p ? wire_get_be16(p) : 0;
}

uint32_t rd_u32(struct wire_rd *r)
{
	const uint8_t *p = rd_take(r, 4);

	return p ? wire_get_be32(p) : 0;
}

uint64_t rd_u64(struct wire_rd *r)
{
	const uint8_t *p = rd_take(r, 8);

	return p ? wire_get_be64(p) : 0;
}

void rd_hash(struct wire_rd *r, uint8_t out[CONTENT_HASH_LEN])
{
	const uint8_t *p = rd_take(r, CONTENT_HASH_LEN);

	if (p)
		memcpy(out, p, CONTENT_HASH_LEN);
}

bool rd_flag(struct wire_rd *r)
{
	uint8_t v = rd_u8(r);

	if (v > 1)
		rd_fail(r, -EPROTO);
	return v == 1;
}

/* Zeroed memory from the message's arena, or NULL with -ENOMEM. */
void *rd_alloc(struct wire_rd *r, size_t n)
{
	void *p;

	if (r->err)
		return NULL;
	p = wire_arena_alloc(&r->m->arena, n);
	if (!p) {
		rd_fail(r, -ENOMEM);
		return NULL;
	}
	return memset(p, 0, n);
}

/* Refuses N items of at least ITEM_MIN bytes each when the payload has
 * no room for them: the check that keeps a forged count from allocating. */
uint32_t rd_count(struct wire_rd *r, uint32_t n, size_t item_min,
		  uint32_t max)
{
	if (!r->err && (n > max || n > r->left / item_min))
		rd_fail(r, -EPROTO);
	return r->err ? 0 : n;
}

/* A string of at most MAX bytes, NUL-terminated in the arena.  BAD is the
 * code for a string that is too long or holds a NUL.  "" after an error. */
const char *rd_str(struct wire_rd *r, size_t max, int bad)
{
	size_t n = rd_u16(r);
	const uint8_t *p = rd_take(r, n);
	char *s;

	if (p && (n > max || (n && memchr(p, 0, n))))
		rd_fail(r, bad);
	s = rd_alloc(r, n + 1);
	if (!s)
		return "";
	if (n)
		memcpy(s, p, n);
	return s;
}

void rd_ref(struct wire_rd *r, struct journal_ref *ref, bool need_seq)
{
	size_t n = rd_u16(r);
	const uint8_t *p = rd_take(r, n);

	if (p && n < JOURNAL_ORIGIN_MAX) {
		memcpy(ref->origin, p, n);
		ref->origin[n] = '\0';
	}
	ref->seq = rd_u64(r);
	/* strlen would differ from n if the bytes held a NUL. */
	if (!r->err && (n >= JOURNAL_ORIGIN_MAX || strlen(ref->origin) != n ||
			!wire_ref_ok(ref, need_seq)))
		rd_fail(r, -EPROTO);
}

struct journal_ref *rd_refs(struct wire_rd *r, uint32_t n, bool need_seq)
{
	struct journal_ref *refs;

	if (r->err || n == 0)
		return NULL;
	refs = rd_alloc(r, (size_t)n * sizeof(*refs));
	for (uint32_t i = 0; refs && i < n && !r->err; i++)
		rd_ref(r, &refs[i], need_seq);
	return refs;
}

static void rd_vector(struct wire_rd *r, struct wire_vector *v)
{
	v->n = rd_count(r, rd_u32(r), WIRE_REF_MIN, UINT32_MAX);
	v->refs = rd_refs(r, v->n, false);
}

static void rd_hello(struct wire_rd *r, struct wire_msg *m)
{
	struct wire_hello *h = &m->hello;

	h->node_id = rd_str(r, WIRE_NODE_ID_MAX, -EPROTO);
	h->cluster_id = rd_str(r, WIRE_CLUSTER_ID_MAX, -EPROTO);
	h->features = rd_u32(r);
	if (!r->err && (!node_id_ok(h->node_id, strlen(h->node_id)) ||
			!wire_text_ok(h->cluster_id, 1, WIRE_CLUSTER_ID_MAX,
				      false)))
		rd_fail(r, -EPROTO);
	rd_vector(r, &h->vector);
}

static void rd_vector_msg(struct wire_rd *r, struct wire_msg *m)
{
	rd_vector(r, &m->vector);
}

static void rd_get_chunklist(struct wire_rd *r, struct wire_msg *m)
{
	struct wire_get_chunklist *g = &m->get_chunklist;

	rd_hash(r, g->hash);
	g->start = rd_u32(r);
	g->has_base = rd_flag(r);
	if (g->has_base)
		rd_hash(r, g->base);
}

static void rd_chunk_ref(struct wire_rd *r, bool has_base,
			 struct wire_chunk_ref *c)
{
	uint8_t kind = rd_u8(r);

	if (kind == 0) {
		rd_hash(r, c->hash);
		c->len = rd_u32(r);
		if (c->len == 0 || c->len > WIRE_MAX_CHUNK)
			rd_fail(r, -EPROTO);
	} else if (kind == 1 && has_base) {
		c->base_index = rd_u32(r);
		c->count = rd_u32(r);
		if (c->count == 0)
			rd_fail(r, -EPROTO);
	} else {
		rd_fail(r, -EPROTO);
	}
}

uint64_t wire_chunklist_span(const struct wire_chunklist *l)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < l->n; i++)
		n += l->chunks[i].count ? l->chunks[i].count : 1;
	return n;
}

static void rd_chunklist(struct wire_rd *r, struct wire_msg *m)
{
	struct wire_chunklist *l = &m->chunklist;
	struct wire_chunk_ref *v = NULL;

	rd_hash(r, l->hash);
	l->size = rd_u64(r);
	l->total = rd_u32(r);
	l->start = rd_u32(r);
	l->has_base = rd_flag(r);
	if (l->has_base)
		rd_hash(r, l->base);
	l->n = rd_count(r, rd_u32(r), WIRE_CHUNK_ITEM_MIN, UINT32_MAX);
	if (!r->err && (l->start > l->total || l->n > l->total - l->start))
		rd_fail(r, -EPROTO);
	if (l->n)
		v = rd_alloc(r, (size_t)l->n * sizeof(*v));
	for (uint32_t i = 0; v && i < l->n && !r->err; i++)
		rd_chunk_ref(r, l->has_base, &v[i]);
	l->chunks = v;
	if (!r->err && wire_chunklist_span(l) > l->total - l->start)
		rd_fail(r, -EPROTO);
}

static void rd_get_chunks(struct wire_rd *r, struct wire_msg *m)
{
	struct wire_get_chunks *g = &m->get_chunks;
	uint8_t (*h)[CONTENT_HASH_LEN] = NULL;

	g->n = rd_count(r, rd_u32(r), CONTENT_HASH_LEN, WIRE_MAX_GET_CHUNKS);
	if (!r->err && g->n == 0)
		rd_fail(r, -EPROTO);
	if (g->n)
		h = rd_alloc(r, (size_t)g->n * CONTENT_HASH_LEN);
	for (uint32_t i = 0; h && i < g->n && !r->err; i++)
		rd_hash(r, h[i]);
	/* ISO C before C23 wants the const added to the array type spelled. */
	g->hashes = (const uint8_t (*)[CONTENT_HASH_LEN])h;
}

/* A chunk's hash and length (1..WIRE_MAX_CHUNK), as CHUNK, GET_DELTA and
 * DELTA begin. */
static void rd_chunk_id(struct wire_rd *r, uint8_t hash[CONTENT_HASH_LEN],
			uint32_t *len)
{
	rd_hash(r, hash);
	*len = rd_u32(r);
	if (!r->err && (*len == 0 || *len > WIRE_MAX_CHUNK))
		rd_fail(r, -EPROTO);
}

static void rd_chunk(struct wire_rd *r, struct wire_msg *m)
{
	struct wire_chunk *c = &m->chunk;

	rd_chunk_id(r, c->hash, &c->len);
	c->data = rd_take(r, c->len);
}

static void rd_not_here(struct wire_rd *r, struct wire_msg *m)
{
	rd_hash(r, m->not_here);
}

static void rd_token(struct wire_rd *r, struct wire_msg *m)
{
	m->token = rd_u64(r);
}

static void rd_clock(struct wire_rd *r, struct wire_msg *m)
{
	m->clock.token = rd_u64(r);
	m->clock.wall_ns = (int64_t)rd_u64(r);
}

/* A file's volume and path, as CHANGING and ASK_KEPT name them; checked
 * by rd_file_check once the whole payload is read, so that a truncated
 * frame is malformed rather than hostile. */
static void rd_file(struct wire_rd *r, const char **volume, const char **path)
{
	*volume = rd_str(r, VOLUME_NAME_MAX, KR_EHOSTILE);
	*path = rd_str(r, PATH_REL_MAX, KR_EHOSTILE);
}

static void rd_file_check(struct wire_rd *r, const char *volume,
			  const char *path)
{
	if (!r->err && (!path_volume_name_ok(volume) || !*path ||
			path_check_rel(path) != 0))
		rd_fail(r, KR_EHOSTILE);
}

static void rd_changing(struct wire_rd *r, struct wire_msg *m)
{
	struct wire_changing *c = &m->changing;

	rd_file(r, &c->volume, &c->path);
	rd_hash(r, c->base);
	c->size = rd_u64(r);
	rd_file_check(r, c->volume, c->path);
}

static void rd_ask_kept(struct wire_rd *r, struct wire_msg *m)
{
	struct wire_ask_kept *a = &m->ask_kept;
	uint8_t (*h)[CONTENT_HASH_LEN] = NULL;

	a->token = rd_u64(r);
	rd_file(r, &a->volume, &a->path);
	a->n = rd_count(r, rd_u32(r), CONTENT_HASH_LEN, WIRE_MAX_ASK_KEPT);
	if (!r->err && a->n == 0)
		rd_fail(r, -EPROTO);
	if (!r->err)
		h = rd_alloc(r, (size_t)a->n * CONTENT_HASH_LEN);
	for (uint32_t i = 0; h && i < a->n && !r->err; i++)
		rd_hash(r, h[i]);
	a->hashes = (const uint8_t (*)[CONTENT_HASH_LEN])h;
	rd_file_check(r, a->volume, a->path);
}

static void rd_kept(struct wire_rd *r, struct wire_msg *m)
{
	struct wire_kept *k = &m->kept;
	uint8_t *here = NULL;

	k->token = rd_u64(r);
	k->n = rd_count(r, rd_u32(r), 1, WIRE_MAX_ASK_KEPT);
	if (!r->err && k->n)
		here = rd_alloc(r, k->n);
	for (uint32_t i = 0; here && i < k->n && !r->err; i++)
		here[i] = rd_flag(r);
	k->here = here;
}

static void rd_get_delta(struct wire_rd *r, struct wire_msg *m)
{
	struct wire_get_delta *g = &m->get_delta;

	rd_chunk_id(r, g->hash, &g->len);
	if (!r->err)
		g->digests = (const uint8_t (*)[DELTA_DIGEST])(const void *)
			rd_take(r, (size_t)delta_blocks(g->len) * DELTA_DIGEST);
}

static void rd_delta(struct wire_rd *r, struct wire_msg *m)
{
	struct wire_delta *d = &m->delta;
	int64_t lit;

	rd_chunk_id(r, d->hash, &d->len);
	if (!r->err)
		d->map = rd_take(r, delta_map_len(d->len));
	if (r->err)
		return;
	lit = delta_literal_len(d->len, d->map);
	if (lit < 0) {
		rd_fail(r, -EPROTO);
		return;
	}
	d->data_len = (uint32_t)lit;
	d->data = rd_take(r, d->data_len);
}

/* The certificate is only bounded here: parsing it is the business of
 * whoever checks signatures, with a library made for that. */
static void rd_key(struct wire_rd *r, struct wire_msg *m)
{
	m->key.len = rd_u16(r);
	if (!r->err && (m->key.len == 0 || m->key.len > WIRE_CERT_MAX))
		rd_fail(r, -EPROTO);
	m->key.der = rd_take(r, m->key.len);
}

static void rd_error(struct wire_rd *r, struct wire_msg *m)
{
	m->error.code = rd_u16(r);
	m->error.text = rd_str(r, WIRE_TEXT_MAX, -EPROTO);
	if (!r->err && !wire_text_ok(m->error.text, 0, WIRE_TEXT_MAX, false))
		rd_fail(r, -EPROTO);
}

/* Writing. */

static int wire_buf_grow(struct wire_buf *b, size_t n)
{
	size_t cap = b->cap ? b->cap : 256;
	uint8_t *p;

	if (n <= b->cap - b->len)
		return 0;
	if (n > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	while (cap - b->len < n)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

void wire_buf_reset(struct wire_buf *b)
{
	b->len = 0;
}

void wire_buf_release(struct wire_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void wr_fail(struct wire_wr *w, int err)
{
	/* What the decoder calls malformed is the caller's bad argument. */
	if (!w->err)
		w->err = err == -EPROTO ? -EINVAL : err;
}

static void wr_raw(struct wire_wr *w, const void *p, size_t n)
{
	if (w->err || n == 0)
		return;
	if (wire_buf_grow(w->b, n) != 0) {
		wr_fail(w, -ENOMEM);
		return;
	}
	memcpy(w->b->data + w->b->len, p, n);
	w->b->len += n;
}

void wr_put(struct wire_wr *w, const void *p, size_t n)
{
	size_t used = w->b->len - w->start - WIRE_HEADER_LEN;

	if (!w->err && n > w->limit - used)
		wr_fail(w, -EMSGSIZE);
	wr_raw(w, p, n);
}

void wr_u8(struct wire_wr *w, uint8_t v)
{
	wr_put(w, &v, 1);
}

void wr_u16(struct wire_wr *w, uint16_t v)
{
	uint8_t p[2];

	wire_put_be16(p, v);
	wr_put(w, p, sizeof(p));
}

void wr_u32(struct wire_wr *w, uint32_t v)
{
	uint8_t p[4];

	wire_put_be32(p, v);
	wr_put(w, p, sizeof(p));
}

void wr_u64(struct wire_wr *w, uint64_t v)
{
	uint8_t p[8];

	wire_put_be64(p, v);
	wr_put(w, p, sizeof(p));
}

/* S has been checked against its field's cap, all far below 64 KiB. */
void wr_str(struct wire_wr *w, const char *s)
{
	size_t n = strlen(s);

	if (n > UINT16_MAX)
		wr_fail(w, -EINVAL);
	wr_u16(w, (uint16_t)n);
	wr_put(w, s, n);
}

void wr_ref(struct wire_wr *w, const struct journal_ref *r, bool need_seq)
{
	if (!wire_ref_ok(r, need_seq))
		wr_fail(w, -EINVAL);
	wr_str(w, r->origin);
	wr_u64(w, r->seq);
}

/* Opens a frame at the end of B; the length is patched by wr_end. */
void wr_begin(struct wire_wr *w, struct wire_buf *b, enum wire_type type,
	      size_t limit)
{
	uint8_t h[WIRE_HEADER_LEN] = { 0 };

	w->b = b;
	w->start = b->len;
	w->limit = limit;
	w->err = 0;
	memcpy(h, WIRE_MAGIC, 4);
	h[4] = WIRE_VERSION;
	h[5] = (uint8_t)type;
	wr_raw(w, h, sizeof(h));
}

/* Patches the length in, or takes the whole frame back out on failure. */
int wr_end(struct wire_wr *w)
{
	if (w->err)
		w->b->len = w->start;
	else
		wire_put_be32(w->b->data + w->start + 8, (uint32_t)(w->b->len -
			      w->start - WIRE_HEADER_LEN));
	return w->err;
}

static void wr_vector(struct wire_wr *w, const struct wire_vector *v)
{
	if (v->n && !v->refs)
		wr_fail(w, -EINVAL);
	wr_u32(w, v->n);
	for (uint32_t i = 0; i < v->n && !w->err; i++)
		wr_ref(w, &v->refs[i], false);
}

static void wr_hello(struct wire_wr *w, const struct wire_msg *m)
{
	const struct wire_hello *h = &m->hello;

	if (!h->node_id || !node_id_ok(h->node_id, strnlen(h->node_id,
					    WIRE_NODE_ID_MAX + 1)) ||
	    !wire_text_ok(h->cluster_id, 1, WIRE_CLUSTER_ID_MAX, false))
		wr_fail(w, -EINVAL);
	if (w->err)
		return;
	wr_str(w, h->node_id);
	wr_str(w, h->cluster_id);
	wr_u32(w, h->features);
	wr_vector(w, &h->vector);
}

static void wr_vector_msg(struct wire_wr *w, const struct wire_msg *m)
{
	wr_vector(w, &m->vector);
}

static void wr_get_chunklist(struct wire_wr *w, const struct wire_msg *m)
{
	const struct wire_get_chunklist *g = &m->get_chunklist;

	wr_put(w, g->hash, CONTENT_HASH_LEN);
	wr_u32(w, g->start);
	wr_u8(w, g->has_base);
	if (g->has_base)
		wr_put(w, g->base, CONTENT_HASH_LEN);
}

static void wr_chunk_ref(struct wire_wr *w, bool has_base,
			 const struct wire_chunk_ref *c)
{
	if (c->count) {
		if (!has_base)
			wr_fail(w, -EINVAL);
		wr_u8(w, 1);
		wr_u32(w, c->base_index);
		wr_u32(w, c->count);
		return;
	}
	if (c->len == 0 || c->len > WIRE_MAX_CHUNK)
		wr_fail(w, -EINVAL);
	wr_u8(w, 0);
	wr_put(w, c->hash, CONTENT_HASH_LEN);
	wr_u32(w, c->len);
}

static void wr_chunklist(struct wire_wr *w, const struct wire_msg *m)
{
	const struct wire_chunklist *l = &m->chunklist;

	if (l->start > l->total || l->n > l->total - l->start ||
	    (l->n && !l->chunks) ||
	    (l->chunks && wire_chunklist_span(l) > l->total - l->start))
		wr_fail(w, -EINVAL);
	wr_put(w, l->hash, CONTENT_HASH_LEN);
	wr_u64(w, l->size);
	wr_u32(w, l->total);
	wr_u32(w, l->start);
	wr_u8(w, l->has_base);
	if (l->has_base)
		wr_put(w, l->base, CONTENT_HASH_LEN);
	wr_u32(w, l->n);
	for (uint32_t i = 0; i < l->n && !w->err; i++)
		wr_chunk_ref(w, l->has_base, &l->chunks[i]);
}

static void wr_get_chunks(struct wire_wr *w, const struct wire_msg *m)
{
	const struct wire_get_chunks *g = &m->get_chunks;

	if (g->n == 0 || g->n > WIRE_MAX_GET_CHUNKS || !g->hashes)
		wr_fail(w, -EINVAL);
	wr_u32(w, g->n);
	for (uint32_t i = 0; i < g->n && !w->err; i++)
		wr_put(w, g->hashes[i], CONTENT_HASH_LEN);
}

static void wr_chunk(struct wire_wr *w, const struct wire_msg *m)
{
	const struct wire_chunk *c = &m->chunk;

	if (c->len == 0 || c->len > WIRE_MAX_CHUNK || !c->data)
		wr_fail(w, -EINVAL);
	wr_put(w, c->hash, CONTENT_HASH_LEN);
	wr_u32(w, c->len);
	wr_put(w, c->data, c->len);
}

void wire_chunk_head(uint8_t out[WIRE_CHUNK_HEAD],
		     const uint8_t hash[CONTENT_HASH_LEN], uint32_t len)
{
	memcpy(out, hash, CONTENT_HASH_LEN);
	wire_put_be32(out + CONTENT_HASH_LEN, len);
}

static void wr_not_here(struct wire_wr *w, const struct wire_msg *m)
{
	wr_put(w, m->not_here, CONTENT_HASH_LEN);
}

static void wr_token(struct wire_wr *w, const struct wire_msg *m)
{
	wr_u64(w, m->token);
}

static void wr_clock(struct wire_wr *w, const struct wire_msg *m)
{
	wr_u64(w, m->clock.token);
	wr_u64(w, (uint64_t)m->clock.wall_ns);
}

static void wr_error(struct wire_wr *w, const struct wire_msg *m)
{
	if (!wire_text_ok(m->error.text, 0, WIRE_TEXT_MAX, false))
		wr_fail(w, -EINVAL);
	wr_u16(w, m->error.code);
	if (!w->err)
		wr_str(w, m->error.text);
}

/* What rd_file accepts. */
static bool wr_file_ok(const char *volume, const char *path)
{
	return volume && path && path_volume_name_ok(volume) && *path &&
	       path_check_rel(path) == 0;
}

static void wr_changing(struct wire_wr *w, const struct wire_msg *m)
{
	const struct wire_changing *c = &m->changing;

	if (!wr_file_ok(c->volume, c->path))
		wr_fail(w, -EINVAL);
	if (w->err)
		return;
	wr_str(w, c->volume);
	wr_str(w, c->path);
	wr_put(w, c->base, CONTENT_HASH_LEN);
	wr_u64(w, c->size);
}

static void wr_ask_kept(struct wire_wr *w, const struct wire_msg *m)
{
	const struct wire_ask_kept *a = &m->ask_kept;

	if (!wr_file_ok(a->volume, a->path) || a->n == 0 ||
	    a->n > WIRE_MAX_ASK_KEPT || !a->hashes)
		wr_fail(w, -EINVAL);
	if (w->err)
		return;
	wr_u64(w, a->token);
	wr_str(w, a->volume);
	wr_str(w, a->path);
	wr_u32(w, a->n);
	wr_put(w, a->hashes, (size_t)a->n * CONTENT_HASH_LEN);
}

static void wr_kept(struct wire_wr *w, const struct wire_msg *m)
{
	const struct wire_kept *k = &m->kept;

	if (k->n > WIRE_MAX_ASK_KEPT || (k->n && !k->here))
		wr_fail(w, -EINVAL);
	for (uint32_t i = 0; !w->err && i < k->n; i++)
		if (k->here[i] > 1)
			wr_fail(w, -EINVAL);
	if (w->err)
		return;
	wr_u64(w, k->token);
	wr_u32(w, k->n);
	wr_put(w, k->here, k->n);
}

static void wr_get_delta(struct wire_wr *w, const struct wire_msg *m)
{
	const struct wire_get_delta *g = &m->get_delta;

	if (g->len == 0 || g->len > WIRE_MAX_CHUNK || !g->digests)
		wr_fail(w, -EINVAL);
	if (w->err)
		return;
	wr_put(w, g->hash, CONTENT_HASH_LEN);
	wr_u32(w, g->len);
	wr_put(w, g->digests, (size_t)delta_blocks(g->len) * DELTA_DIGEST);
}

static void wr_delta(struct wire_wr *w, const struct wire_msg *m)
{
	const struct wire_delta *d = &m->delta;

	if (d->len == 0 || d->len > WIRE_MAX_CHUNK || !d->map ||
	    delta_literal_len(d->len, d->map) != (int64_t)d->data_len ||
	    (d->data_len && !d->data))
		wr_fail(w, -EINVAL);
	if (w->err)
		return;
	wr_put(w, d->hash, CONTENT_HASH_LEN);
	wr_u32(w, d->len);
	wr_put(w, d->map, delta_map_len(d->len));
	wr_put(w, d->data, d->data_len);
}

static void wr_key(struct wire_wr *w, const struct wire_msg *m)
{
	const struct wire_key *k = &m->key;

	if (k->len == 0 || k->len > WIRE_CERT_MAX || !k->der)
		wr_fail(w, -EINVAL);
	wr_u16(w, k->len);
	wr_put(w, k->der, k->len);
}

/* One row per type: everything that differs between them. */
struct wire_type_ops {
	const char *name;
	uint32_t max_payload;
	void (*decode)(struct wire_rd *r, struct wire_msg *m);
	void (*encode)(struct wire_wr *w, const struct wire_msg *m);
};

static const struct wire_type_ops wire_types[] = {
	[WIRE_HELLO] = { "HELLO", WIRE_MAX_PAYLOAD, rd_hello, wr_hello },
	[WIRE_VECTOR] = { "VECTOR", WIRE_MAX_PAYLOAD, rd_vector_msg,
			  wr_vector_msg },
	[WIRE_ENTRIES] = { "ENTRIES", WIRE_MAX_PAYLOAD, rd_entries,
			   wr_entries },
	[WIRE_GET_CHUNKLIST] = { "GET_CHUNKLIST", 2 * CONTENT_HASH_LEN + 5,
				 rd_get_chunklist, wr_get_chunklist },
	[WIRE_CHUNKLIST] = { "CHUNKLIST", WIRE_MAX_PAYLOAD, rd_chunklist,
			     wr_chunklist },
	[WIRE_GET_CHUNKS] = { "GET_CHUNKS",
			      4 + WIRE_MAX_GET_CHUNKS * CONTENT_HASH_LEN,
			      rd_get_chunks, wr_get_chunks },
	[WIRE_CHUNK] = { "CHUNK", CONTENT_HASH_LEN + 4 + WIRE_MAX_CHUNK,
			 rd_chunk, wr_chunk },
	[WIRE_NOT_HERE] = { "NOT_HERE", CONTENT_HASH_LEN, rd_not_here,
			    wr_not_here },
	[WIRE_PING] = { "PING", 8, rd_token, wr_token },
	[WIRE_PONG] = { "PONG", 8, rd_token, wr_token },
	[WIRE_ERROR] = { "ERROR", 2 + 2 + WIRE_TEXT_MAX, rd_error, wr_error },
	[WIRE_CHANGING] = { "CHANGING", 2 + VOLUME_NAME_MAX + 2 +
			    PATH_REL_MAX + CONTENT_HASH_LEN + 8,
			    rd_changing, wr_changing },
	[WIRE_GET_DELTA] = { "GET_DELTA", CONTENT_HASH_LEN + 4 +
			     DELTA_BLOCKS_MAX * DELTA_DIGEST,
			     rd_get_delta, wr_get_delta },
	[WIRE_DELTA] = { "DELTA", CONTENT_HASH_LEN + 4 + DELTA_MAP_MAX +
			 WIRE_MAX_CHUNK, rd_delta, wr_delta },
	[WIRE_STATE_BEGIN] = { "STATE_BEGIN", WIRE_MAX_PAYLOAD, rd_vector_msg,
			       wr_vector_msg },
	[WIRE_STATE] = { "STATE", WIRE_MAX_PAYLOAD, rd_entries, wr_entries },
	[WIRE_STATE_END] = { "STATE_END", 8, rd_token, wr_token },
	[WIRE_ACK] = { "ACK", WIRE_MAX_PAYLOAD, rd_vector_msg, wr_vector_msg },
	[WIRE_CLOCK] = { "CLOCK", 16, rd_clock, wr_clock },
	[WIRE_CHAIN_ENTRIES] = { "CHAIN_ENTRIES", WIRE_MAX_PAYLOAD,
				 rd_chain_entries, wr_chain_entries },
	[WIRE_CHAIN_STATE] = { "CHAIN_STATE", WIRE_MAX_PAYLOAD,
			       rd_chain_entries, wr_chain_entries },
	[WIRE_KEY] = { "KEY", 2 + WIRE_CERT_MAX, rd_key, wr_key },
	[WIRE_SEALS] = { "SEALS", WIRE_MAX_PAYLOAD, rd_seals, wr_seals },
	[WIRE_ASK_KEPT] = { "ASK_KEPT", 8 + 2 + VOLUME_NAME_MAX + 2 +
			    PATH_REL_MAX + 4 +
			    WIRE_MAX_ASK_KEPT * CONTENT_HASH_LEN,
			    rd_ask_kept, wr_ask_kept },
	[WIRE_KEPT] = { "KEPT", 8 + 4 + WIRE_MAX_ASK_KEPT, rd_kept, wr_kept },
};

_Static_assert(WIRE_MAX_CHUNK == DELTA_LEN_MAX,
	       "a delta can be asked for any chunk the wire carries");

static const struct wire_type_ops *wire_type_ops(enum wire_type t)
{
	if ((unsigned)t < WIRE_HELLO || (unsigned)t > WIRE_TYPE_LAST)
		return NULL;
	return &wire_types[t];
}

const char *wire_type_name(enum wire_type t)
{
	const struct wire_type_ops *ops = wire_type_ops(t);

	return ops ? ops->name : "unknown";
}

uint32_t wire_max_payload(enum wire_type t)
{
	const struct wire_type_ops *ops = wire_type_ops(t);

	return ops ? ops->max_payload : 0;
}

int wire_header_parse(const uint8_t hdr[WIRE_HEADER_LEN],
		      enum wire_type *type, uint32_t *len)
{
	uint32_t n = wire_get_be32(hdr + 8);
	uint32_t max = wire_max_payload((enum wire_type)hdr[5]);

	if (memcmp(hdr, WIRE_MAGIC, 4) != 0)
		return -EPROTO;
	if (hdr[4] != WIRE_VERSION)
		return -EPROTONOSUPPORT;
	if (wire_get_be16(hdr + 6) != 0 || max == 0)
		return -EPROTO;
	if (n > max)
		return -EMSGSIZE;
	*type = (enum wire_type)hdr[5];
	*len = n;
	return 0;
}

int wire_decode(enum wire_type type, const uint8_t *payload, size_t len,
		struct wire_msg *out)
{
	const struct wire_type_ops *ops = wire_type_ops(type);
	struct wire_rd r = { payload, len, 0, out };

	memset(out, 0, sizeof(*out));
	out->type = type;
	if (!ops)
		return -EPROTO;
	if (len > ops->max_payload)
		return -EMSGSIZE;
	ops->decode(&r, out);
	if (!r.err && r.left != 0)
		r.err = -EPROTO;      /* trailing bytes */
	if (r.err)
		wire_msg_release(out);
	return r.err;
}

int wire_encode(struct wire_buf *b, const struct wire_msg *m)
{
	const struct wire_type_ops *ops = wire_type_ops(m->type);
	struct wire_wr w;

	if (!ops)
		return -EINVAL;
	wr_begin(&w, b, m->type, ops->max_payload);
	ops->encode(&w, m);
	return wr_end(&w);
}
