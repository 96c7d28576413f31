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

/* S's peer holds what VEC says, no more: `sent` becomes VEC, and every
 * session to it looks at every origin again. */
void sync_sent_reset(struct session *s, const struct wire_vector *vec);
/* What the peer is known to hold of ORIGIN. */
uint64_t sync_sent_get(const struct peer *p, const char *origin);
/* Vectors kept as strmaps of origin -> (uint64_t *) seq. */
uint64_t sync_vec_get(const struct strmap *m, const char *origin);
void sync_vec_raise(struct strmap *m, const char *origin, uint64_t seq);
void sync_vec_clear(struct strmap *m);
/* P said it holds VEC (HELLO, VECTOR, ACK): what its lag counts from. */
void sync_acked(struct peer *p, const struct wire_vector *vec);

#endif
