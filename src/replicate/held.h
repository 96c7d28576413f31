/*
 * What each peer holds (held.c): per origin, the highest seq of its
 * changes the peer has, as sent to it (`sent`: what is not sent again)
 * and as it said itself (`acked`: HELLO, VECTOR, ACK, what its lag is
 * counted from).  Both are strmaps of origin -> (uint64_t *) seq, which
 * the state exchange (state.c) also uses for what it proved.  Used by
 * sync.c and state.c alike, so that neither needs the other's header.
 */
#ifndef KRAKEN_HELD_H
#define KRAKEN_HELD_H

#include "replicate_int.h"

/* A vector's seq of ORIGIN, 0 when it has none. */
uint64_t held_get(const struct strmap *m, const char *origin);
/* Raises ORIGIN to SEQ (never lowers it).  Out of memory it is left:
 * something is sent again, or a lag overstated, both harmless. */
void held_raise(struct strmap *m, const char *origin, uint64_t seq);
/* Frees every value, empties M. */
void held_clear(struct strmap *m);

/* What P is known to hold of ORIGIN. */
uint64_t held_sent(const struct peer *p, const char *origin);
/* P holds ORIGIN up to SEQ now (it was sent that far). */
void held_sent_raise(struct peer *p, const char *origin, uint64_t seq);
/* S's peer holds what VEC says, no more: `sent` becomes VEC, and every
 * session to it looks at every origin again. */
void held_sent_reset(struct session *s, const struct wire_vector *vec);
/* P said it holds VEC (HELLO, VECTOR, ACK): what its lag counts from.
 * Capped at PEER_ACKED_MAX origins: a peer naming made-up origins grows
 * it no further. */
void held_acked(struct peer *p, const struct wire_vector *vec);

#endif
