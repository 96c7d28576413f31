/*
 * Content model: a file is a list of chunks cut by content-defined chunking
 * (FastCDC style: a gear rolling hash, normalised chunking, cut points that
 * depend only on nearby bytes, so an insert shifts no later chunk).  Each
 * chunk is named by its SHA-256.  The file's content hash is the SHA-256 of
 * the concatenated 32-byte chunk hashes, in order; an empty file has no
 * chunks and its hash is SHA-256 of the empty string.
 *
 * Chunk size bounds are in content.c with the reasoning behind them.
 *
 * Reading is streamed through a fixed buffer: memory use does not depend on
 * the file size, only the chunk list grows (48 bytes per chunk).
 */
#ifndef KRAKEN_CONTENT_H
#define KRAKEN_CONTENT_H

#include <stddef.h>
#include <stdint.h>

#define CONTENT_HASH_LEN 32
#define CONTENT_HEX_LEN (2 * CONTENT_HASH_LEN + 1)
/* The chunker's bounds (content.c): a file of CONTENT_CHUNK_MIN bytes or
 * less is one chunk, and only a file's last chunk is shorter.  Other
 * modules size their small-file paths by it (pushes, deltas). */
#define CONTENT_CHUNK_MIN (8u << 10)
#define CONTENT_CHUNK_AVG (32u << 10)
#define CONTENT_CHUNK_MAX (128u << 10)

struct content_chunk {
	uint8_t hash[CONTENT_HASH_LEN];
	uint64_t offset;
	uint32_t len;
};

struct content {
	uint8_t hash[CONTENT_HASH_LEN];   /* over the chunk list */
	uint64_t size;
	size_t n_chunks;
	size_t cap_chunks;
	struct content_chunk *chunks;     /* owned; content_release() frees */
};

/*
 * Hashes the regular file open at FD from offset 0 to EOF into *out
 * (which must be zeroed or released).  Returns 0; KR_ECHANGED when the file's
 * size, mtime or ctime differ between the start and the end of the read
 * (the caller retries later); -errno on read errors.  On error *out is
 * released.
 */
int content_hash_fd(int fd, struct content *out);

/*
 * content_hash_fd for a file that likely shares most chunks with PREV, its
 * previous version, at the same offsets or all shifted by the change in
 * size (an edit, an insert, an append).  Where a chunk of PREV would
 * start, its length is taken as the cut and checked by the chunk's
 * SHA-256, which is computed anyway: unchanged chunks skip the rolling
 * hash, about a third of the work.  A wrong guess costs what was hashed
 * ahead of it, and after sixteen PREV is ignored.  The result is
 * what content_hash_fd gives whenever PREV was cut by this chunker, as
 * every list this code made was; from a list cut some other way (only a
 * hostile peer's) the shared chunks keep that list's cut points, their
 * names still right.  PREV may be NULL, and is ignored unless shaped like
 * a list of this chunker (contiguous, chunk sizes within bounds).
 */
int content_hash_fd_from(int fd, const struct content *prev,
			 struct content *out);

/* Same for an in-memory buffer; used by tests and the wire layer. */
int content_hash_buf(const void *buf, size_t len, struct content *out);

/*
 * content_hash_fd for a small file, whose bytes are left in BUF (*LEN of
 * them, at most CAP) for whoever wants them next, so that the file need
 * not be read again.  -EFBIG when it holds more than CAP bytes; the
 * other errors as content_hash_fd.
 */
int content_hash_fd_keep(int fd, void *buf, size_t cap, size_t *len,
			 struct content *out);

/*
 * An index of C's chunks by hash: *OUT (malloc'd) gets the chunk indexes
 * 0..n_chunks-1 sorted by their chunk's hash.  0 or -ENOMEM.
 */
int content_index_build(const struct content *c, uint32_t **out);

/* The chunks of C named HASH, through INDEX (content_index_build):
 * INDEX[*first .. *first + *n), *n == 0 when none. */
void content_index_find(const struct content *c, const uint32_t *index,
			const uint8_t *hash, size_t *first, size_t *n);

/* Frees the chunk list and zeroes *c. */
void content_release(struct content *c);

/* Writes 64 lowercase hex digits and a NUL into out. */
void content_hex(const uint8_t hash[CONTENT_HASH_LEN],
		 char out[CONTENT_HEX_LEN]);

/* Parses 64 hex digits; returns 0 or -EINVAL. */
int content_unhex(const char *hex, uint8_t hash[CONTENT_HASH_LEN]);

/* Chunk-size bounds actually in use, for tests and documentation. */
void content_chunk_bounds(uint32_t *min, uint32_t *avg, uint32_t *max);

#endif
