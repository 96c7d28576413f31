/*
 * Transfers (transfer.h) driven through a fake session layer.
 *
 * The transfer files (transfer.c, reuse.c, fetch.c, commit.c) are built
 * into this test with their real collaborators below the session layer
 * (a real journal in a temp directory, the real writer thread, real
 * files) and fakes above it, defined here: sessions that record what a
 * transfer sends instead of writing it to a socket, and stand-ins for
 * the job outcomes, the version store and the copies made ahead.  The test
 * then plays the peers: it answers GET_CHUNKLIST and GET_CHUNKS frames
 * by calling fetch_on_* as sync.c does, and checks each state the
 * transfer goes through, and what it asks of whom.
 */
#include "replicate_int.h"
#include "keep.h"
#include "precopy.h"
#include "session.h"

#include "err.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#define CHUNKS 4
#define CHUNK_LEN CONTENT_CHUNK_MIN  /* verified and written inline */
#define SENT_MAX 64

/* ---- the fake session layer ------------------------------------------- */

/* A frame a transfer sent: its type, to whom, the hashes it names. */
struct sent {
	uint8_t type;
	struct peer *to;
	uint32_t n;
	uint8_t hashes[CHUNKS][CONTENT_HASH_LEN];
};

static struct sent sent[SENT_MAX];
static size_t n_sent;
static int precopy_answer;        /* precopy_take's: 0, -EINPROGRESS, 1 */
static int precopy_fd = -1;
static char precopy_tmp[TEMPNAME_MAX];
static int failed_err;            /* outcome_failed's last ERR */

int session_send(struct session *s, const struct wire_msg *m)
{
	struct sent *e = &sent[n_sent++];

	assert_true(n_sent <= SENT_MAX);
	memset(e, 0, sizeof(*e));
	e->type = m->type;
	e->to = s->peer;
	if (m->type == WIRE_GET_CHUNKS) {
		e->n = m->get_chunks.n;
		assert_true(e->n <= CHUNKS);
		memcpy(e->hashes, m->get_chunks.hashes,
		       (size_t)e->n * CONTENT_HASH_LEN);
	}
	return 0;
}

void session_update_poll(struct session *s)
{
	(void)s;
}

void session_send_now(struct session *s)
{
	(void)s;
}

struct peer *replicate_peer_by_id(struct replicate *r, const char *id)
{
	for (size_t i = 0; i < r->n_peers; i++)
		if (strcmp(r->peers[i]->id, id) == 0)
			return r->peers[i];
	return NULL;
}

bool keep_restore_failed(struct replicate *r, const struct journal_job *job,
			 int err)
{
	(void)r, (void)job, (void)err;
	return false;
}

int keep_fetched(struct replicate *r, const struct journal_job *job,
		 int dirfd, const char *tmp)
{
	(void)r, (void)job, (void)dirfd, (void)tmp;
	return 0;
}

void keep_replaced(struct replicate *r, int dirfd, const char *name,
		   const char *volume, const char *path)
{
	(void)r, (void)dirfd, (void)name, (void)volume, (void)path;
}

int precopy_take(struct replicate *r, const char *volume, const char *path,
		 const uint8_t base[CONTENT_HASH_LEN], int dirfd,
		 char tmp[TEMPNAME_MAX], int *fd)
{
	(void)r, (void)volume, (void)path, (void)base, (void)dirfd;
	*fd = -1;
	if (precopy_answer == 1) {
		*fd = precopy_fd;
		memcpy(tmp, precopy_tmp, TEMPNAME_MAX);
		precopy_fd = -1;
	}
	return precopy_answer;
}

void precopy_free_all(struct replicate *r)
{
	(void)r;
}

int outcome_done(struct replicate *r, const struct journal_job *job,
		 const struct stat *st)
{
	(void)r, (void)job, (void)st;
	return 0;
}

void outcome_failed(struct replicate *r, const struct journal_job *job,
		    int err)
{
	(void)r, (void)job;
	failed_err = err;
}


/* ---- a replicator with two peers, n2 (the origin) and n3 ------------- */

struct fixture {
	char dir[64];
	struct replicate r;
	struct peer *peers[2];
	struct peer n2, n3;
	struct session s2, s3;
	uint8_t data[CHUNKS][CHUNK_LEN];
	struct content list;          /* of the version to fetch */
	uint64_t seq;
};

static void sha256(const void *p, size_t len, uint8_t *out)
{
	unsigned n = 0;

	assert_int_equal(EVP_Digest(p, len, out, &n, EVP_sha256(), NULL), 1);
}

/* Peer ID at slot SLOT, connected, holding the origin's seq 1. */
static void peer_make(struct fixture *f, struct peer *p, struct session *s,
		      const char *id, size_t slot)
{
	static uint64_t held = 1;

	snprintf(p->id, sizeof(p->id), "%s", id);
	p->slot = slot;
	p->session = s;
	p->delta = false;
	s->r = &f->r;
	s->peer = p;
	s->state = SESSION_OPEN;
	assert_int_equal(strmap_put(&p->sent, "n2", &held, NULL), 0);
	f->peers[slot] = p;
}

/* The version: CHUNKS chunks of distinct bytes, its list and hash. */
static void version_make(struct fixture *f)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned n = 0;

	assert_non_null(md);
	f->list.chunks = calloc(CHUNKS, sizeof(*f->list.chunks));
	assert_non_null(f->list.chunks);
	f->list.n_chunks = f->list.cap_chunks = CHUNKS;
	assert_int_equal(EVP_DigestInit_ex(md, EVP_sha256(), NULL), 1);
	for (size_t i = 0; i < CHUNKS; i++) {
		memset(f->data[i], 'a' + (int)i, CHUNK_LEN);
		sha256(f->data[i], CHUNK_LEN, f->list.chunks[i].hash);
		f->list.chunks[i].len = CHUNK_LEN;
		f->list.chunks[i].offset = (uint64_t)i * CHUNK_LEN;
		assert_int_equal(EVP_DigestUpdate(md, f->list.chunks[i].hash,
						  CONTENT_HASH_LEN), 1);
	}
	assert_int_equal(EVP_DigestFinal_ex(md, f->list.hash, &n), 1);
	f->list.size = (uint64_t)CHUNKS * CHUNK_LEN;
	EVP_MD_CTX_free(md);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char path[128];

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/kraken-transfer-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(path, sizeof(path), "%s/vol", f->dir);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/journal.db", f->dir);
	assert_int_equal(journal_open(path, "n1", 0, &f->r.journal, NULL), 0);
	assert_int_equal(loop_new(&f->r.loop), 0);
	f->r.root = f->dir;
	f->r.rootfd = -1;
	f->r.xfer.max = 16;
	bucket_init(&f->r.ingress, 0, 4u << 20);
	peer_make(f, &f->n2, &f->s2, "n2", 0);
	peer_make(f, &f->n3, &f->s3, "n3", 1);
	f->r.peers = f->peers;
	f->r.n_peers = 2;
	version_make(f);
	n_sent = 0;
	precopy_answer = 0;
	failed_err = 0;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	transfer_stop(&f->r);
	transfer_free_all(&f->r);
	if (f->r.rootfd >= 0)
		close(f->r.rootfd);
	strmap_clear(&f->n2.sent);
	strmap_clear(&f->n3.sent);
	journal_close(f->r.journal);
	loop_free(f->r.loop);
	content_release(&f->list);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* Starts the transfer of the version at vol/f.bin. */
static struct transfer *transfer_start(struct fixture *f)
{
	struct journal_job job = { .op = JOURNAL_PUT, .mode = S_IFREG | 0644,
				   .has_hash = true, .change = 1 };

	snprintf(job.volume, sizeof(job.volume), "vol");
	job.path = strdup("f.bin");
	job.size = f->list.size;
	memcpy(job.hash, f->list.hash, CONTENT_HASH_LEN);
	snprintf(job.ref.origin, sizeof(job.ref.origin), "n2");
	job.ref.seq = 1;
	assert_int_equal(transfer_new(&f->r, &job), 0);
	assert_non_null(f->r.xfer.head);
	return f->r.xfer.head;
}

/* The last frame sent, which must be TYPE to TO. */
static const struct sent *last_sent(uint8_t type, const struct peer *to)
{
	assert_true(n_sent > 0);
	assert_int_equal(sent[n_sent - 1].type, type);
	assert_ptr_equal(sent[n_sent - 1].to, to);
	return &sent[n_sent - 1];
}

/* FROM answers the GET_CHUNKLIST with the whole list in one page. */
static void answer_list(struct fixture *f, struct peer *from)
{
	struct wire_chunk_ref items[CHUNKS];
	struct wire_chunklist cl = { .size = f->list.size, .total = CHUNKS,
				     .n = CHUNKS, .chunks = items };

	memset(items, 0, sizeof(items));
	memcpy(cl.hash, f->list.hash, CONTENT_HASH_LEN);
	for (size_t i = 0; i < CHUNKS; i++) {
		memcpy(items[i].hash, f->list.chunks[i].hash, CONTENT_HASH_LEN);
		items[i].len = CHUNK_LEN;
	}
	fetch_on_chunklist(&f->r, from, &cl);
}

/* FROM sends chunk I, its bytes replaced by garbage when CORRUPT. */
static void answer_chunk(struct fixture *f, struct peer *from, size_t i,
			 bool corrupt)
{
	uint8_t buf[CHUNK_LEN];
	struct wire_chunk c = { .len = CHUNK_LEN, .data = buf };

	memcpy(buf, f->data[i], CHUNK_LEN);
	if (corrupt)
		buf[100] ^= 0xff;
	memcpy(c.hash, f->list.chunks[i].hash, CONTENT_HASH_LEN);
	fetch_on_chunk(&f->r, from, &c);
}

/* Whether request E names chunk I. */
static bool asks_for(const struct fixture *f, const struct sent *e, size_t i)
{
	for (uint32_t k = 0; k < e->n; k++)
		if (!memcmp(e->hashes[k], f->list.chunks[i].hash,
			    CONTENT_HASH_LEN))
			return true;
	return false;
}

/* T's temp file holds the whole version. */
static void temp_holds_version(const struct fixture *f,
			       const struct transfer *t)
{
	uint8_t buf[CHUNK_LEN];

	for (size_t i = 0; i < CHUNKS; i++) {
		assert_int_equal(pread(t->fd, buf, CHUNK_LEN,
				       (off_t)(i * CHUNK_LEN)), CHUNK_LEN);
		assert_memory_equal(buf, f->data[i], CHUNK_LEN);
	}
}

/* The list and every chunk come from the origin; the transfer is READY
 * with the version in its temp file. */
static void fetches_from_the_origin(void **state)
{
	struct fixture *f = *state;
	struct transfer *t = transfer_start(f);
	const struct sent *e;

	assert_int_equal(t->state, TRANSFER_LIST);
	last_sent(WIRE_GET_CHUNKLIST, &f->n2);
	answer_list(f, &f->n2);
	assert_int_equal(t->state, TRANSFER_FETCH);
	e = last_sent(WIRE_GET_CHUNKS, &f->n2);
	assert_int_equal(e->n, CHUNKS);
	for (size_t i = 0; i < CHUNKS; i++)
		answer_chunk(f, &f->n2, i, false);
	assert_int_equal(t->state, TRANSFER_READY);
	assert_int_equal(t->missing, 0);
	temp_holds_version(f, t);
}

/* The origin says NOT_HERE for a chunk: it is asked of n3, and n2 is not
 * asked for this transfer again. */
static void not_here_asks_another_peer(void **state)
{
	struct fixture *f = *state;
	struct transfer *t = transfer_start(f);
	const struct sent *e;

	answer_list(f, &f->n2);
	for (size_t i = 0; i < CHUNKS; i++)
		if (i != 2)
			answer_chunk(f, &f->n2, i, false);
	fetch_on_not_here(&f->r, &f->n2, f->list.chunks[2].hash);
	assert_int_equal(t->got[2], CHUNK_MISSING);
	transfer_step(&f->r, t);
	e = last_sent(WIRE_GET_CHUNKS, &f->n3);
	assert_int_equal(e->n, 1);
	assert_true(asks_for(f, e, 2));
	answer_chunk(f, &f->n3, 2, false);
	assert_int_equal(t->state, TRANSFER_READY);
	temp_holds_version(f, t);
}

/* A chunk that does not match its hash is never written; it is asked of
 * the other peer.  When that peer refuses too, the transfer fails with
 * "no source" and its job is counted as failed. */
static void corrupt_chunk_then_no_source(void **state)
{
	struct fixture *f = *state;
	struct transfer *t = transfer_start(f);
	const struct sent *e;
	uint8_t buf[CHUNK_LEN];

	answer_list(f, &f->n2);
	answer_chunk(f, &f->n2, 0, false);
	answer_chunk(f, &f->n2, 1, true);
	assert_int_equal(t->got[1], CHUNK_MISSING);
	assert_int_equal(pread(t->fd, buf, CHUNK_LEN, CHUNK_LEN), 0);
	transfer_step(&f->r, t);
	e = last_sent(WIRE_GET_CHUNKS, &f->n3);
	assert_true(asks_for(f, e, 1));
	fetch_on_not_here(&f->r, &f->n3, f->list.chunks[1].hash);
	transfer_step(&f->r, t);
	assert_int_equal(t->state, TRANSFER_FAILED);
	assert_int_equal(t->error, KR_ENOSOURCE);
	transfer_tick(&f->r);
	assert_null(f->r.xfer.head);
	assert_int_equal(failed_err, KR_ENOSOURCE);
}

/* The origin goes away with every chunk asked of it: they are missing
 * again and asked of n3, which holds the version too. */
static void lost_peer_asked_elsewhere(void **state)
{
	struct fixture *f = *state;
	struct transfer *t = transfer_start(f);
	const struct sent *e;

	answer_list(f, &f->n2);
	answer_chunk(f, &f->n2, 3, false);
	f->s2.state = SESSION_CONNECTING;
	transfer_peer_gone(&f->r, &f->n2);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(t->got[i], CHUNK_MISSING);
	assert_int_equal(t->got[3], CHUNK_HERE);
	transfer_step(&f->r, t);
	e = last_sent(WIRE_GET_CHUNKS, &f->n3);
	assert_int_equal(e->n, 3);
	for (size_t i = 0; i < 3; i++)
		answer_chunk(f, &f->n3, i, false);
	assert_int_equal(t->state, TRANSFER_READY);
	temp_holds_version(f, t);
}

/*
 * The transfer's temp file is still being copied ahead from the base
 * (precopy.c) when its list arrives: it waits in PRECOPY, with no temp
 * file.  A chunk of it arriving then (asked by another transfer, or
 * pushed) is not written anywhere and does not fail it; once the copy is
 * made the transfer fetches as usual.
 */
static void chunk_during_precopy(void **state)
{
	struct fixture *f = *state;
	struct transfer *t = transfer_start(f);
	char path[128];

	/* The version replaced, as load_base would have found it. */
	t->base.chunks = calloc(1, sizeof(*t->base.chunks));
	assert_non_null(t->base.chunks);
	t->base.n_chunks = t->base.cap_chunks = 1;
	precopy_answer = -EINPROGRESS;
	answer_list(f, &f->n2);
	assert_int_equal(t->state, TRANSFER_PRECOPY);
	assert_int_equal(t->fd, -1);
	answer_chunk(f, &f->n2, 1, false);
	assert_int_equal(t->state, TRANSFER_PRECOPY);
	assert_int_equal(t->got[1], CHUNK_MISSING);

	snprintf(precopy_tmp, sizeof(precopy_tmp), ".krakenfs-tmp-test");
	snprintf(path, sizeof(path), "%s/vol/%s", f->dir, precopy_tmp);
	precopy_fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(precopy_fd >= 0);
	precopy_answer = 1;
	transfer_tick(&f->r);
	assert_int_equal(t->state, TRANSFER_FETCH);
	assert_true(t->precopied);
	last_sent(WIRE_GET_CHUNKS, &f->n2);
	for (size_t i = 0; i < CHUNKS; i++)
		answer_chunk(f, &f->n2, i, false);
	assert_int_equal(t->state, TRANSFER_READY);
	temp_holds_version(f, t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(fetches_from_the_origin, setup,
						teardown),
		cmocka_unit_test_setup_teardown(not_here_asks_another_peer,
						setup, teardown),
		cmocka_unit_test_setup_teardown(corrupt_chunk_then_no_source,
						setup, teardown),
		cmocka_unit_test_setup_teardown(lost_peer_asked_elsewhere,
						setup, teardown),
		cmocka_unit_test_setup_teardown(chunk_during_precopy, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
