/* Entries streamed to and from a peer (sync.c), and the vectors that
 * say what each side holds. */
#ifndef KRAKEN_SYNC_H
#define KRAKEN_SYNC_H

#include "replicate_int.h"

void sync_on_hello(struct session *s, const struct wire_hello *h);
int sync_on_frame(struct session *s, const struct wire_msg *m);
/* Queues entries the peer lacks; true when it stopped because the queue
 * was full and more is waiting. */
bool sync_pump(struct session *s);
void sync_lag(struct replicate *r, struct peer *p, uint64_t *entries,
	      uint64_t *bytes, uint64_t *behind);

#endif
