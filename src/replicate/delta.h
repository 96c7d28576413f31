/*
 * Chunk deltas: a chunk sent as the blocks in which it differs from bytes
 * the asker already holds.
 *
 * Why: an edit changes the chunks it touches, and also the chunks around
 * it whose bytes did not change.  A cut is never made in a chunk's first
 * CDC_MIN bytes and normalised chunking takes a chunk or two to fall back
 * into step, so the chunk holding the edit's start and the one to three
 * after its end are new chunks made mostly of old bytes: 10 to 250 KiB
 * beyond a 1 MiB edit, 100 KiB or more beyond a 4 KiB one.  The asker has
 * those old bytes (the version being replaced, at the same place or one
 * shifted by what was inserted); it names them by block digests, and the
 * holder of the chunk sends back only the blocks that differ.
 *
 * Format (part of the wire protocol: GET_DELTA and DELTA in wire.h):
 *
 *   - a chunk of LEN bytes is cut in DELTA_BLOCK (4 KiB) blocks from its
 *     first byte; the last block may be shorter;
 *   - a block's digest is the first DELTA_DIGEST (8) bytes of the SHA-256
 *     of its bytes;
 *   - an answer is a map, delta_map_len(LEN) bytes, bit (i % 8) of byte
 *     (i / 8) set when block i equals the asker's (digests equal), bits
 *     past the last block 0; then the bytes of every block whose bit is
 *     clear, in block order.
 *
 * Trust: a digest is short on purpose.  A collision, or old bytes that
 * changed between the question and the answer, can only make the rebuilt
 * chunk fail its SHA-256; the asker then fetches it whole.  Nothing here
 * allocates more than a digest context.
 */
#ifndef KRAKEN_DELTA_H
#define KRAKEN_DELTA_H

#include <stddef.h>
#include <stdint.h>

#define DELTA_BLOCK 4096u
#define DELTA_DIGEST 8u
/* Longest chunk a delta is made for (the wire's chunk cap). */
#define DELTA_LEN_MAX (1u << 20)
#define DELTA_BLOCKS_MAX (DELTA_LEN_MAX / DELTA_BLOCK)
#define DELTA_MAP_MAX (DELTA_BLOCKS_MAX / 8)

/* Blocks of a LEN-byte chunk, and the bytes of its map. */
uint32_t delta_blocks(uint32_t len);
uint32_t delta_map_len(uint32_t len);

/*
 * The digest of every block of DATA (LEN bytes, 1..DELTA_LEN_MAX) into
 * OUT, delta_blocks(LEN) of them.  0 or -ENOMEM.
 */
int delta_digests(const uint8_t *data, uint32_t len,
		  uint8_t (*out)[DELTA_DIGEST]);

/*
 * The answer for chunk DATA (LEN bytes) to an asker holding blocks with
 * digests THEIRS: MAP (delta_map_len(LEN) bytes) and, in LIT (room for
 * LEN bytes), the blocks it lacks; *LIT_LEN their total.  0 or -ENOMEM.
 */
int delta_make(const uint8_t *data, uint32_t len,
	       const uint8_t (*theirs)[DELTA_DIGEST], uint8_t *map,
	       uint8_t *lit, uint32_t *lit_len);

/*
 * Bytes an answer with MAP carries for a LEN-byte chunk, or -1 when MAP
 * has a bit set past the last block.
 */
int64_t delta_literal_len(uint32_t len, const uint8_t *map);

/*
 * Rebuilds the chunk in OUT, which holds the asker's LEN bytes: the blocks
 * MAP does not mark are overwritten from LIT (delta_literal_len bytes).
 */
void delta_apply(uint8_t *out, uint32_t len, const uint8_t *map,
		 const uint8_t *lit);

#endif
