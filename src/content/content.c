/*
 * Content hashing: content-defined chunking plus SHA-256.
 *
 * Format (part of the replication protocol; changing anything here changes
 * every chunk name on every node, so it is frozen):
 *
 *   - Chunks are cut by a gear rolling hash, h = (h << 1) + gear[byte], over
 *     the bytes of the current chunk.  gear[] is the table below; it was
 *     made once by splitmix64 seeded with 0x4b72616b656e4653 ("KrakenFS")
 *     and is written out literally so that no compiler or library can ever
 *     change it.
 *   - The first CDC_MIN bytes of a chunk are never a cut point and are not
 *     hashed: h starts at 0 at chunk offset CDC_MIN.
 *   - At chunk offset i >= CDC_MIN, after adding byte i, the chunk ends
 *     after byte i when (h & mask) == 0, where mask is MASK_HARD while
 *     i < CDC_AVG and MASK_EASY from then on ("normalised chunking").
 *     The masks take the top bits of h because bit k of a gear hash depends
 *     on the last k + 1 bytes: the top bits see a 64-byte window.
 *   - A chunk that reaches CDC_MAX bytes ends there; the last chunk of a
 *     file ends at EOF, whatever its length.
 *   - A chunk is named by SHA-256 of its bytes; the file hash is SHA-256 of
 *     the concatenated 32-byte chunk names.  Zero bytes make zero chunks,
 *     so the empty file hashes to SHA-256("").
 *
 * Invariants: cut points are a pure function of the bytes from the start of
 * the file, never of how the bytes were read; every chunk but the last is
 * CDC_MIN..CDC_MAX bytes; chunks are contiguous and cover the file.
 *
 * Why 8 / 32 / 128 KiB: a simulation over random data with 1 MiB overwrites,
 * inserts and deletes (900 edits) gave, for these bounds and a 16/14-bit
 * mask pair, a mean chunk of 39 KiB (about 27,000 chunks, i.e. database
 * rows, per GiB) and a transfer of 1.06 MiB on average, 1.19 MiB at the
 * 99th percentile, per 1 MiB edit.  64 KiB chunks with the usual 18/14-bit
 * masks halve the row count but cost 1.22 MiB on average and over 2 MiB in
 * the worst case, because strongly normalised chunking is slow to fall back
 * into step after an edit; one bit either side of the average resynchronises
 * quickly and still keeps sizes away from the min and max.
 *
 * Speed: per byte, SHA-256 with SHA-NI costs about 0.6 ns on the machine
 * this was tuned on, the gear scan about 0.25-0.35 ns even with the min
 * skip, and the copy out of the page cache about 0.1-0.2 ns.  One thread
 * therefore gets only about 60% of SHA-256's own speed.  Files of
 * PIPE_MIN_SIZE or more get one helper thread, and the two threads share
 * the hashing through the ring described below; with two idle cores that
 * matches or beats single-core SHA-256.  Smaller files stay on the calling
 * thread, where starting a thread would cost more than it saves.
 *
 * Library kcontent, below the journal: it needs only libcrypto and
 * kcommon, so what only hashes (tools/bench/hashbench.c) does not carry
 * SQLite along, and the journal can never leak into the format.
 */
#include "content.h"

#include "err.h"
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define CDC_MIN   CONTENT_CHUNK_MIN
#define CDC_AVG   CONTENT_CHUNK_AVG
#define CDC_MAX   CONTENT_CHUNK_MAX
#define MASK_HARD (~(uint64_t)0 << (64 - 16))
#define MASK_EASY (~(uint64_t)0 << (64 - 14))

/*
 * One read fills a slot.  512 KiB amortises syscalls and hand-offs, stays
 * in a core's L2 between the copy, the scan and the hash, and eight slots
 * give two threads enough queued work to keep both busy in 4 MiB.
 */
#define SLOT_SIZE     (512u << 10)
/* A slot starts at a cut and all chunks but the file's last are >= CDC_MIN. */
#define SLOT_CUTS     (SLOT_SIZE / CDC_MIN + 1)
#define RING_SLOTS    8
/* Smaller files do not repay starting the helper thread. */
#define PIPE_MIN_SIZE (4u << 20)
/* Wrong guesses from the previous version allowed before it is ignored:
 * each costs at most a ring of hashing done ahead. */
#define REWIND_MAX    16
#define RING_REWIND   1

static const uint64_t gear[256] = {
	0x5e006bead641e88e, 0x18806f0fcc01bee8, 0x14f7c37072346e5f,
	0xed6786aed1d05d04, 0xfc870d306daaf020, 0x6701615a21e355db,
	0xe41a0b88b8cc22b8, 0x2f8f015e56e966a1, 0x4c8b270ba8ac4cb3,
	0x36d2d41490680049, 0x59f3152473cf4821, 0x04e3406cde8f57fe,
	0x089916dfc64bd13d, 0xc7f4e523862c77df, 0xb7fffbba984b87b0,
	0x238136c1e932a93f, 0x19e6ffe29921acab, 0x3e5d528423924295,
	0xf457e6595e1e3db4, 0x366f6d8917151f5b, 0x9e9e4041a534acc3,
	0x2249e69ae1f9e27e, 0xf67b8975c5cbd62c, 0x9d2589d56e7bc452,
	0x7e16b513ab6275dc, 0x17d8fa73ec7b4a4f, 0x57673c1b06404294,
	0xd981a49a3aeaa776, 0xe047167d38e21be6, 0xd823391e81fb2172,
	0x332f76bc4065c8bf, 0x6a3c07f4bbf0fef4, 0x977937c3e052b57e,
	0xcd12c7d8dd8f51d9, 0xe247359b6a8ece5c, 0x41a66c894d600b1f,
	0x4c702a555f8cbfdf, 0x846cde6b0b5c8665, 0x0d4b07a595c99547,
	0x046915526007a912, 0xd1aa70175b77b0c9, 0x66eb98a56bab1819,
	0x555393951315f99f, 0x2b2ab1f9feb7c21c, 0x07aea79b3b6a63f0,
	0x414537972cb93bf4, 0x6085990cb9b235b7, 0x88ac54dcfa8ded3c,
	0x5618c82c85c32ac7, 0xbdb53fa6bb162546, 0x5a220bc2893ac79d,
	0xaa7d491460d7a0c8, 0x0b9e0814af335beb, 0x0387feda68f094e7,
	0xb0c6e6250772ff6b, 0x7bb8835d28e97e7e, 0xeba587f3ef9786da,
	0xbb2ba16ce514836f, 0x3721544459938fdc, 0x173e20a27a3b0e1f,
	0x48062aa262be0710, 0x32de7c5f801bc062, 0xa3e0634970f550dc,
	0xf91d93005da1d21b, 0xe898eb5431dc37f7, 0x625104d9031315f4,
	0x14042cdbc6f96a68, 0xd18d2bf333377219, 0xe635927cacb250da,
	0x90d847c02d90b2df, 0xc90961a01b3a09b5, 0xc44ea208f0e47abf,
	0xbb7811be3d583b7d, 0xb7ff588efd7a42e2, 0x26db1f82bc632e7b,
	0x28c95be269a9bf28, 0x86b650ed872df776, 0xc8d8060fc6be42ec,
	0x298190f6a11f3916, 0x7260885f8c4761cd, 0x4570a2211707f478,
	0xee08cfe45092f6e9, 0xf5dc529103af3a16, 0x4080701fb27552ad,
	0xc72513a38d7304af, 0xc9a0bb5d73490399, 0xacae9557c535455b,
	0x3d8410a65b6577e4, 0x5de8d718d98bae92, 0x80047839656a4f3e,
	0x4133ee673edebf06, 0x9fc853ecafd755e4, 0x98e8832bf04702ad,
	0x284f9b69416491a4, 0xfb34838831dda236, 0x1d014b1d6f166330,
	0x2a4560d5a9b59f81, 0x728d4b52fb4b1b70, 0x550031d4474c1553,
	0x4871c6fd4b03b05d, 0x6943a24b94079da1, 0x88e4cdb85e407bfb,
	0x977333315788c084, 0x060be7b1c3b731f5, 0xa03e8bab04a1d9bf,
	0x43b1fc4bb03d9c33, 0x0d9126f5c6d900e6, 0x44574a2557cc4840,
	0xd8f297a2aac79758, 0xf4554e591e3c8a62, 0x770553ee9065f793,
	0x004c292bd30b560d, 0xd54ad7183ad133a3, 0x661dc7dfc46ebacf,
	0x6f6b1280cb1152b0, 0x2da878232c90c1df, 0xad08c8cd03e5a132,
	0xb728fb63353116df, 0x7c3a3a926ae51e35, 0x005ea83685778aa4,
	0x147992417c63ebbf, 0x85515e1397587c41, 0x6d2c16ff818cc76b,
	0x2e45d03510ebb6e3, 0xe6f0f8dde6624c1f, 0x58a158dc99f5cdbe,
	0x85c62bdc5aa8ed54, 0xf20984a3d26bde1e, 0x187580901bb2352d,
	0x025df8e7beddf057, 0xdac79ecfcf40eca5, 0xf09f1c834f084bb9,
	0x67d1d829277a996b, 0xe8c17832c9fc15a6, 0xd8b3a610e5f7c099,
	0x942ed207dfffd0e5, 0x0c1ae37c1df3e900, 0x76c182152dfa022e,
	0xde7ef18a939a0e8b, 0x03044779da2b0bca, 0x3c3714a436a7c5a9,
	0xa2fa38f0bd971786, 0x2609ce18cc42fde8, 0x99ad2815a7187792,
	0xcb195817c538890c, 0x55e6ef46139709f0, 0x5ae1a4123b8a6d82,
	0xaad02c672398ee21, 0x7f7ed855970d5d92, 0xf00403303f62799c,
	0x90c5aa8d0a62d9a5, 0x44a632d75bf28381, 0x6c4d49f767a166f1,
	0x6d7ec2c40bec7522, 0xede857cee64517ac, 0xb15103db27be677e,
	0xffbbc2f6b675f9f8, 0xb4cb3f8f4658e061, 0xc68012a7246492ec,
	0x13f602a4adfd03be, 0x525dd96595fd99a7, 0x33da15b79d3c9e4f,
	0x0552caf9a988ba76, 0xc65dc683ed937c49, 0x97305221b0428bb2,
	0x7143d9f762a26999, 0xc1671e71116b4e13, 0x999b805e0e4891f7,
	0x35ba60afb37024f3, 0x222e631fc5c00364, 0x2f7e211a079a3b1d,
	0x4d2e8b7635f08dd6, 0x85e5e66db37d0db4, 0xacc278b723a7b9bd,
	0x0e37915f9c8ef3d8, 0x39c2282d59625d03, 0xef77aafed5522e19,
	0x316028c60d426b3d, 0x532eb8b7fc733cbb, 0xbd8e354575e2514c,
	0x5a9ba0c177815147, 0xb43289a348b4e666, 0xf12e960100f96437,
	0x5d6021f93f37a44d, 0x364e417d03349daf, 0x4dadd5275bf98537,
	0x6247d7d7ecab45bc, 0xce322a659f58ef10, 0x8975f5a80e7de3c4,
	0x54343ffd14f9e1b5, 0x358ec355dbf840a2, 0x379616cb9b842cb6,
	0x16f8ed7be94a97f7, 0x0e83cd23013aedda, 0xdb8df84cd0d3674f,
	0x997e4e09b902f001, 0x5ffc6908bb989723, 0x8f9990d86fde5e27,
	0xe2d5dbd73b65d288, 0xfa19e6538b6c5e94, 0xd561687f4aae12c9,
	0xd0ed15ce75d6619c, 0x48e1c86f1014e1a3, 0x537721848c9a3fb3,
	0xae74b70970a06c2e, 0x48464903e97a7b9b, 0x37b4abb265dfcb63,
	0xb0c0a3ad46e25081, 0xdca235d58784d04f, 0x14feec44802efdc4,
	0x42b109a079c4f8ff, 0xaf20b40d85faa1f8, 0x26674e94b03ed2c8,
	0x5bcb7abb033c96ff, 0x29dc632ce1f7bc70, 0x87d7d3c7c35defd6,
	0xedcb674cbd751fe9, 0xe084c1d372a344c5, 0x2bc49c9b7c1e0c98,
	0x8a8646690d84a3d9, 0x09c6af64cd0a55ee, 0x531b9984b6780a2c,
	0x699dbc14ab166531, 0xb574bb9ff3bacfb2, 0x9bb345df3c0a7697,
	0xd6ed8ff07c0776fd, 0x52ebc9c00ec597b4, 0x3e893ba8e93b755f,
	0xbec14e827cade137, 0x4841dfd6d25f79d4, 0x459fc9f224f61e77,
	0x7d6e32d1387facfd, 0x5bee433315e27626, 0xf5cb5a49c5317c7f,
	0x9cd4780111b96d46, 0xfaa662e6877eea5b, 0x81298f304ccf243b,
	0x35997112d2ddaf27, 0x96d7baa286029603, 0x79419d98f09f8aa9,
	0xfa3d81862a6d61e9, 0xc3f5e613b8f21bd9, 0xf8873039608adb23,
	0x8d44f5027cf2fb72, 0xf0daf063f3dc7512, 0xfe121b298004a51d,
	0x4f7ed5ecdd8d2b7b, 0xe74c2d9154c05009, 0x7a34ecfcd11503a7,
	0xdda44b728071c8c6, 0xc0cd6991a70eb582, 0x4729d92b03ea63c4,
	0xbc540dea3d8b951d, 0xf754978aaa21befa, 0x56d5eb1a4a1a0daa,
	0xfe4ff932a627be6e
};

/* Position inside the chunk being cut; carried across reads. */
struct chunker {
	uint64_t h;
	uint32_t len;
};

/*
 * Feeds p[0..n) through the gear hash with one mask; returns the number of
 * bytes up to and including the first cut byte, or 0 when there is none.
 *
 * Byte by byte, h = 2h + g is one dependent add per byte and the loop runs
 * at that latency.  Four bytes a step take the table terms off the chain:
 * h2 = 4h + (2ga + gb) and h4 = 4h2 + (2gc + gd), with h1 and h3 checked on
 * the side.  The values are exactly the byte-by-byte ones; a step that
 * holds a cut is redone by the byte loop to find which byte.  Measured in
 * the full pipeline this costs 15-25% less CPU than the plain loop.
 */
static size_t gear_scan(uint64_t *hp, const uint8_t *p, size_t n,
			uint64_t mask)
{
	uint64_t h = *hp;
	size_t i = 0;

	for (; i + 4 <= n; i += 4) {
		uint64_t ga = gear[p[i]], gb = gear[p[i + 1]];
		uint64_t gc = gear[p[i + 2]], gd = gear[p[i + 3]];
		uint64_t h1 = (h << 1) + ga;
		uint64_t h2 = (h << 2) + (ga << 1) + gb;
		uint64_t h3 = (h2 << 1) + gc;
		uint64_t h4 = (h2 << 2) + (gc << 1) + gd;

		if (__builtin_expect(!(h1 & mask) || !(h2 & mask) ||
				     !(h3 & mask) || !(h4 & mask), 0))
			break;
		h = h4;
	}
	for (; i < n; i++) {
		h = (h << 1) + gear[p[i]];
		if (__builtin_expect(!(h & mask), 0)) {
			*hp = h;
			return i + 1;
		}
	}
	*hp = h;
	return 0;
}

/* Scans one region of the chunk; returns bytes consumed, sets *cut. */
static size_t chunker_region(struct chunker *c, const uint8_t *p, size_t n,
			     uint32_t end, uint64_t mask, bool *cut)
{
	size_t want = end - c->len;
	size_t k = n < want ? n : want;
	size_t r = gear_scan(&c->h, p, k, mask);

	if (r) {
		*cut = true;
		return r;
	}
	c->len += (uint32_t)k;
	return k;
}

/*
 * Consumes bytes of p[0..n) up to the end of the current chunk or of the
 * input, whichever comes first; *cut tells which.  Splitting the input
 * anywhere gives the same cut points, since all state is in *c.
 */
static size_t chunker_feed(struct chunker *c, const uint8_t *p, size_t n,
			   bool *cut)
{
	size_t done = 0;

	*cut = false;
	if (c->len < CDC_MIN) {
		size_t skip = CDC_MIN - c->len;

		done = n < skip ? n : skip;
		c->len += (uint32_t)done;
	}
	if (done < n && c->len < CDC_AVG)
		done += chunker_region(c, p + done, n - done, CDC_AVG,
				       MASK_HARD, cut);
	if (!*cut && done < n && c->len >= CDC_AVG)
		done += chunker_region(c, p + done, n - done, CDC_MAX,
				       MASK_EASY, cut);
	if (c->len == CDC_MAX)
		*cut = true;
	if (*cut) {
		c->h = 0;
		c->len = 0;
	}
	return done;
}

/*
 * OpenSSL reports no errno; with a fetched software digest the only way
 * these calls fail is an allocation, so failures map to -ENOMEM.
 */
static int digest(EVP_MD_CTX *ctx, const EVP_MD *md, const void *p, size_t n,
		  uint8_t out[CONTENT_HASH_LEN])
{
	if (!EVP_DigestInit_ex(ctx, md, NULL) ||
	    !EVP_DigestUpdate(ctx, p, n) ||
	    !EVP_DigestFinal_ex(ctx, out, NULL))
		return -ENOMEM;
	return 0;
}

static int chunks_append(struct content *c, uint64_t off, uint32_t len,
			 const uint8_t hash[CONTENT_HASH_LEN])
{
	struct content_chunk *k;

	if (c->n_chunks == c->cap_chunks) {
		size_t cap = c->cap_chunks ? 2 * c->cap_chunks : 64;

		if (cap > SIZE_MAX / sizeof(*k))
			return -ENOMEM;
		k = realloc(c->chunks, cap * sizeof(*k));
		if (!k)
			return -ENOMEM;
		c->chunks = k;
		c->cap_chunks = cap;
	}
	k = &c->chunks[c->n_chunks++];
	memcpy(k->hash, hash, CONTENT_HASH_LEN);
	k->offset = off;
	k->len = len;
	c->size = off + len;
	return 0;
}

/* The file hash: SHA-256 over the chunk names, in order. */
static int seal_file_hash(EVP_MD_CTX *ctx, const EVP_MD *md, struct content *c)
{
	if (!EVP_DigestInit_ex(ctx, md, NULL))
		return -ENOMEM;
	for (size_t i = 0; i < c->n_chunks; i++) {
		if (!EVP_DigestUpdate(ctx, c->chunks[i].hash, CONTENT_HASH_LEN))
			return -ENOMEM;
	}
	if (!EVP_DigestFinal_ex(ctx, c->hash, NULL))
		return -ENOMEM;
	return 0;
}

/* One SHA-256 implementation handle and context per call, reused. */
struct sha {
	EVP_MD *md;
	EVP_MD_CTX *ctx;
};

static int sha_init(struct sha *s)
{
	s->md = EVP_MD_fetch(NULL, "SHA256", NULL);
	s->ctx = EVP_MD_CTX_new();
	return s->md && s->ctx ? 0 : -ENOMEM;
}

static void sha_release(struct sha *s)
{
	EVP_MD_CTX_free(s->ctx);
	EVP_MD_free(s->md);
	s->ctx = NULL;
	s->md = NULL;
}

/* The buffer is in memory already: scan it whole, hash chunk by chunk. */
static int hash_buf_chunks(const struct sha *sha, const uint8_t *p,
			   size_t len, struct content *out)
{
	struct chunker ck = { 0, 0 };
	uint8_t name[CONTENT_HASH_LEN];
	size_t start = 0, off = 0;
	bool cut;
	int rc;

	/* Each feed ends at a cut or at the end of the buffer: a chunk. */
	while (off < len) {
		off += chunker_feed(&ck, p + off, len - off, &cut);
		rc = digest(sha->ctx, sha->md, p + start, off - start, name);
		if (!rc)
			rc = chunks_append(out, start, (uint32_t)(off - start),
					   name);
		if (rc)
			return rc;
		start = off;
	}
	return 0;
}

int content_hash_buf(const void *buf, size_t len, struct content *out)
{
	struct sha sha;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = sha_init(&sha);
	if (!rc)
		rc = hash_buf_chunks(&sha, buf, len, out);
	if (!rc)
		rc = seal_file_hash(sha.ctx, sha.md, out);
	sha_release(&sha);
	if (rc)
		content_release(out);
	return rc;
}

/*
 * Reading a file goes through a ring of slots.  A slot holds whole chunks
 * only: the bytes after its last cut are copied to the front of the next
 * slot.  That makes every slot an independent unit of SHA-256 work, so
 * whichever thread is free can hash it, while chunk names still reach the
 * chunk list in file order.
 *
 * Cut points proposed from a previous version (content_hash_fd_from):
 * where a chunk of it would start, the reader cuts after its length
 * without running the gear hash, and the slot records the guess.  The
 * SHA-256 of the slot checks it: equal names mean equal bytes, and a
 * chunk's cut depends only on its own bytes, so the guess is the cut the
 * gear hash would have found.  On a wrong guess the collector keeps the
 * chunks before it, drops every slot after it and the reader starts
 * again at that chunk's start, scanning, until a cut lands where a chunk
 * of the previous version starts (same offset, or shifted by the change
 * in size: an insert or a delete), and guessing resumes from there.
 *
 * Slot sequence numbers only grow; slot n lives in slots[n % n_slots]:
 *
 *   [collected, claimed)   being hashed or hashed, not yet collected
 *   [claimed, produced)    read and cut, waiting to be hashed
 *   [produced, collected + n_slots)   free, the reader may fill them
 *
 * The reader alone fills, collects and writes the chunk list; it hashes a
 * waiting slot itself whenever the ring is full.  The helper thread, if
 * any, only claims and hashes.  Counters and flags are under the lock; a
 * slot's bytes belong to whoever holds its place in the sequence.
 */
struct slot {
	uint8_t *buf;
	uint64_t file_off;      /* where buf[0] is in the file */
	size_t len;             /* bytes in buf */
	size_t used;            /* bytes ending at the last cut */
	size_t fed;             /* bytes the chunker has consumed */
	size_t n_cuts;
	bool hashed;
	int rc;
	uint32_t cuts[SLOT_CUTS];
	/* 1 + the previous version's chunk a cut guessed, 0: scanned */
	uint32_t guess[SLOT_CUTS];
	uint8_t names[SLOT_CUTS][CONTENT_HASH_LEN];
};

struct ring {
	pthread_mutex_t lock;
	pthread_cond_t cond;    /* any counter or flag changed */
	uint64_t produced;
	uint64_t claimed;
	uint64_t collected;
	bool closed;            /* the helper must stop */
	size_t n_slots;
	size_t slot_size;
	struct slot *slots;
	uint8_t *mem;

	const struct sha *sha;  /* the helper shares only its md */

	/* Reader-only state. */
	int fd;
	uint64_t read_off;      /* file bytes read so far */
	uint64_t expect;        /* file size at the start */
	struct chunker ck;
	struct content *out;

	/* Reader-only: guessing from the previous version. */
	const struct content *prev;
	int64_t shift;          /* offset here - offset there */
	bool guessing;
	unsigned rewinds;
	uint64_t rewind_off;    /* where to start again after a wrong guess */
};

static int ring_init(struct ring *r, size_t n_slots, size_t slot_size)
{
	memset(r, 0, sizeof(*r));
	r->n_slots = n_slots;
	r->slot_size = slot_size;
	r->slots = calloc(n_slots, sizeof(*r->slots));
	r->mem = malloc(n_slots * slot_size);
	if (!r->slots || !r->mem) {
		free(r->slots);
		free(r->mem);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n_slots; i++)
		r->slots[i].buf = r->mem + i * slot_size;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	return 0;
}

static void ring_destroy(struct ring *r)
{
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r->slots);
	free(r->mem);
}

static int slot_hash(EVP_MD_CTX *ctx, const EVP_MD *md, struct slot *s)
{
	size_t start = 0;

	for (size_t k = 0; k < s->n_cuts; k++) {
		int rc = digest(ctx, md, s->buf + start, s->cuts[k] - start,
				s->names[k]);

		if (rc)
			return rc;
		start = s->cuts[k];
	}
	return 0;
}

/* The previous version's chunk starting at POS - SHIFT, or -1. */
static ssize_t prev_at(const struct content *prev, uint64_t pos,
		       int64_t shift)
{
	size_t lo = 0, hi = prev->n_chunks;
	uint64_t want;

	if (shift > 0 && pos < (uint64_t)shift)
		return -1;
	want = pos - (uint64_t)shift;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (prev->chunks[mid].offset < want)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < prev->n_chunks && prev->chunks[lo].offset == want ?
	       (ssize_t)lo : -1;
}

/*
 * A guess for the chunk starting at OFF in S: 1 with its index in *K,
 * 0 when there is none (scan), -1 when it ends past the bytes read so
 * far (the next slot guesses again).  The previous version's last chunk
 * ended where that file did, not necessarily at a cut: it is only a
 * guess where this file ends too.
 */
static int ring_guess(const struct ring *r, const struct slot *s, size_t off,
		      bool eof, size_t *k)
{
	uint64_t pos = s->file_off + off;
	ssize_t i = prev_at(r->prev, pos, r->shift);
	uint32_t len;

	if (i < 0)
		return 0;
	len = r->prev->chunks[i].len;
	if ((size_t)i == r->prev->n_chunks - 1 && pos + len != r->expect)
		return 0;
	if (off + len > s->len)
		return eof ? 0 : -1;
	*k = (size_t)i;
	return 1;
}

/* After a scanned cut at POS: guess again if a chunk of the previous
 * version starts there, in place or shifted by the change in size. */
static void ring_resume_guessing(struct ring *r, uint64_t pos)
{
	int64_t shifts[2] = { 0, (int64_t)r->expect - (int64_t)r->prev->size };

	for (size_t i = 0; i < 2; i++)
		if (prev_at(r->prev, pos, shifts[i]) >= 0) {
			r->shift = shifts[i];
			r->guessing = true;
			return;
		}
}

static void slot_add_cut(struct slot *s, size_t off, uint32_t guess)
{
	s->cuts[s->n_cuts] = (uint32_t)off;
	s->guess[s->n_cuts++] = guess;
}

/*
 * Cuts s->buf[from, len), FROM being what the chunker consumed already;
 * at EOF the rest is the file's last chunk.  Guesses are taken at chunk
 * starts; a guess that does not fit stops the slot there, and the bytes
 * from that chunk start on move to the next slot unconsumed.
 */
static void slot_cut(struct ring *r, struct slot *s, size_t from, bool eof)
{
	size_t off = from;
	bool cut;

	s->n_cuts = 0;
	while (off < s->len) {
		if (r->guessing && r->ck.len == 0) {
			size_t k;
			int g = ring_guess(r, s, off, eof, &k);

			if (g < 0)
				break;
			if (g > 0) {
				off += r->prev->chunks[k].len;
				slot_add_cut(s, off, (uint32_t)k + 1);
				continue;
			}
			r->guessing = false;
		}
		off += chunker_feed(&r->ck, s->buf + off, s->len - off, &cut);
		if (cut) {
			slot_add_cut(s, off, 0);
			if (r->prev && r->rewinds < REWIND_MAX)
				ring_resume_guessing(r, s->file_off + off);
		}
	}
	s->fed = off;
	if (eof && s->len && (!s->n_cuts || s->cuts[s->n_cuts - 1] < s->len))
		slot_add_cut(s, s->len, 0);
	s->used = s->n_cuts ? s->cuts[s->n_cuts - 1] : 0;
}

/*
 * Fills slot s: the tail of prev, then the next bytes of the file.  Any
 * CDC_MAX bytes hold a cut, so a full slot of at least CDC_MAX bytes always
 * ends some chunk and the tail stays shorter than CDC_MAX.  A smaller slot
 * (small files) can only fill up by reading past the expected size, which
 * is an error before the tail matters.
 */
static int slot_fill(struct ring *r, struct slot *s, const struct slot *prev,
		     bool *eof)
{
	size_t tail = prev ? prev->len - prev->used : 0;
	size_t fed = prev ? prev->fed - prev->used : 0;
	ssize_t got;

	if (tail)
		memcpy(s->buf, prev->buf + prev->used, tail);
	s->file_off = r->read_off - tail;
	got = io_pread_full(r->fd, s->buf + tail, r->slot_size - tail,
			    r->read_off);
	if (got < 0)
		return (int)got;
	r->read_off += (uint64_t)got;
	/* Past the size seen at the start: growing, stop chasing the writer. */
	if (r->read_off > r->expect)
		return KR_ECHANGED;
	*eof = (size_t)got < r->slot_size - tail;
	s->len = tail + (size_t)got;
	s->hashed = false;
	s->rc = 0;
	slot_cut(r, s, fed, *eof);
	return 0;
}

/* Moves a hashed slot's chunk names into the chunk list, in file order,
 * up to a wrong guess (RING_REWIND, r->rewind_off set). */
static int slot_collect(struct ring *r, const struct slot *s)
{
	struct content *out = r->out;
	size_t start = 0;
	int rc = s->rc;

	for (size_t k = 0; !rc && k < s->n_cuts; k++) {
		if (s->guess[k] && memcmp(s->names[k],
					  r->prev->chunks[s->guess[k] - 1].hash,
					  CONTENT_HASH_LEN) != 0) {
			r->rewind_off = s->file_off + start;
			return RING_REWIND;
		}
		rc = chunks_append(out, out->size, s->cuts[k] - (uint32_t)start,
				   s->names[k]);
		start = s->cuts[k];
	}
	return rc;
}

/* With the lock held: forgets every slot after the one just collected,
 * once the helper is done with those it took. */
static void ring_discard(struct ring *r)
{
	bool busy = true;

	r->produced = r->claimed;
	while (busy) {
		busy = false;
		for (uint64_t n = r->collected; n < r->claimed; n++)
			busy |= !r->slots[n % r->n_slots].hashed;
		if (busy)
			pthread_cond_wait(&r->cond, &r->lock);
	}
	r->collected = r->claimed;
}

/*
 * One step of the reader's waiting, called and returning with the lock
 * held: collect the oldest slot if hashed, else hash a waiting slot, else
 * sleep until the helper finishes one.
 */
static int ring_step(struct ring *r)
{
	struct slot *s = &r->slots[r->collected % r->n_slots];
	int rc = 0;

	if (r->collected < r->claimed && s->hashed) {
		pthread_mutex_unlock(&r->lock);
		rc = slot_collect(r, s);
		pthread_mutex_lock(&r->lock);
		r->collected++;
		if (rc == RING_REWIND)
			ring_discard(r);
	} else if (r->claimed < r->produced) {
		s = &r->slots[r->claimed++ % r->n_slots];
		pthread_mutex_unlock(&r->lock);
		s->rc = slot_hash(r->sha->ctx, r->sha->md, s);
		pthread_mutex_lock(&r->lock);
		s->hashed = true;
	} else {
		pthread_cond_wait(&r->cond, &r->lock);
	}
	return rc;
}

/* Waits until fewer than LIMIT slots are in use. */
static int ring_wait_below(struct ring *r, uint64_t limit)
{
	int rc = 0;

	pthread_mutex_lock(&r->lock);
	while (!rc && r->produced - r->collected >= limit)
		rc = ring_step(r);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

static void ring_publish(struct ring *r)
{
	pthread_mutex_lock(&r->lock);
	r->produced++;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void ring_close(struct ring *r)
{
	pthread_mutex_lock(&r->lock);
	r->closed = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* The helper thread: claims and hashes waiting slots until closed. */
static void *ring_helper(void *arg)
{
	struct ring *r = arg;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	struct slot *s;

	/* Without a context the reader simply hashes everything itself. */
	if (!ctx)
		return NULL;
	pthread_mutex_lock(&r->lock);
	while (!r->closed) {
		if (r->claimed == r->produced) {
			pthread_cond_wait(&r->cond, &r->lock);
			continue;
		}
		s = &r->slots[r->claimed++ % r->n_slots];
		pthread_mutex_unlock(&r->lock);
		s->rc = slot_hash(ctx, r->sha->md, s);
		pthread_mutex_lock(&r->lock);
		s->hashed = true;
		pthread_cond_broadcast(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
	EVP_MD_CTX_free(ctx);
	return NULL;
}

/*
 * Starts the helper with every signal blocked, so that signals meant for
 * the process keep going to the caller's threads.
 */
static int ring_start_helper(struct ring *r, pthread_t *tid)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(tid, NULL, ring_helper, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

/* After a wrong guess: read again from the start of the chunk, scanning. */
static void ring_rewind(struct ring *r)
{
	r->read_off = r->rewind_off;
	r->ck = (struct chunker){ 0, 0 };
	r->guessing = false;
	r->rewinds++;
}

/* The reader: fill slots until EOF, then wait for every slot to drain. */
static int ring_read(struct ring *r)
{
	struct slot *s, *prev = NULL;
	bool eof = false;
	int rc;

	for (;;) {
		rc = ring_wait_below(r, eof ? 1 : r->n_slots);
		if (rc == RING_REWIND) {
			ring_rewind(r);
			prev = NULL;
			eof = false;
			continue;
		}
		if (rc || eof)
			break;
		s = &r->slots[r->produced % r->n_slots];
		rc = slot_fill(r, s, prev, &eof);
		if (rc)
			break;
		ring_publish(r);
		prev = s;
	}
	return rc;
}

/*
 * Hashes the file through the ring, with a helper thread when the file is
 * big enough to repay starting one.  Small files get a small ring: memory
 * follows the file size up to the fixed maximum.
 */
static int hash_fd_chunks(int fd, const struct sha *sha, uint64_t expect,
			  const struct content *prev, struct content *out)
{
	bool threaded = expect >= PIPE_MIN_SIZE;
	size_t size = expect < SLOT_SIZE ? (size_t)expect + 1 : SLOT_SIZE;
	struct ring *r;
	pthread_t tid;
	int rc;

	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	rc = ring_init(r, threaded ? RING_SLOTS : 2, size);
	if (rc)
		goto out_free;
	r->fd = fd;
	r->expect = expect;
	r->sha = sha;
	r->out = out;
	r->prev = prev;
	r->guessing = prev != NULL;
	/* No thread is no failure: the reader does all the work then. */
	if (threaded && ring_start_helper(r, &tid))
		threaded = false;
	rc = ring_read(r);
	ring_close(r);
	if (threaded)
		pthread_join(tid, NULL);
	ring_destroy(r);
out_free:
	free(r);
	return rc;
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static bool stat_changed(const struct stat *a, const struct stat *b)
{
	return a->st_size != b->st_size ||
	       !same_time(&a->st_mtim, &b->st_mtim) ||
	       !same_time(&a->st_ctim, &b->st_ctim);
}

/*
 * Guesses come only from a list shaped like this chunker's: contiguous
 * from 0, every chunk but the last CDC_MIN..CDC_MAX bytes.  That also
 * keeps a slot's cuts within SLOT_CUTS.
 */
static bool prev_usable(const struct content *prev)
{
	uint64_t off = 0;

	if (!prev || prev->n_chunks == 0 || prev->n_chunks > UINT32_MAX - 1)
		return false;
	for (size_t i = 0; i < prev->n_chunks; i++) {
		const struct content_chunk *k = &prev->chunks[i];
		bool last = i == prev->n_chunks - 1;

		if (k->offset != off || k->len == 0 || k->len > CDC_MAX ||
		    (!last && k->len < CDC_MIN))
			return false;
		off += k->len;
	}
	return off == prev->size;
}

int content_hash_fd(int fd, struct content *out)
{
	return content_hash_fd_from(fd, NULL, out);
}

int content_hash_fd_from(int fd, const struct content *prev,
			 struct content *out)
{
	struct stat before, after;
	struct sha sha;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = sha_init(&sha);
	if (rc)
		goto out;
	if (fstat(fd, &before) < 0) {
		rc = -errno;
		goto out;
	}
	/* Only a hint: a failure costs read-ahead, nothing else. */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	rc = hash_fd_chunks(fd, &sha,
			    before.st_size > 0 ? (uint64_t)before.st_size : 0,
			    prev_usable(prev) ? prev : NULL, out);
	if (!rc)
		rc = seal_file_hash(sha.ctx, sha.md, out);
	if (!rc && fstat(fd, &after) < 0)
		rc = -errno;
	if (!rc && (stat_changed(&before, &after) ||
		    out->size != (uint64_t)after.st_size))
		rc = KR_ECHANGED;
out:
	sha_release(&sha);
	if (rc)
		content_release(out);
	return rc;
}

int content_hash_fd_keep(int fd, void *buf, size_t cap, size_t *len,
			 struct content *out)
{
	struct stat before, after;
	ssize_t n;
	int rc;

	memset(out, 0, sizeof(*out));
	*len = 0;
	if (fstat(fd, &before) < 0)
		return -errno;
	if (before.st_size < 0 || (uint64_t)before.st_size > cap)
		return -EFBIG;
	n = io_pread_full(fd, buf, cap, 0);
	if (n < 0)
		return (int)n;
	if (fstat(fd, &after) < 0)
		return -errno;
	if (stat_changed(&before, &after) || n != after.st_size)
		return KR_ECHANGED;
	rc = content_hash_buf(buf, (size_t)n, out);
	if (!rc)
		*len = (size_t)n;
	return rc;
}

/* qsort_r comparator: chunk indexes by their chunk's hash. */
static int index_cmp(const void *a, const void *b, void *arg)
{
	const struct content *c = arg;

	return memcmp(c->chunks[*(const uint32_t *)a].hash,
		      c->chunks[*(const uint32_t *)b].hash, CONTENT_HASH_LEN);
}

int content_index_build(const struct content *c, uint32_t **out)
{
	uint32_t *ix = calloc(c->n_chunks + 1, sizeof(*ix));

	*out = ix;
	if (!ix)
		return -ENOMEM;
	for (size_t i = 0; i < c->n_chunks; i++)
		ix[i] = (uint32_t)i;
	qsort_r(ix, c->n_chunks, sizeof(*ix), index_cmp, (void *)c);
	return 0;
}

void content_index_find(const struct content *c, const uint32_t *index,
			const uint8_t *hash, size_t *first, size_t *n)
{
	size_t lo = 0, hi = c->n_chunks;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (memcmp(c->chunks[index[mid]].hash, hash,
			   CONTENT_HASH_LEN) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*first = lo;
	for (hi = lo; hi < c->n_chunks &&
	     !memcmp(c->chunks[index[hi]].hash, hash, CONTENT_HASH_LEN); hi++)
		;
	*n = hi - lo;
}

void content_release(struct content *c)
{
	if (!c)
		return;
	free(c->chunks);
	memset(c, 0, sizeof(*c));
}

void content_hex(const uint8_t hash[CONTENT_HASH_LEN],
		 char out[CONTENT_HEX_LEN])
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < CONTENT_HASH_LEN; i++) {
		out[2 * i] = digits[hash[i] >> 4];
		out[2 * i + 1] = digits[hash[i] & 0xf];
	}
	out[2 * CONTENT_HASH_LEN] = '\0';
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Exactly 64 digits then NUL; hash is left untouched on error. */
int content_unhex(const char *hex, uint8_t hash[CONTENT_HASH_LEN])
{
	uint8_t tmp[CONTENT_HASH_LEN];

	if (!hex)
		return -EINVAL;
	for (size_t i = 0; i < CONTENT_HASH_LEN; i++) {
		int hi = hex_digit(hex[2 * i]);
		int lo = hi < 0 ? -1 : hex_digit(hex[2 * i + 1]);

		if (lo < 0)
			return -EINVAL;
		tmp[i] = (uint8_t)(hi << 4 | lo);
	}
	if (hex[2 * CONTENT_HASH_LEN] != '\0')
		return -EINVAL;
	memcpy(hash, tmp, sizeof(tmp));
	return 0;
}

void content_chunk_bounds(uint32_t *min, uint32_t *avg, uint32_t *max)
{
	if (min)
		*min = CDC_MIN;
	if (avg)
		*avg = CDC_AVG;
	if (max)
		*max = CDC_MAX;
}
