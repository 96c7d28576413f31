/* Connections before HELLO (gate.c): who may wait for it, for how long. */
#ifndef KRAKEN_GATE_H
#define KRAKEN_GATE_H

#include "replicate_int.h"

/* The listener is bound to SS: outbound connections leave from its
 * address too, unless it is a wildcard. */
void gate_note_listen(struct replicate *r, const struct sockaddr_storage *ss,
		      socklen_t len);
void gate_bind_source(struct replicate *r, int fd, int family);
/* Whether inbound S comes from the address P is configured at. */
bool gate_from_peer(struct replicate *r, const struct session *s,
		    const struct peer *p);
/* Whether a connection from SS, accepted as FD, may wait for its HELLO;
 * its address as text into SOURCE (GATE_SOURCE_MAX bytes). */
bool gate_admit(struct replicate *r, const struct sockaddr_storage *ss,
		int fd, char *source);
/* accept(2) failed with ERR for lack of resources: pause the listener. */
void gate_pause(struct replicate *r, int err);
void gate_tick(struct replicate *r, int64_t now);
/* S has not said HELLO in time. */
bool gate_expired(const struct session *s, int64_t now);

#endif
