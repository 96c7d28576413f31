/*
 * Checkpoints of the journal's WAL, on a thread of their own.
 *
 * The agent's connection never checkpoints itself (that would put the
 * fsyncs of copying the WAL on a commit of the event loop); a thread with
 * a connection of its own does, every half second and whenever the
 * writer's WAL hook sees another JOURNAL_CKPT_WAKE_FRAMES frames appended.
 *
 * A PASSIVE checkpoint copies what it can without waiting for anyone.
 * It cannot by itself keep the WAL small under a steady load: SQLite
 * starts the WAL over only when a writer begins a transaction while every
 * frame has been copied, and a writer that commits every few milliseconds
 * appends new frames while each checkpoint runs.  So once the WAL holds
 * more than JOURNAL_WAL_RESTART_BYTES, the checkpointer runs PASSIVE
 * passes until what the writer appended meanwhile is under
 * JOURNAL_CKPT_REMAINDER_FRAMES (at most JOURNAL_CKPT_PASSES of them),
 * then asks the writer to hold its next transaction (ckpt_hold:
 * journal_begin waits, at most JOURNAL_CKPT_HOLD_MAX_MS, outside any
 * transaction) and runs a RESTART checkpoint, which copies that remainder
 * and syncs (its busy handler waits at most JOURNAL_CKPT_RESTART_WAIT_MS
 * for a transaction under way and for readers).  The writer's next
 * commit starts the WAL over, truncated to JOURNAL_WAL_LIMIT_BYTES
 * (journal_size_limit).  A RESTART alone would wait for a gap between the
 * writer's transactions that a busy writer seldom leaves; holding the
 * writer for all of a large copy would stall recording for as long.
 *
 * Back-pressure: a writer faster than the disk can copy would still grow
 * the WAL without end, so past JOURNAL_WAL_HARD_BYTES journal_begin waits
 * (at most JOURNAL_CKPT_HARD_WAIT_MS) for the WAL to start over.
 *
 * The checkpointer's connection reads the database once before its
 * first checkpoint: on a connection that has never read it, SQLite has
 * not opened the WAL yet, and a checkpoint returns SQLITE_OK having
 * copied nothing.  (That was how the WAL once grew to hundreds of MB.)
 */
#include "journal_int.h"

#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JOURNAL_CKPT_PERIOD_NS 500000000L
#define JOURNAL_CKPT_WAKE_FRAMES 1024                /* 4 MiB of pages */
#define JOURNAL_WAL_RESTART_BYTES (24LL << 20)
#define JOURNAL_WAL_HARD_BYTES (48LL << 20)
#define JOURNAL_WAL_LIMIT_BYTES (16LL << 20)
#define JOURNAL_CKPT_REMAINDER_FRAMES 256            /* 1 MiB */
#define JOURNAL_CKPT_PASSES 4
#define JOURNAL_CKPT_RESTART_WAIT_MS 100
#define JOURNAL_CKPT_HOLD_MAX_MS 250
#define JOURNAL_CKPT_HARD_WAIT_MS 2000

/* The writer's commit hook: N frames are now in the WAL. */
static int journal_wal_hook(void *arg, sqlite3 *db, const char *name, int n)
{
	struct journal *j = arg;

	(void)db;
	(void)name;
	j->wal_frames = n;
	if (n < j->ckpt_woken_at + JOURNAL_CKPT_WAKE_FRAMES) {
		if (n < j->ckpt_woken_at)   /* the WAL started over */
			j->ckpt_woken_at = 0;
		return SQLITE_OK;
	}
	j->ckpt_woken_at = n;
	pthread_mutex_lock(&j->ckpt_lock);
	j->ckpt_due = true;
	pthread_cond_signal(&j->ckpt_wake);
	pthread_mutex_unlock(&j->ckpt_lock);
	return SQLITE_OK;
}

static sqlite3 *journal_checkpoint_open(const char *path)
{
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
			    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
	    /* The read that opens the WAL (see above). */
	    sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", NULL, NULL,
			 NULL) != SQLITE_OK) {
		log_warn("journal", "checkpoints of %s cannot run: %s", path,
			 db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

static void journal_checkpoint_hold(struct journal *j, bool hold,
				    bool restarted)
{
	pthread_mutex_lock(&j->ckpt_lock);
	atomic_store(&j->ckpt_hold, hold);
	if (restarted)
		j->ckpt_restarts++;
	if (!hold)
		pthread_cond_broadcast(&j->ckpt_released);
	pthread_mutex_unlock(&j->ckpt_lock);
}

static void journal_deadline(struct timespec *t, long ms)
{
	clock_gettime(CLOCK_REALTIME, t);
	t->tv_sec += ms / 1000;
	t->tv_nsec += (ms % 1000) * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_nsec -= 1000000000L;
		t->tv_sec++;
	}
}

/* journal_begin's side: a hold asked for, or the WAL past its hard
 * bound (then until the WAL starts over). */
void journal_checkpoint_wait(struct journal *j)
{
	bool hard;
	struct timespec until;
	unsigned gen;

	if (!j->ckpt_running)
		return;
	hard = (long long)j->wal_frames * j->page_size > JOURNAL_WAL_HARD_BYTES;
	if (!hard && !atomic_load(&j->ckpt_hold))
		return;
	journal_deadline(&until, hard ? JOURNAL_CKPT_HARD_WAIT_MS :
			 JOURNAL_CKPT_HOLD_MAX_MS);
	pthread_mutex_lock(&j->ckpt_lock);
	gen = j->ckpt_restarts;
	if (hard) {
		j->ckpt_due = true;
		pthread_cond_signal(&j->ckpt_wake);
	}
	while ((hard ? j->ckpt_restarts == gen : atomic_load(&j->ckpt_hold)) &&
	       pthread_cond_timedwait(&j->ckpt_released, &j->ckpt_lock,
				      &until) == 0)
		;
	pthread_mutex_unlock(&j->ckpt_lock);
	if (hard)
		j->wal_frames = 0;   /* asked once; the next commit says more */
}

static void journal_checkpoint_once(struct journal *j, sqlite3 *db)
{
	long long page_size = j->page_size;
	int n_log = 0, n_done = 0, rc = SQLITE_OK;

	for (int pass = 0; pass < JOURNAL_CKPT_PASSES; pass++) {
		rc = sqlite3_wal_checkpoint_v2(db, NULL,
					       SQLITE_CHECKPOINT_PASSIVE,
					       &n_log, &n_done);
		/* SQLITE_BUSY: someone else checkpoints right now. */
		if (rc != SQLITE_OK) {
			if (rc != SQLITE_BUSY)
				log_debug("journal", "checkpoint: %s",
					  sqlite3_errmsg(db));
			return;
		}
		if (n_log * page_size <= JOURNAL_WAL_RESTART_BYTES)
			return;
		if (n_log - n_done <= JOURNAL_CKPT_REMAINDER_FRAMES)
			break;
	}
	journal_checkpoint_hold(j, true, false);
	sqlite3_busy_timeout(db, JOURNAL_CKPT_RESTART_WAIT_MS);
	rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_RESTART,
				       &n_log, &n_done);
	sqlite3_busy_timeout(db, 0);
	journal_checkpoint_hold(j, false, rc == SQLITE_OK);
	/* Busy: a long reader holds an old snapshot; the next turn retries. */
	if (rc != SQLITE_OK && rc != SQLITE_BUSY)
		log_debug("journal", "checkpoint: %s", sqlite3_errmsg(db));
}

static void *journal_checkpointer(void *arg)
{
	struct journal *j = arg;
	sqlite3 *db = journal_checkpoint_open(j->path);
	struct timespec until;

	pthread_mutex_lock(&j->ckpt_lock);
	while (db && !j->ckpt_stop) {
		journal_deadline(&until, JOURNAL_CKPT_PERIOD_NS / 1000000);
		while (!j->ckpt_due && !j->ckpt_stop &&
		       pthread_cond_timedwait(&j->ckpt_wake, &j->ckpt_lock,
					      &until) == 0)
			;
		if (j->ckpt_stop)
			break;
		j->ckpt_due = false;
		pthread_mutex_unlock(&j->ckpt_lock);
		journal_checkpoint_once(j, db);
		pthread_mutex_lock(&j->ckpt_lock);
	}
	pthread_mutex_unlock(&j->ckpt_lock);
	sqlite3_close(db);
	return NULL;
}

int journal_checkpoint_start(struct journal *j, const char *path)
{
	char sql[96];
	int64_t page_size = 4096;
	sigset_t all, old;
	int err, rc;

	j->path = strdup(path);
	if (!j->path)
		return -ENOMEM;
	snprintf(sql, sizeof(sql), "PRAGMA wal_autocheckpoint = 0;"
		 "PRAGMA journal_size_limit = %lld", JOURNAL_WAL_LIMIT_BYTES);
	err = journal_exec(j, sql);
	if (!err)
		err = journal_query_int(j, "PRAGMA page_size", NULL, &page_size);
	if (err)
		return err;
	j->page_size = (int)page_size;
	pthread_mutex_init(&j->ckpt_lock, NULL);
	pthread_cond_init(&j->ckpt_wake, NULL);
	pthread_cond_init(&j->ckpt_released, NULL);
	/* The thread takes no signals: they belong to the loop's signalfd,
	 * which the agent sets up after opening the journal. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&j->ckpt_thread, NULL, journal_checkpointer, j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		/* Without the thread, let SQLite checkpoint inline again. */
		pthread_mutex_destroy(&j->ckpt_lock);
		pthread_cond_destroy(&j->ckpt_wake);
		pthread_cond_destroy(&j->ckpt_released);
		return journal_exec(j, "PRAGMA wal_autocheckpoint = 1000");
	}
	/* Replaces the hook that wal_autocheckpoint used. */
	sqlite3_wal_hook(j->db, journal_wal_hook, j);
	j->ckpt_running = true;
	return 0;
}

void journal_checkpoint_stop(struct journal *j)
{
	if (!j->ckpt_running)
		return;
	sqlite3_wal_hook(j->db, NULL, NULL);
	pthread_mutex_lock(&j->ckpt_lock);
	j->ckpt_stop = true;
	pthread_cond_signal(&j->ckpt_wake);
	pthread_mutex_unlock(&j->ckpt_lock);
	pthread_join(j->ckpt_thread, NULL);
	pthread_mutex_destroy(&j->ckpt_lock);
	pthread_cond_destroy(&j->ckpt_wake);
	pthread_cond_destroy(&j->ckpt_released);
	j->ckpt_running = false;
}
