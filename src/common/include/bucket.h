/*
 * Token bucket for bandwidth limits.  Tokens are bytes; they accrue at
 * RATE bytes per second up to BURST.  A rate of 0 means unlimited.  The
 * owner serialises access.
 */
#ifndef KRAKEN_BUCKET_H
#define KRAKEN_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

struct bucket {
	uint64_t rate;            /* bytes per second; 0: unlimited */
	uint64_t burst;           /* the most tokens held */
	double tokens;
	int64_t last_ns;
};

/* RATE_BITS is bits per second as the configuration says it. */
void bucket_init(struct bucket *b, uint64_t rate_bits, uint64_t burst);

/* Takes N tokens if they are there now (NOW_NS monotonic). */
bool bucket_take(struct bucket *b, uint64_t n, int64_t now_ns);

/* Takes N tokens whether or not they are there, leaving the bucket in
 * debt: for bytes already committed (a chunk read and about to be sent)
 * after bucket_wait_ns() said to go ahead. */
void bucket_charge(struct bucket *b, uint64_t n, int64_t now_ns);

/* Nanoseconds until N tokens will be there; 0 when they are now. */
int64_t bucket_wait_ns(struct bucket *b, uint64_t n, int64_t now_ns);

#endif
