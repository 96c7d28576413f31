/* What each peer holds (held.h). */
#include "held.h"

#include <stdlib.h>

uint64_t held_get(const struct strmap *m, const char *origin)
{
	const uint64_t *v = strmap_get(m, origin);

	return v ? *v : 0;
}

void held_raise(struct strmap *m, const char *origin, uint64_t seq)
{
	uint64_t *v = strmap_get(m, origin);

	if (v) {
		if (seq > *v)
			*v = seq;
		return;
	}
	v = malloc(sizeof(*v));
	if (!v)
		return;   /* sent again, or lag overstated: harmless */
	*v = seq;
	if (strmap_put(m, origin, v, NULL))
		free(v);
}

uint64_t held_sent(const struct peer *p, const char *origin)
{
	return held_get(&p->sent, origin);
}

void held_sent_raise(struct peer *p, const char *origin, uint64_t seq)
{
	held_raise(&p->sent, origin, seq);
	p->maps_changed++;
}

void held_acked(struct peer *p, const struct wire_vector *vec)
{
	/* Capped: a peer naming made-up origins grows it no further. */
	for (uint32_t i = 0; i < vec->n; i++)
		if (p->acked.count < PEER_ACKED_MAX ||
		    strmap_get(&p->acked, vec->refs[i].origin))
			held_raise(&p->acked, vec->refs[i].origin,
				  vec->refs[i].seq);
	p->maps_changed++;
}

void held_clear(struct strmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key)
			free(m->slots[i].value);
	strmap_clear(m);
}

void held_sent_reset(struct session *s, const struct wire_vector *vec)
{
	struct peer *p = s->peer;

	held_clear(&p->sent);
	for (uint32_t i = 0; i < vec->n; i++)
		held_sent_raise(p, vec->refs[i].origin, vec->refs[i].seq);
	/* It may hold less than was sent: every origin again. */
	s->pumped_gen = 0;
	for (struct session *o = s->r->sessions; o; o = o->next)
		if (o->peer == p)
			o->pumped_gen = 0;
}
