/*
 * Transfers (transfer.h): the set, the two state machines, and the
 * requests to peers.
 *
 * Peers are asked in turn: the version's origin first (it wrote the
 * file), then the others from a salt, skipping peers that answered "not
 * here" (a bit per peer slot) and peers whose fetch window is full.  A
 * transfer every peer that may hold it refused fails with KR_ENOSOURCE:
 * the file moved on there too, and a newer version will retarget the
 * job.
 *
 * Two counting filters spare each chunk that arrives a walk over every
 * transfer (up to `max` of them; for 10,000 small files that walk was a
 * good part of the work):
 *   wanted   chunk hashes of the chunks transfers still lack;
 *   awaited  content hashes of transfers without a chunk list yet,
 *            which a pushed small file may complete.
 * A slot is 16 bits of the hash; zero means "certainly nobody", anything
 * else "look".  Absent filters (no memory) mean "look" too.
 */
#include "transfer.h"
#include "disk.h"
#include "outcome.h"
#include "replicate_int.h"
#include "keep.h"
#include "precopy.h"
#include "session.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define TRANSFERS_MAX 2048
#define TRANSFERS_MIN 16
#define TRANSFER_GET_BATCH 256
/* Files from this size are asked for as a difference from the version
 * they replace: below it the whole list is a few frames anyway. */
#define TRANSFER_BASE_MIN_SIZE (1u << 20)
/* A small file's content usually comes pushed right behind its entry. */
#define TRANSFER_PUSH_WAIT_NS (20 * 1000000)
#define FILTER_SLOTS (1u << 16)

/* ---- the two state machines ------------------------------------------- */

#define MOVE(from, to) (1ull << ((from) * 8 + (to)))

/* The moves transfer.h draws, one bit each. */
static const uint64_t transfer_moves =
	MOVE(TRANSFER_LIST, TRANSFER_PRECOPY) |
	MOVE(TRANSFER_LIST, TRANSFER_FETCH) |
	MOVE(TRANSFER_LIST, TRANSFER_FAILED) |
	MOVE(TRANSFER_PRECOPY, TRANSFER_FETCH) |
	MOVE(TRANSFER_PRECOPY, TRANSFER_FAILED) |
	MOVE(TRANSFER_FETCH, TRANSFER_READY) |
	MOVE(TRANSFER_FETCH, TRANSFER_FAILED) |
	MOVE(TRANSFER_READY, TRANSFER_SYNCING) |
	MOVE(TRANSFER_READY, TRANSFER_FAILED) |
	MOVE(TRANSFER_SYNCING, TRANSFER_READY) |
	MOVE(TRANSFER_SYNCING, TRANSFER_DONE) |
	MOVE(TRANSFER_SYNCING, TRANSFER_FAILED);

static const uint64_t chunk_moves =
	MOVE(CHUNK_MISSING, CHUNK_ASKED) |
	MOVE(CHUNK_MISSING, CHUNK_HERE) |
	MOVE(CHUNK_MISSING, CHUNK_FROM_BASE) |
	MOVE(CHUNK_MISSING, CHUNK_WRITING) |
	MOVE(CHUNK_ASKED, CHUNK_MISSING) |
	MOVE(CHUNK_ASKED, CHUNK_HERE) |
	MOVE(CHUNK_ASKED, CHUNK_WRITING) |
	MOVE(CHUNK_FROM_BASE, CHUNK_CHECKING) |
	MOVE(CHUNK_FROM_BASE, CHUNK_MISSING) |
	MOVE(CHUNK_CHECKING, CHUNK_HERE) |
	MOVE(CHUNK_CHECKING, CHUNK_MISSING) |
	MOVE(CHUNK_WRITING, CHUNK_HERE) |
	MOVE(CHUNK_WRITING, CHUNK_MISSING);

_Static_assert(TRANSFER_FAILED < 8 && CHUNK_CHECKING < 8,
	       "a move is one bit of a 64-bit set");

/* Inline: only assertions call them, and a build without those must not
 * warn that they are unused. */
static inline bool transfer_move_ok(enum transfer_state from,
				    enum transfer_state to)
{
	return transfer_moves & MOVE(from, to);
}

static inline bool chunk_move_ok(enum chunk_state from, enum chunk_state to)
{
	return chunk_moves & MOVE(from, to);
}

void transfer_set_state(struct transfer *t, enum transfer_state to)
{
	if (t->state == to)
		return;
	assert(transfer_move_ok(t->state, to));
	t->state = to;
}

void transfer_fail(struct transfer *t, int err)
{
	assert(err < 0);
	if (t->state == TRANSFER_FAILED)
		return;           /* the first cause is the one told */
	t->error = err;
	transfer_set_state(t, TRANSFER_FAILED);
}

bool transfer_fetching(const struct transfer *t)
{
	return t->state == TRANSFER_FETCH && t->by_hash;
}

static size_t filter_slot(const uint8_t *hash)
{
	return (size_t)hash[8] | (size_t)hash[9] << 8;
}

static void filter_count(uint32_t *f, const uint8_t *hash, int delta)
{
	if (f)
		f[filter_slot(hash)] += (uint32_t)delta;
}

bool transfer_filter_maybe(const uint32_t *f, const uint8_t *hash)
{
	return !f || f[filter_slot(hash)] > 0;
}

void transfer_chunk_set(struct transfer *t, size_t i, enum chunk_state to)
{
	enum chunk_state from = t->got[i];

	assert(i < t->list.n_chunks);
	if (from == to)
		return;
	assert(chunk_move_ok(from, to));
	t->got[i] = (uint8_t)to;
	if (to == CHUNK_HERE) {
		assert(t->missing > 0);
		t->missing--;
		filter_count(t->r->xfer.wanted, t->list.chunks[i].hash, -1);
		t->unflushed += t->list.chunks[i].len;
	}
}

/* ---- the set ------------------------------------------------------------ */

static void inflight_key(const char *volume, const char *path, char *out,
			 size_t cap)
{
	snprintf(out, cap, "%s/%s", volume, path);
}

static struct transfer *transfer_find(struct replicate *r, const char *volume,
				      const char *path)
{
	char key[PATH_MAX + 300];

	inflight_key(volume, path, key, sizeof(key));
	return strmap_get(&r->xfer.inflight, key);
}

bool transfer_busy(struct replicate *r, const char *volume, const char *path)
{
	return transfer_find(r, volume, path) != NULL;
}

bool transfer_room(const struct replicate *r, uint64_t size)
{
	const struct transfer_set *x = &r->xfer;

	return x->n < x->max &&
	       (size <= TRANSFER_LARGE_SIZE || x->n_large < TRANSFER_LARGE_MAX);
}

/*
 * How many transfers may run at once.  Each holds two descriptors (its
 * temp file and directory) until renamed into place; a quarter of the
 * limit stays for the rest (peers, journal, watcher, API clients).  More
 * transfers let more files wait for one flush while the next are made.
 */
unsigned transfer_max(void)
{
	struct rlimit rl;
	rlim_t cap = TRANSFERS_MAX;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur * 3 / 8 < cap)
		cap = rl.rlim_cur * 3 / 8;
	return cap < TRANSFERS_MIN ? TRANSFERS_MIN : (unsigned)cap;
}

/* Made only while no transfer exists, so that every transfer is counted
 * from its start or not at all. */
static void filters_make(struct transfer_set *x)
{
	if (x->wanted || x->head)
		return;
	x->wanted = calloc(FILTER_SLOTS, sizeof(*x->wanted));
	x->awaited = calloc(FILTER_SLOTS, sizeof(*x->awaited));
	if (!x->wanted || !x->awaited) {
		free(x->wanted);
		free(x->awaited);
		x->wanted = x->awaited = NULL;
	}
}

static void transfer_free(struct transfer *t)
{
	struct transfer_set *x = &t->r->xfer;

	if (t->awaited)
		filter_count(x->awaited, t->job.hash, -1);
	for (size_t i = 0; t->got && i < t->list.n_chunks; i++)
		if (t->got[i] != CHUNK_HERE)
			filter_count(x->wanted, t->list.chunks[i].hash, -1);
	if (t->fd >= 0) {
		close(t->fd);
		unlinkat(t->dirfd, t->tmp, 0);
	}
	if (t->dirfd >= 0)
		close(t->dirfd);
	if (t->base_fd >= 0)
		close(t->base_fd);
	free(t->deltas);
	content_release(&t->list);
	content_release(&t->base);
	journal_job_release(&t->job);
	free(t->got);
	free(t->by_hash);
	free(t);
}

void transfer_drop(struct replicate *r, struct transfer *t)
{
	char key[PATH_MAX + 300];

	inflight_key(t->job.volume, t->job.path, key, sizeof(key));
	strmap_del(&r->xfer.inflight, key);
	assert(r->xfer.n > 0);
	r->xfer.n--;
	r->xfer.n_large -= t->job.size > TRANSFER_LARGE_SIZE;
	r->xfer.freed = true;     /* a slot is free: apply.c looks */
	transfer_free(t);
}

static void transfers_reap(struct replicate *r)
{
	for (struct transfer **pp = &r->xfer.head; *pp;) {
		struct transfer *t = *pp;

		/* The writer may still be writing into its temp file. */
		if (t->state != TRANSFER_FAILED || t->writing) {
			pp = &t->next;
			continue;
		}
		*pp = t->next;
		if (!keep_restore_failed(r, &t->job, t->error))
			outcome_failed(r, &t->job, t->error);
		transfer_drop(r, t);
	}
}

/* ---- asking peers ------------------------------------------------------- */

static bool peer_may_have(const struct peer *p, const struct transfer *t)
{
	const uint64_t *held;

	if (!p->session || p->session->state != SESSION_OPEN ||
	    p->session->dead)
		return false;
	/* Only peers known to hold the version can have its chunks. */
	held = strmap_get(&p->sent, t->job.ref.origin);
	return held && *held >= t->job.ref.seq;
}

static bool peer_refused(const struct transfer *t, size_t slot)
{
	return slot < TRANSFER_REFUSED_SLOTS && (t->refused >> slot) & 1;
}

/* The slot of the peer that wrote T's version, or SIZE_MAX. */
static size_t origin_slot(const struct replicate *r, const struct transfer *t)
{
	size_t len = strcspn(t->job.ref.origin, "@");

	for (size_t j = 0; j < r->n_peers; j++)
		if (strlen(r->peers[j]->id) == len &&
		    !strncmp(r->peers[j]->id, t->job.ref.origin, len))
			return j;
	return SIZE_MAX;
}

/* A peer to ask for T's content (see the top); *EXHAUSTED when every
 * peer that may have it has refused. */
static struct peer *pick_peer(struct replicate *r, struct transfer *t,
			      size_t salt, bool *exhausted)
{
	size_t origin = origin_slot(r, t);
	bool candidate = false;

	*exhausted = false;
	for (size_t k = 0; k <= r->n_peers; k++) {
		size_t i = k == 0 ? origin : (salt + k) % r->n_peers;
		struct peer *p;

		if (i == SIZE_MAX)
			continue;
		p = r->peers[i];
		if (!peer_may_have(p, t) || peer_refused(t, i))
			continue;
		candidate = true;
		if (p->fetch_inflight < PEER_FETCH_WINDOW)
			return p;
	}
	*exhausted = !candidate;
	return NULL;
}

void transfer_refused_by(struct transfer *t, const struct peer *p)
{
	if (p->slot < TRANSFER_REFUSED_SLOTS)
		t->refused |= 1ull << p->slot;
	t->next_ask = 0;
}

void transfer_peer_answered(struct peer *p, uint32_t len)
{
	p->fetch_inflight -= p->fetch_inflight >= len ? len : p->fetch_inflight;
}

/*
 * The list of the version T replaces, when that is a file large enough
 * for its list to matter (an edit keeps most chunks): the list is then
 * asked as runs of it.
 */
static void load_base(struct replicate *r, struct transfer *t)
{
	struct journal_state cur = { 0 };

	if (t->base.n_chunks || t->job.size < TRANSFER_BASE_MIN_SIZE ||
	    t->job.copy_of)
		return;
	if (journal_lookup(r->journal, t->job.volume, t->job.path, &cur) == 0 &&
	    S_ISREG(cur.mode) && cur.has_hash &&
	    memcmp(cur.hash, t->job.hash, CONTENT_HASH_LEN) != 0 &&
	    journal_content_load(r->journal, cur.hash, &t->base) != 0)
		content_release(&t->base);
	journal_state_release(&cur);
}

static void ask_list(struct replicate *r, struct transfer *t)
{
	struct wire_msg m = { .type = WIRE_GET_CHUNKLIST };
	bool exhausted;
	struct peer *p = pick_peer(r, t, (size_t)t->job.change, &exhausted);

	if (!p) {
		if (exhausted && t->refused)
			transfer_fail(t, KR_ENOSOURCE);
		return;
	}
	load_base(r, t);
	memcpy(m.get_chunklist.hash, t->job.hash, CONTENT_HASH_LEN);
	m.get_chunklist.start = 0;
	m.get_chunklist.has_base = t->base.n_chunks > 0;
	memcpy(m.get_chunklist.base, t->base.hash, CONTENT_HASH_LEN);
	if (session_send(p->session, &m) == 0) {
		t->list_from = p;
		t->list_got = 0;
		session_update_poll(p->session);
	}
}

/* Sends P a GET_DELTA for W; false when it could not (ask it whole). */
static bool delta_ask(struct transfer *t, struct peer *p,
		      struct plan_delta *w)
{
	const struct content_chunk *k = &t->list.chunks[w->i];
	uint8_t (*dig)[DELTA_DIGEST] = malloc((size_t)delta_blocks(k->len) *
					      DELTA_DIGEST);
	uint8_t *buf = malloc(k->len);
	struct wire_msg m = { .type = WIRE_GET_DELTA };
	bool ok = dig && buf && transfer_base_read(t, w, buf) &&
		  delta_digests(buf, k->len, dig) == 0;

	if (ok) {
		memcpy(m.get_delta.hash, k->hash, CONTENT_HASH_LEN);
		m.get_delta.len = k->len;
		m.get_delta.digests = (const uint8_t (*)[DELTA_DIGEST])dig;
		ok = session_send(p->session, &m) == 0;
	}
	if (!ok)
		w->plain = true;
	free(dig);
	free(buf);
	return ok;
}

bool transfer_base_read(const struct transfer *t, const struct plan_delta *w,
			uint8_t *buf)
{
	uint32_t len = t->list.chunks[w->i].len;

	return pread(t->base_fd, buf, len, (off_t)w->base_off) ==
	       (ssize_t)len;
}

struct peer *transfer_ask_chunks(struct replicate *r, struct transfer *t)
{
	uint8_t (*hashes)[CONTENT_HASH_LEN] = NULL;
	struct wire_msg m = { .type = WIRE_GET_CHUNKS };
	bool exhausted, asked = false;
	struct peer *p = pick_peer(r, t, t->next_ask, &exhausted);
	struct plan_delta *w;
	uint32_t n = 0;

	if (!p) {
		if (exhausted && t->refused)
			transfer_fail(t, KR_ENOSOURCE);
		return NULL;
	}
	hashes = malloc(TRANSFER_GET_BATCH * CONTENT_HASH_LEN);
	if (!hashes)
		return NULL;
	while (t->next_ask < t->list.n_chunks && n < TRANSFER_GET_BATCH &&
	       p->fetch_inflight < PEER_FETCH_WINDOW) {
		size_t i = t->next_ask;

		if (t->got[i] != CHUNK_MISSING) {
			t->next_ask++;
			continue;
		}
		/* The ingress limit is kept by asking no faster than it. */
		if (!bucket_take(&r->ingress, t->list.chunks[i].len,
				 loop_now_ns()))
			break;
		t->next_ask++;
		transfer_chunk_set(t, i, CHUNK_ASKED);
		p->fetch_inflight += t->list.chunks[i].len;
		w = p->delta ? plan_delta_find(t->deltas, t->n_deltas, i) : NULL;
		if (w && delta_ask(t, p, w)) {
			asked = true;
			continue;
		}
		memcpy(hashes[n++], t->list.chunks[i].hash, CONTENT_HASH_LEN);
	}
	m.get_chunks.n = n;
	m.get_chunks.hashes = (const uint8_t (*)[CONTENT_HASH_LEN])hashes;
	if (n && session_send(p->session, &m) == 0)
		asked = true;
	if (asked)
		session_update_poll(p->session);
	free(hashes);
	return asked ? p : NULL;
}

/* ---- chunks in ------------------------------------------------------------ */

void transfer_mark(struct transfer *t, size_t first, size_t n)
{
	for (size_t i = first; i < first + n; i++)
		transfer_chunk_set(t, i, CHUNK_HERE);
	/* Writeback starts as the file fills, so that the sync before the
	 * rename finds little left to write: for a large file it would
	 * otherwise wait for all of it, after the transfer, in one go. */
	if (t->unflushed >= TRANSFER_WRITEBACK_BYTES) {
		sync_file_range(t->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		t->unflushed = 0;
	}
}

void transfer_put_chunk(struct transfer *t, size_t i, const uint8_t *data)
{
	const struct content_chunk *k = &t->list.chunks[i];

	if (t->got[i] == CHUNK_HERE)
		return;
	assert(t->fd >= 0);
	if (pwrite(t->fd, data, k->len, (off_t)k->offset) != (ssize_t)k->len) {
		transfer_fail(t, errno ? -errno : -EIO);
		return;
	}
	transfer_mark(t, i, 1);
}

void transfer_chunks_named(const struct transfer *t, const uint8_t *hash,
			   size_t *first, size_t *n)
{
	content_index_find(&t->list, t->by_hash, hash, first, n);
}

void transfer_finish(struct transfer *t)
{
	int err;

	if (t->state != TRANSFER_FETCH || t->missing)
		return;
	err = t->meta_set ? 0 : disk_set_meta(t->fd, &t->job);
	if (err) {
		transfer_fail(t, err);
		return;
	}
	t->ready_ns = loop_now_ns();
	transfer_set_state(t, TRANSFER_READY);
}

/* ---- the steps ------------------------------------------------------------ */

int transfer_prepare(struct replicate *r, struct transfer *t)
{
	t->fetch_ns = loop_now_ns();
	if (t->awaited) {
		filter_count(r->xfer.awaited, t->job.hash, -1);
		t->awaited = false;
	}
	t->got = calloc(t->list.n_chunks + 1, 1);
	for (size_t i = 0; t->got && i < t->list.n_chunks; i++)
		filter_count(r->xfer.wanted, t->list.chunks[i].hash, +1);
	t->missing = t->list.n_chunks;
	if (content_index_build(&t->list, &t->by_hash) != 0 || !t->got) {
		transfer_fail(t, -ENOMEM);
		return -ENOMEM;
	}
	return 0;
}

void transfer_start_fetch(struct replicate *r, struct transfer *t)
{
	if (transfer_prepare(r, t) == 0)
		reuse_fill(r, t);
}

/* Everything asked once: what came back "not here" or was lost with a
 * peer is asked again. */
static void transfer_ask_again(struct transfer *t)
{
	if (t->next_ask < t->list.n_chunks)
		return;
	for (size_t i = 0; i < t->list.n_chunks; i++)
		if (t->got[i] == CHUNK_MISSING) {
			t->next_ask = 0;
			return;
		}
}

/* LIST: a push, the journal (asked once: a list it lacks only comes from
 * a peer, and asking again on every turn, for every waiting transfer,
 * was most of the work of many small files), then a peer. */
static void transfer_find_list(struct replicate *r, struct transfer *t)
{
	if (fetch_push_claim(r, t)) {
		transfer_step(r, t);
		return;
	}
	if (t->job.size <= PUSH_MAX_SIZE &&
	    loop_now_ns() - t->started_ns < TRANSFER_PUSH_WAIT_NS)
		return;
	if (!t->list_looked_up) {
		t->list_looked_up = true;
		if (journal_content_load(r->journal, t->job.hash,
					 &t->list) == 0) {
			transfer_start_fetch(r, t);
			return;
		}
	}
	if (!t->list_from)
		ask_list(r, t);
}

void transfer_step(struct replicate *r, struct transfer *t)
{
	switch (t->state) {
	case TRANSFER_LIST:
		transfer_find_list(r, t);
		return;
	case TRANSFER_PRECOPY:
		reuse_fill(r, t);
		if (t->state != TRANSFER_FETCH)
			return;
		break;
	case TRANSFER_FETCH:
		break;
	default:
		return;
	}
	reuse_check_base(r, t);
	/* Chunks at the writer are missing but not to be asked for. */
	if (t->state == TRANSFER_FETCH && t->missing > t->writing) {
		transfer_ask_again(t);
		transfer_ask_chunks(r, t);
	}
	transfer_finish(t);
}

static int transfer_index(struct replicate *r, struct transfer *t)
{
	char key[PATH_MAX + 300];

	inflight_key(t->job.volume, t->job.path, key, sizeof(key));
	return strmap_put(&r->xfer.inflight, key, t, NULL) ? -ENOMEM : 0;
}

int transfer_new(struct replicate *r, struct journal_job *job)
{
	struct transfer_set *x = &r->xfer;
	struct transfer *t = calloc(1, sizeof(*t));
	int err;

	if (!t)
		return -ENOMEM;
	t->r = r;
	t->fd = -1;
	t->base_fd = -1;
	t->started_ns = loop_now_ns();
	err = disk_open_parent(r, job->volume, job->path, &t->dirfd, &t->name);
	if (err) {
		free(t);
		return err;
	}
	t->job = *job;
	/* The transfer owns the strings now; NAME points into its path. */
	memset(job, 0, sizeof(*job));
	if (transfer_index(r, t)) {
		transfer_free(t);
		return -ENOMEM;
	}
	filters_make(x);
	t->next = x->head;
	x->head = t;
	x->n++;
	x->n_large += t->job.size > TRANSFER_LARGE_SIZE;
	t->awaited = true;
	filter_count(x->awaited, t->job.hash, +1);
	/* Started jobs sort after untried ones in the next batch. */
	journal_job_defer(r->journal, &t->job);
	transfer_step(r, t);
	return 0;
}

void transfer_tick(struct replicate *r)
{
	for (struct transfer *t = r->xfer.head; t; t = t->next)
		transfer_step(r, t);
	commit_ready(r);
	transfers_reap(r);
}

/* ---- peers come and go ---------------------------------------------------- */

void transfer_peer_gone(struct replicate *r, struct peer *p)
{
	p->fetch_inflight = 0;
	for (struct transfer *t = r->xfer.head; t; t = t->next) {
		if (t->list_from == p && t->state == TRANSFER_LIST)
			t->list_from = NULL;
		for (size_t i = 0; t->got && i < t->list.n_chunks; i++)
			if (t->got[i] == CHUNK_ASKED)
				transfer_chunk_set(t, i, CHUNK_MISSING);
		t->next_ask = 0;
	}
}

void transfer_peer_removed(struct replicate *r, struct peer *p)
{
	transfer_peer_gone(r, p);
	for (struct transfer *t = r->xfer.head; t; t = t->next)
		if (t->list_from == p)
			t->list_from = NULL;
}

void transfer_peers_renumbered(struct replicate *r)
{
	for (struct transfer *t = r->xfer.head; t; t = t->next) {
		t->refused = 0;
		t->next_ask = 0;
	}
}

void transfer_stop(struct replicate *r)
{
	precopy_free_all(r);
	fetch_stop(r);
	commit_stop(r);
}

void transfer_free_all(struct replicate *r)
{
	struct transfer_set *x = &r->xfer;

	while (x->head) {
		struct transfer *t = x->head;

		x->head = t->next;
		transfer_free(t);
	}
	x->n = x->n_large = 0;
	strmap_clear(&x->inflight);
	push_free(&x->pushed);
	free(x->wanted);
	free(x->awaited);
	x->wanted = x->awaited = NULL;
}
