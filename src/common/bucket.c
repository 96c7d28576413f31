#include "bucket.h"

void bucket_init(struct bucket *b, uint64_t rate_bits, uint64_t burst)
{
	b->rate = rate_bits / 8;
	b->burst = burst;
	b->tokens = (double)burst;
	b->last_ns = 0;
}

static void bucket_fill(struct bucket *b, int64_t now_ns)
{
	/* Callers may pass a time read a little earlier than another
	 * caller's: the clock of the bucket never moves back, or the same
	 * interval would be credited twice. */
	if (now_ns <= b->last_ns)
		return;
	if (b->last_ns)
		b->tokens += (double)b->rate * (double)(now_ns - b->last_ns) / 1e9;
	if (b->tokens > (double)b->burst)
		b->tokens = (double)b->burst;
	b->last_ns = now_ns;
}

bool bucket_take(struct bucket *b, uint64_t n, int64_t now_ns)
{
	if (b->rate == 0)
		return true;
	bucket_fill(b, now_ns);
	/* A request larger than the burst goes through on a full bucket
	 * and leaves it in debt, so the long-run rate still holds. */
	if (b->tokens < (double)n && b->tokens < (double)b->burst)
		return false;
	b->tokens -= (double)n;
	return true;
}

void bucket_charge(struct bucket *b, uint64_t n, int64_t now_ns)
{
	if (b->rate == 0)
		return;
	bucket_fill(b, now_ns);
	b->tokens -= (double)n;
}

int64_t bucket_wait_ns(struct bucket *b, uint64_t n, int64_t now_ns)
{
	double need;

	if (b->rate == 0)
		return 0;
	bucket_fill(b, now_ns);
	need = (n > b->burst ? (double)b->burst : (double)n) - b->tokens;
	return need <= 0 ? 0 : (int64_t)(need * 1e9 / (double)b->rate) + 1;
}
