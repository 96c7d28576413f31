/*
 * The signed hash chain of each origin's changes.
 *
 * Without it a peer could say anything about any origin: a member that
 * sent a DELETE labelled as another node's next seq had it applied, and
 * the real change with that seq was later dropped as held.  Now:
 *
 *   digest    SHA-256 of a change's canonical encoding (every field of
 *             the version, bases sorted by origin and seq; below)
 *   chain     SHA-256(prev || digest); prev is the chain hash of the
 *             origin's previous change, or for its first one an anchor,
 *             SHA-256("krakenfs-chain-v1" || origin || seq before it)
 *   segment   a run of an origin's changes ending where the origin
 *             signed its chain hash: when its own changes commit, at
 *             most once per sign interval (journal_set_sign_interval) and
 *             at least every JOURNAL_SEGMENT_MAX of them
 *   signature by the origin node's key (its TLS identity, certified by
 *             the cluster CA) over journal_sig_message(): origin, seq and
 *             chain hash, so it covers every change before it
 *
 * A receiver checks each entry's prev against the chain hash it holds,
 * and stores entries only once a signature after them verified, whoever
 * relayed them (src/replicate/chaincheck.c).  Signatures are amortised
 * on both sides: an origin signs a burst once per interval, a receiver
 * checks the last signature of each run it gets.
 *
 * The node's own changes are chained when their batch commits
 * (journal_chain_own, called by journal_flush): their bases are linked by
 * SQL, so the fields are read back once, digested, and stored.
 *
 * Changes recorded before schema 12, or learned from a peer without a
 * chain (an older agent, a state exchange), have none; the first chained
 * change after them is taken on its signature (journal_chain_expect says
 * -ENOENT), and verify reports them as unchained.
 *
 * Compaction keeps the digest of a removed change that a held change of
 * the same segment needs to reach its signature (chain_skips); verifying
 * offline is chain_verify.c.
 */
#include "journal_int.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define CHAIN_ENTRY_TAG "krakenfs-entry-v1"
#define CHAIN_ANCHOR_TAG "krakenfs-chain-v1"
#define CHAIN_SIG_TAG "krakenfs-sig-v1"     /* 16 bytes with its NUL */

static EVP_MD *chain_sha256;
static pthread_once_t chain_sha256_once = PTHREAD_ONCE_INIT;

static void chain_sha256_fetch(void)
{
	chain_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* SHA-256 fetched once: EVP_sha256() makes every digest look the
 * algorithm up again, which cost more than hashing an entry (about a
 * third of the receiver's crypto time for a burst of small files). */
static const EVP_MD *chain_md(void)
{
	pthread_once(&chain_sha256_once, chain_sha256_fetch);
	return chain_sha256 ? chain_sha256 : EVP_sha256();
}

struct dg {
	EVP_MD_CTX *ctx;
	bool ok;
};

static void dg_put(struct dg *d, const void *p, size_t n)
{
	if (d->ok && n && !EVP_DigestUpdate(d->ctx, p, n))
		d->ok = false;
}

static void dg_u64(struct dg *d, uint64_t v)
{
	uint8_t b[8];

	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
	dg_put(d, b, sizeof(b));
}

static void dg_str(struct dg *d, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	dg_u64(d, n);
	dg_put(d, s, n);
}

static int ref_cmp(const void *a, const void *b)
{
	const struct journal_ref *x = a, *y = b;
	int c = strcmp(x->origin, y->origin);

	if (c)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The bases in an order every node agrees on, whatever order its SQL
 * read them in. */
static void dg_bases(struct dg *d, const struct journal_change *c)
{
	size_t n = c->n_bases;
	struct journal_ref *v = n ? malloc(n * sizeof(*v)) : NULL;

	if (n && !v) {
		d->ok = false;
		return;
	}
	if (n) {
		memcpy(v, c->bases, n * sizeof(*v));
		qsort(v, n, sizeof(*v), ref_cmp);
	}
	dg_u64(d, n);
	for (size_t i = 0; i < n; i++) {
		dg_str(d, v[i].origin);
		dg_u64(d, v[i].seq);
	}
	free(v);
}

int journal_entry_digest(const struct journal_change *c,
			 uint8_t out[CONTENT_HASH_LEN])
{
	struct dg d = { EVP_MD_CTX_new(), true };

	if (!d.ctx || !EVP_DigestInit_ex(d.ctx, chain_md(), NULL))
		d.ok = false;
	dg_put(&d, CHAIN_ENTRY_TAG, sizeof(CHAIN_ENTRY_TAG));
	dg_str(&d, c->ref.origin);
	dg_u64(&d, c->ref.seq);
	dg_u64(&d, c->lamport);
	dg_u64(&d, (uint64_t)c->wall_ns);
	dg_str(&d, c->volume);
	dg_str(&d, c->path);
	dg_u64(&d, (uint64_t)c->op);
	dg_u64(&d, c->mode);
	dg_u64(&d, c->uid);
	dg_u64(&d, c->gid);
	dg_u64(&d, c->size);
	dg_u64(&d, (uint64_t)c->mtime_ns);
	dg_u64(&d, c->has_hash);
	if (c->has_hash)
		dg_put(&d, c->hash, CONTENT_HASH_LEN);
	dg_u64(&d, c->target != NULL);
	if (c->target)
		dg_str(&d, c->target);
	dg_bases(&d, c);
	if (d.ok && !EVP_DigestFinal_ex(d.ctx, out, NULL))
		d.ok = false;
	EVP_MD_CTX_free(d.ctx);
	return d.ok ? 0 : -ENOMEM;
}

void journal_chain_link(const uint8_t prev[CONTENT_HASH_LEN],
			const uint8_t digest[CONTENT_HASH_LEN],
			uint8_t out[CONTENT_HASH_LEN])
{
	uint8_t in[2 * CONTENT_HASH_LEN];

	memcpy(in, prev, CONTENT_HASH_LEN);
	memcpy(in + CONTENT_HASH_LEN, digest, CONTENT_HASH_LEN);
	/* One-shot SHA-256 of 64 bytes fails only without memory, which
	 * it does not allocate. */
	EVP_Digest(in, sizeof(in), out, NULL, chain_md(), NULL);
}

void journal_chain_anchor(const char *origin, uint64_t seq,
			  uint8_t out[CONTENT_HASH_LEN])
{
	uint8_t in[sizeof(CHAIN_ANCHOR_TAG) + JOURNAL_ORIGIN_MAX + 8];
	size_t n = strnlen(origin, JOURNAL_ORIGIN_MAX - 1), at;

	memcpy(in, CHAIN_ANCHOR_TAG, sizeof(CHAIN_ANCHOR_TAG));
	at = sizeof(CHAIN_ANCHOR_TAG);
	memcpy(in + at, origin, n + 1);
	at += n + 1;
	for (int i = 7; i >= 0; i--, seq >>= 8)
		in[at + (size_t)i] = (uint8_t)seq;
	EVP_Digest(in, at + 8, out, NULL, chain_md(), NULL);
}

size_t journal_sig_message(const char *origin, uint64_t seq,
			   const uint8_t chain[CONTENT_HASH_LEN],
			   uint8_t out[JOURNAL_SIG_MSG_MAX])
{
	size_t n = strnlen(origin, JOURNAL_ORIGIN_MAX - 1), at;

	memcpy(out, CHAIN_SIG_TAG, sizeof(CHAIN_SIG_TAG));
	at = sizeof(CHAIN_SIG_TAG);
	out[at++] = (uint8_t)(n >> 8);
	out[at++] = (uint8_t)n;
	memcpy(out + at, origin, n);
	at += n;
	for (int i = 7; i >= 0; i--, seq >>= 8)
		out[at + (size_t)i] = (uint8_t)seq;
	at += 8;
	memcpy(out + at, chain, CONTENT_HASH_LEN);
	return at + CONTENT_HASH_LEN;
}

/* ---- what the next change must name ---------------------------------- */

/* ORIGIN's row: its id (0 if none), floor, chain head and whether known. */
struct head_row {
	int64_t id;
	uint64_t floor, chain_seq, have;
	bool chain_known;
	uint8_t chain[CONTENT_HASH_LEN];
};

static int head_row_load(struct journal *j, int64_t id, struct head_row *h)
{
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j,
		"SELECT o.floor, o.chain_seq, o.chain, (SELECT max(seq) FROM "
		"changes WHERE origin = o.id) FROM origins o WHERE o.id = ?1",
		&s));

	memset(h, 0, sizeof(*h));
	h->id = id;
	if (err)
		return err;
	sqlite3_bind_int64(s, 1, id);
	rc = journal_row(s);
	if (rc > 0) {
		uint64_t held = (uint64_t)sqlite3_column_int64(s, 3);

		h->floor = (uint64_t)sqlite3_column_int64(s, 0);
		h->chain_seq = (uint64_t)sqlite3_column_int64(s, 1);
		h->chain_known = sqlite3_column_bytes(s, 2) == CONTENT_HASH_LEN;
		if (h->chain_known)
			memcpy(h->chain, sqlite3_column_blob(s, 2),
			       CONTENT_HASH_LEN);
		h->have = held > h->floor ? held : h->floor;
	} else if (rc < 0) {
		err = rc;
	}
	journal_stmt_done(s);
	return err;
}

/* The prev the change after H's newest must carry; -ENOENT: unknown. */
static int head_expect(const char *origin, const struct head_row *h,
		       uint8_t out[CONTENT_HASH_LEN])
{
	if (h->have == 0) {
		journal_chain_anchor(origin, 0, out);
		return 0;
	}
	if (!h->chain_known || h->chain_seq != h->have)
		return -ENOENT;
	memcpy(out, h->chain, CONTENT_HASH_LEN);
	return 0;
}

int journal_chain_expect(struct journal *j, const char *origin,
			 uint8_t out[CONTENT_HASH_LEN])
{
	struct head_row h = { 0 };
	int64_t id = 0;
	int err = journal_origin_id(j, origin, false, &id);

	if (!err && id)
		err = head_row_load(j, id, &h);
	return err ? err : head_expect(origin, &h, out);
}

/* ---- storing ----------------------------------------------------------- */

static int chain_set_head(struct journal *j, int64_t origin, uint64_t seq,
			  const uint8_t *chain)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"UPDATE origins SET chain = ?2, chain_seq = ?3 WHERE id = ?1",
		&s));

	if (err)
		return err;
	sqlite3_bind_int64(s, 1, origin);
	if (chain)
		sqlite3_bind_blob(s, 2, chain, CONTENT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)seq);
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

static int chain_set_row(struct journal *j, int64_t id, const uint8_t *prev,
			 const uint8_t *digest)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"UPDATE changes SET prev = ?2, digest = ?3 WHERE id = ?1", &s));

	if (err)
		return err;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_blob(s, 2, prev, CONTENT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(s, 3, digest, CONTENT_HASH_LEN, SQLITE_STATIC);
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

int journal_chain_store(struct journal *j, int64_t id,
			const uint8_t prev[CONTENT_HASH_LEN],
			const uint8_t digest[CONTENT_HASH_LEN])
{
	return chain_set_row(j, id, prev, digest);
}

static bool zero_key(const uint8_t *k)
{
	static const uint8_t zero[CONTENT_HASH_LEN];

	return memcmp(k, zero, CONTENT_HASH_LEN) == 0;
}

static int chain_put_sig(struct journal *j, int64_t origin, uint64_t seq,
			 const uint8_t *chain, const uint8_t *key,
			 const uint8_t *sig, size_t sig_len)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"INSERT OR REPLACE INTO signatures (origin, seq, chain, key, "
		"sig) VALUES (?1, ?2, ?3, ?4, ?5)", &s));

	if (err)
		return err;
	sqlite3_bind_int64(s, 1, origin);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)seq);
	sqlite3_bind_blob(s, 3, chain, CONTENT_HASH_LEN, SQLITE_STATIC);
	if (key && sig_len && !zero_key(key)) {
		sqlite3_bind_blob(s, 4, key, CONTENT_HASH_LEN, SQLITE_STATIC);
		sqlite3_bind_blob(s, 5, sig, (int)sig_len, SQLITE_STATIC);
	}
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

int journal_chain_remote(struct journal *j, int64_t origin, int64_t id,
			 const struct journal_change *c)
{
	const struct journal_chain *ch = &c->chain;
	uint8_t digest[CONTENT_HASH_LEN], link[CONTENT_HASH_LEN];
	struct head_row h;
	int err;

	if (!ch->chained) {
		j->remote.chain_known = false;
		return chain_set_head(j, origin, c->ref.seq, NULL);
	}
	err = journal_entry_digest(c, digest);
	if (err)
		return err;
	/* The rest of a frame from one origin is checked against the
	 * entry before it, without reading the origin's row again. */
	if (j->remote.valid && j->remote.have == c->ref.seq - 1 &&
	    strcmp(j->remote.origin, c->ref.origin) == 0) {
		h.chain_known = j->remote.chain_known;
		memcpy(h.chain, j->remote.chain, CONTENT_HASH_LEN);
		h.chain_seq = h.have = j->remote.have;
	} else {
		err = head_row_load(j, origin, &h);
		/* H already counts C: what came before is one seq back. */
		h.have = c->ref.seq - 1;
	}
	if (err)
		return err;
	if (head_expect(c->ref.origin, &h, link) == 0 &&
	    memcmp(link, ch->prev, CONTENT_HASH_LEN) != 0)
		return KR_EHOSTILE;
	journal_chain_link(ch->prev, digest, link);
	/* Read by the next entry once journal_add_remote remembers C. */
	j->remote.chain_known = true;
	memcpy(j->remote.chain, link, CONTENT_HASH_LEN);
	err = chain_set_row(j, id, ch->prev, digest);
	if (!err)
		err = chain_set_head(j, origin, c->ref.seq, link);
	if (!err && ch->seg_end)
		err = chain_put_sig(j, origin, c->ref.seq, link, ch->key_id,
				    ch->sig, ch->sig_len);
	return err;
}

/* ---- this node's own changes ------------------------------------------- */

struct own_row {
	int64_t id;
	uint64_t seq;
	uint8_t digest[CONTENT_HASH_LEN];
};

struct own_rows {
	struct own_row *v;
	size_t n, cap;
};

static int own_grow(struct own_rows *r)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct own_row *v = realloc(r->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		r->v = v;
		r->cap = cap;
	}
	return 0;
}

static int own_collect(void *arg, const struct journal_change *c)
{
	struct own_rows *r = arg;
	int err = own_grow(r);

	if (err)
		return err;
	r->v[r->n].id = c->id;
	r->v[r->n].seq = c->ref.seq;
	return journal_entry_digest(c, r->v[r->n++].digest);
}

static int own_sign(struct journal *j, uint64_t seq, const uint8_t *chain)
{
	uint8_t msg[JOURNAL_SIG_MSG_MAX], sig[JOURNAL_SIG_MAX];
	size_t len, sig_len = 0;
	int err;

	if (!j->signer.fn) {
		err = chain_put_sig(j, j->origin_id, seq, chain, NULL, NULL, 0);
	} else {
		len = journal_sig_message(j->origin, seq, chain, msg);
		err = j->signer.fn(j->signer.arg, msg, len, sig, &sig_len);
		if (!err)
			err = chain_put_sig(j, j->origin_id, seq, chain,
					    j->signer.key_id, sig, sig_len);
	}
	if (!err && seq > j->signed_seq)
		j->signed_seq = seq;
	return err;
}

/* Whether the end of a batch is signed now: once per sign interval, so
 * a burst of commits costs every receiver a few signature checks, not
 * one per commit (journal_chain_sign_due signs the rest in time). */
static bool own_sign_now(struct journal *j)
{
	int64_t now = loop_now_ns();

	if (j->sign_interval_ns > 0 &&
	    now - j->signed_at_ns < j->sign_interval_ns)
		return false;
	j->signed_at_ns = now;
	return true;
}

/* Chains R's rows onto PREV, signing every segment's end. */
static int own_link(struct journal *j, const struct own_rows *r,
		    uint64_t after, uint8_t prev[CONTENT_HASH_LEN])
{
	uint8_t link[CONTENT_HASH_LEN];
	int err = 0;

	for (size_t i = 0; i < r->n && !err; i++) {
		if (r->v[i].seq != after + 1 + i)
			return KR_ECORRUPT;   /* own seqs are gapless */
		err = chain_set_row(j, r->v[i].id, prev, r->v[i].digest);
		journal_chain_link(prev, r->v[i].digest, link);
		memcpy(prev, link, CONTENT_HASH_LEN);
		if (!err && (r->v[i].seq - j->signed_seq >= JOURNAL_SEGMENT_MAX ||
			     (i + 1 == r->n && own_sign_now(j))))
			err = own_sign(j, r->v[i].seq, link);
	}
	if (!err && r->n)
		err = chain_set_head(j, j->origin_id, after + r->n, prev);
	return err;
}

/* Own segments that ended unsigned (recorded before the signer was
 * set, or while the cluster ran without TLS) are signed now: peers that
 * check signatures take them only so. */
static int own_resign(struct journal *j)
{
	sqlite3_stmt *s = NULL;
	struct own_rows ends = { 0 };
	int rc = 0, err = journal_prepare(j, "SELECT seq, chain FROM "
		"signatures WHERE origin = ?1 AND sig IS NULL", &s);

	if (!err)
		sqlite3_bind_int64(s, 1, j->origin_id);
	while (!err && (rc = journal_row(s)) > 0) {
		err = own_grow(&ends);
		if (err || sqlite3_column_bytes(s, 1) != CONTENT_HASH_LEN)
			continue;
		ends.v[ends.n].seq = (uint64_t)sqlite3_column_int64(s, 0);
		memcpy(ends.v[ends.n++].digest, sqlite3_column_blob(s, 1),
		       CONTENT_HASH_LEN);
	}
	if (!err && rc < 0)
		err = rc;     /* not every segment found: none re-signed */
	sqlite3_finalize(s);
	if (!err && ends.n)
		err = journal_begin(j);
	for (size_t i = 0; !err && i < ends.n; i++)
		err = own_sign(j, ends.v[i].seq, ends.v[i].digest);
	free(ends.v);
	return err;
}

int journal_set_signer(struct journal *j,
		       const uint8_t key_id[CONTENT_HASH_LEN],
		       journal_sign_fn fn, void *arg)
{
	memcpy(j->signer.key_id, key_id, CONTENT_HASH_LEN);
	j->signer.fn = fn;
	j->signer.arg = arg;
	return j->readonly ? 0 : own_resign(j);
}

int journal_chain_own(struct journal *j)
{
	struct own_rows rows = { 0 };
	uint8_t prev[CONTENT_HASH_LEN];
	struct head_row h;
	uint64_t after;
	int err;

	if (j->readonly || j->next_seq - 1 <= j->chained_seq)
		return 0;
	err = head_row_load(j, j->origin_id, &h);
	if (err)
		return err;
	/* Own changes from before schema 12 are chained from the floor
	 * up: everything above it is held. */
	after = h.chain_known ? h.chain_seq : h.floor;
	if (h.chain_known)
		memcpy(prev, h.chain, CONTENT_HASH_LEN);
	else
		journal_chain_anchor(j->origin, after, prev);
	err = journal_entries_since(j, j->origin, after, UINT32_MAX,
				    own_collect, &rows);
	if (!err)
		err = own_link(j, &rows, after, prev);
	if (!err)
		j->chained_seq = after + rows.n;
	/* Every own change is chained now (own seqs are gapless, checked
	 * in own_link), and none is signed past the chain. */
	assert(err || (j->chained_seq == j->next_seq - 1 &&
		       j->signed_seq <= j->chained_seq));
	free(rows.v);
	return err;
}

void journal_set_sign_interval(struct journal *j, int64_t ns)
{
	j->sign_interval_ns = ns;
}

uint64_t journal_signed_seq(const struct journal *j)
{
	return j->signed_seq;
}

int64_t journal_sign_deadline(const struct journal *j)
{
	if (j->signed_seq >= j->chained_seq)
		return 0;
	return j->signed_at_ns + j->sign_interval_ns;
}

int journal_chain_sign_due(struct journal *j, bool force)
{
	struct head_row h;
	int err;

	if (j->readonly || j->signed_seq >= j->chained_seq ||
	    (!force && loop_now_ns() < journal_sign_deadline(j)))
		return 0;
	err = journal_begin(j);
	if (!err)
		err = head_row_load(j, j->origin_id, &h);
	if (!err && (!h.chain_known || h.chain_seq != j->chained_seq))
		err = KR_ECORRUPT;
	if (!err)
		err = own_sign(j, h.chain_seq, h.chain);
	j->signed_at_ns = loop_now_ns();
	return err ? err : 1;
}

/* ---- keys -------------------------------------------------------------- */

int journal_key_put(struct journal *j, const uint8_t id[CONTENT_HASH_LEN],
		    const char *node, const uint8_t *der, size_t len)
{
	sqlite3_stmt *s = NULL;
	int err = journal_begin(j);

	if (!err)
		err = journal_db_err(journal_prepare_cached(j,
			"INSERT OR IGNORE INTO keys (id, node, cert) "
			"VALUES (?1, ?2, ?3)", &s));
	if (err)
		return err;
	sqlite3_bind_blob(s, 1, id, CONTENT_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, node, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 3, der, (int)len, SQLITE_STATIC);
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

int journal_keys(struct journal *j, journal_key_fn fn, void *arg)
{
	sqlite3_stmt *s = NULL;
	int rc = 0, err = journal_prepare(j, "SELECT id, node, cert FROM keys "
					  "ORDER BY node, id", &s);

	while (!err && (rc = journal_row(s)) > 0) {
		if (sqlite3_column_bytes(s, 0) != CONTENT_HASH_LEN)
			continue;
		err = fn(arg, sqlite3_column_blob(s, 0),
			 (const char *)sqlite3_column_text(s, 1),
			 sqlite3_column_blob(s, 2),
			 (size_t)sqlite3_column_bytes(s, 2));
	}
	if (!err && rc < 0)
		err = rc;
	sqlite3_finalize(s);
	return err;
}
