/*
 * Latency histogram with bounded relative error: values below 16 get a
 * bucket each, larger ones 16 buckets per power of two, so any recorded
 * value is reported within about 6%.  Fixed size, no allocation; the
 * owner serialises access.
 */
#ifndef KRAKEN_HIST_H
#define KRAKEN_HIST_H

#include <stdint.h>

#define HIST_BUCKETS (16 + 60 * 16)

struct hist {
	uint64_t count;
	uint64_t sum;
	uint64_t max;
	uint64_t buckets[HIST_BUCKETS];
};

void hist_record(struct hist *h, uint64_t value);
/* The value at quantile Q (0..1): the upper edge of its bucket, capped
 * at the largest value seen; 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);

#endif
