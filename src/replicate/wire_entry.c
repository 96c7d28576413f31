/*
 * The entry codec: ENTRIES and STATE, their chained forms CHAIN_ENTRIES
 * and CHAIN_STATE, the incremental builder of all four, and SEALS, which
 * goes with CHAIN_STATE (wire.h documents the formats).  The cursors and field helpers are wire.c's,
 * shared through wire_int.h.
 *
 * A chained entry is a plain entry followed by its chain fields, so both
 * forms share one entry reader and writer.  Which form is written follows
 * from the frame, never from the entry: a chained entry put in a plain
 * frame loses its chain fields (for a peer without CHAIN), and a decoded
 * chained message encodes back to the same bytes.
 */
#include "wire_int.h"

#include "err.h"
#include "path.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

/* Smallest encoding of an entry, for checking counts against the bytes
 * left: the shortest origin, a volume name of two characters, the root
 * path, no hash, target or base.  A chained one adds prev and seg_end. */
#define WIRE_ENTRY_MIN (WIRE_REF_MIN + 8 + 8 + (2 + 2) + 2 + 1 + 4 + 4 + \
			4 + 8 + 8 + 1 + 1 + 2)
#define WIRE_CHAIN_ENTRY_MIN (WIRE_ENTRY_MIN + CONTENT_HASH_LEN + 1)
#define WIRE_PROVEN_ENTRY_MIN (WIRE_CHAIN_ENTRY_MIN + 2)
#define WIRE_SEAL_MIN (WIRE_REF_MIN + 2 * CONTENT_HASH_LEN + 2 + 1)

/* A run of proven heads is at most a segment, and never split. */
_Static_assert(4 + JOURNAL_SEGMENT_MAX * (WIRE_ENTRY_MAX + WIRE_CHAIN_EXTRA +
					  WIRE_PROOF_EXTRA) <= WIRE_MAX_PAYLOAD,
	       "a whole run of the largest proven entries fits in a frame");

/* The op/mode/path agreement table in wire.h. */
static bool wire_entry_shape_ok(const struct wire_entry *e)
{
	unsigned type = e->mode & S_IFMT;
	bool root = e->path[0] == '\0';

	if ((e->has_hash && type != S_IFREG) ||
	    (e->has_target && type != S_IFLNK))
		return false;
	switch (e->op) {
	case JOURNAL_PUT:
		return type == S_IFREG && e->has_hash && !root;
	case JOURNAL_MKDIR:
		return type == S_IFDIR && !root;
	case JOURNAL_SYMLINK:
		return type == S_IFLNK && e->has_target && !root;
	case JOURNAL_DELETE:
		return e->mode == 0 && !root;
	case JOURNAL_META:
		if (root)
			return type == S_IFDIR;
		return type == S_IFREG || type == S_IFDIR || type == S_IFLNK;
	case JOURNAL_VOLUME_CREATE:
		return root && (type == S_IFDIR || e->mode == 0);
	case JOURNAL_VOLUME_REMOVE:
		return root && e->mode == 0;
	}
	return false;
}

/* Everything but the refs, which each direction checks as it meets them. */
static int wire_entry_check(const struct wire_entry *e)
{
	if (e->op < JOURNAL_PUT || e->op > JOURNAL_VOLUME_REMOVE ||
	    e->lamport > JOURNAL_LAMPORT_MAX)
		return -EPROTO;
	if (!e->volume || !e->path)
		return -EPROTO;
	if (!path_volume_name_ok(e->volume))
		return KR_EHOSTILE;
	if (path_check_rel(e->path) != 0)
		return KR_EHOSTILE;
	if (e->has_target && !wire_text_ok(e->target, 1, WIRE_TARGET_MAX,
					   true))
		return -EPROTO;
	if (e->n_bases > WIRE_MAX_BASES || !wire_entry_shape_ok(e))
		return -EPROTO;
	return 0;
}

static bool wire_hash_zero(const uint8_t h[CONTENT_HASH_LEN])
{
	static const uint8_t zero[CONTENT_HASH_LEN];

	return memcmp(h, zero, CONTENT_HASH_LEN) == 0;
}

/* The end of a segment: a signature goes with the key that made it, and
 * an unsigned segment names no key, so a receiver never has to guess
 * which of the two a half-filled end meant. */
static int wire_seg_end_check(const struct wire_entry *e)
{
	if (e->sig_len > WIRE_SIG_MAX)
		return -EPROTO;
	if ((e->sig_len > 0) == wire_hash_zero(e->key_id))
		return -EPROTO;
	return 0;
}

/* Reading. */

static void rd_entry(struct wire_rd *r, struct wire_entry *e)
{
	uint8_t op;

	rd_ref(r, &e->ref, true);
	e->lamport = rd_u64(r);
	e->wall_ns = (int64_t)rd_u64(r);
	e->volume = rd_str(r, VOLUME_NAME_MAX, KR_EHOSTILE);
	e->path = rd_str(r, PATH_REL_MAX, KR_EHOSTILE);
	op = rd_u8(r);
	/* Range-checked before it becomes an enum. */
	if (op < JOURNAL_PUT || op > JOURNAL_VOLUME_REMOVE)
		rd_fail(r, -EPROTO);
	e->op = r->err ? JOURNAL_PUT : (enum journal_op)op;
	e->mode = rd_u32(r);
	e->uid = rd_u32(r);
	e->gid = rd_u32(r);
	e->size = rd_u64(r);
	e->mtime_ns = (int64_t)rd_u64(r);
	e->has_hash = rd_flag(r);
	if (e->has_hash)
		rd_hash(r, e->hash);
	e->has_target = rd_flag(r);
	if (e->has_target)
		e->target = rd_str(r, WIRE_TARGET_MAX, -EPROTO);
	e->n_bases = (uint16_t)rd_count(r, rd_u16(r), WIRE_REF_MIN,
					WIRE_MAX_BASES);
	e->bases = rd_refs(r, e->n_bases, true);
	if (!r->err)
		rd_fail(r, wire_entry_check(e));
}

/* The digests of a proven entry, copied into the arena. */
static void rd_after(struct wire_rd *r, struct wire_entry *e)
{
	const uint8_t *p;
	uint8_t *copy;

	e->n_after = (uint16_t)rd_count(r, rd_u16(r), CONTENT_HASH_LEN,
					WIRE_AFTER_MAX);
	p = rd_take(r, (size_t)e->n_after * CONTENT_HASH_LEN);
	if (!p || e->n_after == 0)
		return;
	copy = rd_alloc(r, (size_t)e->n_after * CONTENT_HASH_LEN);
	if (copy) {
		memcpy(copy, p, (size_t)e->n_after * CONTENT_HASH_LEN);
		e->after = (const uint8_t (*)[CONTENT_HASH_LEN])copy;
	}
}

/* The chain fields after a chained entry (with PROVEN, a proven one).
 * The signature is copied into the arena, so a decoded entry is whole
 * without the payload. */
static void rd_chain(struct wire_rd *r, struct wire_entry *e, bool proven)
{
	const uint8_t *sig;
	uint8_t *copy;

	e->chained = true;
	rd_hash(r, e->prev);
	if (proven)
		rd_after(r, e);
	e->seg_end = rd_flag(r);
	if (!e->seg_end)
		return;
	rd_hash(r, e->key_id);
	e->sig_len = rd_u16(r);
	if (!r->err)
		rd_fail(r, wire_seg_end_check(e));
	sig = rd_take(r, e->sig_len);
	if (!sig || e->sig_len == 0)
		return;
	copy = rd_alloc(r, e->sig_len);
	if (copy)
		e->sig = memcpy(copy, sig, e->sig_len);
}

static void rd_entry_list(struct wire_rd *r, struct wire_msg *m,
			  bool chained)
{
	bool proven = m->type == WIRE_CHAIN_STATE;
	size_t min = proven ? WIRE_PROVEN_ENTRY_MIN :
		     chained ? WIRE_CHAIN_ENTRY_MIN : WIRE_ENTRY_MIN;
	uint32_t n = rd_count(r, rd_u32(r), min, UINT32_MAX);
	struct wire_entry *v = n ? rd_alloc(r, (size_t)n * sizeof(*v)) : NULL;

	for (uint32_t i = 0; v && i < n && !r->err; i++) {
		rd_entry(r, &v[i]);
		if (chained)
			rd_chain(r, &v[i], proven);
	}
	m->entries.n = n;
	m->entries.v = v;
}

void rd_entries(struct wire_rd *r, struct wire_msg *m)
{
	rd_entry_list(r, m, false);
}

void rd_chain_entries(struct wire_rd *r, struct wire_msg *m)
{
	rd_entry_list(r, m, true);
}

/* Writing. */

static void wr_entry(struct wire_wr *w, const struct wire_entry *e)
{
	int err = wire_entry_check(e);

	if (err)
		wr_fail(w, err);
	if (e->n_bases && !e->bases)
		wr_fail(w, -EINVAL);
	wr_ref(w, &e->ref, true);
	wr_u64(w, e->lamport);
	wr_u64(w, (uint64_t)e->wall_ns);
	if (w->err)
		return;
	wr_str(w, e->volume);
	wr_str(w, e->path);
	wr_u8(w, (uint8_t)e->op);
	wr_u32(w, e->mode);
	wr_u32(w, e->uid);
	wr_u32(w, e->gid);
	wr_u64(w, e->size);
	wr_u64(w, (uint64_t)e->mtime_ns);
	wr_u8(w, e->has_hash);
	if (e->has_hash)
		wr_put(w, e->hash, CONTENT_HASH_LEN);
	wr_u8(w, e->has_target);
	if (e->has_target)
		wr_str(w, e->target);
	wr_u16(w, e->n_bases);
	for (uint16_t i = 0; i < e->n_bases && !w->err; i++)
		wr_ref(w, &e->bases[i], true);
}

/* The chain fields; key_id, sig_len and sig only matter with seg_end,
 * the digests after it only in a proven entry. */
static void wr_chain(struct wire_wr *w, const struct wire_entry *e,
		     bool proven)
{
	if (e->seg_end && (wire_seg_end_check(e) != 0 ||
			   (e->sig_len && !e->sig)))
		wr_fail(w, -EINVAL);
	if (proven && (e->n_after > WIRE_AFTER_MAX ||
		       (e->n_after && !e->after)))
		wr_fail(w, -EINVAL);
	wr_put(w, e->prev, CONTENT_HASH_LEN);
	if (proven) {
		wr_u16(w, e->n_after);
		wr_put(w, e->after, (size_t)e->n_after * CONTENT_HASH_LEN);
	}
	wr_u8(w, e->seg_end);
	if (!e->seg_end)
		return;
	wr_put(w, e->key_id, CONTENT_HASH_LEN);
	wr_u16(w, e->sig_len);
	wr_put(w, e->sig, e->sig_len);
}

static void wr_entry_list(struct wire_wr *w, const struct wire_msg *m,
			  bool chained)
{
	if (m->entries.n && !m->entries.v)
		wr_fail(w, -EINVAL);
	wr_u32(w, m->entries.n);
	for (uint32_t i = 0; i < m->entries.n && !w->err; i++) {
		wr_entry(w, &m->entries.v[i]);
		if (chained)
			wr_chain(w, &m->entries.v[i],
				 m->type == WIRE_CHAIN_STATE);
	}
}

void wr_entries(struct wire_wr *w, const struct wire_msg *m)
{
	wr_entry_list(w, m, false);
}

void wr_chain_entries(struct wire_wr *w, const struct wire_msg *m)
{
	wr_entry_list(w, m, true);
}

/* Incremental ENTRIES. */

static void wire_entries_patch(struct wire_entries *e)
{
	uint8_t *h = e->b->data + e->start;

	wire_put_be32(h + 8, (uint32_t)(e->b->len - e->start -
					WIRE_HEADER_LEN));
	wire_put_be32(h + WIRE_HEADER_LEN, e->n);
}

static int wire_entries_open(struct wire_entries *e, struct wire_buf *b,
			     size_t budget, enum wire_type type)
{
	struct wire_wr w;

	if (budget > WIRE_MAX_PAYLOAD)
		budget = WIRE_MAX_PAYLOAD;
	if (budget < 4)
		budget = 4;   /* room for the count: an empty frame is valid */
	memset(e, 0, sizeof(*e));
	wr_begin(&w, b, type, budget);
	wr_u32(&w, 0);
	if (wr_end(&w) != 0)
		return w.err;
	e->b = b;
	e->start = w.start;
	e->budget = budget;
	e->chained = type == WIRE_CHAIN_ENTRIES || type == WIRE_CHAIN_STATE;
	e->proven = type == WIRE_CHAIN_STATE;
	return 0;
}

int wire_entries_begin(struct wire_entries *e, struct wire_buf *b,
		       size_t budget)
{
	return wire_entries_open(e, b, budget, WIRE_ENTRIES);
}

int wire_state_begin(struct wire_entries *e, struct wire_buf *b,
		     size_t budget)
{
	return wire_entries_open(e, b, budget, WIRE_STATE);
}

int wire_chain_entries_begin(struct wire_entries *e, struct wire_buf *b,
			     size_t budget)
{
	return wire_entries_open(e, b, budget, WIRE_CHAIN_ENTRIES);
}

int wire_chain_state_begin(struct wire_entries *e, struct wire_buf *b,
			   size_t budget)
{
	return wire_entries_open(e, b, budget, WIRE_CHAIN_STATE);
}

int wire_entries_add(struct wire_entries *e, const struct wire_entry *ent)
{
	struct wire_wr w;
	size_t before;

	if (!e->b)
		return -EINVAL;
	before = e->b->len;
	w = (struct wire_wr){ e->b, e->start, e->budget, 0 };
	wr_entry(&w, ent);
	if (e->chained)
		wr_chain(&w, ent, e->proven);
	if (w.err) {
		e->b->len = before;
		return w.err;
	}
	e->n++;
	wire_entries_patch(e);
	return 0;
}

uint32_t wire_entries_end(struct wire_entries *e)
{
	uint32_t n = e->n;

	memset(e, 0, sizeof(*e));
	return n;
}

/* ---- to and from the journal's form ---------------------------------- */

void wire_entry_from_change(const struct journal_change *c,
			    struct wire_entry *w)
{
	memset(w, 0, sizeof(*w));
	w->ref = c->ref;
	w->lamport = c->lamport;
	w->wall_ns = c->wall_ns;
	w->volume = c->volume;
	w->path = c->path;
	w->op = c->op;
	w->mode = c->mode;
	w->uid = c->uid;
	w->gid = c->gid;
	w->size = c->size;
	w->mtime_ns = c->mtime_ns;
	w->has_hash = c->has_hash;
	memcpy(w->hash, c->hash, CONTENT_HASH_LEN);
	w->has_target = c->target != NULL;
	w->target = c->target;
	w->n_bases = (uint16_t)(c->n_bases > WIRE_MAX_BASES ? WIRE_MAX_BASES :
				c->n_bases);
	w->bases = c->bases;
	w->chained = c->chain.chained;
	memcpy(w->prev, c->chain.prev, CONTENT_HASH_LEN);
	w->seg_end = c->chain.seg_end;
	memcpy(w->key_id, c->chain.key_id, CONTENT_HASH_LEN);
	w->sig = c->chain.sig;
	w->sig_len = (uint16_t)c->chain.sig_len;
	w->after = c->chain.after;
	w->n_after = (uint16_t)c->chain.n_after;
}

void wire_entry_to_change(const struct wire_entry *w,
			  struct journal_change *c)
{
	memset(c, 0, sizeof(*c));
	c->ref = w->ref;
	c->lamport = w->lamport;
	c->wall_ns = w->wall_ns;
	c->volume = w->volume;
	c->path = w->path;
	c->op = w->op;
	c->mode = w->mode;
	c->uid = w->uid;
	c->gid = w->gid;
	c->size = w->size;
	c->mtime_ns = w->mtime_ns;
	c->has_hash = w->has_hash;
	memcpy(c->hash, w->hash, CONTENT_HASH_LEN);
	c->target = w->has_target ? w->target : NULL;
	c->bases = w->bases;
	c->n_bases = w->n_bases;
	c->chain.chained = w->chained;
	memcpy(c->chain.prev, w->prev, CONTENT_HASH_LEN);
	c->chain.seg_end = w->seg_end;
	memcpy(c->chain.key_id, w->key_id, CONTENT_HASH_LEN);
	c->chain.sig = w->sig;
	c->chain.sig_len = w->sig_len;
	c->chain.after = w->after;
	c->chain.n_after = w->n_after;
}

/* ---- SEALS ------------------------------------------------------------- */

void rd_seals(struct wire_rd *r, struct wire_msg *m)
{
	uint32_t n = rd_count(r, rd_u32(r), WIRE_SEAL_MIN, UINT32_MAX);
	struct wire_seal *v = n ? rd_alloc(r, (size_t)n * sizeof(*v)) : NULL;

	for (uint32_t i = 0; v && i < n && !r->err; i++) {
		rd_ref(r, &v[i].ref, true);
		rd_hash(r, v[i].chain);
		rd_hash(r, v[i].key_id);
		v[i].sig_len = rd_u16(r);
		if (!r->err && (v[i].sig_len == 0 ||
				v[i].sig_len > WIRE_SIG_MAX))
			rd_fail(r, -EPROTO);
		v[i].sig = rd_take(r, v[i].sig_len);
	}
	m->seals.n = n;
	m->seals.v = v;
}

void wr_seals(struct wire_wr *w, const struct wire_msg *m)
{
	if (m->seals.n && !m->seals.v)
		wr_fail(w, -EINVAL);
	wr_u32(w, m->seals.n);
	for (uint32_t i = 0; i < m->seals.n && !w->err; i++) {
		const struct wire_seal *e = &m->seals.v[i];

		if (e->sig_len == 0 || e->sig_len > WIRE_SIG_MAX || !e->sig)
			wr_fail(w, -EINVAL);
		wr_ref(w, &e->ref, true);
		wr_put(w, e->chain, CONTENT_HASH_LEN);
		wr_put(w, e->key_id, CONTENT_HASH_LEN);
		wr_u16(w, e->sig_len);
		wr_put(w, e->sig, e->sig_len);
	}
}
