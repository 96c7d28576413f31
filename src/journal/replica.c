/*
 * Journal side of replication: adding changes pulled from peers, and
 * deciding from the history graph what each path must hold: the jobs the
 * applier works from (their queue is jobs.c).
 *
 * Heads.  A path's heads are its versions no other known version names as
 * a base.  Adding a change removes its bases from the heads and adds it,
 * unless a version already held names it (it arrived after a descendant).
 *
 * Target.  The heads fall into groups of identical state (content hash,
 * mode, owner, link target; a delete is its own state).  The winner is
 * the head ranked highest: a present version beats a delete, a directory
 * beats a file or symlink (its paths inside are versions of their own;
 * the file is kept as a copy), then by strategy (timestamp: wall time, Lamport, origin; lamport: Lamport,
 * origin).  The path must hold the winner; every other non-deleted,
 * non-directory group is kept at its conflict-copy path.  Both are jobs
 * unless the disk already holds them.  The ranking is a pure function of
 * the set of heads, so nodes holding the same entries agree on it in
 * whatever order the entries came.
 *
 * Stale copies.  A copy job is for a loser that is a head; when a later
 * version of the same side replaces it before it was written (a
 * partition's versions arriving in one batch), the job goes: each side's
 * last version becomes a copy, its earlier ones stay history.
 *
 * Merge.  Once the disk holds the winner and every loser's copy exists,
 * the node records a merge: the winner's state with every head as a base.
 * Later edits descend from it, so a conflict is resolved once and the
 * copy lives on as an ordinary file.  Merges by several nodes at once are
 * identical heads, which is no conflict and needs no further merge.
 * Losers that are deletes need no copy and get no merge: a merge is a
 * new version, newer than everything it names, and recorded the moment a
 * delete arrived it would outrank a re-creation that follows the delete
 * in the same batch.  The delete stays a head beside the winner (a
 * present version beats it every time) until a local change, which
 * names every deleted head as a base, or compaction removes it.
 */
#include "journal_int.h"

#include "err.h"
#include "loop.h"
#include "path.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HEADS_MAX 64
#define JOB_ORDER_DELETES (1 << 20)   /* as schema/004_job_order.sql */

/* A head as the ranking needs it. */
struct head {
	int64_t id;
	char origin[JOURNAL_ORIGIN_MAX];
	uint64_t seq;
	uint64_t lamport;
	int64_t wall_ns;
	enum journal_op op;
	uint32_t mode, uid, gid;
	uint64_t size;
	int64_t mtime_ns;
	bool has_hash;
	uint8_t hash[CONTENT_HASH_LEN];
	char *target;
};

void journal_set_strategy(struct journal *j, enum journal_strategy s)
{
	j->strategy = s;
}

void journal_set_wall_offset(struct journal *j, int64_t ns)
{
	j->wall_offset_ns = ns;
}

void journal_set_lamport_jump(struct journal *j, uint64_t max)
{
	j->lamport_jump = max;
}

/* Whether C was stamped further ahead of our clock than any clock that
 * is merely off: such an entry would win every concurrent write for as
 * long, so it waits until our clock gets there. */
static bool wall_ahead(const struct journal_change *c)
{
	return c->wall_ns > loop_wall_ns() + JOURNAL_WALL_AHEAD_MAX;
}

/* Whether C's Lamport value jumps more than the bound past ours. */
static bool lamport_jumps(const struct journal *j,
			  const struct journal_change *c)
{
	return j->lamport_jump && c->lamport > j->lamport &&
	       c->lamport - j->lamport > j->lamport_jump;
}

/* ---- origins and ranges ---------------------------------------------- */

static int origin_split(const char *origin, char *node, char *epoch)
{
	const char *at = strrchr(origin, '@');
	size_t n = at ? (size_t)(at - origin) : 0;

	if (!at || n == 0 || n > 64 || strlen(at + 1) != 16)
		return KR_EHOSTILE;
	memcpy(node, origin, n);
	node[n] = '\0';
	memcpy(epoch, at + 1, 17);
	return 0;
}

int journal_origin_id(struct journal *j, const char *origin, bool create,
		      int64_t *out)
{
	char node[65], epoch[17];
	sqlite3_stmt *s = NULL;
	int rc, err = origin_split(origin, node, epoch);

	*out = 0;
	if (err)
		return err;
	err = journal_db_err(journal_prepare_cached(j, create ?
		"INSERT INTO origins (node, epoch) VALUES (?1, ?2) "
		"ON CONFLICT (node, epoch) DO UPDATE SET node = node "
		"RETURNING id" :
		"SELECT id FROM origins WHERE node = ?1 AND epoch = ?2", &s));
	if (err)
		return err;
	sqlite3_bind_text(s, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, epoch, -1, SQLITE_STATIC);
	rc = journal_row(s);
	if (rc > 0)
		*out = sqlite3_column_int64(s, 0);
	else if (rc < 0)
		err = rc;
	journal_stmt_done(s);
	return err;
}

bool journal_origin_of(const char *origin, const char *node)
{
	size_t n = strlen(node);

	return strncmp(origin, node, n) == 0 && origin[n] == '@';
}

uint64_t journal_have(struct journal *j, const char *origin)
{
	sqlite3_stmt *s = NULL;
	int64_t id = 0;
	uint64_t have = 0;

	/* From memory (vector.c); SQL only when that cannot be had. */
	if (journal_vector_get(j, origin, &have) == 0)
		return have;
	if (journal_origin_id(j, origin, false, &id) || id == 0)
		return 0;
	if (journal_prepare_cached(j, "SELECT max(coalesce((SELECT max(seq) "
			       "FROM changes WHERE origin = ?1), 0), "
			       "(SELECT floor FROM origins WHERE id = ?1))",
			       &s) == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, id);
		/* A failure (logged) answers 0: the peer sends again what
		 * this node holds, which is slow but loses nothing. */
		if (journal_row(s) > 0)
			have = (uint64_t)sqlite3_column_int64(s, 0);
	}
	journal_stmt_done(s);
	return have;
}

int64_t journal_last_change_id(struct journal *j)
{
	sqlite3_stmt *s = NULL;
	int64_t id = 0;

	if (journal_prepare_cached(j, "SELECT coalesce(max(id), 0) FROM "
			       "changes", &s) == SQLITE_OK &&
	    journal_row(s) > 0)
		id = sqlite3_column_int64(s, 0);
	journal_stmt_done(s);
	return id;
}

int journal_range_bytes(struct journal *j, const char *origin, uint64_t after,
			uint64_t *out)
{
	sqlite3_stmt *s = NULL;
	int64_t id = 0;
	int err = journal_origin_id(j, origin, false, &id);

	*out = 0;
	if (err || id == 0)
		return err;
	err = journal_db_err(journal_prepare_cached(j,
		"SELECT coalesce(sum(size), 0) FROM changes WHERE origin = ? "
		"AND seq > ? AND op = 1", &s));
	if (!err) {
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)after);
		err = journal_row(s);
		if (err > 0)
			*out = (uint64_t)sqlite3_column_int64(s, 0);
		err = err < 0 ? err : 0;
	}
	journal_stmt_done(s);
	return err;
}

/* A segment's end, from columns COL.. of (chain IS NOT NULL, key, sig). */
static void seg_from_row(sqlite3_stmt *s, int col, struct journal_chain *ch)
{
	ch->seg_end = sqlite3_column_int(s, col) != 0;
	if (!ch->seg_end || sqlite3_column_bytes(s, col + 1) != CONTENT_HASH_LEN)
		return;
	memcpy(ch->key_id, sqlite3_column_blob(s, col + 1), CONTENT_HASH_LEN);
	ch->sig = sqlite3_column_blob(s, col + 2);
	ch->sig_len = (size_t)sqlite3_column_bytes(s, col + 2);
}

int journal_entries_since(struct journal *j, const char *origin,
			  uint64_t after, unsigned limit, journal_change_fn fn,
			  void *arg)
{
	static const char sql[] =
		"SELECT " JOURNAL_CHANGE_COLUMNS ", g.chain IS NOT NULL, "
		"g.key, g.sig FROM changes c "
		"JOIN origins o ON o.id = c.origin LEFT JOIN signatures g ON "
		"g.origin = c.origin AND g.seq = c.seq "
		"WHERE c.origin = ? AND c.seq > ? ORDER BY c.seq LIMIT ?";
	struct journal_ref bases[HEADS_MAX];
	sqlite3_stmt *s = NULL;
	int64_t id = 0;
	int rc, ret = journal_origin_id(j, origin, false, &id);

	if (ret || id == 0)
		return ret;
	/* Below the floor some changes are gone: a range from there would
	 * have holes the receiver could never fill. */
	if (after < journal_floor(j, origin))
		return KR_ECOMPACTED;
	ret = journal_db_err(journal_prepare_cached(j, sql, &s));
	if (ret)
		return ret;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)after);
	sqlite3_bind_int64(s, 3, limit);
	while (ret == 0 && (rc = journal_row(s)) > 0) {
		struct journal_change c;

		ret = journal_change_from_row(j, s, &c, bases, HEADS_MAX);
		if (ret == 0) {
			seg_from_row(s, 17, &c.chain);
			ret = fn(arg, &c);
		}
	}
	if (ret == 0 && rc < 0)
		ret = rc;
	journal_stmt_done(s);
	return ret;
}

/* ---- adding a remote change ------------------------------------------ */

struct remote_add {
	const struct journal_change *c;
	int64_t origin;
	int64_t id;
};

void journal_bind_version(sqlite3_stmt *s, const struct journal_change *c)
{
	sqlite3_bind_int64(s, 2, (sqlite3_int64)c->ref.seq);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)c->lamport);
	sqlite3_bind_int64(s, 4, c->wall_ns);
	sqlite3_bind_text(s, 5, c->volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, c->path, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 7, c->op);
	sqlite3_bind_int64(s, 8, c->mode);
	sqlite3_bind_int64(s, 9, c->uid);
	sqlite3_bind_int64(s, 10, c->gid);
	sqlite3_bind_int64(s, 11, (sqlite3_int64)c->size);
	sqlite3_bind_int64(s, 12, c->mtime_ns);
	if (c->has_hash)
		sqlite3_bind_blob(s, 13, c->hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	if (c->target)
		sqlite3_bind_text(s, 14, c->target, -1, SQLITE_STATIC);
}

static int remote_insert(struct journal *j, struct remote_add *ra)
{
	const struct journal_change *c = ra->c;
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"INSERT INTO changes (origin, seq, lamport, wall_ns, volume, "
		"path, op, mode, uid, gid, size, mtime_ns, hash, target) "
		"VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", &s));

	if (err)
		return err;
	sqlite3_bind_int64(s, 1, ra->origin);
	journal_bind_version(s, c);
	err = journal_step_done(s);
	ra->id = sqlite3_last_insert_rowid(j->db);
	journal_stmt_done(s);
	return err;
}

static int remote_bases(struct journal *j, struct remote_add *ra)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"INSERT OR IGNORE INTO bases (change, origin, seq) "
		"VALUES (?, ?, ?)", &s));

	for (size_t i = 0; !err && i < ra->c->n_bases; i++) {
		int64_t oid = 0;

		err = journal_origin_id(j, ra->c->bases[i].origin, true, &oid);
		if (err)
			break;
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, ra->id);
		sqlite3_bind_int64(s, 2, oid);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)ra->c->bases[i].seq);
		err = journal_step_done(s);
	}
	journal_stmt_done(s);
	return err;
}

int journal_heads_join(struct journal *j, const char *volume, const char *path,
		       int64_t id, int64_t origin, uint64_t seq)
{
	static const char drop[] =
		"DELETE FROM heads WHERE volume = ?1 AND path = ?2 AND change IN "
		"(SELECT x.id FROM bases b JOIN changes x ON x.origin = b.origin "
		"AND x.seq = b.seq WHERE b.change = ?3)";
	static const char add[] =
		"INSERT OR IGNORE INTO heads (volume, path, change) "
		"SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM bases b "
		"JOIN changes d ON d.id = b.change WHERE b.origin = ?4 AND "
		"b.seq = ?5 AND d.volume = ?1 AND d.path = ?2)";
	const char *sql[] = { drop, add };
	int err = 0;

	for (int i = 0; i < 2 && !err; i++) {
		sqlite3_stmt *s = NULL;

		err = journal_db_err(journal_prepare_cached(j, sql[i], &s));
		if (!err) {
			sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
			sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
			sqlite3_bind_int64(s, 3, id);
			if (i == 1) {
				sqlite3_bind_int64(s, 4, origin);
				sqlite3_bind_int64(s, 5, (sqlite3_int64)seq);
			}
			err = journal_step_done(s);
		}
		journal_stmt_done(s);
	}
	return err;
}

bool journal_remote_out_of_bounds(const struct journal *j,
				  const struct journal_change *c)
{
	return lamport_jumps(j, c) || wall_ahead(c);
}

int journal_insert_remote(struct journal *j, const struct journal_change *c,
			  int64_t origin, int64_t *id)
{
	struct remote_add ra = { .c = c, .origin = origin };
	int err = remote_insert(j, &ra);

	if (!err)
		err = remote_bases(j, &ra);
	*id = ra.id;
	return err;
}

static int remote_add_fn(struct journal *j, void *arg)
{
	struct remote_add *ra = arg;
	int err = journal_insert_remote(j, ra->c, ra->origin, &ra->id);

	if (!err)
		err = journal_chain_remote(j, ra->origin, ra->id, ra->c);
	if (!err)
		err = journal_heads_join(j, ra->c->volume, ra->c->path, ra->id,
					 ra->origin, ra->c->ref.seq);
	if (!err)
		err = journal_retarget(j, ra->c->volume, ra->c->path);
	return err;
}

bool journal_change_valid(const struct journal_change *c)
{
	if (!path_volume_name_ok(c->volume) || path_check_rel(c->path))
		return false;
	if (c->op < JOURNAL_PUT || c->op > JOURNAL_VOLUME_REMOVE ||
	    c->lamport > JOURNAL_LAMPORT_MAX)
		return false;
	if (c->op == JOURNAL_VOLUME_CREATE || c->op == JOURNAL_VOLUME_REMOVE)
		return c->path[0] == '\0';
	return c->path[0] != '\0' || c->op == JOURNAL_META;
}

static void remote_remember(struct journal *j, const char *origin,
			    int64_t id, uint64_t have)
{
	snprintf(j->remote.origin, sizeof(j->remote.origin), "%s", origin);
	j->remote.id = id;
	j->remote.have = have;
	j->remote.valid = true;
}

int journal_add_remote(struct journal *j, const struct journal_change *c)
{
	struct remote_add ra = { .c = c };
	uint64_t have, seq = j->next_seq, lamport = j->lamport;
	unsigned pending = j->pending;
	bool known;
	int err;

	if (!journal_change_valid(c) || strcmp(c->ref.origin, j->origin) == 0)
		return KR_EHOSTILE;
	known = j->remote.valid && strcmp(j->remote.origin, c->ref.origin) == 0;
	have = known ? j->remote.have : journal_have(j, c->ref.origin);
	if (c->ref.seq <= have)
		return -EALREADY;
	if (c->ref.seq > have + 1)
		return -EAGAIN;
	if (journal_remote_out_of_bounds(j, c))
		return -ERANGE;
	err = journal_begin(j);
	if (known)
		ra.origin = j->remote.id;
	else if (!err)
		err = journal_origin_id(j, c->ref.origin, true, &ra.origin);
	if (!err)
		err = journal_atomic(j, remote_add_fn, &ra);
	if (err) {
		j->next_seq = seq;
		j->lamport = lamport;
		j->pending = pending;
		j->remote.valid = false;
		return err;
	}
	if (c->lamport > j->lamport)
		j->lamport = c->lamport;
	j->pending++;
	remote_remember(j, c->ref.origin, ra.origin, c->ref.seq);
	journal_vector_touch(j, c->ref.origin, c->ref.seq);
	return 0;
}

/* ---- ranking heads ---------------------------------------------------- */

static bool head_deleted(const struct head *h)
{
	return h->op == JOURNAL_DELETE || h->op == JOURNAL_VOLUME_REMOVE ||
	       h->mode == 0;
}

static bool head_same(const struct head *a, const struct head *b)
{
	if (head_deleted(a) || head_deleted(b))
		return head_deleted(a) == head_deleted(b);
	if (a->mode != b->mode || a->uid != b->uid || a->gid != b->gid ||
	    a->has_hash != b->has_hash)
		return false;
	if (a->has_hash && memcmp(a->hash, b->hash, CONTENT_HASH_LEN))
		return false;
	if (!a->target != !b->target)
		return false;
	return !a->target || strcmp(a->target, b->target) == 0;
}

/* > 0 when A ranks above B.  Total: origins differ between heads, or
 * (same origin) seqs and hence Lamport values do. */
static int head_rank(const struct journal *j, const struct head *a,
		     const struct head *b)
{
	int c;

	if (head_deleted(a) != head_deleted(b))
		return head_deleted(a) ? -1 : 1;
	/* What a directory holds has paths of its own; the file is kept as
	 * its conflict copy. */
	if (S_ISDIR(a->mode) != S_ISDIR(b->mode))
		return S_ISDIR(a->mode) ? 1 : -1;
	if (j->strategy == JOURNAL_TIMESTAMP && a->wall_ns != b->wall_ns)
		return a->wall_ns > b->wall_ns ? 1 : -1;
	if (a->lamport != b->lamport)
		return a->lamport > b->lamport ? 1 : -1;
	c = strcmp(a->origin, b->origin);
	return c > 0 ? 1 : (c < 0 ? -1 : 0);
}

static void head_from_row(sqlite3_stmt *s, struct head *h)
{
	const void *hash = sqlite3_column_blob(s, 9);
	const unsigned char *target = sqlite3_column_text(s, 10);

	h->id = sqlite3_column_int64(s, 0);
	snprintf(h->origin, sizeof(h->origin), "%s",
		 (const char *)sqlite3_column_text(s, 1));
	h->lamport = (uint64_t)sqlite3_column_int64(s, 2);
	h->wall_ns = sqlite3_column_int64(s, 3);
	h->op = (enum journal_op)sqlite3_column_int(s, 4);
	h->mode = (uint32_t)sqlite3_column_int64(s, 5);
	h->uid = (uint32_t)sqlite3_column_int64(s, 6);
	h->gid = (uint32_t)sqlite3_column_int64(s, 7);
	h->size = (uint64_t)sqlite3_column_int64(s, 8);
	h->has_hash = hash && sqlite3_column_bytes(s, 9) == CONTENT_HASH_LEN;
	if (h->has_hash)
		memcpy(h->hash, hash, CONTENT_HASH_LEN);
	h->target = target ? strdup((const char *)target) : NULL;
	h->mtime_ns = sqlite3_column_int64(s, 11);
	h->seq = (uint64_t)sqlite3_column_int64(s, 12);
}

#define HEAD_COLUMNS \
	"c.id, o.node || '@' || o.epoch, c.lamport, c.wall_ns, c.op, " \
	"c.mode, c.uid, c.gid, c.size, c.hash, c.target, c.mtime_ns, c.seq"

/* Runs SQL (binding VOLUME and PATH) and reads up to MAX heads. */
static int query_heads(struct journal *j, const char *sql, const char *volume,
		       const char *path, struct head *out, int max, int *n)
{
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j, sql, &s));

	*n = 0;
	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	while ((rc = journal_row(s)) > 0 && *n < max)
		head_from_row(s, &out[(*n)++]);
	if (rc < 0)
		err = rc;
	journal_stmt_done(s);
	return err;
}

static int load_heads(struct journal *j, const char *volume, const char *path,
		      struct head *out, int *n)
{
	return query_heads(j, "SELECT " HEAD_COLUMNS " FROM heads h JOIN "
			   "changes c ON c.id = h.change JOIN origins o ON "
			   "o.id = c.origin WHERE h.volume = ? AND h.path = ? "
			   "ORDER BY c.id LIMIT 64", volume, path, out,
			   HEADS_MAX, n);
}

/* The version on disk at VOLUME/PATH, as a head; -ENOENT when none. */
static int load_current(struct journal *j, const char *volume,
			const char *path, struct head *out)
{
	int n, err = query_heads(j, "SELECT " HEAD_COLUMNS " FROM current cur "
				 "JOIN changes c ON c.id = cur.change JOIN "
				 "origins o ON o.id = c.origin WHERE "
				 "cur.volume = ? AND cur.path = ?", volume, path,
				 out, 1, &n);

	return err ? err : (n ? 0 : -ENOENT);
}

static void heads_release(struct head *h, int n)
{
	for (int i = 0; i < n; i++)
		free(h[i].target);
}

/* ---- jobs ------------------------------------------------------------- */

int64_t journal_job_order(enum journal_op op, const char *path)
{
	int64_t len = (int64_t)strlen(path);

	return op == JOURNAL_DELETE || op == JOURNAL_VOLUME_REMOVE ?
	       JOB_ORDER_DELETES - len : len;
}

static int job_set(struct journal *j, const char *volume, const char *path,
		   const struct head *h, const char *copy_of)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"INSERT INTO jobs (volume, path, change, copy_of, ord) VALUES "
		"(?1, ?2, ?3, ?4, ?5) ON CONFLICT (volume, path) DO UPDATE SET "
		"change = excluded.change, copy_of = excluded.copy_of, "
		"ord = excluded.ord, "
		"attempts = CASE WHEN change = excluded.change THEN attempts "
		"ELSE 0 END, "
		"failures = CASE WHEN change = excluded.change THEN failures "
		"ELSE 0 END, "
		"reason = CASE WHEN change = excluded.change THEN reason END, "
		"failing_since = CASE WHEN change = excluded.change THEN "
		"failing_since END, "
		"retry_ns = CASE WHEN change = excluded.change THEN retry_ns "
		"ELSE 0 END, "
		"repair = CASE WHEN change = excluded.change THEN repair "
		"ELSE 0 END", &s));

	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, h->id);
	if (copy_of)
		sqlite3_bind_text(s, 4, copy_of, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, journal_job_order(h->op, path));
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

static int job_clear(struct journal *j, const char *volume, const char *path)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"DELETE FROM jobs WHERE volume = ? AND path = ?", &s));

	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

int journal_conflict_name(const char *path, const char *origin,
			  uint64_t lamport, char *out, size_t cap)
{
	const char *base = path_basename(path);
	const char *dot = strrchr(base, '.');
	size_t dir_len = (size_t)(base - path);
	size_t stem = dot && dot != base ? (size_t)(dot - base) : strlen(base);
	const char *ext = base + stem;
	char tag[96];
	size_t node_len = strcspn(origin, "@");
	int n = snprintf(tag, sizeof(tag), ".conflict-%.*s-%llu",
			 (int)node_len, origin, (unsigned long long)lamport);

	/* Shorten the stem, not the tag, to stay within NAME_MAX. */
	if ((size_t)n + strlen(ext) >= NAME_MAX)
		return -ENAMETOOLONG;
	if (stem + (size_t)n + strlen(ext) > NAME_MAX)
		stem = NAME_MAX - (size_t)n - strlen(ext);
	n = snprintf(out, cap, "%.*s%.*s%s%s", (int)dir_len, path, (int)stem,
		     base, tag, ext);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

struct target {
	struct head heads[HEADS_MAX];
	int n;
	struct head cur;
	bool have_cur;
	int winner;
};

/* Whether the disk at PATH holds H, as far as the journal knows; with
 * EXACT, a file's mtime counts too (see journal_retarget). */
static bool disk_holds(struct journal *j, const char *volume,
		       const char *path, const struct head *h, bool exact)
{
	struct head cur;
	bool same;

	if (load_current(j, volume, path, &cur) != 0)
		return head_deleted(h);
	same = head_same(&cur, h) &&
	       (!exact || !S_ISREG(h->mode) || cur.mtime_ns == h->mtime_ns);
	free(cur.target);
	return same;
}

/* Jobs for the losers' copies; *all_done says whether every copy exists. */
static int target_copies(struct journal *j, const char *volume,
			 const char *path, struct target *t, bool *all_done,
			 bool *any)
{
	char copy[PATH_REL_MAX + 1];
	int err = 0;

	*all_done = true;
	*any = false;
	for (int i = 0; i < t->n && !err; i++) {
		struct head *h = &t->heads[i];

		if (head_same(h, &t->heads[t->winner]) || head_deleted(h) ||
		    S_ISDIR(h->mode) || path[0] == '\0')
			continue;
		*any = true;
		if (journal_conflict_name(path, h->origin, h->lamport, copy,
					  sizeof(copy))) {
			*all_done = false;   /* no room for a name: no merge */
			continue;
		}
		if (disk_holds(j, volume, copy, h, false)) {
			job_clear(j, volume, copy);
			continue;
		}
		*all_done = false;
		err = job_set(j, volume, copy, h, path);
	}
	return err;
}

static int target_merge(struct journal *j, const char *volume,
			const char *path, const struct head *w)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_mode = w->mode;
	st.st_uid = w->uid;
	st.st_gid = w->gid;
	st.st_size = (off_t)w->size;
	st.st_mtim.tv_sec = w->mtime_ns / 1000000000;
	st.st_mtim.tv_nsec = w->mtime_ns % 1000000000;
	return journal_append_merge(j, volume, path, &st,
				    w->has_hash ? w->hash : NULL, w->target);
}

/*
 * Whether PATH's only head is the version on disk: then it is its own
 * winner, there is no conflict and no job to set, which is what nearly
 * every change recorded or applied leaves.  One lookup instead of
 * loading every head and the current version in full.
 */
static bool settled(struct journal *j, const char *volume, const char *path)
{
	sqlite3_stmt *s = NULL;
	int rc, rows = 0;
	bool same = false;

	if (journal_prepare_cached(j, "SELECT h.change = cur.change FROM "
				   "heads h LEFT JOIN current cur ON "
				   "cur.volume = h.volume AND cur.path = h.path "
				   "WHERE h.volume = ?1 AND h.path = ?2 LIMIT 2",
				   &s) != SQLITE_OK)
		return false;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	/* A failure (logged) is "not settled": the caller then works it
	 * out in full, where the same failure is returned. */
	while ((rc = journal_row(s)) > 0) {
		rows++;
		same = sqlite3_column_int(s, 0) == 1;
	}
	if (rc < 0)
		rows = 0;
	journal_stmt_done(s);
	return rows == 1 && same;
}

/* Copy jobs of PATH for versions that are no longer heads: a later
 * version of the same side replaced them before they were written.  The
 * copy's path may have versions of its own (a copy another node made
 * and sent): it is retargeted once the job is gone. */
static int copies_drop_stale(struct journal *j, const char *volume,
			     const char *path)
{
	sqlite3_stmt *s = NULL;
	char *stale = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"SELECT jb.path FROM jobs jb WHERE jb.volume = ?1 AND "
		"jb.copy_of = ?2 AND jb.change NOT IN (SELECT h.change FROM "
		"heads h WHERE h.volume = ?1 AND h.path = ?2) LIMIT 1", &s));

	while (!err) {
		sqlite3_reset(s);
		sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
		err = journal_row(s);
		if (err <= 0)
			break;
		stale = strdup((const char *)sqlite3_column_text(s, 0));
		sqlite3_reset(s);
		err = stale ? job_clear(j, volume, stale) : -ENOMEM;
		if (!err)
			err = journal_retarget(j, volume, stale);
		free(stale);
	}
	journal_stmt_done(s);
	return err;
}

int journal_retarget(struct journal *j, const char *volume, const char *path)
{
	struct target *t;
	bool copies_done = true, copies = false, conflict = false;
	int err = copies_drop_stale(j, volume, path);

	if (err)
		return err;
	if (settled(j, volume, path))
		return job_clear(j, volume, path);
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	err = load_heads(j, volume, path, t->heads, &t->n);
	if (err || t->n == 0)
		goto out;
	for (int i = 1; i < t->n; i++)
		if (head_rank(j, &t->heads[i], &t->heads[t->winner]) > 0)
			t->winner = i;
	for (int i = 0; i < t->n; i++)
		conflict |= !head_same(&t->heads[i], &t->heads[t->winner]);
	/* The winner's mtime counts: identical content written on two
	 * nodes is no conflict, yet every node ends with the winner's
	 * mtime, and a touch reaches every node.  Its own mtime is what
	 * the path's current change says once applied (never a disk's
	 * rounding of it), so a job done is never due again. */
	if (disk_holds(j, volume, path, &t->heads[t->winner], true))
		err = job_clear(j, volume, path);
	else
		err = job_set(j, volume, path, &t->heads[t->winner], NULL);
	if (!err && conflict)
		err = target_copies(j, volume, path, t, &copies_done, &copies);
	if (!err && copies && copies_done &&
	    disk_holds(j, volume, path, &t->heads[t->winner], false) &&
	    !head_deleted(&t->heads[t->winner]))
		err = target_merge(j, volume, path, &t->heads[t->winner]);
out:
	heads_release(t->heads, t->n);
	free(t);
	return err;
}

/* ---- listing conflicts --------------------------------------------------- */

struct conflict_walk {
	struct journal *j;
	journal_conflict_fn fn;
	void *arg;
	/* The last resolved conflict reported, to skip identical merges. */
	char last_key[PATH_REL_MAX + 512];
};

static int conflict_report(struct conflict_walk *w, const char *volume,
			   const char *path, struct head *h, int n,
			   const struct journal_ref *merge, int64_t merge_wall)
{
	struct journal_conflict_version *v = calloc((size_t)n, sizeof(*v));
	struct journal_conflict c = { .volume = volume, .path = path,
				      .resolved = merge != NULL };
	int win = 0, distinct = 0, err;

	if (!v)
		return -ENOMEM;
	for (int i = 1; i < n; i++)
		if (head_rank(w->j, &h[i], &h[win]) > 0)
			win = i;
	for (int i = 0; i < n; i++) {
		distinct += !head_same(&h[i], &h[win]);
		snprintf(v[i].ref.origin, sizeof(v[i].ref.origin), "%s",
			 h[i].origin);
		v[i].ref.seq = h[i].seq;
		v[i].lamport = h[i].lamport;
		v[i].wall_ns = h[i].wall_ns;
		v[i].op = h[i].op;
		v[i].mode = h[i].mode;
		v[i].size = h[i].size;
		v[i].has_hash = h[i].has_hash;
		memcpy(v[i].hash, h[i].hash, CONTENT_HASH_LEN);
		v[i].winner = i == win;
		if (i != win && !head_deleted(&h[i]) && !S_ISDIR(h[i].mode) &&
		    !head_same(&h[i], &h[win]))
			journal_conflict_name(path, h[i].origin, h[i].lamport,
					      v[i].copy, sizeof(v[i].copy));
	}
	if (merge) {
		c.merge = *merge;
		c.merge_wall_ns = merge_wall;
	}
	c.versions = v;
	c.n_versions = (size_t)n;
	err = distinct ? w->fn(w->arg, &c) : 0;
	free(v);
	return err;
}

/* The versions a change names as bases, as heads. */
static int load_bases_as_heads(struct journal *j, int64_t id, struct head *out,
			       int *n)
{
	static const char sql[] =
		"SELECT " HEAD_COLUMNS " FROM bases b JOIN changes c "
		"ON c.origin = b.origin AND c.seq = b.seq JOIN origins o "
		"ON o.id = c.origin WHERE b.change = ? ORDER BY c.origin, c.seq "
		"LIMIT 64";
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j, sql, &s));

	*n = 0;
	if (err)
		return err;
	sqlite3_bind_int64(s, 1, id);
	while ((rc = journal_row(s)) > 0 && *n < HEADS_MAX)
		head_from_row(s, &out[(*n)++]);
	if (rc < 0)
		err = rc;
	journal_stmt_done(s);
	return err;
}

static int conflicts_resolved(struct conflict_walk *w, const char *volume)
{
	static const char sql[] =
		"SELECT c.id, c.volume, c.path, o.node || '@' || o.epoch, c.seq, "
		"c.wall_ns, (SELECT group_concat(b.origin || ':' || b.seq) FROM "
		"bases b WHERE b.change = c.id) FROM merges m "
		"CROSS JOIN changes c ON c.id = m.change JOIN origins o "
		"ON o.id = c.origin WHERE (?1 IS NULL OR c.volume = ?1) "
		"ORDER BY c.volume, c.path, c.id";
	struct head *h = calloc(HEADS_MAX, sizeof(*h));
	sqlite3_stmt *s = NULL;
	int n, rc = 0;
	int err = h ? journal_db_err(journal_prepare_cached(w->j, sql, &s)) :
		  -ENOMEM;

	if (!err && volume)
		sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	while (!err && (rc = journal_row(s)) > 0) {
		char key[sizeof(w->last_key)];
		struct journal_ref merge;
		const char *vol = (const char *)sqlite3_column_text(s, 1);
		const char *path = (const char *)sqlite3_column_text(s, 2);

		snprintf(key, sizeof(key), "%s/%s %s", vol, path,
			 (const char *)sqlite3_column_text(s, 6));
		if (strcmp(key, w->last_key) == 0)
			continue;       /* the same merge, made by another node */
		memcpy(w->last_key, key, sizeof(key));
		snprintf(merge.origin, sizeof(merge.origin), "%s",
			 (const char *)sqlite3_column_text(s, 3));
		merge.seq = (uint64_t)sqlite3_column_int64(s, 4);
		err = load_bases_as_heads(w->j, sqlite3_column_int64(s, 0), h, &n);
		if (!err)
			err = conflict_report(w, vol, path, h, n, &merge,
					      sqlite3_column_int64(s, 5));
		heads_release(h, n);
	}
	if (!err && rc < 0)
		err = rc;
	journal_stmt_done(s);
	free(h);
	return err;
}

static int conflicts_open(struct conflict_walk *w, const char *volume)
{
	static const char sql[] =
		"SELECT volume, path FROM heads WHERE (?1 IS NULL OR volume = ?1) "
		"GROUP BY volume, path HAVING count(*) > 1";
	struct head *h = calloc(HEADS_MAX, sizeof(*h));
	sqlite3_stmt *s = NULL;
	int n, rc = 0;
	int err = h ? journal_db_err(journal_prepare_cached(w->j, sql, &s)) :
		  -ENOMEM;

	if (!err && volume)
		sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	while (!err && (rc = journal_row(s)) > 0) {
		const char *vol = (const char *)sqlite3_column_text(s, 0);
		const char *path = (const char *)sqlite3_column_text(s, 1);

		err = load_heads(w->j, vol, path, h, &n);
		if (!err)
			err = conflict_report(w, vol, path, h, n, NULL, 0);
		heads_release(h, n);
	}
	if (!err && rc < 0)
		err = rc;
	journal_stmt_done(s);
	free(h);
	return err;
}

int journal_conflicts(struct journal *j, const char *volume,
		      journal_conflict_fn fn, void *arg)
{
	struct conflict_walk *w = calloc(1, sizeof(*w));
	int err;

	if (!w)
		return -ENOMEM;
	w->j = j;
	w->fn = fn;
	w->arg = arg;
	err = conflicts_resolved(w, volume);
	if (!err)
		err = conflicts_open(w, volume);
	free(w);
	return err;
}
