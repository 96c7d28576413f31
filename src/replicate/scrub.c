/*
 * The scrub: every file the journal says the volumes hold is read back
 * now and then, chunk by chunk, against the recorded hashes.  Bit rot
 * changes bytes under an unchanged inode, size, mtime and ctime, which no
 * watcher sees; found, it is repaired from a peer before it spreads (an
 * edit would build on it) or is the last copy left.
 *
 * Pace.  A pass walks the files in (volume, path) order, on the loop
 * thread, a step every SCRUB_STEP_NS reading at most SCRUB_STEP_MAX
 * bytes.  Its rate re-reads every file once per volume.scrub_period (7
 * days by default): the recorded size of all files over the period, at
 * least SCRUB_MIN_RATE.  A pass asked for (POST /v1/admin/scrub) runs at
 * SCRUB_FAST_RATE.  The next pass is due a period after the last began.
 *
 * Judgement.  A file whose metadata moved since it was recorded is left
 * to the watcher (it changed, it did not rot), and one under a transfer
 * to the applier.  A chunk that does not match its hash under unchanged
 * metadata is damage: logged, counted, and the file is made again from
 * its own chunks that still check and a peer's copy of the rest
 * (journal_job_repair; reuse.c checks every reused byte).
 *
 * States: IDLE (until the next pass) -> WALKING (a file at a time, a
 * step of chunks at a time) -> IDLE.
 */
#include "replicate_int.h"
#include "scrub.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCRUB_STEP_NS (100LL * 1000000)
#define SCRUB_STEP_MAX (8u << 20)
#define SCRUB_MIN_RATE (64u << 10)          /* bytes per second */
#define SCRUB_FAST_RATE (64u << 20)
/* The first pass after start waits this long: start-up is busy enough. */
#define SCRUB_FIRST_DELAY_NS (60LL * 1000000000)

struct scrub {
	uint64_t period_ms;       /* 0: off */
	bool walking, asked;
	int64_t next_ns;          /* monotonic: next step, or next pass */
	int64_t pass_start_ns;
	uint64_t rate;            /* bytes per second, this pass */
	char vol[VOLUME_NAME_MAX + 1];
	char *path;               /* the file under way, or the last one */
	int fd;                   /* -1: between files */
	struct journal_state cur;
	struct content list;
	size_t chunk;             /* the next chunk to read */
	uint8_t *buf;
	struct replicate_scrub_stats stats;
};

int scrub_new(struct scrub **out)
{
	struct scrub *sc = calloc(1, sizeof(*sc));

	*out = sc;
	if (!sc)
		return -ENOMEM;
	sc->fd = -1;
	sc->next_ns = loop_now_ns() + SCRUB_FIRST_DELAY_NS;
	return 0;
}

static void scrub_close_file(struct scrub *sc)
{
	if (sc->fd >= 0)
		close(sc->fd);
	sc->fd = -1;
	journal_state_release(&sc->cur);
	content_release(&sc->list);
	memset(&sc->list, 0, sizeof(sc->list));
}

void scrub_free(struct scrub *sc)
{
	if (!sc)
		return;
	scrub_close_file(sc);
	free(sc->path);
	free(sc->buf);
	free(sc);
}

static void scrub_pass_end(struct scrub *sc, int64_t now)
{
	scrub_close_file(sc);
	free(sc->path);
	sc->path = NULL;
	sc->walking = false;
	sc->stats.running = false;
	sc->stats.passes++;
	sc->stats.last_pass_ns = loop_wall_ns();
	log_info("replicate", "scrub pass done in %lld s: %llu files, %llu "
		 "bytes checked since start, %llu damaged found",
		 (long long)((now - sc->pass_start_ns) / 1000000000),
		 (unsigned long long)sc->stats.files,
		 (unsigned long long)sc->stats.bytes,
		 (unsigned long long)sc->stats.damaged);
	sc->next_ns = sc->period_ms ? sc->pass_start_ns +
		(int64_t)sc->period_ms * 1000000 : INT64_MAX;
	if (sc->next_ns < now + SCRUB_STEP_NS)
		sc->next_ns = now + SCRUB_STEP_NS;
}

static void scrub_pass_start(struct replicate *r, struct scrub *sc,
			     int64_t now)
{
	uint64_t total = 0;

	journal_files_bytes(r->journal, &total);
	sc->rate = sc->asked || !sc->period_ms ? SCRUB_FAST_RATE :
		   total / (sc->period_ms / 1000 + 1);
	if (sc->rate < SCRUB_MIN_RATE)
		sc->rate = SCRUB_MIN_RATE;
	sc->asked = false;
	sc->walking = true;
	sc->stats.running = true;
	sc->pass_start_ns = now;
	sc->vol[0] = '\0';
	free(sc->path);
	sc->path = strdup("");
	log_info("replicate", "scrub pass started: %llu bytes of files, read "
		 "at %llu KiB/s", (unsigned long long)total,
		 (unsigned long long)(sc->rate >> 10));
}

/* Opens the next file worth reading: 0, -ENOENT past the last. */
static int scrub_next_file(struct replicate *r, struct scrub *sc)
{
	for (;;) {
		char *path = NULL;
		const char *name;
		int dirfd, err;

		scrub_close_file(sc);
		err = journal_next_file(r->journal, sc->vol, sc->path ?
					sc->path : "", sc->vol, sizeof(sc->vol),
					&path, &sc->cur);
		if (err)
			return err;
		free(sc->path);
		sc->path = path;
		sc->chunk = 0;
		if (transfer_busy(r, sc->vol, path) ||
		    journal_content_load(r->journal, sc->cur.hash,
					 &sc->list) != 0 ||
		    disk_open_parent(r, sc->vol, path, &dirfd, &name) != 0)
			continue;
		sc->fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW |
				O_NONBLOCK | O_CLOEXEC);
		close(dirfd);
		if (sc->fd >= 0 && disk_file_current(&sc->cur, sc->fd))
			return 0;
	}
}

/* Chunk I of the file under way does not match: repaired from a peer. */
static void scrub_damaged(struct replicate *r, struct scrub *sc, size_t i)
{
	sc->stats.damaged++;
	log_warn("replicate", "scrub: %s/%s does not match its recorded hash "
		 "at byte %llu, though its metadata is unchanged (the disk "
		 "changed it); repairing it from a peer", sc->vol, sc->path,
		 (unsigned long long)sc->list.chunks[i].offset);
	if (journal_job_repair(r->journal, sc->vol, sc->path) == 0)
		apply_kick(r);
	scrub_close_file(sc);
}

/* Reads chunks of the file under way, up to BUDGET bytes: what it read. */
static uint64_t scrub_chunks(struct replicate *r, struct scrub *sc,
			     uint64_t budget)
{
	uint64_t done = 0;

	/* Changed since the last step: the watcher's business now. */
	if (!disk_file_current(&sc->cur, sc->fd) ||
	    transfer_busy(r, sc->vol, sc->path)) {
		scrub_close_file(sc);
		return 0;
	}
	while (sc->fd >= 0 && sc->chunk < sc->list.n_chunks && done < budget) {
		const struct content_chunk *k = &sc->list.chunks[sc->chunk];

		if (pread(sc->fd, sc->buf, k->len, (off_t)k->offset) !=
			  (ssize_t)k->len ||
		    !disk_chunk_verify(sc->buf, k->len, k->hash)) {
			scrub_damaged(r, sc, sc->chunk);
			break;
		}
		done += k->len;
		sc->stats.bytes += k->len;
		sc->chunk++;
	}
	if (sc->fd >= 0 && sc->chunk >= sc->list.n_chunks) {
		sc->stats.files++;
		scrub_close_file(sc);
	}
	return done + 1;          /* a file looked at costs something */
}

static void scrub_step(struct replicate *r, struct scrub *sc, int64_t now)
{
	uint64_t budget = sc->rate * (uint64_t)SCRUB_STEP_NS / 1000000000;

	if (budget > SCRUB_STEP_MAX)
		budget = SCRUB_STEP_MAX;
	while (budget > 0) {
		uint64_t n;

		if (sc->fd < 0 && scrub_next_file(r, sc) != 0) {
			scrub_pass_end(sc, now);
			return;
		}
		n = scrub_chunks(r, sc, budget);
		budget = n >= budget ? 0 : budget - n;
	}
	sc->next_ns = now + SCRUB_STEP_NS;
}

void scrub_tick(struct replicate *r, int64_t now)
{
	struct scrub *sc = r->scrub;

	if (!sc || now < sc->next_ns || apply_held(r))
		return;
	if (!sc->buf && !(sc->buf = malloc(WIRE_MAX_CHUNK))) {
		sc->next_ns = now + SCRUB_STEP_NS;
		return;
	}
	if (!sc->walking) {
		if (!sc->period_ms && !sc->asked) {
			sc->next_ns = INT64_MAX;
			return;
		}
		scrub_pass_start(r, sc, now);
	}
	scrub_step(r, sc, now);
}

int64_t scrub_deadline(const struct replicate *r)
{
	return r->scrub ? r->scrub->next_ns : INT64_MAX;
}

void replicate_scrub_period(struct replicate *r, uint64_t period_ms)
{
	struct scrub *sc = r->scrub;

	if (!sc || sc->period_ms == period_ms)
		return;
	sc->period_ms = period_ms;
	if (!sc->walking)
		sc->next_ns = period_ms ? loop_now_ns() + SCRUB_FIRST_DELAY_NS :
			      INT64_MAX;
}

void replicate_scrub_request(struct replicate *r)
{
	struct scrub *sc = r->scrub;

	if (!sc)
		return;
	sc->asked = true;
	if (sc->walking)
		sc->rate = SCRUB_FAST_RATE;
	sc->next_ns = loop_now_ns();
}

void replicate_scrub_stats(const struct replicate *r,
			   struct replicate_scrub_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (r->scrub)
		*out = r->scrub->stats;
	out->repaired = r->outcome.repaired;
	out->damaged_chunks = r->xfer.damaged_chunks;
}
