/*
 * The applier's queue: the jobs retargeting sets (replica.c), read in
 * pages in the applier's order, done, deferred, or failed.
 *
 * A job is a row of `jobs`; its state is what the row's columns say,
 * and each move is one statement of this file:
 *
 *            retarget (replica.c: a newer version of the path)
 *   (none) ----------------------> DUE <---------------------+
 *                                  |  \                      |
 *               journal_job_defer  |   \ journal_job_fail    | retry_ns
 *               (a transfer took   |    \ (failures + 1)     | passed, or
 *                it: attempts + 1) v     v                   | journal_jobs_
 *                              RUNNING  WAITING -------------+ retry
 *                                  |     |   (failures >= JOURNAL_JOB_STUCK:
 *          journal_job_done,       |     |    STUCK, said and listed)
 *          journal_job_cancel      v     v
 *                                (row deleted)
 *
 *   DUE      retry_ns is 0 or past: journal_jobs returns it, fewest
 *            attempts first, so a running transfer's job sorts after
 *            untried ones;
 *   RUNNING  a transfer is under way (the applier knows: its inflight
 *            set); the row is still DUE to the journal;
 *   WAITING  retry_ns is in the future (failing_since and reason kept);
 *            from JOURNAL_JOB_STUCK failures in a row it is stuck and
 *            waits longer between attempts (1 s, then from 2 s doubling
 *            up to JOB_RETRY_MAX_NS), a wait a connecting peer cuts
 *            short (journal_jobs_retry).
 * A job retargeted to another version starts afresh (failures 0).  A
 * repair job (scrub) makes the very version the path holds again; a
 * fetch job puts a version into the store instead of the volume.
 */
#include "journal_int.h"
#include "loop.h"

#include "err.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A failing job's pause: the applier's own second until it is stuck,
 * then doubling from 2 s up to this. */
#define JOB_RETRY_MAX_NS (300LL * 1000000000)
/* The SQL below says 5, so that it matches schema/009's partial index. */
_Static_assert(JOURNAL_JOB_STUCK == 5, "jobs_stuck (schema 9) is for 5");

/* The job of the row S stands on (journal_jobs' columns) into *JB. */
static int job_from_row(sqlite3_stmt *s, struct journal_job *jb)
{
	const void *hash = sqlite3_column_blob(s, 11);
	const unsigned char *copy = sqlite3_column_text(s, 2);
	const unsigned char *target = sqlite3_column_text(s, 12);

	memset(jb, 0, sizeof(*jb));
	snprintf(jb->volume, sizeof(jb->volume), "%s",
		 (const char *)sqlite3_column_text(s, 0));
	jb->path = strdup((const char *)sqlite3_column_text(s, 1));
	jb->copy_of = copy ? strdup((const char *)copy) : NULL;
	jb->attempts = (unsigned)sqlite3_column_int(s, 3);
	jb->change = sqlite3_column_int64(s, 4);
	jb->op = (enum journal_op)sqlite3_column_int(s, 5);
	jb->mode = (uint32_t)sqlite3_column_int64(s, 6);
	jb->uid = (uint32_t)sqlite3_column_int64(s, 7);
	jb->gid = (uint32_t)sqlite3_column_int64(s, 8);
	jb->size = (uint64_t)sqlite3_column_int64(s, 9);
	jb->mtime_ns = sqlite3_column_int64(s, 10);
	jb->has_hash = hash && sqlite3_column_bytes(s, 11) == CONTENT_HASH_LEN;
	if (jb->has_hash)
		memcpy(jb->hash, hash, CONTENT_HASH_LEN);
	jb->target = target ? strdup((const char *)target) : NULL;
	snprintf(jb->ref.origin, sizeof(jb->ref.origin), "%s",
		 (const char *)sqlite3_column_text(s, 13));
	jb->ref.seq = (uint64_t)sqlite3_column_int64(s, 14);
	jb->order = sqlite3_column_int64(s, 15);
	jb->failures = (unsigned)sqlite3_column_int(s, 16);
	jb->repair = sqlite3_column_int(s, 17) != 0;
	jb->fetch = sqlite3_column_int(s, 18) != 0;
	return !jb->path || (copy && !jb->copy_of) || (target && !jb->target) ?
	       -ENOMEM : 0;
}

int journal_jobs(struct journal *j, const struct journal_job *after,
		 struct journal_job *out, int max)
{
	/* Row values in the index's own order: the next page is a range
	 * scan of jobs_order, whatever the queue's length. */
	static const char sql[] =
		"SELECT jb.volume, jb.path, jb.copy_of, jb.attempts, c.id, c.op, "
		"c.mode, c.uid, c.gid, c.size, c.mtime_ns, c.hash, c.target, "
		"o.node || '@' || o.epoch, c.seq, jb.ord, jb.failures, jb.repair, "
		"jb.fetch FROM jobs jb "
		"JOIN changes c ON c.id = jb.change "
		"JOIN origins o ON o.id = c.origin "
		"WHERE (jb.attempts, jb.ord, jb.volume, jb.path) > (?1, ?2, ?3, ?4) "
		"AND (jb.retry_ns <= ?6 OR jb.retry_ns > ?6 + ?7) "
		"ORDER BY jb.attempts, jb.ord, jb.volume, jb.path LIMIT ?5";
	int64_t now = loop_wall_ns();
	sqlite3_stmt *s = NULL;
	int n = 0, rc = 0;
	int err = journal_db_err(journal_prepare_cached(j, sql, &s));

	if (err)
		return err;
	sqlite3_bind_int64(s, 1, after ? (sqlite3_int64)after->attempts : -1);
	sqlite3_bind_int64(s, 2, after ? after->order : 0);
	/* Copied: AFTER may be a job of OUT, overwritten below.  A copy can
	 * fail, and a NULL bound instead would restart the queue. */
	err = journal_bind_check(s, sqlite3_bind_text(s, 3, after ?
				 after->volume : "", -1, SQLITE_TRANSIENT));
	if (!err)
		err = journal_bind_check(s, sqlite3_bind_text(s, 4, after ?
					 after->path : "", -1,
					 SQLITE_TRANSIENT));
	sqlite3_bind_int(s, 5, max);
	sqlite3_bind_int64(s, 6, now);
	/* A retry time further off than any backoff: the clock went back. */
	sqlite3_bind_int64(s, 7, JOB_RETRY_MAX_NS);
	while (!err && n < max && (rc = journal_row(s)) > 0)
		err = job_from_row(s, &out[n++]);
	if (!err && n < max && rc < 0)
		err = rc;
	journal_stmt_done(s);
	if (err)
		while (n > 0)
			journal_job_release(&out[--n]);
	return err ? err : n;
}

void journal_job_release(struct journal_job *job)
{
	free(job->path);
	free(job->copy_of);
	free(job->target);
	job->path = job->copy_of = job->target = NULL;
}

static int job_exec(struct journal *j, const char *sql,
		    const struct journal_job *job)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j, sql, &s));

	if (err)
		return err;
	sqlite3_bind_text(s, 1, job->volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, job->path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, job->change);
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

struct job_done {
	const struct journal_job *job;
	const struct stat *st;
};

/* A copy is a new local file: recorded like any the watcher would see. */
static int job_done_copy(struct journal *j, struct job_done *d)
{
	const struct journal_job *job = d->job;
	struct content c = { 0 };
	int err;

	if (S_ISLNK(job->mode))
		return journal_record_symlink(j, job->volume, job->path, d->st,
					      job->target);
	err = journal_content_load(j, job->hash, &c);
	if (!err)
		err = journal_record_put(j, job->volume, job->path, d->st, &c);
	content_release(&c);
	return err;
}

static int job_done_fn(struct journal *j, void *arg)
{
	struct job_done *d = arg;
	const struct journal_job *job = d->job;
	int err;

	err = job_exec(j, "DELETE FROM jobs WHERE volume = ?1 AND path = ?2 "
		       "AND change = ?3", job);
	if (!err && job->copy_of)
		err = job_done_copy(j, d);
	else if (!err)
		err = job_exec(j, "INSERT INTO current (volume, path, change) "
			       "VALUES (?1, ?2, ?3) ON CONFLICT (volume, path) "
			       "DO UPDATE SET change = excluded.change", job);
	if (!err && !job->copy_of && d->st)
		err = journal_touch_state(j, job->volume, job->path, d->st);
	if (!err && job->op == JOURNAL_VOLUME_REMOVE)
		err = job_exec(j, "DELETE FROM current WHERE volume = ?1 AND "
			       "path != ?2 AND ?3 = ?3", job);
	if (!err)
		err = journal_retarget(j, job->volume, job->copy_of ?
				       job->copy_of : job->path);
	return err;
}

int journal_job_done(struct journal *j, const struct journal_job *job,
		     const struct stat *st)
{
	struct job_done d = { job, st };
	uint64_t seq = j->next_seq, lamport = j->lamport;
	unsigned pending = j->pending;
	int err = journal_atomic(j, job_done_fn, &d);

	if (err) {
		j->next_seq = seq;
		j->lamport = lamport;
		j->pending = pending;
	} else {
		j->pending++;
	}
	return err;
}

bool journal_job_wanted(struct journal *j, const struct journal_job *job)
{
	sqlite3_stmt *s = NULL;
	bool wanted;

	if (journal_prepare_cached(j, "SELECT 1 FROM jobs WHERE volume = ?1 "
				   "AND path = ?2 AND change = ?3", &s) !=
	    SQLITE_OK)
		return true;      /* cannot tell: the commit checks the disk */
	sqlite3_bind_text(s, 1, job->volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, job->path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, job->change);
	/* As above: a failure (logged) cannot tell, and is no "not
	 * wanted", which would drop the job's work. */
	wanted = journal_row(s) != 0;
	journal_stmt_done(s);
	return wanted;
}

int journal_job_defer(struct journal *j, const struct journal_job *job)
{
	int err = journal_begin(j);

	if (!err)
		err = job_exec(j, "UPDATE jobs SET attempts = attempts + 1 "
			       "WHERE volume = ?1 AND path = ?2 AND change = ?3",
			       job);
	return err;
}

/* How long a job with FAILURES failures in a row is left alone. */
static int64_t job_retry_delay(unsigned failures)
{
	int64_t d = 1000000000;

	for (unsigned f = JOURNAL_JOB_STUCK; f <= failures; f++) {
		d *= 2;
		if (d >= JOB_RETRY_MAX_NS)
			return JOB_RETRY_MAX_NS;
	}
	return d;
}

int journal_job_fail(struct journal *j, const struct journal_job *job,
		     const char *reason)
{
	sqlite3_stmt *s = NULL;
	int64_t now = loop_wall_ns();
	int err = journal_begin(j);

	if (!err)
		err = journal_db_err(journal_prepare_cached(j,
			"UPDATE jobs SET attempts = attempts + 1, "
			"failures = failures + 1, reason = ?4, "
			"failing_since = coalesce(failing_since, ?5), "
			"retry_ns = ?6 "
			"WHERE volume = ?1 AND path = ?2 AND change = ?3", &s));
	if (err)
		return err;
	sqlite3_bind_text(s, 1, job->volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, job->path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, job->change);
	sqlite3_bind_text(s, 4, reason ? reason : "unknown", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, now);
	sqlite3_bind_int64(s, 6, now + job_retry_delay(job->failures + 1));
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

int journal_copies_pending(struct journal *j, const char *volume,
			   const char *path, uint64_t *out)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"SELECT count(*) FROM jobs jb JOIN current cur ON "
		"cur.volume = jb.volume AND cur.path = jb.copy_of "
		"WHERE jb.volume = ?1 AND jb.copy_of = ?2 AND "
		"jb.change = cur.change", &s));

	*out = 0;
	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	err = journal_row(s);
	if (err > 0)
		*out = (uint64_t)sqlite3_column_int64(s, 0);
	/* An aggregate always has its row. */
	assert(err != 0);
	err = err < 0 ? err : 0;
	journal_stmt_done(s);
	return err;
}

int journal_jobs_next_retry(struct journal *j, int64_t *out)
{
	int err = journal_query_int(j, "SELECT min(retry_ns) FROM jobs "
				    "WHERE retry_ns > 0", NULL, out);

	if (err == -ENOENT)
		err = 0;
	if (err)
		*out = 0;
	return err;
}

int journal_job_repair(struct journal *j, const char *volume,
		       const char *path)
{
	sqlite3_stmt *s = NULL;
	int err = journal_begin(j);

	if (!err)
		err = journal_db_err(journal_prepare_cached(j,
			"INSERT INTO jobs (volume, path, change, ord, repair) "
			"SELECT volume, path, change, ?3, 1 FROM current "
			"WHERE volume = ?1 AND path = ?2 "
			"ON CONFLICT (volume, path) DO NOTHING", &s));
	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, journal_job_order(JOURNAL_PUT, path));
	err = journal_step_done(s);
	journal_stmt_done(s);
	return err;
}

int journal_jobs_retry(struct journal *j)
{
	int err = journal_begin(j);

	return err ? err : journal_exec(j, "UPDATE jobs SET retry_ns = 0 "
					"WHERE retry_ns > 0");
}

int journal_job_counts(struct journal *j, const char *volume,
		       uint64_t *waiting, uint64_t *stuck)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"SELECT count(*), count(CASE WHEN failures >= 5 THEN 1 END) "
		"FROM jobs WHERE ?1 IS NULL OR volume = ?1", &s));

	*waiting = *stuck = 0;
	if (err)
		return err;
	if (volume)
		sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	err = journal_row(s);
	if (err > 0) {
		*waiting = (uint64_t)sqlite3_column_int64(s, 0);
		*stuck = (uint64_t)sqlite3_column_int64(s, 1);
	}
	assert(err != 0);    /* aggregates: always a row */
	err = err < 0 ? err : 0;
	journal_stmt_done(s);
	return err;
}

int journal_jobs_stuck(struct journal *j, unsigned limit, journal_stuck_fn fn,
		       void *arg)
{
	sqlite3_stmt *s = NULL;
	int rc, err = journal_db_err(journal_prepare_cached(j,
		"SELECT volume, path, copy_of, reason, failures, failing_since, "
		"retry_ns FROM jobs WHERE failures >= 5 "
		"ORDER BY failing_since, volume, path LIMIT ?1", &s));

	if (err)
		return err;
	sqlite3_bind_int64(s, 1, limit ? (sqlite3_int64)limit : -1);
	while ((rc = journal_row(s)) > 0) {
		struct journal_stuck_job st = {
			.volume = (const char *)sqlite3_column_text(s, 0),
			.path = (const char *)sqlite3_column_text(s, 1),
			.copy_of = (const char *)sqlite3_column_text(s, 2),
			.reason = (const char *)sqlite3_column_text(s, 3),
			.failures = (unsigned)sqlite3_column_int(s, 4),
			.since_ns = sqlite3_column_int64(s, 5),
			.retry_ns = sqlite3_column_int64(s, 6),
		};

		err = fn(arg, &st);
		if (err)
			break;
	}
	if (!err && rc < 0)
		err = rc;
	journal_stmt_done(s);
	return err;
}

int journal_job_count(struct journal *j, uint64_t *out)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"SELECT count(*) FROM jobs", &s));

	*out = 0;
	if (!err)
		err = journal_row(s);
	if (err > 0)
		*out = (uint64_t)sqlite3_column_int64(s, 0);
	journal_stmt_done(s);
	return err < 0 ? err : 0;
}


/* ---- restoring from peers ---------------------------------------------- */

/*
 * A restore in place whose content this node does not keep: a job for
 * VOLUME/PATH of the version REF with copy_of naming the path itself.
 * The applier fetches it from peers like any copy (their live files or
 * version stores, serve.c) and, done, it becomes a local put of the
 * path (job_done_copy), a new version every node gets.  A newer version
 * of the path retargets it away, as it would any job.
 */
/* Change id and content of version REF of VOLUME/PATH, a regular file:
 * 0 or -ENOENT. */
static int file_version(struct journal *j, const char *volume,
			const char *path, const struct journal_ref *ref,
			int64_t *id, uint8_t hash[CONTENT_HASH_LEN])
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"SELECT c.id, c.hash FROM changes c JOIN origins o ON "
		"o.id = c.origin WHERE o.node || '@' || o.epoch = ?3 AND "
		"c.seq = ?4 AND c.volume = ?1 AND c.path = ?2 AND "
		"c.hash IS NOT NULL AND (c.mode & ?5) = ?6", &s));

	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, ref->origin, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, (int64_t)ref->seq);
	sqlite3_bind_int64(s, 5, S_IFMT);
	sqlite3_bind_int64(s, 6, S_IFREG);
	err = journal_row(s);
	if (err >= 0)
		err = err > 0 && sqlite3_column_bytes(s, 1) ==
		      CONTENT_HASH_LEN ? 0 : -ENOENT;
	if (!err) {
		*id = sqlite3_column_int64(s, 0);
		memcpy(hash, sqlite3_column_blob(s, 1), CONTENT_HASH_LEN);
	}
	journal_stmt_done(s);
	return err;
}

/* Queues change ID as a put at VOLUME/PATH, with COPY_OF and FETCH as
 * struct journal_job has them, in the place of a put of ORDER_PATH.
 * 0, or -EBUSY when PATH has a job. */
static int job_insert(struct journal *j, const char *volume, const char *path,
		      int64_t id, const char *copy_of, bool fetch,
		      const char *order_path)
{
	sqlite3_stmt *s = NULL;
	int err = journal_begin(j);

	if (!err)
		err = journal_db_err(journal_prepare_cached(j,
			"INSERT INTO jobs (volume, path, change, copy_of, ord, "
			"fetch) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
			"ON CONFLICT (volume, path) DO NOTHING", &s));
	if (err)
		return err;
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, id);
	if (copy_of)
		sqlite3_bind_text(s, 4, copy_of, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 4);
	sqlite3_bind_int64(s, 5, journal_job_order(JOURNAL_PUT, order_path));
	sqlite3_bind_int(s, 6, fetch);
	err = journal_step_done(s);
	journal_stmt_done(s);
	if (!err && sqlite3_changes(j->db) == 0)
		err = -EBUSY;
	return err;
}

int journal_job_restore(struct journal *j, const char *volume,
			const char *path, const struct journal_ref *ref)
{
	uint8_t hash[CONTENT_HASH_LEN];
	int64_t id;

	if (file_version(j, volume, path, ref, &id, hash) != 0)
		return -EBUSY;    /* no such version */
	return job_insert(j, volume, path, id, path, false, path);
}

void journal_fetch_name(const uint8_t hash[CONTENT_HASH_LEN],
			char out[JOURNAL_FETCH_NAME_MAX])
{
	char hex[2 * CONTENT_HASH_LEN + 1];

	content_hex(hash, hex);
	snprintf(out, JOURNAL_FETCH_NAME_MAX, JOURNAL_FETCH_PREFIX "%s", hex);
}

int journal_job_fetch(struct journal *j, const char *volume,
		      const char *path, const struct journal_ref *ref)
{
	uint8_t hash[CONTENT_HASH_LEN];
	char name[JOURNAL_FETCH_NAME_MAX];
	int64_t id;
	int err = file_version(j, volume, path, ref, &id, hash);

	if (err)
		return err;
	journal_fetch_name(hash, name);
	err = job_insert(j, volume, name, id, NULL, true, path);
	/* One job per content, however many versions or paths hold it:
	 * one already queued does it. */
	return err == -EBUSY ? 0 : err;
}

bool journal_job_fetching(struct journal *j, const char *volume,
			  const uint8_t hash[CONTENT_HASH_LEN])
{
	char name[JOURNAL_FETCH_NAME_MAX];
	sqlite3_stmt *s = NULL;
	bool found;

	if (journal_prepare_cached(j, "SELECT 1 FROM jobs WHERE volume = ?1 "
				   "AND path = ?2 AND fetch = 1", &s) != SQLITE_OK)
		return false;
	journal_fetch_name(hash, name);
	sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	/* A failure (logged) answers "not fetching": the fetch is asked
	 * for again, which one job per content makes harmless. */
	found = journal_bind_check(s, sqlite3_bind_text(s, 2, name, -1,
					SQLITE_TRANSIENT)) == 0 &&
		journal_row(s) > 0;
	journal_stmt_done(s);
	return found;
}

int journal_change_path(struct journal *j, int64_t id, char **out)
{
	sqlite3_stmt *s = NULL;
	int err = journal_db_err(journal_prepare_cached(j,
		"SELECT path FROM changes WHERE id = ?1", &s));

	*out = NULL;
	if (err)
		return err;
	sqlite3_bind_int64(s, 1, id);
	err = journal_row(s);
	if (err == 0)
		err = -ENOENT;
	else if (err > 0)
		err = (*out = strdup((const char *)sqlite3_column_text(s, 0))) ?
		      0 : -ENOMEM;
	journal_stmt_done(s);
	return err;
}

bool journal_job_is_restore(const struct journal_job *job)
{
	return job->copy_of && strcmp(job->copy_of, job->path) == 0;
}

int journal_job_cancel(struct journal *j, const struct journal_job *job)
{
	int err = journal_begin(j);

	if (!err)
		err = job_exec(j, "DELETE FROM jobs WHERE volume = ?1 AND "
			       "path = ?2 AND change = ?3", job);
	return err;
}
