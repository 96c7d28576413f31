/*
 * Checking a journal's chains offline (`kraken-journal verify --chain`).
 *
 * Each origin is walked in seq order over its held changes, the digests
 * compaction kept (chain_skips) and its signatures.  A held change must
 * match its stored digest (else it was altered), name as prev the chain
 * hash of the change before it when that is known (else a change was
 * inserted, removed or reordered), and reach a signature through held
 * changes and kept digests alone; each signature must cover the chain
 * hash reached and verify with a key of the origin's node.  Whoever
 * edits the file must therefore forge signatures to hide it, and only
 * the origin node's own key can make them.
 */
#include "journal_int.h"

#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define VERIFY_BASES_MAX 64

struct walk {
	struct journal *j;
	const char *origin;
	journal_sig_check_fn check;
	void *check_arg;
	journal_chain_problem_fn problem;
	void *arg;
	struct journal_chain_report rep;
	bool known;               /* carried is the chain hash reached */
	uint8_t carried[CONTENT_HASH_LEN];
	uint64_t pending;         /* held changes not yet tied to a signature */
	uint64_t pending_from;
	uint64_t last;            /* seq of the previous item, 0 at first */
};

static void walk_bad(struct walk *w, uint64_t seq, const char *why)
{
	w->rep.bad++;
	if (w->problem)
		w->problem(w->arg, w->origin, seq, why);
}

/* The chain cannot be followed past here: what waited for a signature
 * never gets one. */
static void walk_untie(struct walk *w, const char *why)
{
	if (w->pending)
		walk_bad(w, w->pending_from, why);
	w->pending = 0;
	w->known = false;
}

static int walk_held(struct walk *w, int64_t id, uint64_t seq)
{
	struct journal_ref bases[VERIFY_BASES_MAX];
	static const char sql[] =
		"SELECT " JOURNAL_CHANGE_COLUMNS " FROM changes c "
		"JOIN origins o ON o.id = c.origin WHERE c.id = ?1";
	uint8_t digest[CONTENT_HASH_LEN];
	struct journal_change c;
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(w->j, sql, &s));

	if (!err) {
		sqlite3_bind_int64(s, 1, id);
		/* The walk saw the row in this read: it cannot be gone. */
		err = journal_row(s);
		if (err > 0)
			err = journal_change_from_row(w->j, s, &c, bases,
						      VERIFY_BASES_MAX);
		else if (err == 0)
			err = KR_EDB;
	}
	if (!err)
		err = journal_entry_digest(&c, digest);
	if (err) {
		journal_stmt_done(s);
		return err;
	}
	w->rep.changes++;
	if (!c.chain.chained) {
		w->rep.unchained++;
		walk_untie(w, "a chained change is followed by an "
			   "unchained one before its signature");
		journal_stmt_done(s);
		return 0;
	}
	if (memcmp(digest, c.chain.digest, CONTENT_HASH_LEN) != 0)
		walk_bad(w, seq, "altered: its fields no longer match the "
			 "digest it was chained with");
	if (w->known && memcmp(w->carried, c.chain.prev, CONTENT_HASH_LEN))
		walk_bad(w, seq, "link broken: its prev is not the chain hash "
			 "of the change before it");
	journal_chain_link(c.chain.prev, digest, w->carried);
	w->known = true;
	if (w->pending++ == 0)
		w->pending_from = seq;
	journal_stmt_done(s);
	return 0;
}

static void walk_skip(struct walk *w, const uint8_t *digest)
{
	w->rep.skips++;
	if (w->known)
		journal_chain_link(w->carried, digest, w->carried);
}

static void walk_sig(struct walk *w, sqlite3_stmt *g)
{
	uint64_t seq = (uint64_t)sqlite3_column_int64(g, 0);
	const uint8_t *chain = sqlite3_column_blob(g, 1);
	bool has_key = sqlite3_column_bytes(g, 2) == CONTENT_HASH_LEN;
	int rc;

	w->rep.segments++;
	/* The change it ends is gone without a trace: so is the rest of its
	 * segment (compaction drops such a signature only once its pass is
	 * over), and nothing before can reach it. */
	if (w->last != seq)
		walk_untie(w, "cannot be tied to a signature: changes "
			   "after it are gone without a trace");
	if (w->known && memcmp(w->carried, chain, CONTENT_HASH_LEN) != 0)
		walk_bad(w, seq, "the chain does not reach the hash its "
			 "signature covers");
	else if (!w->known && w->pending)
		walk_bad(w, w->pending_from, "cannot be tied to the "
			 "signature after it");
	w->pending = 0;
	memcpy(w->carried, chain, CONTENT_HASH_LEN);
	w->known = true;
	if (!has_key) {
		w->rep.unsigned_ends++;
		return;
	}
	if (!w->check)
		return;
	rc = w->check(w->check_arg, w->origin, seq, chain,
		      sqlite3_column_blob(g, 2), sqlite3_column_blob(g, 3),
		      (size_t)sqlite3_column_bytes(g, 3));
	if (rc == -ENOKEY) {
		w->rep.unknown_keys++;
		walk_bad(w, seq, "signed by a key this journal holds no "
			 "certificate for");
	} else if (rc) {
		walk_bad(w, seq, "its signature does not verify with its "
			 "node's key");
	}
}

/* Signatures at or before SEQ that come before the item at SEQ; *GRC is
 * journal_row()'s answer for G's current row. */
static int walk_sigs_upto(struct walk *w, sqlite3_stmt *g, int *grc,
			  uint64_t seq, bool inclusive)
{
	while (*grc > 0) {
		uint64_t at = (uint64_t)sqlite3_column_int64(g, 0);

		if (at > seq || (at == seq && !inclusive))
			break;
		if (sqlite3_column_bytes(g, 1) != CONTENT_HASH_LEN)
			walk_bad(w, at, "malformed signature row");
		else
			walk_sig(w, g);
		*grc = journal_row(g);
	}
	return *grc < 0 ? *grc : 0;
}

static int walk_item(struct walk *w, sqlite3_stmt *s)
{
	uint64_t seq = (uint64_t)sqlite3_column_int64(s, 0);

	if (w->last && seq != w->last + 1)
		walk_untie(w, "cannot be tied to a signature: changes "
			   "after it are gone without a trace");
	w->last = seq;
	if (sqlite3_column_int(s, 1) == 0)
		return walk_held(w, sqlite3_column_int64(s, 2), seq);
	if (sqlite3_column_bytes(s, 3) != CONTENT_HASH_LEN) {
		walk_bad(w, seq, "malformed kept digest");
		walk_untie(w, "cannot be tied to a signature");
		return 0;
	}
	walk_skip(w, sqlite3_column_blob(s, 3));
	return 0;
}

static int walk_origin(struct walk *w, int64_t origin)
{
	sqlite3_stmt *s = NULL, *g = NULL;
	int rc = 0, grc = 0, err = journal_prepare(w->j, "SELECT seq, 0, id, "
		"NULL FROM changes WHERE origin = ?1 UNION ALL SELECT seq, 1, "
		"0, digest FROM chain_skips WHERE origin = ?1 ORDER BY 1, 2",
		&s);

	if (!err)
		err = journal_prepare(w->j, "SELECT seq, chain, key, sig "
				      "FROM signatures WHERE origin = ?1 "
				      "ORDER BY seq", &g);
	if (!err) {
		sqlite3_bind_int64(s, 1, origin);
		sqlite3_bind_int64(g, 1, origin);
		grc = journal_row(g);
		err = grc < 0 ? grc : 0;
	}
	while (!err && (rc = journal_row(s)) > 0) {
		uint64_t seq = (uint64_t)sqlite3_column_int64(s, 0);

		err = walk_sigs_upto(w, g, &grc, seq, false);
		if (!err)
			err = walk_item(w, s);
		if (!err)
			err = walk_sigs_upto(w, g, &grc, seq, true);
	}
	if (!err && rc < 0)
		err = rc;
	if (!err)
		err = walk_sigs_upto(w, g, &grc, UINT64_MAX, true);
	if (!err && w->pending)
		walk_bad(w, w->pending_from, "not covered by any signature "
			 "(a node's newest changes are so after it was killed, "
			 "until it starts again and signs them)");
	sqlite3_finalize(s);
	sqlite3_finalize(g);
	return err;
}

int journal_verify_chain(struct journal *j, journal_sig_check_fn check,
			 void *check_arg, journal_chain_problem_fn problem,
			 journal_chain_report_fn report, void *arg)
{
	sqlite3_stmt *o = NULL;
	bool bad = false;
	int rc = 0, err = journal_prepare(j, "SELECT id, node || '@' || epoch "
		"FROM origins ORDER BY node, epoch", &o);

	while (!err && (rc = journal_row(o)) > 0) {
		struct walk w = {
			.j = j, .check = check, .check_arg = check_arg,
			.problem = problem, .arg = arg,
			.origin = (const char *)sqlite3_column_text(o, 1),
		};

		w.rep.origin = w.origin;
		err = walk_origin(&w, sqlite3_column_int64(o, 0));
		bad |= w.rep.bad > 0;
		if (!err && report && (w.rep.changes || w.rep.segments))
			err = report(arg, &w.rep);
	}
	if (!err && rc < 0)
		err = rc;
	sqlite3_finalize(o);
	return err ? err : bad ? KR_ECORRUPT : 0;
}
