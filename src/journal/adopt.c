/*
 * Adopting a disk the journal does not know: a node whose journal was
 * lost (or is new) but whose volumes hold files.  Recording that scan as
 * new versions would make every stale file win everywhere (new versions,
 * no bases, wall time "now") and bring deleted files back, so the node
 * first learns the cluster's history from its peers (the agent's rejoin)
 * and then judges each path it finds against it:
 *
 *   the winner         what the path must hold has this content (type,
 *                      hash or link target): the path holds that version
 *                      already; no new change, and no job but one that
 *                      puts the winner's mode, owner and mtime on it
 *                      where the disk's differ;
 *   an older version   stale: the path holds that version, so the job
 *                      the history asks for (a newer version, or the
 *                      delete) replaces it like any version this node
 *                      held before;
 *   known nowhere      a genuine local change, recorded as usual; where
 *                      a present version holds the path, the caller moves
 *                      the file to its conflict-copy name first, so the
 *                      cluster's version keeps the path and nothing is
 *                      lost.
 *
 * History compacted away cannot be matched: a file that old counts as
 * known nowhere and is kept as a copy, never lost.  A path the journal
 * already holds (adopted or applied) is left to the usual scan.
 *
 * Applied before a crash (journal_adopt_applied).  A peer's version is
 * put in place (renamed in, unlinked) before the batch that marks its
 * job done commits; a kill -9 or power cut between the two leaves the
 * disk ahead of the journal, and the scan after the restart sees a path
 * that differs from its current state.  Recorded, that was a change of
 * this node's nobody made, based on the old state and so concurrent
 * with everything the peer wrote since: it could beat the peer's newer
 * version into a conflict copy.  So first the disk is judged against
 * the path's pending job: the version the job puts, or one of its
 * ancestors that arrived after the current state (an apply of which a
 * crash lost the commit, the job since moved on to a newer one), is
 * taken as applied.  The disk must hold it whole, mode, owner and
 * mtime too, as the applier leaves it; only that line is looked at: a
 * version that lost a conflict is never put at the path, so content
 * equal to it (or a version's content under another mode) is a change
 * of this node's, recorded as usual.
 *
 * Invariant: adoption never adds a change; it only sets what the disk
 * holds (current, with its inode and ctime) and retargets the path.
 */
#include "journal_int.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

/* Whether ST has the mode, owner and (for a file) mtime of the version
 * in columns COL.. of S: mode, uid, gid, mtime_ns. */
static bool adopt_same_meta(sqlite3_stmt *s, int col, const struct stat *st)
{
	return (uint32_t)sqlite3_column_int64(s, col) == (uint32_t)st->st_mode &&
	       (uint32_t)sqlite3_column_int64(s, col + 1) == st->st_uid &&
	       (uint32_t)sqlite3_column_int64(s, col + 2) == st->st_gid &&
	       (!S_ISREG(st->st_mode) ||
		sqlite3_column_int64(s, col + 3) ==
		(int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec);
}

/* What adopt_match and applied_match bind alike: ?4 the content HASH,
 * ?5 the link TARGET (NULL: any), ?6 and ?7 the ops that leave nothing
 * to hold, ?8 the file type mask. */
static void bind_content(sqlite3_stmt *s, const uint8_t *hash,
			 const char *target)
{
	if (hash)
		sqlite3_bind_blob(s, 4, hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	if (target)
		sqlite3_bind_text(s, 5, target, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 6, JOURNAL_DELETE);
	sqlite3_bind_int(s, 7, JOURNAL_VOLUME_REMOVE);
	sqlite3_bind_int64(s, 8, S_IFMT);
}

/* The version of PATH whose content is what the disk holds, preferring
 * the one its job (the winner) names: *id 0 when none.  *SAME_META:
 * the disk has its mode, owner and (for a file) mtime too. */
static int adopt_match(struct journal *j, const char *volume, const char *path,
		       const struct stat *st, const uint8_t *hash,
		       const char *target, int64_t *id, bool *winner,
		       bool *same_meta)
{
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j,
		"SELECT c.id, c.id = (SELECT jb.change FROM jobs jb WHERE "
		"jb.volume = ?1 AND jb.path = ?2 AND jb.copy_of IS NULL) AS w, "
		"c.mode, c.uid, c.gid, c.mtime_ns "
		"FROM changes c WHERE c.volume = ?1 AND c.path = ?2 AND "
		"c.op NOT IN (?6, ?7) AND (?2 = '' OR (c.mode & ?8) = ?3) AND "
		"(?4 IS NULL OR c.hash = ?4) AND (?5 IS NULL OR c.target = ?5) "
		"ORDER BY w DESC, c.id DESC LIMIT 1", &s));

	*id = 0;
	*winner = false;
	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, st->st_mode & S_IFMT);
	bind_content(s, hash, target);
	rc = journal_row(s);
	if (rc > 0) {
		*id = sqlite3_column_int64(s, 0);
		*winner = sqlite3_column_int(s, 1) == 1;
		*same_meta = adopt_same_meta(s, 2, st);
	} else if (rc < 0) {
		err = rc;
	}
	journal_stmt_done(s);
	return err;
}

/* Whether a present version holds PATH: its job writes one. */
static int adopt_taken(struct journal *j, const char *volume, const char *path,
		       bool *taken)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"SELECT 1 FROM jobs jb JOIN changes c ON c.id = jb.change "
		"WHERE jb.volume = ?1 AND jb.path = ?2 AND jb.copy_of IS NULL "
		"AND c.op NOT IN (?3, ?4)", &s));

	*taken = false;
	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 3, JOURNAL_DELETE);
	sqlite3_bind_int(s, 4, JOURNAL_VOLUME_REMOVE);
	err = journal_row(s);
	*taken = err > 0;
	journal_stmt_done(s);
	return err < 0 ? err : 0;
}

/* The disk holds the winner's content under other metadata: a job puts
 * the winner's mode, owner and mtime on it (the applier finds the
 * content in place). */
static int adopt_meta_job(struct journal *j, const char *volume,
			  const char *path, int64_t id)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"INSERT INTO jobs (volume, path, change, ord) VALUES "
		"(?1, ?2, ?3, ?4) ON CONFLICT (volume, path) DO NOTHING", &s));

	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, id);
	sqlite3_bind_int64(s, 4, journal_job_order(JOURNAL_META, path));
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

static int adopt_set_current(struct journal *j, const char *volume,
			     const char *path, int64_t id)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"INSERT INTO current (volume, path, change) VALUES (?1, ?2, ?3) "
		"ON CONFLICT (volume, path) DO UPDATE SET change = "
		"excluded.change", &s));

	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, id);
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

/* PATH holds version ID now (ST: what is there, NULL when nothing is). */
static int adopt_take(struct journal *j, const char *volume, const char *path,
		      const struct stat *st, int64_t id, bool meta_job)
{
	int err = adopt_set_current(j, volume, path, id);

	if (!err && st)
		err = journal_touch_state(j, volume, path, st);
	if (!err)
		err = journal_retarget(j, volume, path);
	if (!err && meta_job)
		err = adopt_meta_job(j, volume, path, id);
	return err;
}

int journal_adopt(struct journal *j, const char *volume, const char *path,
		  const struct stat *st, const uint8_t *hash,
		  const char *target, enum journal_adoption *out)
{
	int64_t id;
	bool winner, taken, same_meta = true;
	int err = journal_begin(j);

	*out = JOURNAL_ADOPT_NEW;
	if (!err)
		err = adopt_match(j, volume, path, st, S_ISREG(st->st_mode) ?
				  hash : NULL, S_ISLNK(st->st_mode) ? target :
				  NULL, &id, &winner, &same_meta);
	if (!err && !id) {
		err = adopt_taken(j, volume, path, &taken);
		if (!err && taken && !S_ISDIR(st->st_mode))
			*out = JOURNAL_ADOPT_TAKEN;
		return err;
	}
	if (!err)
		err = adopt_take(j, volume, path, st, id, winner && !same_meta);
	if (!err)
		*out = winner ? JOURNAL_ADOPT_CURRENT : JOURNAL_ADOPT_STALE;
	return err;
}

/* ---- applied before a crash ---------------------------------------------- */

/*
 * The version on the line of PATH's job (the one it puts, then back
 * through bases to the current state) that the disk holds whole: ST's
 * type, mode, owner and (a file) mtime, and HASH or TARGET; a delete
 * when ST is NULL.  *id 0 when none.
 */
static int applied_match(struct journal *j, const char *volume,
			 const char *path, const struct stat *st,
			 const uint8_t *hash, const char *target, int64_t *id)
{
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j,
		"WITH RECURSIVE since(id) AS (SELECT coalesce((SELECT "
		"cu.change FROM current cu WHERE cu.volume = ?1 AND "
		"cu.path = ?2), 0)), "
		"job(id) AS (SELECT jb.change FROM jobs jb WHERE "
		"jb.volume = ?1 AND jb.path = ?2 AND jb.copy_of IS NULL), "
		"line(id) AS (SELECT id FROM job UNION SELECT c.id FROM line l "
		"JOIN bases b ON b.change = l.id JOIN changes c ON "
		"c.origin = b.origin AND c.seq = b.seq WHERE c.volume = ?1 "
		"AND c.path = ?2 AND c.id > (SELECT id FROM since)) "
		"SELECT c.id FROM line l JOIN changes c ON c.id = l.id "
		"WHERE c.id > (SELECT id FROM since) AND "
		"(CASE WHEN ?3 IS NULL THEN c.op = ?6 ELSE "
		"c.op NOT IN (?6, ?7) AND c.mode = ?3 AND c.uid = ?9 AND "
		"c.gid = ?10 AND ((c.mode & ?8) != ?11 OR c.mtime_ns = ?12) "
		"AND (?4 IS NULL OR c.hash = ?4) AND "
		"(?5 IS NULL OR c.target = ?5) END) "
		"ORDER BY c.id = (SELECT id FROM job) DESC, c.id DESC LIMIT 1",
		&s));

	*id = 0;
	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	if (st) {
		sqlite3_bind_int64(s, 3, (uint32_t)st->st_mode);
		sqlite3_bind_int64(s, 9, st->st_uid);
		sqlite3_bind_int64(s, 10, st->st_gid);
		sqlite3_bind_int64(s, 12, (int64_t)st->st_mtim.tv_sec *
				   1000000000 + st->st_mtim.tv_nsec);
	}
	bind_content(s, hash, target);
	sqlite3_bind_int64(s, 11, S_IFREG);
	rc = journal_row(s);
	if (rc > 0)
		*id = sqlite3_column_int64(s, 0);
	else if (rc < 0)
		err = rc;
	journal_stmt_done(s);
	return err;
}

struct applied {
	const char *volume, *path;
	const struct stat *st;
	const uint8_t *hash;
	const char *target;
	bool adopted;
};

static int applied_fn(struct journal *j, void *arg)
{
	struct applied *a = arg;
	int64_t id;
	int err = applied_match(j, a->volume, a->path, a->st, a->hash,
				a->target, &id);

	if (err || !id)
		return err;
	err = adopt_take(j, a->volume, a->path, a->st, id, false);
	a->adopted = !err;
	return err;
}

int journal_adopt_applied(struct journal *j, const char *volume,
			  const char *path, const struct stat *st,
			  const uint8_t *hash, const char *target,
			  bool *adopted)
{
	struct applied a = {
		.volume = volume, .path = path, .st = st,
		.hash = st && S_ISREG(st->st_mode) ? hash : NULL,
		.target = st && S_ISLNK(st->st_mode) ? target : NULL,
	};
	/* Retargeting may record a merge: its numbers go with a failure. */
	uint64_t seq = j->next_seq, lamport = j->lamport;
	unsigned pending = j->pending;
	int err = journal_atomic(j, applied_fn, &a);

	if (err) {
		j->next_seq = seq;
		j->lamport = lamport;
		j->pending = pending;
	} else if (a.adopted) {
		j->pending++;
	}
	*adopted = !err && a.adopted;
	return err;
}
