/* Clock samples from pings (clock.c). */
#ifndef KRAKEN_CLOCK_H
#define KRAKEN_CLOCK_H

#include "replicate_int.h"

/* A PING of S went out at monotonic NOW. */
void clock_on_ping(struct session *s, int64_t now);
/* S's peer pinged with TOKEN, and was answered PONG: CLOCK follows. */
int clock_answer(struct session *s, uint64_t token);
void clock_on_sample(struct session *s, const struct wire_clock *c);

#endif
