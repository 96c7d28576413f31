/*
 * Retention: what history a node may forget, and forgetting it.
 *
 * Acknowledged.  Each configured peer's acknowledgement is the version
 * vector it last reported (its HELLO, a VECTOR after a gap, and an ACK
 * the replicator sends every few seconds), kept in peer_acks with the
 * time of the report.  A change (O, s) is acknowledged when every peer
 * reported within journal.retention_pin_max holds O up to s or beyond.
 * A peer silent for longer no longer counts (it catches up by state
 * exchange when it returns, below); a node with no live peer
 * acknowledges everything itself.
 *
 * Compacted.  A pass looks at changes older than journal.retention (by
 * their wall time, oldest first through changes_by_time) and removes an
 * acknowledged one when it is either
 *   - superseded: not a head of its path and not what the disk holds
 *     (current); or
 *   - a settled tombstone: a DELETE head of a path whose heads are all
 *     deletes, where the disk holds nothing and no job waits; when it
 *     was the last, the path is forgotten (its current row goes too);
 *   - a losing delete: a DELETE head beside a present head (which wins
 *     over it, replica.c), not what the disk holds.
 * Its bases rows and its merges row go with it; its chunk list goes when
 * no other change names that content and no run (chunks.c) points into
 * it.  The origin's floor rises to the removed seq, and floor_lamport to
 * its Lamport value.  Volume roots, heads of an unresolved conflict, and
 * anything a job names (a conflict copy's job is at another path than
 * its version) are never removed.
 *
 * Why no decision changes.  What a node does with a path is a function
 * of the path's heads (replica.c ranks them), and of the versions it
 * holds when a new change arrives (a change already named as a base by
 * a held version never becomes a head).
 *   - A superseded version is not a head, and a head never becomes one
 *     by removing something else: the heads, and so every ranking,
 *     winner and conflict copy, stay what they were.
 *   - A change that names a removed version as its base drops nothing
 *     from the heads either way (the removed version was no head).
 *   - A removed change never comes back: it is at or below its origin's
 *     floor, and journal_add_remote refuses every seq at or below
 *     max(floor, largest seq held) as held already.  So a late copy of
 *     a superseded version, or of a forgotten tombstone's ancestors,
 *     cannot become a head again: nothing deleted is resurrected.
 *   - A forgotten tombstone T stood only beside other deletes and is
 *     acknowledged, so every live peer holds T or a descendant; any
 *     version that later arrives for the path either descends from T
 *     (it wins, as it would have over T) or is concurrent with it, and
 *     "a present version beats a delete" makes it win over T as well;
 *     the deletes left beside T decide as T did.  The outcome is the
 *     same with T forgotten.  A losing delete decides nothing: the
 *     present heads beside it win with or without it, and a version
 *     that arrives later meets a present head either way.
 * Why no node loses a version it lacks.  Every live peer holds what is
 * removed (acknowledged), so only a peer silent past the pin, a new
 * node, or a node whose journal was lost can ask below a floor.  Such a
 * request (journal_entries_since from below the floor) fails with
 * KR_ECOMPACTED, and the replicator answers with a state exchange
 * (exchange.c): this node's whole vector and every head, from which the
 * asker's heads become what a full history would have made them, its
 * own changes this node never saw included.
 *
 * Cost.  A step is one transaction of at most about budget_ms, reading
 * old changes in wall-time order from where the last step stopped, each
 * checked with a few index probes; a pass visits what is older than the
 * retention and still held (about one head per path), never the recent
 * history.  Once a pass is over, freed pages are handed back to the file
 * system (auto_vacuum = INCREMENTAL) a slice per step.
 */
#include "journal_int.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COMPACT_PAGE_ROWS 256      /* candidates read per query */
#define COMPACT_VACUUM_PAGES 2048  /* 8 MiB of 4 KiB pages per step */
#define COMPACT_CHAIN_MAX 16       /* holders freed behind one content */

/* ---- peers and their acknowledgements ------------------------------- */

static int peer_exec(struct journal *j, const char *sql, const char *node,
		     int64_t a, int64_t b)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j, sql, &s));

	if (err)
		return err;
	sqlite3_bind_text(s, 1, node, -1, SQLITE_STATIC);
	if (sqlite3_bind_parameter_count(s) >= 2)
		sqlite3_bind_int64(s, 2, a);
	if (sqlite3_bind_parameter_count(s) >= 3)
		sqlite3_bind_int64(s, 3, b);
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

static bool listed(const char *const *ids, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(ids[i], id) == 0)
			return true;
	return false;
}

static int peers_forget_unlisted(struct journal *j, const char *const *ids,
				 size_t n)
{
	sqlite3_stmt *s = NULL;
	char **gone = NULL;
	size_t n_gone = 0;
	int rc = 0, err = journal_prepare(j, "SELECT node FROM peers", &s);

	while (!err && (rc = journal_row(s)) > 0) {
		const char *node = (const char *)sqlite3_column_text(s, 0);
		char **g;

		if (listed(ids, n, node))
			continue;
		g = realloc(gone, (n_gone + 1) * sizeof(*gone));
		if (!g || !(g[n_gone] = strdup(node))) {
			gone = g ? g : gone;
			err = -ENOMEM;
			break;
		}
		gone = g;
		n_gone++;
	}
	if (!err && rc < 0)
		err = rc;
	sqlite3_finalize(s);
	for (size_t i = 0; i < n_gone; i++) {
		if (!err)
			err = peer_exec(j, "DELETE FROM peers WHERE node = ?1",
					gone[i], 0, 0);
		free(gone[i]);
	}
	free(gone);
	return err;
}

int journal_peers_set(struct journal *j, const char *const *ids, size_t n,
		      int64_t now_ns)
{
	int err = journal_begin(j);

	for (size_t i = 0; !err && i < n; i++)
		if (strcmp(ids[i], j->node_id) != 0)
			err = peer_exec(j, "INSERT OR IGNORE INTO peers (node, "
					"reported_ns) VALUES (?1, ?2)", ids[i],
					now_ns, 0);
	if (!err)
		err = peers_forget_unlisted(j, ids, n);
	if (!err)
		err = journal_flush(j);
	return err;
}

int journal_peer_report(struct journal *j, const char *peer,
			const struct journal_ref *vector, size_t n,
			int64_t now_ns)
{
	int64_t known = 0;
	int err = journal_query_int(j, "SELECT count(*) FROM peers WHERE "
				    "node = ?", peer, &known);

	if (err || known == 0)
		return err;      /* not a configured peer: it pins nothing */
	err = journal_begin(j);
	if (!err)
		err = peer_exec(j, "UPDATE peers SET reported_ns = "
				"max(reported_ns, ?2) WHERE node = ?1", peer,
				now_ns, 0);
	for (size_t i = 0; !err && i < n; i++) {
		int64_t oid = 0;

		err = journal_origin_id(j, vector[i].origin, false, &oid);
		if (err == KR_EHOSTILE) {
			err = 0;
			continue;
		}
		if (!err && oid)
			err = peer_exec(j, "INSERT INTO peer_acks (node, origin, "
					"seq) VALUES (?1, ?2, ?3) ON CONFLICT "
					"(node, origin) DO UPDATE SET seq = "
					"max(seq, excluded.seq)", peer, oid,
					(int64_t)vector[i].seq);
	}
	return err;
}

/* ---- one pass ---------------------------------------------------------- */

/* Per origin row, the highest seq every live peer acknowledged. */
struct acked {
	uint64_t *seq;            /* indexed by origins.id */
	size_t n;
	bool all;                 /* no live peer: everything is */
};

static int acked_load(struct journal *j, const struct journal_retention *r,
		      struct acked *a)
{
	sqlite3_stmt *s = NULL;
	int64_t max_id = 0, live = 0;
	int rc, err = journal_query_int(j, "SELECT coalesce(max(id), 0) FROM "
					"origins", NULL, &max_id);

	memset(a, 0, sizeof(*a));
	if (!err)
		err = journal_prepare(j, "SELECT count(*) FROM peers WHERE "
				      "reported_ns >= ?", &s);
	if (!err) {
		sqlite3_bind_int64(s, 1, r->now_ns - r->pin_max_ns);
		/* Never "no live peer" for a count that failed: that would
		 * take everything as acknowledged and forget it. */
		err = journal_row(s);
		if (err > 0)
			live = sqlite3_column_int64(s, 0);
		assert(err != 0);    /* count(*) always has its row */
		err = err < 0 ? err : 0;
	}
	sqlite3_finalize(s);
	s = NULL;
	a->all = live == 0;
	if (err || a->all)
		return err;
	a->n = (size_t)max_id + 1;
	a->seq = calloc(a->n, sizeof(*a->seq));
	if (!a->seq)
		return -ENOMEM;
	err = journal_prepare(j, "SELECT o.id, (SELECT min(coalesce((SELECT "
		"k.seq FROM peer_acks k WHERE k.node = p.node AND k.origin = "
		"o.id), 0)) FROM peers p WHERE p.reported_ns >= ?1) "
		"FROM origins o", &s);
	if (!err) {
		sqlite3_bind_int64(s, 1, r->now_ns - r->pin_max_ns);
		while ((rc = journal_row(s)) > 0) {
			int64_t id = sqlite3_column_int64(s, 0);

			if (id >= 0 && (size_t)id < a->n)
				a->seq[id] = (uint64_t)sqlite3_column_int64(s, 1);
		}
		if (rc < 0)
			err = rc;
	}
	sqlite3_finalize(s);
	return err;
}

static bool acked_has(const struct acked *a, int64_t origin, uint64_t seq)
{
	if (a->all)
		return true;
	return origin >= 0 && (size_t)origin < a->n && seq <= a->seq[origin];
}

/* One old change and what decides its fate. */
struct candidate {
	int64_t id, origin, wall_ns;
	uint64_t seq, lamport;
	enum journal_op op;
	bool has_hash;
	uint8_t hash[CONTENT_HASH_LEN];
	char *volume, *path;
	bool head, current, job;
	int64_t live_heads;       /* heads of the path that are not deletes */
	uint32_t disk_mode;       /* what current says the disk holds */
};

static int run(struct journal *j, const char *sql, int64_t a, const void *blob)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j, sql, &s));

	if (err)
		return err;
	if (blob)
		sqlite3_bind_blob(s, 1, blob, CONTENT_HASH_LEN, SQLITE_STATIC);
	else
		sqlite3_bind_int64(s, 1, a);
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

static bool exists(struct journal *j, const char *sql, const uint8_t *hash)
{
	sqlite3_stmt *s = NULL;
	bool found = true;        /* on error, keep */

	if (journal_prepare_cached(j, sql, &s) != SQLITE_OK)
		return true;
	sqlite3_bind_blob(s, 1, hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	found = journal_row(s) != 0;
	journal_stmt_done(s);
	return found;
}

static int content_holders(struct journal *j, const uint8_t *hash,
			   uint8_t (**out)[CONTENT_HASH_LEN], size_t *n)
{
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j,
		"SELECT DISTINCT holder FROM content_runs WHERE content = ?1",
		&s));

	*out = NULL;
	*n = 0;
	if (err)
		return err;
	sqlite3_bind_blob(s, 1, hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	while ((rc = journal_row(s)) > 0) {
		uint8_t (*h)[CONTENT_HASH_LEN] = realloc(*out, (*n + 1) *
							  sizeof(**out));

		if (!h) {
			err = -ENOMEM;
			break;
		}
		*out = h;
		if (sqlite3_column_bytes(s, 0) == CONTENT_HASH_LEN)
			memcpy(h[(*n)++], sqlite3_column_blob(s, 0),
			       CONTENT_HASH_LEN);
	}
	if (!err && rc < 0)
		err = rc;
	journal_stmt_done(s);
	return err;
}

/* Drops HASH's chunk list when no change names it and no run points into
 * it, then the holders its runs pointed into, if that freed them. */
static int content_drop(struct journal *j, const uint8_t *hash, int depth,
			struct journal_compact_stats *st)
{
	uint8_t (*holders)[CONTENT_HASH_LEN] = NULL;
	size_t n = 0;
	int err;

	if (depth > COMPACT_CHAIN_MAX ||
	    exists(j, "SELECT 1 FROM changes WHERE hash = ?1", hash) ||
	    exists(j, "SELECT 1 FROM content_runs WHERE holder = ?1", hash))
		return 0;
	err = content_holders(j, hash, &holders, &n);
	if (!err)
		err = run(j, "DELETE FROM content_runs WHERE content = ?1", 0,
			  hash);
	if (!err)
		err = run(j, "DELETE FROM content_chunks WHERE content = ?1", 0,
			  hash);
	if (!err)
		err = run(j, "DELETE FROM contents WHERE hash = ?1", 0, hash);
	if (!err)
		st->contents++;
	for (size_t i = 0; !err && i < n; i++)
		err = content_drop(j, holders[i], depth + 1, st);
	free(holders);
	return err;
}

static int heads_drop(struct journal *j, const struct candidate *c)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"DELETE FROM heads WHERE volume = ?1 AND path = ?2 AND "
		"change = ?3", &s));

	if (err)
		return err;
	sqlite3_bind_text(s, 1, c->volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, c->path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, c->id);
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

static int change_drop(struct journal *j, const struct candidate *c,
		       struct journal_compact_stats *st)
{
	sqlite3_stmt *s = NULL;
	int err = run(j, "DELETE FROM bases WHERE change = ?1", c->id, NULL);

	if (!err)
		err = run(j, "DELETE FROM merges WHERE change = ?1", c->id, NULL);
	if (!err && c->head)
		err = heads_drop(j, c);
	if (!err && c->current)
		err = run(j, "DELETE FROM current WHERE change = ?1", c->id,
			  NULL);
	/* A held change before it in its segment reaches the signature
	 * through its digest (chain.c). */
	if (!err)
		err = run(j, "INSERT OR IGNORE INTO chain_skips (origin, seq, "
			  "digest) SELECT c.origin, c.seq, c.digest FROM "
			  "changes c WHERE c.id = ?1 AND c.digest IS NOT NULL "
			  "AND EXISTS (SELECT 1 FROM changes h WHERE h.origin = "
			  "c.origin AND h.seq < c.seq AND h.digest IS NOT NULL "
			  "AND h.seq > coalesce((SELECT max(g.seq) FROM "
			  "signatures g WHERE g.origin = c.origin AND g.seq < "
			  "c.seq), 0))", c->id, NULL);
	if (!err)
		err = run(j, "DELETE FROM changes WHERE id = ?1", c->id, NULL);
	if (!err)
		err = journal_db_err(journal_prepare_cached(j,
			"UPDATE origins SET floor = max(floor, ?2), "
			"floor_lamport = max(floor_lamport, ?3) WHERE id = ?1",
			&s));
	if (!err) {
		sqlite3_bind_int64(s, 1, c->origin);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)c->seq);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)c->lamport);
		err = journal_step_done(s);
	}
	journal_stmt_done(s);
	if (!err && c->has_hash)
		err = content_drop(j, c->hash, 0, st);
	return err;
}

struct drop {
	const struct candidate *c;
	struct journal_compact_stats *st;
};

static int drop_fn(struct journal *j, void *arg)
{
	struct drop *d = arg;

	return change_drop(j, d->c, d->st);
}

/* All of one change or none of it. */
static int change_drop_atomic(struct journal *j, const struct candidate *c,
			      struct journal_compact_stats *st)
{
	struct journal_compact_stats part = { 0 };
	struct drop d = { c, &part };
	int err = journal_atomic(j, drop_fn, &d);

	if (!err) {
		st->contents += part.contents;
		/* Its floor rose: a peer below it now needs the state. */
		journal_vector_touch_id(j, c->origin, c->seq);
	}
	return err;
}

/* What may go: see the top of this file. */
static bool removable(const struct candidate *c, const struct acked *a)
{
	if (!acked_has(a, c->origin, c->seq) || c->job || c->path[0] == '\0')
		return false;
	if (!c->head && !c->current)
		return true;
	/* A delete beside a present head loses to it every time. */
	if (c->head && c->op == JOURNAL_DELETE && !c->current &&
	    c->live_heads > 0)
		return true;
	return c->head && c->op == JOURNAL_DELETE && c->live_heads == 0 &&
	       c->disk_mode == 0;
}

static const char candidates_sql[] =
	"SELECT c.id, c.origin, c.seq, c.lamport, c.wall_ns, c.op, c.hash, "
	"c.volume, c.path, "
	"EXISTS (SELECT 1 FROM heads h WHERE h.volume = c.volume AND "
	"h.path = c.path AND h.change = c.id), "
	"(SELECT count(*) FROM heads h JOIN changes hc ON hc.id = h.change "
	"WHERE h.volume = c.volume AND h.path = c.path AND hc.mode != 0), "
	"coalesce((SELECT cc.mode FROM current cur JOIN changes cc ON "
	"cc.id = cur.change WHERE cur.volume = c.volume AND "
	"cur.path = c.path), 0), "
	"EXISTS (SELECT 1 FROM current cur WHERE cur.change = c.id), "
	"EXISTS (SELECT 1 FROM jobs jb WHERE jb.change = c.id) OR "
	"EXISTS (SELECT 1 FROM jobs jb WHERE jb.volume = c.volume AND "
	"jb.path = c.path) "
	"FROM changes c WHERE c.wall_ns < ?1 AND (c.wall_ns, c.id) > (?2, ?3) "
	"ORDER BY c.wall_ns, c.id LIMIT ?4";

static void candidate_from_row(sqlite3_stmt *s, struct candidate *c)
{
	c->id = sqlite3_column_int64(s, 0);
	c->origin = sqlite3_column_int64(s, 1);
	c->seq = (uint64_t)sqlite3_column_int64(s, 2);
	c->lamport = (uint64_t)sqlite3_column_int64(s, 3);
	c->wall_ns = sqlite3_column_int64(s, 4);
	c->op = (enum journal_op)sqlite3_column_int(s, 5);
	c->has_hash = sqlite3_column_bytes(s, 6) == CONTENT_HASH_LEN;
	if (c->has_hash)
		memcpy(c->hash, sqlite3_column_blob(s, 6), CONTENT_HASH_LEN);
	c->volume = strdup((const char *)sqlite3_column_text(s, 7));
	c->path = strdup((const char *)sqlite3_column_text(s, 8));
	c->head = sqlite3_column_int(s, 9) != 0;
	c->live_heads = sqlite3_column_int64(s, 10);
	c->disk_mode = (uint32_t)sqlite3_column_int64(s, 11);
	c->current = sqlite3_column_int(s, 12) != 0;
	c->job = sqlite3_column_int(s, 13) != 0;
}

/* Reads the next page of old changes into C; the count, or negative. */
static int candidates_read(struct journal *j, struct journal_compact_stats *st,
			   struct candidate *c, int max)
{
	sqlite3_stmt *s = NULL;
	int n = 0, rc;
	int err = journal_db_err(journal_prepare_cached(j, candidates_sql, &s));

	if (err)
		return err;
	sqlite3_bind_int64(s, 1, st->horizon_ns);
	sqlite3_bind_int64(s, 2, st->cursor_ns);
	sqlite3_bind_int64(s, 3, st->cursor_id);
	sqlite3_bind_int(s, 4, max);
	while (n < max && (rc = journal_row(s)) > 0) {
		candidate_from_row(s, &c[n]);
		if (!c[n].volume || !c[n].path) {
			free(c[n].volume);
			free(c[n].path);
			err = -ENOMEM;
			break;
		}
		n++;
	}
	if (!err && n < max && rc < 0)
		err = rc;
	journal_stmt_done(s);
	if (err) {
		while (n > 0) {
			n--;
			free(c[n].volume);
			free(c[n].path);
		}
		return err;
	}
	return n;
}

/* Examines old changes until the budget is spent; 1 if more are left. */
static int compact_scan(struct journal *j, const struct acked *a,
			int64_t deadline, struct journal_compact_stats *st)
{
	struct candidate *c = calloc(COMPACT_PAGE_ROWS, sizeof(*c));
	int n = 0, i = 0, err = 0;

	if (!c)
		return -ENOMEM;
	while (!err && loop_now_ns() < deadline) {
		n = candidates_read(j, st, c, COMPACT_PAGE_ROWS);
		if (n <= 0) {
			err = n;
			break;
		}
		for (i = 0; i < n && !err; i++) {
			st->examined++;
			st->cursor_ns = c[i].wall_ns;
			st->cursor_id = c[i].id;
			if (!removable(&c[i], a))
				continue;
			err = change_drop_atomic(j, &c[i], st);
			if (!err && c[i].head)
				st->tombstones++;
			else if (!err)
				st->changes++;
		}
		for (int k = 0; k < n; k++) {
			free(c[k].volume);
			free(c[k].path);
		}
		if (n < COMPACT_PAGE_ROWS)
			break;
	}
	free(c);
	if (err)
		return err;
	return n == COMPACT_PAGE_ROWS ? 1 : 0;
}

/* Kept digests and signatures that no held change needs any more: a
 * segment with no held change is verified by nothing.  Digests go
 * first, while the signatures still mark where segments begin.  Each
 * origin's newest signature stays: it proves how far this node's vector
 * goes, which a state exchange it serves must show (exchange_proof.c). */
static int compact_chain(struct journal *j)
{
	return journal_exec(j,
		"DELETE FROM chain_skips WHERE NOT EXISTS (SELECT 1 FROM "
		"changes h WHERE h.origin = chain_skips.origin AND h.seq < "
		"chain_skips.seq AND h.seq > coalesce((SELECT max(g.seq) FROM "
		"signatures g WHERE g.origin = chain_skips.origin AND g.seq < "
		"chain_skips.seq), 0)); "
		"DELETE FROM signatures WHERE NOT EXISTS (SELECT 1 FROM "
		"changes h WHERE h.origin = signatures.origin AND h.seq <= "
		"signatures.seq AND h.seq > coalesce((SELECT max(p.seq) FROM "
		"signatures p WHERE p.origin = signatures.origin AND p.seq < "
		"signatures.seq), 0)) AND seq < (SELECT max(q.seq) FROM "
		"signatures q WHERE q.origin = signatures.origin)");
}

/* ---- old epochs ----------------------------------------------------------
 *
 * A node whose journal was lost comes back under a new epoch, and its old
 * origin stays in every vector for good: in every HELLO, VECTOR and state
 * exchange, and (before the vector moved to memory) in every walk.  A
 * member could make epochs of its own node id to grow every vector.  Once
 * such an origin is an old epoch (a newer one of its node holds a later
 * change), nothing of it is held but its floor, and every configured peer
 * has acknowledged it up to that floor, nobody can need anything of it:
 * it is retired (schema 14).  Its floor stays, so a late copy of one of
 * its changes is still known as held; a change above the floor brings it
 * back.  Until a peer retires it too, that peer may name it and we not:
 * the pump takes a peer that acknowledged an old epoch whole as holding
 * it (journal_epoch_acked), so that no state exchange follows. */
#define OLD_EPOCH_FLOOR_ONLY(o) \
	o ".floor > 0 AND " o ".id != ?1 AND NOT EXISTS (SELECT 1 FROM " \
	"changes c WHERE c.origin = " o ".id) AND EXISTS (SELECT 1 FROM " \
	"origins n WHERE n.node = " o ".node AND n.id != " o ".id AND " \
	"(n.floor_lamport > " o ".floor_lamport OR EXISTS (SELECT 1 FROM " \
	"changes c WHERE c.origin = n.id AND c.lamport > " o \
	".floor_lamport)))"

static int compact_retire(struct journal *j, struct journal_compact_stats *st)
{
	int n = 0;
	/* One that came back (a change of it arrived) is judged again. */
	int err = run(j, "UPDATE origins SET retired = 0 WHERE retired AND "
		      "id != ?1 AND EXISTS (SELECT 1 FROM changes c WHERE "
		      "c.origin = origins.id)", j->origin_id, NULL);

	if (!err)
		err = run(j, "UPDATE origins SET retired = 1 WHERE NOT retired "
			  "AND " OLD_EPOCH_FLOOR_ONLY("origins") " AND NOT "
			  "EXISTS (SELECT 1 FROM peers p WHERE coalesce((SELECT "
			  "a.seq FROM peer_acks a WHERE a.node = p.node AND "
			  "a.origin = origins.id), 0) < origins.floor)",
			  j->origin_id, NULL);
	if (!err)
		n = sqlite3_changes(j->db);
	if (n > 0) {
		st->retired += (uint64_t)n;
		journal_vector_reset(j);  /* they leave the vector */
	}
	return err;
}

bool journal_epoch_acked(struct journal *j, const char *peer,
			 const char *origin)
{
	sqlite3_stmt *s = NULL;
	bool yes = false;

	if (journal_prepare_cached(j, "SELECT 1 FROM origins o JOIN peer_acks "
				   "a ON a.origin = o.id AND a.node = ?2 WHERE "
				   "o.node || '@' || o.epoch = ?3 AND a.seq >= "
				   "o.floor AND " OLD_EPOCH_FLOOR_ONLY("o"),
				   &s) != SQLITE_OK)
		return false;
	sqlite3_bind_int64(s, 1, j->origin_id);
	sqlite3_bind_text(s, 2, peer, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, origin, -1, SQLITE_STATIC);
	yes = journal_row(s) > 0;     /* a failure (logged): not acked */
	journal_stmt_done(s);
	return yes;
}

static int compact_mark(struct journal *j, int64_t horizon_ns)
{
	char *old = NULL, value[32];
	int err = journal_meta_get(j, "compacted_before", &old);

	if (err == 0 && strtoll(old, NULL, 10) >= horizon_ns) {
		free(old);
		return 0;
	}
	free(old);
	snprintf(value, sizeof(value), "%" PRId64, horizon_ns);
	return journal_meta_set(j, "compacted_before", value);
}

/* Hands a slice of free pages back; 1 while some are left. */
static int compact_vacuum(struct journal *j, struct journal_compact_stats *st)
{
	int64_t before = 0, after = 0;
	int err = journal_query_int(j, "PRAGMA freelist_count", NULL, &before);

	if (err || before == 0)
		return err;
	err = journal_exec(j, "PRAGMA incremental_vacuum(2048)");
	if (!err)
		err = journal_query_int(j, "PRAGMA freelist_count", NULL, &after);
	if (err)
		return err;
	st->pages_freed += (uint64_t)(before - after);
	return after > 0 && after < before ? 1 : 0;
}

int journal_compact_step(struct journal *j, const struct journal_retention *r,
			 unsigned budget_ms, struct journal_compact_stats *st)
{
	int64_t start = loop_now_ns();
	struct acked a;
	int more, err;

	if (j->readonly)
		return -EROFS;
	if (j->compaction_hold > 0)
		return -EBUSY;
	err = journal_flush(j);
	if (err)
		return err;
	if (st->phase == 2) {
		more = compact_vacuum(j, st);
		st->elapsed_ns += loop_now_ns() - start;
		return more;
	}
	if (st->phase == 0) {
		st->horizon_ns = r->now_ns - r->retention_ns;
		st->cursor_ns = INT64_MIN;
		st->cursor_id = 0;
		st->phase = 1;
	}
	err = acked_load(j, r, &a);
	if (!err)
		err = journal_begin(j);
	more = err ? err : compact_scan(j, &a, start + (int64_t)budget_ms *
					1000000, st);
	free(a.seq);
	if (more == 0)
		more = compact_chain(j);
	if (more == 0)
		more = compact_retire(j, st);
	if (more == 0)
		more = compact_mark(j, st->horizon_ns);
	err = more < 0 ? more : journal_flush(j);
	if (more < 0 || err) {
		journal_flush(j);
		j->remote.valid = false;
		st->elapsed_ns += loop_now_ns() - start;
		return more < 0 ? more : err;
	}
	/* The cached "have" of the last origin may have dropped rows. */
	j->remote.valid = false;
	if (more == 0) {
		st->phase = 2;
		more = 1;
	}
	st->elapsed_ns += loop_now_ns() - start;
	return more;
}

int journal_compact(struct journal *j, const struct journal_retention *r,
		    struct journal_compact_stats *st)
{
	int more;

	memset(st, 0, sizeof(*st));
	while ((more = journal_compact_step(j, r, 50, st)) > 0)
		;
	return more;
}

int journal_compacted_before(struct journal *j, int64_t *out_ns)
{
	char *v = NULL;
	int err = journal_meta_get(j, "compacted_before", &v);

	*out_ns = 0;
	if (err == -ENOENT)
		return 0;
	if (!err)
		*out_ns = strtoll(v, NULL, 10);
	free(v);
	return err;
}

void journal_compaction_hold(struct journal *j, int delta)
{
	assert(delta == 1 || delta == -1);
	j->compaction_hold += delta;
	/* Released once per hold: below zero, compaction would run while
	 * an exchange is served. */
	assert(j->compaction_hold >= 0);
}

uint64_t journal_floor(struct journal *j, const char *origin)
{
	sqlite3_stmt *s = NULL;
	uint64_t floor = 0;
	int64_t id = 0;

	if (journal_origin_id(j, origin, false, &id) || id == 0 ||
	    journal_prepare_cached(j, "SELECT floor FROM origins WHERE id = ?1",
				   &s) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(s, 1, id);
	if (journal_row(s) > 0)
		floor = (uint64_t)sqlite3_column_int64(s, 0);
	journal_stmt_done(s);
	return floor;
}
