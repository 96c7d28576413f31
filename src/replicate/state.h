/* State exchanges (state.c): a whole vector and its proofs, for a
 * peer below this node's floor. */
#ifndef KRAKEN_STATE_H
#define KRAKEN_STATE_H

#include "replicate_int.h"

/* Sends this node's whole vector (after HELLO, to an identified peer). */
int state_send_vector(struct session *s);
/* V is what the peer of S holds: its acknowledgement. */
void state_on_vector(struct session *s, const struct wire_vector *v);
/* The peer's ORIGIN stands at FROM, below this node's floor: whether
 * an exchange is (now) due to it. */
bool state_want(struct session *s, const char *origin, uint64_t from);
/* Streams the exchange due or under way; true while it is not done. */
bool state_pump(struct session *s);
int state_on_frame(struct session *s, const struct wire_msg *m);
/* Sends an ACK when one is due. */
void state_tick(struct session *s, int64_t now);
/* S is closing: its exchanges, either way, end. */
void state_session_gone(struct session *s);

#endif
