/* Serving peers (serve.c): chunks asked for, chunk lists, small files
 * pushed unasked. */
#ifndef KRAKEN_SERVE_H
#define KRAKEN_SERVE_H

#include "replicate_int.h"

/* Answers a GET_CHUNKLIST. */
int serve_chunklist(struct replicate *r, struct session *s,
		    const struct wire_get_chunklist *g);

/* Answers the chunks S asked for while its output has room. */
int serve_queue(struct replicate *r, struct session *s);
/* Queues a GET_DELTA and answers what it can; -ENOBUFS when S has more
 * waiting than a peer keeping to its fetch window could. */
int serve_ask_delta(struct replicate *r, struct session *s,
		    const struct wire_get_delta *g);
/* S has requests waiting. */
bool serve_pending(const struct session *s);
/* After an ENTRIES frame: sends C's content unasked when C is a recent
 * small file of this node (see serve.c). */
void serve_push(struct replicate *r, struct session *s,
		const char *volume, const char *path, uint64_t size,
		const uint8_t *hash);
/* Frees offers too old to be pushed (see serve.c). */
void serve_offers_expire(struct replicate *r, int64_t now);
/* Lets go of the file S last served from once it has been idle a while. */
void serve_idle(struct session *s, int64_t now);
/* Lets go of what serving S kept (the file last read, its index). */
void serve_release(struct session *s);

#endif
