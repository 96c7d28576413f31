/*
 * Pushed small contents waiting for the transfers that claim them.
 *
 * A small file's content (up to PUSH_MAX_SIZE, one chunk) is sent right
 * behind the entry that announces it (serve.c), before the receiver asks.
 * In a burst the entries run ahead of the applier, so a push usually
 * arrives before its transfer exists: it waits here, under the content
 * hash it makes as a file of one chunk, in a ring of keys in arrival
 * order.  Transfers claim in about the order the pushes came, so when
 * the ring is full the oldest push is kept (it is claimed next) and the
 * new one is refused (its transfer will ask), unless the oldest has
 * waited past PUSH_KEEP_NS for nobody.  Dropping the oldest instead
 * would evict every push just before its claim, and a burst of more
 * files than the ring holds would ask a peer for nearly every list.  A
 * push serves every identical file announced while it waits (refs); the
 * last claim frees it, and its slot is reclaimed when it reaches the
 * ring's head.
 *
 * The store is its owner's (struct transfer_set); nothing else touches
 * its fields.
 */
#ifndef KRAKEN_PUSH_H
#define KRAKEN_PUSH_H

#include "content.h"
#include "strmap.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Files up to this size are one chunk (the chunker's minimum), and are
 * pushed with the entry that announces them. */
#define PUSH_MAX_SIZE CONTENT_CHUNK_MIN
#define PUSH_KEEP_MAX 16384            /* pushed contents kept unclaimed */
#define PUSH_KEEP_BYTES (32u << 20)
#define PUSH_KEEP_NS (5LL * 1000000000)

struct push_store {
	/* content hash (hex) -> struct pushed, oldest first in the ring */
	struct strmap pushed;
	char (*keys)[CONTENT_HEX_LEN];
	size_t head, n, bytes;
};

/* One pushed content: its one chunk. */
struct pushed {
	uint8_t chunk[CONTENT_HASH_LEN];
	uint32_t len;
	uint32_t refs;            /* pushes of it not claimed yet */
	int64_t kept_ns;
	uint8_t data[];
};

/* Keeps chunk HASH (LEN bytes of DATA, verified) at monotonic NOW under
 * the content hash it makes as a file of one chunk, which goes into
 * CONTENT (zero when it is not kept: too large, or no room). */
void push_keep(struct push_store *ps, const uint8_t *hash, const void *data,
	       uint32_t len, int64_t now, uint8_t content[CONTENT_HASH_LEN]);

/* The push of content CONTENT, SIZE bytes, or NULL.  Borrowed until
 * push_claimed. */
const struct pushed *push_find(const struct push_store *ps,
			       const uint8_t content[CONTENT_HASH_LEN],
			       uint64_t size);

/* A transfer took what push_find gave for CONTENT: the last claim frees
 * it. */
void push_claimed(struct push_store *ps,
		  const uint8_t content[CONTENT_HASH_LEN]);

bool push_any(const struct push_store *ps);
void push_free(struct push_store *ps);

#endif
