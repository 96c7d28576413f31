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
 *                      already; no new change, and no job but metadata;
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
 * Invariant: adoption never adds a change; it only sets what the disk
 * holds (current, with its inode and ctime) and retargets the path.
 */
#include "journal_int.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

/* The version of PATH whose content is what the disk holds, preferring
 * the one its job (the winner) names: *id 0 when none. */
static int adopt_match(struct journal *j, const char *volume, const char *path,
		       const struct stat *st, const uint8_t *hash,
		       const char *target, int64_t *id, bool *winner)
{
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j,
		"SELECT c.id, c.id = (SELECT jb.change FROM jobs jb WHERE "
		"jb.volume = ?1 AND jb.path = ?2 AND jb.copy_of IS NULL) AS w "
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
	if (hash)
		sqlite3_bind_blob(s, 4, hash, CONTENT_HASH_LEN, SQLITE_STATIC);
	if (target)
		sqlite3_bind_text(s, 5, target, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 6, JOURNAL_DELETE);
	sqlite3_bind_int(s, 7, JOURNAL_VOLUME_REMOVE);
	sqlite3_bind_int64(s, 8, S_IFMT);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(s, 0);
		*winner = sqlite3_column_int(s, 1) == 1;
	} else if (rc != SQLITE_DONE) {
		err = journal_db_err(rc);
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
	*taken = sqlite3_step(s) == SQLITE_ROW;
	journal_stmt_done(s);
	return 0;
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

int journal_adopt(struct journal *j, const char *volume, const char *path,
		  const struct stat *st, const uint8_t *hash,
		  const char *target, enum journal_adoption *out)
{
	int64_t id;
	bool winner, taken;
	int err = journal_begin(j);

	*out = JOURNAL_ADOPT_NEW;
	if (!err)
		err = adopt_match(j, volume, path, st, S_ISREG(st->st_mode) ?
				  hash : NULL, S_ISLNK(st->st_mode) ? target :
				  NULL, &id, &winner);
	if (!err && !id) {
		err = adopt_taken(j, volume, path, &taken);
		if (!err && taken && !S_ISDIR(st->st_mode))
			*out = JOURNAL_ADOPT_TAKEN;
		return err;
	}
	if (!err)
		err = adopt_set_current(j, volume, path, id);
	if (!err)
		err = journal_touch_state(j, volume, path, st);
	if (!err)
		err = journal_retarget(j, volume, path);
	if (!err)
		*out = winner ? JOURNAL_ADOPT_CURRENT : JOURNAL_ADOPT_STALE;
	return err;
}
