/* Questions to peers about kept versions (ask.c). */
#ifndef KRAKEN_ASK_H
#define KRAKEN_ASK_H

#include "replicate_int.h"

/* S's peer asks which versions are here, or answers that. */
int ask_on_question(struct session *s, const struct wire_ask_kept *a);
void ask_on_answer(struct session *s, const struct wire_kept *k);
/* Ends questions whose peers are gone or late; when the next is due. */
void ask_tick(struct replicate *r, int64_t now);
int64_t ask_deadline(const struct replicate *r);
void ask_free(struct replicate *r);

#endif
