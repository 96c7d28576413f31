#include "hist.h"

#include <assert.h>

static unsigned hist_index(uint64_t v)
{
	if (v < 16)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);   /* e >= 4 */
	unsigned sub = (unsigned)(v >> (e - 4)) & 15u;
	unsigned idx = 16 + (e - 4) * 16 + sub;

	return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static uint64_t hist_upper(unsigned idx)
{
	if (idx < 16)
		return idx;
	unsigned e = (idx - 16) / 16 + 4;
	unsigned sub = (idx - 16) % 16;

	return ((uint64_t)(16 + sub + 1) << (e - 4)) - 1;
}

void hist_record(struct hist *h, uint64_t value)
{
	h->count++;
	h->sum += value;
	if (value > h->max)
		h->max = value;
	h->buckets[hist_index(value)]++;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t rank, seen = 0;

	assert(q >= 0.0 && q <= 1.0);    /* callers pass constants */
	if (h->count == 0)
		return 0;
	rank = (uint64_t)(q * (double)h->count);
	if (rank >= h->count)
		rank = h->count - 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen > rank) {
			uint64_t up = hist_upper(i);

			return up < h->max ? up : h->max;
		}
	}
	return h->max;
}
