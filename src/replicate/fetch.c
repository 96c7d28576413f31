/*
 * What peers send for transfers (transfer.h): chunk lists, chunks,
 * deltas, "not here", and pushed small files; and the writer thread that
 * verifies and writes large chunks beside the loop (writer.h).
 *
 * A chunk list is taken page by page from the peer it was asked of, and
 * only whole: it must hash to the content hash and its chunks add up to
 * the size, or the transfer fails (KR_ECORRUPT).  A chunk is verified
 * before it is written anywhere; one that does not match its hash is
 * asked of another peer (the sender's file moved on since it was
 * recorded, or worse), and its sender is not asked again for that
 * transfer.  Chunks over PUSH_MAX_SIZE go to the writer thread; small
 * ones are verified here: they may be pushed contents, and their hash
 * costs little.  A pushed chunk nobody waits for yet is kept (push.h)
 * for the transfer its entry will make.
 */
#include "transfer.h"
#include "disk.h"
#include "replicate_int.h"
#include "session.h"
#include "writer.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

/* Chunk bytes handed to the writer thread and not written yet. */
#define FETCH_WRITER_BYTES (32u << 20)

/* ---- chunk lists ------------------------------------------------------- */

static bool list_matches(const struct content *c)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t got[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;

	for (size_t i = 0; ok && i < c->n_chunks; i++)
		ok = EVP_DigestUpdate(md, c->chunks[i].hash,
				      CONTENT_HASH_LEN) == 1;
	ok = ok && EVP_DigestFinal_ex(md, got, &n) == 1 &&
	     memcmp(got, c->hash, CONTENT_HASH_LEN) == 0;
	EVP_MD_CTX_free(md);
	return ok;
}

/* Appends a chunk to T's list at *OFF; false when the list is full. */
static bool list_append(struct transfer *t, uint32_t total,
			const uint8_t *hash, uint32_t len, uint64_t *off)
{
	struct content_chunk *k;

	if (t->list_got >= total)
		return false;
	k = &t->list.chunks[t->list_got++];
	memcpy(k->hash, hash, CONTENT_HASH_LEN);
	k->len = len;
	k->offset = *off;
	*off += len;
	return true;
}

/* Expands CL's items into T's list: chunks as they are, runs from the
 * base T asked with.  False on an item that does not fit. */
static bool list_expand(struct transfer *t, const struct wire_chunklist *cl,
			uint64_t *off)
{
	if (cl->has_base && (!t->base.n_chunks ||
	    memcmp(cl->base, t->base.hash, CONTENT_HASH_LEN) != 0))
		return false;
	for (uint32_t i = 0; i < cl->n; i++) {
		const struct wire_chunk_ref *it = &cl->chunks[i];

		if (!it->count) {
			if (!list_append(t, cl->total, it->hash, it->len, off))
				return false;
			continue;
		}
		if (it->base_index > t->base.n_chunks ||
		    it->count > t->base.n_chunks - it->base_index)
			return false;
		for (uint32_t k = 0; k < it->count; k++) {
			const struct content_chunk *b =
				&t->base.chunks[it->base_index + k];

			if (!list_append(t, cl->total, b->hash, b->len, off))
				return false;
		}
	}
	return true;
}

/* The list's storage, made by its first page. */
static int list_start(struct transfer *t, const struct wire_chunklist *cl)
{
	if (t->list.chunks)
		return 0;
	t->list.chunks = calloc((size_t)cl->total + 1, sizeof(*t->list.chunks));
	if (!t->list.chunks)
		return -ENOMEM;
	t->list.cap_chunks = (size_t)cl->total + 1;
	t->list.size = cl->size;
	memcpy(t->list.hash, cl->hash, CONTENT_HASH_LEN);
	return 0;
}

static void list_page(struct replicate *r, struct transfer *t,
		      const struct wire_chunklist *cl)
{
	uint64_t off = 0;

	if (cl->start != t->list_got || cl->total > cl->size + 1 ||
	    cl->total > (1u << 26)) {
		transfer_fail(t, KR_ECORRUPT);
		return;
	}
	if (list_start(t, cl) != 0) {
		transfer_fail(t, -ENOMEM);
		return;
	}
	if (t->list_got > 0)
		off = t->list.chunks[t->list_got - 1].offset +
		      t->list.chunks[t->list_got - 1].len;
	if (!list_expand(t, cl, &off)) {
		log_warn("replicate", "chunk list for %s/%s names chunks it "
			 "cannot have", t->job.volume, t->job.path);
		transfer_fail(t, KR_ECORRUPT);
		return;
	}
	t->list.n_chunks = t->list_got;
	if (t->list_got < cl->total)
		return;
	/* The whole list: it must hash to the content hash and add up. */
	if (off != cl->size || !list_matches(&t->list)) {
		log_warn("replicate", "chunk list for %s/%s does not match its "
			 "hash", t->job.volume, t->job.path);
		transfer_fail(t, KR_ECORRUPT);
		return;
	}
	t->list_unstored = true;
	transfer_start_fetch(r, t);
	transfer_step(r, t);
}

void fetch_on_chunklist(struct replicate *r, struct peer *p,
			const struct wire_chunklist *cl)
{
	for (struct transfer *t = r->xfer.head; t; t = t->next) {
		if (t->state != TRANSFER_LIST || t->list_from != p ||
		    memcmp(t->job.hash, cl->hash, CONTENT_HASH_LEN) != 0)
			continue;
		list_page(r, t, cl);
	}
}

/* ---- the writer thread ------------------------------------------------- */

/* A transfer that had chunk I with the writer is done with it. */
static void written_target(struct transfer *t, size_t i, int result)
{
	t->writing--;
	if (result == 0) {
		transfer_mark(t, i, 1);
		commit_sync_ahead(t, t->list.chunks[i].len);
	} else if (result == KR_ECORRUPT) {
		transfer_chunk_set(t, i, CHUNK_MISSING);   /* asked elsewhere */
	} else {
		transfer_fail(t, result);
	}
}

static void written_check(struct replicate *r, struct writer_job *job)
{
	struct transfer *t = job->targets[0].ctx;

	t->writing--;
	reuse_checked(r, t, job->targets[0].index, job->n_check, job->result);
	transfer_finish(t);
}

static void written_chunk(struct replicate *r, struct writer_job *job)
{
	struct peer *p = job->result == KR_ECORRUPT ?
			 replicate_peer_by_id(r, job->from) : NULL;

	if (job->result == KR_ECORRUPT)
		log_warn("replicate", "peer %s sent a chunk that does not "
			 "match its hash; asking elsewhere", job->from);
	else if (job->result)
		log_warn("replicate", "cannot write a received chunk: %s; the "
			 "file is fetched again", kr_strerror(job->result));
	for (size_t k = 0; k < job->n_targets; k++) {
		struct transfer *t = job->targets[k].ctx;

		if (job->create.dirfd >= 0 && !job->result) {
			t->fd = job->targets[k].fd;   /* taken over */
			job->targets[k].fd = -1;
		}
		written_target(t, job->targets[k].index, job->result);
		if (p)
			transfer_refused_by(t, p);
		else if (job->result == KR_ECORRUPT)
			t->next_ask = 0;
		transfer_finish(t);
	}
}

static void fetch_on_written(void *arg, uint32_t events)
{
	struct replicate *r = arg;
	struct writer_job *jobs = writer_collect(r->xfer.writer);

	(void)events;
	while (jobs) {
		struct writer_job *job = jobs;

		jobs = job->next;
		if (job->check_only)
			written_check(r, job);
		else
			written_chunk(r, job);
		writer_job_free(job);
	}
}

int fetch_writer(struct replicate *r)
{
	struct transfer_set *x = &r->xfer;
	int err;

	if (x->writer)
		return 0;
	err = writer_new(FETCH_WRITER_BYTES, &x->writer);
	if (!err)
		err = loop_add_fd(r->loop, writer_fd(x->writer), EPOLLIN,
				  fetch_on_written, r);
	if (err) {
		writer_free(x->writer);
		x->writer = NULL;
	}
	return err;
}

void fetch_stop(struct replicate *r)
{
	struct transfer_set *x = &r->xfer;

	if (!x->writer)
		return;
	/* Joined before the transfers whose files it writes go. */
	loop_del_fd(r->loop, writer_fd(x->writer));
	writer_free(x->writer);
	x->writer = NULL;
}

/* The places in transfers that wait for chunk C, as writer targets:
 * their number, or -E2BIG when there are more than a job holds. */
static int chunk_targets(struct replicate *r, const struct wire_chunk *c,
			 struct writer_job *job)
{
	for (struct transfer *t = r->xfer.head; t; t = t->next) {
		size_t first, n;

		if (!transfer_fetching(t))
			continue;
		transfer_chunks_named(t, c->hash, &first, &n);
		for (size_t k = first; k < first + n; k++) {
			size_t i = t->by_hash[k];

			if (t->got[i] > CHUNK_ASKED ||
			    t->list.chunks[i].len != c->len)
				continue;
			if (job->n_targets == WRITER_TARGETS_MAX)
				return -E2BIG;
			job->targets[job->n_targets++] = (struct writer_target){
				.fd = t->fd,
				.offset = t->list.chunks[i].offset,
				.ctx = t,
				.index = i,
			};
		}
	}
	return (int)job->n_targets;
}

static struct writer_job *chunk_job(struct peer *p, const struct wire_chunk *c)
{
	struct writer_job *job = writer_job_new();

	if (!job)
		return NULL;
	memcpy(job->hash, c->hash, CONTENT_HASH_LEN);
	snprintf(job->from, sizeof(job->from), "%s", p->id);
	job->len = c->len;
	return job;
}

/*
 * Hands chunk C to the writer thread: 0 when it took it (or nobody wants
 * a chunk this large), else the caller verifies and writes it itself.
 */
static int chunk_submit(struct replicate *r, struct peer *p,
			const struct wire_chunk *c)
{
	struct writer_job *job;
	int n, err;

	if (c->len <= PUSH_MAX_SIZE || fetch_writer(r) != 0)
		return -EAGAIN;
	job = chunk_job(p, c);
	if (!job)
		return -ENOMEM;
	n = chunk_targets(r, c, job);
	if (n <= 0 || !(job->data = malloc(c->len))) {
		writer_job_free(job);
		return n == 0 ? 0 : n < 0 ? n : -ENOMEM;
	}
	memcpy(job->data, c->data, c->len);
	err = writer_submit(r->xfer.writer, job);
	if (err) {
		writer_job_free(job);
		return err;
	}
	for (size_t k = 0; k < job->n_targets; k++) {
		struct transfer *t = job->targets[k].ctx;

		transfer_chunk_set(t, job->targets[k].index, CHUNK_WRITING);
		t->writing++;
	}
	return 0;
}

/* ---- chunks and deltas ------------------------------------------------- */

/* Writes verified chunk C wherever transfers want it; whether any did. */
static bool chunk_put(struct replicate *r, const struct wire_chunk *c)
{
	bool wanted = false;

	for (struct transfer *t = r->xfer.head; t; t = t->next) {
		size_t first, n;

		if (!transfer_fetching(t))
			continue;
		transfer_chunks_named(t, c->hash, &first, &n);
		wanted |= n > 0;
		for (size_t k = first; k < first + n; k++) {
			size_t i = t->by_hash[k];

			if (t->got[i] < CHUNK_HERE &&
			    t->list.chunks[i].len == c->len)
				transfer_put_chunk(t, i, c->data);
		}
		if (n)
			transfer_finish(t);
	}
	return wanted;
}

/* Keeps small chunk C nobody wanted as a pushed content; transfers
 * already waiting for it (their list asked, or the wait for the push
 * running) take it now. */
static void chunk_keep(struct replicate *r, const struct wire_chunk *c)
{
	uint8_t content[CONTENT_HASH_LEN];

	push_keep(&r->xfer.pushed, c->hash, c->data, c->len, loop_now_ns(),
		  content);
	if (!transfer_filter_maybe(r->xfer.awaited, content))
		return;
	for (struct transfer *t = r->xfer.head; t; t = t->next)
		if (t->state == TRANSFER_LIST &&
		    memcmp(t->job.hash, content, CONTENT_HASH_LEN) == 0 &&
		    fetch_push_claim(r, t))
			transfer_step(r, t);
}

void fetch_on_chunk(struct replicate *r, struct peer *p,
		    const struct wire_chunk *c)
{
	bool maybe;

	transfer_peer_answered(p, c->len);
	p->stats.chunk_bytes_in += c->len;
	maybe = transfer_filter_maybe(r->xfer.wanted, c->hash);
	if (!maybe && c->len > PUSH_MAX_SIZE)
		return;                 /* nobody wants it, nor would keep it */
	if (maybe && chunk_submit(r, p, c) == 0)
		return;
	if (!disk_chunk_verify(c->data, c->len, c->hash)) {
		log_warn("replicate", "peer %s sent a chunk that does not match "
			 "its hash; asking elsewhere", p->id);
		fetch_on_not_here(r, p, c->hash);
		return;
	}
	if ((maybe && chunk_put(r, c)) || c->len > PUSH_MAX_SIZE)
		return;
	chunk_keep(r, c);
}

/* The chunk D answers into BUF, from the base bytes W names: true when
 * it matches its hash. */
static bool delta_rebuild(const struct transfer *t, const struct plan_delta *w,
			  const struct wire_delta *d, uint8_t *buf)
{
	if (!transfer_base_read(t, w, buf))
		return false;
	delta_apply(buf, d->len, d->map, d->data);
	return disk_chunk_verify(buf, d->len, d->hash);
}

/* The delta T asked for that D answers, or NULL. */
static struct plan_delta *delta_asked(struct transfer *t,
				      const struct wire_delta *d, size_t first,
				      size_t n)
{
	for (size_t k = first; k < first + n; k++) {
		size_t i = t->by_hash[k];

		if (t->got[i] == CHUNK_ASKED && t->list.chunks[i].len == d->len)
			return plan_delta_find(t->deltas, t->n_deltas, i);
	}
	return NULL;
}

/* T takes the chunk D answers, rebuilt into BUF. */
static void delta_take(struct transfer *t, const struct wire_delta *d,
		       struct plan_delta *w, uint8_t *buf, size_t first,
		       size_t n)
{
	if (!delta_rebuild(t, w, d, buf)) {
		log_debug("replicate", "%s/%s: a chunk rebuilt from a delta "
			  "does not check; asking for it whole", t->job.volume,
			  t->job.path);
		w->plain = true;
		transfer_chunk_set(t, w->i, CHUNK_MISSING);
		t->next_ask = 0;
		return;
	}
	for (size_t k = first; k < first + n; k++) {
		size_t i = t->by_hash[k];

		if (t->got[i] < CHUNK_HERE && t->list.chunks[i].len == d->len)
			transfer_put_chunk(t, i, buf);
	}
	transfer_finish(t);
}

/*
 * Rebuilds the chunk D answers from the base bytes of the transfer that
 * asked for it, checks it, and writes it wherever it is wanted.  A chunk
 * that does not check (the base changed meanwhile, or block digests that
 * collided) is asked for again whole.
 */
void fetch_on_delta(struct replicate *r, struct peer *p,
		    const struct wire_delta *d)
{
	uint8_t *buf = NULL;

	transfer_peer_answered(p, d->len);
	p->stats.chunk_bytes_in += d->data_len;
	if (!transfer_filter_maybe(r->xfer.wanted, d->hash))
		return;
	for (struct transfer *t = r->xfer.head; t; t = t->next) {
		struct plan_delta *w;
		size_t first, n;

		if (!transfer_fetching(t) || !t->n_deltas)
			continue;
		transfer_chunks_named(t, d->hash, &first, &n);
		w = delta_asked(t, d, first, n);
		if (!w || (!buf && !(buf = malloc(d->len))))
			continue;
		delta_take(t, d, w, buf, first, n);
	}
	free(buf);
}

void fetch_on_not_here(struct replicate *r, struct peer *p,
		       const uint8_t *hash)
{
	for (struct transfer *t = r->xfer.head; t; t = t->next) {
		bool hit = false;

		if (t->list_from == p && t->state == TRANSFER_LIST &&
		    memcmp(t->job.hash, hash, CONTENT_HASH_LEN) == 0) {
			t->list_from = NULL;
			hit = true;
		}
		for (size_t i = 0; t->got && i < t->list.n_chunks; i++) {
			if (t->got[i] != CHUNK_ASKED ||
			    memcmp(t->list.chunks[i].hash, hash,
				   CONTENT_HASH_LEN))
				continue;
			transfer_chunk_set(t, i, CHUNK_MISSING);
			hit = true;
			transfer_peer_answered(p, t->list.chunks[i].len);
		}
		if (hit)
			transfer_refused_by(t, p);
	}
}

/* ---- pushed small files ------------------------------------------------ */

/* T's temp file made, filled with P's data and given its metadata by the
 * writer thread.  0, or the caller does it itself. */
static int push_create(struct replicate *r, struct transfer *t,
		       const struct pushed *p)
{
	struct writer_job *job;
	int err;

	if (fetch_writer(r) != 0)
		return -EAGAIN;
	job = writer_job_new();
	if (!job || !(job->data = malloc(p->len))) {
		writer_job_free(job);
		return -ENOMEM;
	}
	memcpy(job->data, p->data, p->len);
	memcpy(job->hash, p->chunk, CONTENT_HASH_LEN);
	job->len = p->len;
	job->verified = true;     /* when it was kept */
	tempname_make(t->tmp, sizeof(t->tmp));
	job->create = (struct writer_create){
		.dirfd = t->dirfd,
		.mode = t->job.mode, .uid = t->job.uid, .gid = t->job.gid,
		.mtime_ns = t->job.mtime_ns,
	};
	snprintf(job->create.name, sizeof(job->create.name), "%s", t->tmp);
	job->n_targets = 1;
	job->targets[0] = (struct writer_target){ .fd = -1, .ctx = t };
	err = writer_submit(r->xfer.writer, job);
	if (err) {
		writer_job_free(job);
		t->tmp[0] = '\0';
		return err;
	}
	transfer_chunk_set(t, 0, CHUNK_WRITING);
	t->writing++;
	t->meta_set = true;
	return 0;
}

/* The one-chunk list of a pushed content P. */
static int push_list(struct transfer *t, const struct pushed *p)
{
	t->list.chunks = calloc(1, sizeof(*t->list.chunks));
	if (!t->list.chunks)
		return -ENOMEM;
	t->list.cap_chunks = 1;
	t->list.n_chunks = 1;
	t->list.size = p->len;
	memcpy(t->list.hash, t->job.hash, CONTENT_HASH_LEN);
	memcpy(t->list.chunks[0].hash, p->chunk, CONTENT_HASH_LEN);
	t->list.chunks[0].len = p->len;
	return 0;
}

bool fetch_push_claim(struct replicate *r, struct transfer *t)
{
	const struct pushed *p = push_find(&r->xfer.pushed, t->job.hash,
					   t->job.size);

	if (!p || push_list(t, p) != 0)
		return false;
	journal_content_store(r->journal, &t->list, NULL);
	if (transfer_prepare(r, t) == 0) {
		transfer_set_state(t, TRANSFER_FETCH);
		if (push_create(r, t, p) != 0) {
			reuse_fill(r, t);
			if (t->state == TRANSFER_FETCH &&
			    t->got[0] != CHUNK_HERE)
				transfer_put_chunk(t, 0, p->data);
		}
	}
	push_claimed(&r->xfer.pushed, t->job.hash);
	return true;
}
