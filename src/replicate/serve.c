/*
 * Serving chunks to peers: the ones they ask for, small files pushed
 * unasked, and chunk lists (GET_CHUNKLIST, in pages, as runs of the
 * asker's base when both hold it: plan_diff).
 *
 * GET_CHUNKS queues hashes on the session (session.asked, in order),
 * GET_DELTA its requests with their digests (session.deltas); serve_queue
 * answers them, deltas first (they are few, and each ends an edit's
 * transfer), CHUNK, DELTA or NOT_HERE each, while the connection's output
 * is under PEER_PUMP_LOW and the egress bucket has tokens.  The bytes
 * are read from whichever current file of this node holds the chunk
 * straight into the connection's output queue, and are not hashed: the
 * receiver verifies every chunk and takes a mismatch as "not here", so
 * hashing on both ends would only double the work for the rare file
 * that changed since it was recorded.
 *
 * Finding the file is a journal query per hash.  A peer fetching a large
 * file asks for its chunks in order, about 27,000 a gigabyte, and those
 * queries were a seventh of the sending loop's time; so each session
 * keeps the file it last read from (struct serve_cache): an open
 * descriptor and, for a large file, its whole chunk list loaded once and
 * indexed by hash, which answers most requests without a query.
 *
 * Invariants: the index is used only while the file is what the journal
 * recorded when it was loaded (size, mtime, inode, ctime) and still
 * linked, checked at every serve_queue call; the file is let go when it
 * is not, when a chunk lives elsewhere, after SERVE_IDLE_NS without a
 * request (a deleted file's blocks are not held for long), and with the
 * session.
 *
 * Kept versions.  A chunk no live file holds may still be in content
 * the version store keeps (versions.c): a peer restoring a version it
 * lacks asks for it like any other.  Read from the store's file, opened
 * for that chunk alone (restores are rare; the cache stays for live
 * files).
 */
#include "replicate_int.h"
#include "serve.h"
#include "session.h"
#include "plan.h"

#include "log.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* From this size a file's list is loaded and indexed when first served
 * from; below it, a query for each of its few chunks costs less. */
#define SERVE_INDEX_MIN_SIZE (1u << 20)
/* A file kept this long without a request is let go. */
#define SERVE_IDLE_NS (2LL * 1000000000)
/* What a chunk request is expected to cost before its size is known. */
#define SERVE_TYPICAL_CHUNK (64u << 10)

/* A GET_DELTA waiting to be answered. */
struct serve_delta {
	struct serve_delta *next;
	uint8_t hash[CONTENT_HASH_LEN];
	uint32_t len;
	uint8_t digests[][DELTA_DIGEST];
};

struct serve_cache {
	char volume[256];
	char *path;                 /* NULL when nothing is kept */
	int fd;                     /* the file, or -1 when it did not open */
	int64_t used_ns;
	struct journal_state state; /* the journal's record, when indexed */
	struct content list;        /* its chunks, when indexed */
	uint32_t *index;            /* list's chunk indexes sorted by hash */
};

static void cache_drop(struct serve_cache *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->path);
	free(c->index);
	content_release(&c->list);
	journal_state_release(&c->state);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

void serve_release(struct session *s)
{
	while (s->deltas) {
		struct serve_delta *d = s->deltas;

		s->deltas = d->next;
		free(d);
	}
	s->deltas_tail = NULL;
	s->deltas_n = s->deltas_bytes = 0;
	if (!s->serve)
		return;
	cache_drop(s->serve);
	free(s->serve);
	s->serve = NULL;
}

bool serve_pending(const struct session *s)
{
	return s->asked_n || s->deltas_n;
}

/* The file still holds what it was kept for. */
static bool cache_valid(const struct serve_cache *c)
{
	struct stat st;

	if (c->fd < 0)
		return false;
	if (c->index)
		return disk_file_current(&c->state, c->fd);
	return fstat(c->fd, &st) == 0 && st.st_nlink > 0;
}

/* Indexes the list of the file C holds, when it is large and still what
 * the journal recorded; otherwise it is served query by query. */
static void cache_index(struct replicate *r, struct serve_cache *c)
{
	if (journal_lookup(r->journal, c->volume, c->path, &c->state) == 0 &&
	    c->state.has_hash && c->state.size >= SERVE_INDEX_MIN_SIZE &&
	    disk_file_current(&c->state, c->fd) &&
	    journal_content_load(r->journal, c->state.hash, &c->list) == 0 &&
	    content_index_build(&c->list, &c->index) == 0)
		return;
	free(c->index);
	c->index = NULL;
	content_release(&c->list);
}

/* Keeps VOLUME/PATH open in C; PATH (malloc'd) is taken over either way. */
static int cache_open(struct replicate *r, struct serve_cache *c,
		      const char *volume, char *path)
{
	const char *name;
	int dirfd = -1;

	if (c->path && strcmp(c->volume, volume) == 0 &&
	    strcmp(c->path, path) == 0) {
		free(path);
		return c->fd >= 0 ? 0 : -ENOENT;
	}
	cache_drop(c);
	snprintf(c->volume, sizeof(c->volume), "%s", volume);
	c->path = path;
	if (disk_open_parent(r, volume, path, &dirfd, &name))
		return -ENOENT;
	c->fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
		       O_CLOEXEC);
	close(dirfd);
	if (c->fd < 0)
		return -errno;
	cache_index(r, c);
	return 0;
}

/* Where the indexed file holds chunk HASH.  0 or -ENOENT. */
static int cache_find(const struct serve_cache *c, const uint8_t *hash,
		      uint64_t *off, uint32_t *len)
{
	size_t first, n;

	if (!c->index)
		return -ENOENT;
	content_index_find(&c->list, c->index, hash, &first, &n);
	if (n == 0)
		return -ENOENT;
	*off = c->list.chunks[c->index[first]].offset;
	*len = c->list.chunks[c->index[first]].len;
	return 0;
}

static int serve_not_here(struct session *s, const uint8_t *hash)
{
	struct wire_msg m = { .type = WIRE_NOT_HERE };

	memcpy(m.not_here, hash, CONTENT_HASH_LEN);
	return session_send(s, &m);
}

/* CHUNK HASH read from FD at OFF straight into the output queue, or
 * NOT_HERE when the file no longer has those bytes. */
static int serve_read(struct replicate *r, struct session *s, int fd,
		      const uint8_t *hash, uint64_t off, uint32_t len)
{
	uint32_t size = WIRE_CHUNK_HEAD + len;
	uint8_t *p;
	int err = conn_frame_reserve(s->conn, size, &p);

	if (err)
		return err;
	if (pread(fd, p + WIRE_CHUNK_HEAD, len, (off_t)off) != (ssize_t)len)
		return serve_not_here(s, hash);
	wire_chunk_head(p, hash, len);
	conn_frame_commit(s->conn, WIRE_CHUNK, size);
	/* Charged even past the tokens: a chunk larger than what is left
	 * must not go out for free. */
	bucket_charge(&r->egress, len, loop_now_ns());
	if (s->peer)
		s->peer->stats.bytes_out += WIRE_HEADER_LEN + size;
	return 0;
}

/* A descriptor of the content the version store keeps with chunk HASH
 * in it, at *OFF, *LEN bytes; -ENOENT when none. */
static int serve_kept(struct replicate *r, const uint8_t *hash, uint64_t *off,
		      uint32_t *len)
{
	uint8_t content[CONTENT_HASH_LEN];

	if (!r->versions ||
	    journal_chunk_kept(r->journal, hash, content, off, len) != 0 ||
	    *len == 0 || *len > WIRE_MAX_CHUNK)
		return -ENOENT;
	return journal_versions_get(r->versions, content);
}

/*
 * Where chunk HASH is: a descriptor (*FD) at *OFF, *LEN bytes.  A live
 * file is the one C keeps (opened if need be; C owns it), else content
 * of the version store, which a peer restoring a version it lacks may
 * ask for (*OWNED: the caller closes it).  0, or -ENOENT when this node
 * does not have it.
 */
static int serve_locate(struct replicate *r, struct serve_cache *c,
			const uint8_t *hash, uint64_t *off, uint32_t *len,
			int *fd, bool *owned)
{
	char volume[256], *path = NULL;

	*owned = false;
	*fd = c->fd;
	if (cache_find(c, hash, off, len) == 0)
		return 0;
	if (journal_chunk_source(r->journal, hash, volume, sizeof(volume),
				 &path, off, len) == 0) {
		if (*len == 0 || *len > WIRE_MAX_CHUNK) {
			free(path);
		} else if (cache_open(r, c, volume, path) == 0) {  /* takes it */
			*fd = c->fd;
			return 0;
		}
	}
	*fd = serve_kept(r, hash, off, len);
	*owned = *fd >= 0;
	return *fd >= 0 ? 0 : -ENOENT;
}

static int serve_chunk(struct replicate *r, struct session *s,
		       const uint8_t *hash)
{
	uint64_t off;
	uint32_t len;
	bool owned;
	int fd, err;

	if (serve_locate(r, s->serve, hash, &off, &len, &fd, &owned) != 0)
		return serve_not_here(s, hash);
	err = serve_read(r, s, fd, hash, off, len);
	if (owned)
		close(fd);
	return err;
}

/*
 * DELTA for request D: the chunk read, its blocks compared with the
 * asker's, the ones it lacks sent.  NOT_HERE when the chunk is not here
 * at the length asked.  Like CHUNK, sent without hashing the chunk: the
 * asker checks what it rebuilds.
 */
static int serve_delta(struct replicate *r, struct session *s,
		       const struct serve_delta *d)
{
	struct wire_msg m = { .type = WIRE_DELTA };
	uint8_t map[DELTA_MAP_MAX], *buf = NULL;
	uint64_t off;
	uint32_t len, lit_len;
	bool owned = false;
	int fd = -1, err = 0;

	if (serve_locate(r, s->serve, d->hash, &off, &len, &fd, &owned) != 0 ||
	    len != d->len) {
		err = serve_not_here(s, d->hash);
		goto out;
	}
	buf = malloc(2 * (size_t)len);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	if (pread(fd, buf, len, (off_t)off) != (ssize_t)len) {
		err = serve_not_here(s, d->hash);
		goto out;
	}
	err = delta_make(buf, len, (const uint8_t (*)[DELTA_DIGEST])d->digests,
			 map, buf + len, &lit_len);
	if (err)
		goto out;
	memcpy(m.delta.hash, d->hash, CONTENT_HASH_LEN);
	m.delta.len = len;
	m.delta.map = map;
	m.delta.data = buf + len;
	m.delta.data_len = lit_len;
	err = session_send(s, &m);
	if (!err)
		bucket_charge(&r->egress, lit_len, loop_now_ns());
out:
	if (owned)
		close(fd);
	free(buf);
	return err;
}

int serve_ask_delta(struct replicate *r, struct session *s,
		    const struct wire_get_delta *g)
{
	size_t bytes = (size_t)delta_blocks(g->len) * DELTA_DIGEST;
	struct serve_delta *d;

	if (s->deltas_n >= PEER_DELTAS_MAX ||
	    s->deltas_bytes + bytes > PEER_DELTA_BYTES_MAX) {
		log_warn("replicate", "peer %s asked for %zu deltas without "
			 "reading the answers; disconnecting", s->peer->id,
			 s->deltas_n + 1);
		return -ENOBUFS;
	}
	d = malloc(sizeof(*d) + bytes);
	if (!d)
		return -ENOMEM;
	d->next = NULL;
	memcpy(d->hash, g->hash, CONTENT_HASH_LEN);
	d->len = g->len;
	memcpy(d->digests, g->digests, bytes);
	if (!s->deltas)
		s->deltas_tail = &s->deltas;
	*s->deltas_tail = d;
	s->deltas_tail = &d->next;
	s->deltas_n++;
	s->deltas_bytes += bytes;
	return serve_queue(r, s);
}

/* Answers the oldest request of S: a delta first, else a chunk. */
static int serve_next(struct replicate *r, struct session *s)
{
	struct serve_delta *d = s->deltas;
	int err;

	if (!d) {
		err = serve_chunk(r, s, s->asked[s->asked_head]);
		s->asked_head++;
		s->asked_n--;
		return err;
	}
	err = serve_delta(r, s, d);
	s->deltas = d->next;
	s->deltas_n--;
	s->deltas_bytes -= (size_t)delta_blocks(d->len) * DELTA_DIGEST;
	free(d);
	return err;
}

int serve_queue(struct replicate *r, struct session *s)
{
	int64_t now = loop_now_ns();
	int err = 0;

	/* Called on every event of the session: nothing to check or keep
	 * unless something was asked (serve_idle lets go meanwhile). */
	if (!serve_pending(s))
		return 0;
	if (!s->serve) {
		s->serve = calloc(1, sizeof(*s->serve));
		if (!s->serve)
			return -ENOMEM;
		s->serve->fd = -1;
	}
	if (s->serve->path && !cache_valid(s->serve))
		cache_drop(s->serve);
	s->serve->used_ns = now;
	while (!err && serve_pending(s) &&
	       conn_queued(s->conn) < PEER_PUMP_LOW) {
		int64_t wait = bucket_wait_ns(&r->egress, SERVE_TYPICAL_CHUNK,
					      now);

		if (wait > 0) {
			r->serve_at = now + wait;
			break;
		}
		err = serve_next(r, s);
	}
	if (s->asked_n == 0)
		s->asked_head = 0;
	return err;
}

void serve_idle(struct session *s, int64_t now)
{
	if (s->serve && s->serve->path && !serve_pending(s) &&
	    now - s->serve->used_ns > SERVE_IDLE_NS)
		cache_drop(s->serve);
}

/*
 * Pushing.  A small file is one chunk, and its content hash is the
 * SHA-256 of that chunk's hash, so the receiver can recognise its content
 * without a list: sending it unasked right behind the entry saves the
 * receiver a GET_CHUNKLIST and a GET_CHUNKS per file, which is most of
 * the cost of many small files.  Only recent versions of this node's own
 * files are pushed (sync.c decides), never under a bandwidth limit, and
 * only when the file still holds that version; the receiver keeps a
 * bounded number of unclaimed pushes and drops the rest.
 *
 * Offers.  The watcher has just read every small file it hashed, and the
 * push follows within milliseconds: those bytes are offered here
 * (replicate_offer) so that the push need not open, read and hash the
 * file again, which was a fifth of the sending loop's work for many small
 * files.  A table of OFFER_SLOTS slots indexed by content hash, a new
 * offer replacing whatever shares its slot (a miss only costs the read);
 * offers older than any entry still pushed are freed once a second.
 */
#define OFFER_SLOTS 2048

struct offer {
	uint8_t content[CONTENT_HASH_LEN], chunk[CONTENT_HASH_LEN];
	uint32_t len;
	int64_t ns;
	uint8_t data[];
};

static struct offer **offer_slot(struct replicate *r, const uint8_t *content)
{
	uint32_t k;

	memcpy(&k, content, sizeof(k));   /* a SHA-256: any bytes are uniform */
	return &r->offers[k % OFFER_SLOTS];
}

void replicate_offer(struct replicate *r, const struct content *c,
		     const void *data)
{
	struct offer **slot, *o;

	if (c->n_chunks != 1 || c->size == 0 || c->size > PUSH_MAX_SIZE)
		return;
	if (!r->offers) {
		r->offers = calloc(OFFER_SLOTS, sizeof(*r->offers));
		if (!r->offers)
			return;
	}
	o = malloc(sizeof(*o) + c->size);
	if (!o)
		return;
	memcpy(o->content, c->hash, CONTENT_HASH_LEN);
	memcpy(o->chunk, c->chunks[0].hash, CONTENT_HASH_LEN);
	o->len = (uint32_t)c->size;
	o->ns = loop_now_ns();
	memcpy(o->data, data, c->size);
	slot = offer_slot(r, c->hash);
	r->n_offers += *slot == NULL;
	free(*slot);
	*slot = o;
}

void serve_offers_expire(struct replicate *r, int64_t now)
{
	for (size_t i = 0; r->n_offers && i < OFFER_SLOTS; i++)
		if (r->offers[i] && now - r->offers[i]->ns > PUSH_RECENT_NS) {
			free(r->offers[i]);
			r->offers[i] = NULL;
			r->n_offers--;
		}
	if (r->n_offers == 0) {
		free(r->offers);
		r->offers = NULL;
	}
}

static const struct offer *offer_find(struct replicate *r,
				      const uint8_t *content, uint64_t size)
{
	const struct offer *o = r->offers ? *offer_slot(r, content) : NULL;

	return o && o->len == size &&
	       memcmp(o->content, content, CONTENT_HASH_LEN) == 0 ? o : NULL;
}

void serve_push(struct replicate *r, struct session *s, const char *volume,
		const char *path, uint64_t size, const uint8_t *hash)
{
	struct wire_msg m = { .type = WIRE_CHUNK };
	uint8_t buf[PUSH_MAX_SIZE], content[CONTENT_HASH_LEN];
	const struct offer *o;
	unsigned n = 0;
	const char *name;
	int dirfd = -1, fd = -1;

	if (r->egress.rate || size > sizeof(buf) ||
	    conn_queued(s->conn) > PEER_PUMP_LOW)
		return;
	o = offer_find(r, hash, size);
	if (o) {
		memcpy(m.chunk.hash, o->chunk, CONTENT_HASH_LEN);
		m.chunk.len = o->len;
		m.chunk.data = o->data;
		session_send(s, &m);
		return;
	}
	if (disk_open_parent(r, volume, path, &dirfd, &name))
		goto out;
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
		    O_CLOEXEC);
	if (fd < 0 || pread(fd, buf, size, 0) != (ssize_t)size ||
	    EVP_Digest(buf, size, m.chunk.hash, &n, EVP_sha256(), NULL) != 1 ||
	    EVP_Digest(m.chunk.hash, CONTENT_HASH_LEN, content, &n,
		       EVP_sha256(), NULL) != 1 ||
	    memcmp(content, hash, CONTENT_HASH_LEN) != 0)
		goto out;           /* moved on since: the receiver will ask */
	m.chunk.len = (uint32_t)size;
	m.chunk.data = buf;
	session_send(s, &m);
out:
	if (fd >= 0)
		close(fd);
	if (dirfd >= 0)
		close(dirfd);
}

/* ---- chunk lists ----------------------------------------------------------- */

/* The list as items: against the asker's base when both have it, else
 * chunk by chunk. */
static int chunklist_items(struct replicate *r,
			   const struct wire_get_chunklist *g,
			   const struct content *c, struct content *base,
			   struct wire_chunk_ref **out, size_t *n)
{
	if (g->has_base && c->n_chunks > 1 &&
	    journal_content_load(r->journal, g->base, base) == 0 &&
	    base->n_chunks > 0)
		return plan_diff(base, c, out, n);
	content_release(base);
	*out = calloc(c->n_chunks + 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (size_t i = 0; i < c->n_chunks; i++) {
		memcpy((*out)[i].hash, c->chunks[i].hash, CONTENT_HASH_LEN);
		(*out)[i].len = c->chunks[i].len;
	}
	*n = c->n_chunks;
	return 0;
}

int serve_chunklist(struct replicate *r, struct session *s,
		    const struct wire_get_chunklist *g)
{
	struct content c = { 0 }, base = { 0 };
	struct wire_chunk_ref *items = NULL;
	struct wire_msg m = { .type = WIRE_CHUNKLIST };
	/* Pages sized to stay far under the frame cap. */
	const size_t page = 65536;
	size_t n_items = 0, first = 0;
	uint64_t start = 0;
	int err = journal_content_load(r->journal, g->hash, &c);

	if (err) {
		struct wire_msg nh = { .type = WIRE_NOT_HERE };

		memcpy(nh.not_here, g->hash, CONTENT_HASH_LEN);
		content_release(&c);
		return session_send(s, &nh);
	}
	err = chunklist_items(r, g, &c, &base, &items, &n_items);
	memcpy(m.chunklist.hash, g->hash, CONTENT_HASH_LEN);
	m.chunklist.size = c.size;
	m.chunklist.total = (uint32_t)c.n_chunks;
	m.chunklist.has_base = base.n_chunks > 0;
	memcpy(m.chunklist.base, g->base, CONTENT_HASH_LEN);
	/* Pages follow on from where the asker stands (START, in chunks);
	 * a page never splits an item. */
	while (!err && first < n_items && start + (items[first].count ?
		items[first].count : 1) <= g->start) {
		start += items[first].count ? items[first].count : 1;
		first++;
	}
	do {
		m.chunklist.start = (uint32_t)start;
		m.chunklist.n = (uint32_t)(n_items - first < page ?
					   n_items - first : page);
		m.chunklist.chunks = items + first;
		if (!err)
			err = session_send(s, &m);
		start += wire_chunklist_span(&m.chunklist);
		first += m.chunklist.n;
	} while (!err && first < n_items);
	free(items);
	content_release(&base);
	content_release(&c);
	return err;
}
