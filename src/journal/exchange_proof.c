/*
 * Proofs of the heads a state exchange carries (exchange.c serves and
 * applies the exchange; the receiver's checks are in
 * src/replicate/chaincheck.c).
 *
 * Without them a member could forge any origin through a state exchange:
 * the heads went in unchecked.  Now a head is served with what ties it to
 * its origin's signature (chain.c):
 *
 *   run       heads of one origin, in seq order, within one signed
 *             segment: from the first, whose stored prev starts it, to
 *             the signature that ends the segment
 *   proof     the first head's prev; for every head the digests of the
 *             changes after it up to the next head of the run (or to the
 *             signature, for the last); the signature.  The receiver
 *             digests each head itself, links everything in seq order,
 *             and checks the signature over the chain hash it reaches.
 *
 * The digests come from the changes still held and from chain_skips,
 * which compaction keeps for exactly this; a run whose digests, prev or
 * signature are not all here, or whose links do not reach the chain hash
 * its signature covers, is served unchained: then only the sending
 * node's own origin is taken from it (chaincheck.c).  Runs sit inside one
 * segment, so one is at most JOURNAL_SEGMENT_MAX changes long, and a run
 * costs the receiver one signature check however many heads it holds.
 *
 * The receiver stages each proof with its head (exchange_skips,
 * exchange_seals) and keeps it once the exchange applies: a node caught
 * up by an exchange can prove the same heads to the next one.
 */
#include "journal_int.h"

#include "err.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- serving ----------------------------------------------------------- */

/* The signature at or after H's seq: the end of its segment. */
static int run_seal(struct journal *j, const struct exchange_head *h,
		    struct exchange_run *r, bool *found)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"SELECT seq, chain, key, sig FROM signatures WHERE origin = ?1 "
		"AND seq >= ?2 ORDER BY seq LIMIT 1", &s));

	*found = false;
	if (err)
		return err;
	sqlite3_bind_int64(s, 1, h->origin);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)h->seq);
	/* A failure is no "unsigned": it ends the exchange. */
	err = journal_row(s);
	if (err > 0 &&
	    sqlite3_column_bytes(s, 1) == CONTENT_HASH_LEN &&
	    sqlite3_column_bytes(s, 2) == CONTENT_HASH_LEN &&
	    sqlite3_column_bytes(s, 3) > 0 &&
	    sqlite3_column_bytes(s, 3) <= JOURNAL_SIG_MAX) {
		r->end = (uint64_t)sqlite3_column_int64(s, 0);
		memcpy(r->sealed, sqlite3_column_blob(s, 1), CONTENT_HASH_LEN);
		memcpy(r->key, sqlite3_column_blob(s, 2), CONTENT_HASH_LEN);
		r->sig_len = (size_t)sqlite3_column_bytes(s, 3);
		memcpy(r->sig, sqlite3_column_blob(s, 3), r->sig_len);
		*found = true;
	}
	journal_stmt_done(s);
	return err < 0 ? err : 0;
}

/* The prev the run's first head was chained with. */
static int run_prev(struct journal *j, const struct exchange_head *h,
		    struct exchange_run *r, bool *found)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"SELECT prev FROM changes WHERE id = ?1", &s));

	*found = false;
	if (err)
		return err;
	sqlite3_bind_int64(s, 1, h->id);
	err = journal_row(s);
	if (err > 0 && sqlite3_column_bytes(s, 0) == CONTENT_HASH_LEN) {
		memcpy(r->prev, sqlite3_column_blob(s, 0), CONTENT_HASH_LEN);
		*found = true;
	}
	journal_stmt_done(s);
	return err < 0 ? err : 0;
}

/* Digests of seqs start..end, from held changes and kept digests; true
 * when every one is there, once. */
static int run_digests(struct journal *j, int64_t origin,
		       struct exchange_run *r, bool *whole)
{
	bool have[JOURNAL_SEGMENT_MAX] = { false };
	size_t n = (size_t)(r->end - r->start + 1), got = 0;
	sqlite3_stmt *s = NULL;
	int rc, err;

	/* A run fits one segment (exchange_run_load): the array holds it. */
	assert(r->end >= r->start && n <= JOURNAL_SEGMENT_MAX);
	err = journal_db_err(journal_prepare_cached(j,
		"SELECT seq, digest FROM changes WHERE origin = ?1 AND seq "
		"BETWEEN ?2 AND ?3 UNION ALL SELECT seq, digest FROM "
		"chain_skips WHERE origin = ?1 AND seq BETWEEN ?2 AND ?3", &s));

	*whole = false;
	if (err)
		return err;
	sqlite3_bind_int64(s, 1, origin);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)r->start);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)r->end);
	while ((rc = journal_row(s)) > 0) {
		size_t k = (size_t)((uint64_t)sqlite3_column_int64(s, 0) -
				    r->start);

		assert(k < n);    /* the query's BETWEEN */
		if (sqlite3_column_bytes(s, 1) != CONTENT_HASH_LEN || have[k])
			break;    /* unchained, or twice: not provable */
		memcpy(r->digest[k], sqlite3_column_blob(s, 1),
		       CONTENT_HASH_LEN);
		have[k] = true;
		got++;
	}
	if (rc < 0)
		err = rc;
	journal_stmt_done(s);
	*whole = !err && rc == 0 && got == n;
	return err;
}

/* Links the run from its prev; whole when it reaches what is signed. */
static bool run_links(struct exchange_run *r)
{
	size_t n = (size_t)(r->end - r->start + 1);
	const uint8_t *prev = r->prev;

	for (size_t k = 0; k < n; k++) {
		journal_chain_link(prev, r->digest[k], r->chain[k]);
		prev = r->chain[k];
	}
	return memcmp(prev, r->sealed, CONTENT_HASH_LEN) == 0;
}

int exchange_run_load(struct journal *j, const struct exchange_head *heads,
		      size_t n, size_t at, struct exchange_run *r)
{
	const struct exchange_head *h = &heads[at];
	bool ok = false;
	int err;

	r->first = r->last = at;
	r->ok = false;
	r->start = h->seq;
	err = run_seal(j, h, r, &ok);
	if (err || !ok || r->end - r->start >= JOURNAL_SEGMENT_MAX)
		return err;
	err = run_prev(j, h, r, &ok);
	if (!err && ok)
		err = run_digests(j, h->origin, r, &ok);
	if (err || !ok || !run_links(r))
		return err;
	while (r->last + 1 < n && heads[r->last + 1].origin == h->origin &&
	       heads[r->last + 1].seq <= r->end)
		r->last++;
	r->ok = true;
	return 0;
}

void exchange_run_fill(const struct exchange_run *r,
		       const struct exchange_head *heads, size_t i,
		       struct journal_change *c)
{
	struct journal_chain *ch = &c->chain;
	uint64_t k = heads[i].seq - r->start;
	uint64_t upto = i < r->last ? heads[i + 1].seq - 1 : r->end;

	memset(ch, 0, sizeof(*ch));
	if (!r->ok)
		return;
	/* Only heads R's load took in (first..last) come here. */
	assert(i >= r->first && i <= r->last && heads[i].seq >= r->start &&
	       heads[i].seq <= r->end);
	ch->chained = true;
	memcpy(ch->prev, k ? r->chain[k - 1] : r->prev, CONTENT_HASH_LEN);
	memcpy(ch->digest, r->digest[k], CONTENT_HASH_LEN);
	ch->after = &r->digest[k + 1];
	ch->n_after = (size_t)(upto - heads[i].seq);
	if (i < r->last)
		return;
	ch->seg_end = true;
	memcpy(ch->key_id, r->key, CONTENT_HASH_LEN);
	ch->sig = r->sig;
	ch->sig_len = r->sig_len;
}

int journal_exchange_seal(struct journal *j, const char *origin, uint64_t seq,
			  uint8_t chain[CONTENT_HASH_LEN],
			  uint8_t key[CONTENT_HASH_LEN], uint8_t *sig,
			  size_t *sig_len)
{
	sqlite3_stmt *s = NULL;
	int64_t oid = 0;
	int err = journal_origin_id(j, origin, false, &oid);

	if (err || oid == 0)
		return err ? err : -ENOENT;
	err = journal_db_err(journal_prepare_cached(j,
		"SELECT chain, key, sig FROM signatures WHERE origin = ?1 AND "
		"seq = ?2", &s));
	if (err)
		return err;
	sqlite3_bind_int64(s, 1, oid);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)seq);
	err = journal_row(s);
	if (err > 0 && sqlite3_column_bytes(s, 0) == CONTENT_HASH_LEN &&
	    sqlite3_column_bytes(s, 1) == CONTENT_HASH_LEN &&
	    sqlite3_column_bytes(s, 2) > 0 &&
	    sqlite3_column_bytes(s, 2) <= JOURNAL_SIG_MAX) {
		memcpy(chain, sqlite3_column_blob(s, 0), CONTENT_HASH_LEN);
		memcpy(key, sqlite3_column_blob(s, 1), CONTENT_HASH_LEN);
		*sig_len = (size_t)sqlite3_column_bytes(s, 2);
		memcpy(sig, sqlite3_column_blob(s, 2), *sig_len);
		err = 0;
	} else if (err >= 0) {
		err = -ENOENT;    /* a failure (negative) is passed on */
	}
	journal_stmt_done(s);
	return err;
}

/* ---- receiving --------------------------------------------------------- */

static int stage_seal(struct journal *j, int64_t origin, uint64_t seq,
		      const uint8_t chain[CONTENT_HASH_LEN],
		      const uint8_t key[CONTENT_HASH_LEN], const uint8_t *sig,
		      size_t sig_len)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"INSERT OR IGNORE INTO exchange_seals (origin, seq, chain, key, "
		"sig) VALUES (?1, ?2, ?3, ?4, ?5)", &s));

	if (err)
		return err;
	sqlite3_bind_int64(s, 1, origin);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)seq);
	sqlite3_bind_blob(s, 3, chain, CONTENT_HASH_LEN, SQLITE_STATIC);
	if (sig_len) {
		sqlite3_bind_blob(s, 4, key, CONTENT_HASH_LEN, SQLITE_STATIC);
		sqlite3_bind_blob(s, 5, sig, (int)sig_len, SQLITE_STATIC);
	}
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

static int stage_skips(struct journal *j, int64_t origin,
		       const struct journal_change *c)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"INSERT OR IGNORE INTO exchange_skips (origin, seq, digest) "
		"VALUES (?1, ?2, ?3)", &s));

	for (size_t i = 0; !err && i < c->chain.n_after; i++) {
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, origin);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)(c->ref.seq + 1 + i));
		sqlite3_bind_blob(s, 3, c->chain.after[i], CONTENT_HASH_LEN,
				  SQLITE_STATIC);
		err = journal_step_done(s);
	}
	journal_stmt_done(s);
	return err;
}

int exchange_stage_proof(struct journal *j, int64_t origin,
			 const struct journal_change *c,
			 const uint8_t digest[CONTENT_HASH_LEN])
{
	const struct journal_chain *ch = &c->chain;
	uint8_t link[CONTENT_HASH_LEN];
	int err = stage_skips(j, origin, c);

	if (err || !ch->seg_end)
		return err;
	journal_chain_link(ch->prev, digest, link);
	for (size_t i = 0; i < ch->n_after; i++)
		journal_chain_link(link, ch->after[i], link);
	return stage_seal(j, origin, c->ref.seq + ch->n_after, link,
			  ch->key_id, ch->sig, ch->sig_len);
}

int journal_exchange_stage_seal(struct journal *j, const char *origin,
				uint64_t seq, const uint8_t chain[CONTENT_HASH_LEN],
				const uint8_t key[CONTENT_HASH_LEN],
				const uint8_t *sig, size_t sig_len)
{
	int64_t oid = 0;
	int err = journal_origin_id(j, origin, true, &oid);

	if (err == KR_EHOSTILE || seq == 0 || sig_len > JOURNAL_SIG_MAX)
		return KR_EHOSTILE;
	return err ? err : stage_seal(j, oid, seq, chain, key, sig, sig_len);
}

/* Applying: the proofs join what this node keeps, up to what the vector
 * was taken as (the floors rise to it).  A kept digest never stands
 * beside a held change of the same seq (verify --chain would read both),
 * and nothing here replaces what is already kept. */
int exchange_keep_proofs(struct journal *j)
{
	return journal_exec(j,
		"INSERT OR IGNORE INTO chain_skips (origin, seq, digest) "
		"SELECT x.origin, x.seq, x.digest FROM exchange_skips x JOIN "
		"exchange_vector v ON v.origin = x.origin WHERE x.seq <= v.seq "
		"AND NOT EXISTS (SELECT 1 FROM changes c WHERE c.origin = "
		"x.origin AND c.seq = x.seq); "
		"INSERT OR IGNORE INTO signatures (origin, seq, chain, key, sig) "
		"SELECT x.origin, x.seq, x.chain, x.key, x.sig FROM "
		"exchange_seals x JOIN exchange_vector v ON v.origin = x.origin "
		"WHERE x.seq <= v.seq");
}
