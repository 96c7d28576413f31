/* The scrubber (scrub.c): files read back against their hashes. */
#ifndef KRAKEN_SCRUB_H
#define KRAKEN_SCRUB_H

#include "replicate_int.h"

int scrub_new(struct scrub **out);
void scrub_free(struct scrub *sc);
void scrub_tick(struct replicate *r, int64_t now);
/* Monotonic time of its next step or pass; INT64_MAX: none. */
int64_t scrub_deadline(const struct replicate *r);

#endif
