/*
 * State exchange and acknowledgements between peers (the journal's side
 * is src/journal/exchange.c and compact.c).
 *
 * Acknowledgements.  A peer's HELLO vector, a VECTOR after a gap, and an
 * ACK are its acknowledgement of what it holds: each is handed to
 * journal_peer_report, which is what compaction waits for and what a
 * peer's lag is counted from.  Every second a session sends ACK, when new
 * changes arrived since the last one (every STATE_ACK_IDLE_NS anyway),
 * and the peer's HELLO said it takes them (feature STATE).  An ACK names
 * only the origins touched since this session's last VECTOR or ACK
 * (ack_gen): the receiver keeps, per origin, the highest seq it was
 * told, so the rest stand as told.  A whole vector in every ACK cost the
 * receiver two statements per origin, every second: most of its CPU with
 * 90,000 origins.
 *
 * Serving.  When the pump finds the peer's vector below what this node
 * compacted (journal_entries_since says KR_ECOMPACTED), the session
 * stops sending ENTRIES and streams STATE_BEGIN (the vector), STATE
 * frames (every head) and STATE_END (their count), as the peer's queue
 * takes them.  Then `sent` becomes that vector, which the peer holds
 * once it has applied the exchange, and ENTRIES resume from there.  A
 * peer without the feature cannot be caught up: the error says so once
 * per session.
 *
 * Receiving.  One exchange at a time: STATE_BEGIN from a second peer
 * while one is being received makes that session ignore its STATE
 * frames, and its STATE_END is answered with a VECTOR, from which the
 * sender starts again if it still must.  The heads are staged by the
 * journal and applied at STATE_END when the count matches; after that
 * every session gets a VECTOR, so that peers stop sending what an
 * exchange just covered.  A session closed midway drops the exchange;
 * the next STATE_BEGIN starts it over.
 */
#include "replicate_int.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATE_ACK_NS (1LL * 1000000000)
/* Sent even when nothing changed, so that a quiet peer is never taken
 * for one that is gone (journal.retention_pin_max). */
#define STATE_ACK_IDLE_NS (60LL * 1000000000)
#define STATE_HEADS_PER_PUMP 512

struct state_tx {
	struct journal_exchange *x;
	const struct journal_ref *vector;
	size_t n;
	uint64_t sent;            /* heads queued */
	bool begun;
};

static int64_t state_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- acknowledgements --------------------------------------------------- */

void state_on_vector(struct session *s, const struct wire_vector *v)
{
	int err = journal_peer_report(s->r->journal, s->peer->id, v->refs, v->n,
				      state_wall_ns());

	sync_acked(s->peer, v);
	if (err)
		log_warn("replicate", "recording what %s holds: %s",
			 s->peer->id, kr_strerror(err));
}

struct since_copy {
	struct journal_ref *refs;
	size_t n, cap;
};

static int since_copy_add(void *arg, const char *origin, uint64_t max_seq,
			  uint64_t gen)
{
	struct since_copy *c = arg;

	(void)gen;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct journal_ref *r = realloc(c->refs, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		c->refs = r;
		c->cap = cap;
	}
	snprintf(c->refs[c->n].origin, JOURNAL_ORIGIN_MAX, "%s", origin);
	c->refs[c->n++].seq = max_seq;
	return 0;
}

/* The whole vector (VECTOR), or for an ACK the origins touched since the
 * last one the peer was sent. */
static int send_vector_as(struct session *s, enum wire_type type)
{
	struct since_copy c = { 0 };
	struct wire_msg m = { .type = type };
	uint64_t gen = journal_vector_gen(s->r->journal);
	int err = type == WIRE_ACK ?
		  journal_vector_since(s->r->journal, s->ack_gen,
				       since_copy_add, &c) :
		  journal_vector_copy(s->r->journal, &c.refs, &c.n);

	if (!err) {
		m.vector.n = (uint32_t)c.n;
		m.vector.refs = c.refs;
		err = session_send(s, &m);
	}
	if (!err)
		s->ack_gen = gen;
	free(c.refs);
	return err;
}

int state_send_vector(struct session *s)
{
	return send_vector_as(s, WIRE_VECTOR);
}

void state_tick(struct session *s, int64_t now)
{
	int64_t last = journal_last_change_id(s->r->journal);

	if (!s->peer || !s->peer->state || s->state != SESSION_OPEN ||
	    now - s->ack_ns < STATE_ACK_NS ||
	    (last == s->ack_change && now - s->ack_ns < STATE_ACK_IDLE_NS))
		return;
	if (send_vector_as(s, WIRE_ACK) == 0) {
		s->ack_ns = now;
		s->ack_change = last;
		session_send_now(s);
	}
}

/* ---- serving ------------------------------------------------------------ */

static void tx_close(struct session *s)
{
	if (!s->state_tx)
		return;
	journal_exchange_close(s->r->journal, s->state_tx->x);
	free(s->state_tx);
	s->state_tx = NULL;
}

void state_want(struct session *s, const char *origin, uint64_t from)
{
	if (s->state_tx || s->state_wanted)
		return;
	if (!s->peer->state) {
		if (!s->state_refused)
			log_error("replicate", "peer %s holds %s only up to %llu, "
				  "below what this node compacted, and is too old "
				  "to catch up by state exchange: upgrade it",
				  s->peer->id, origin, (unsigned long long)from);
		s->state_refused = true;
		return;
	}
	log_info("replicate", "peer %s holds %s only up to %llu, below what "
		 "this node compacted: sending it the current state instead",
		 s->peer->id, origin, (unsigned long long)from);
	s->state_wanted = true;
}

static int tx_open(struct session *s)
{
	struct state_tx *t = calloc(1, sizeof(*t));
	struct wire_msg m = { .type = WIRE_STATE_BEGIN };
	int err = t ? journal_exchange_open(s->r->journal, &t->x, &t->vector,
					    &t->n) : -ENOMEM;

	if (err) {
		free(t);
		return err;
	}
	s->state_tx = t;
	m.vector.n = (uint32_t)t->n;
	m.vector.refs = t->vector;
	return session_send(s, &m);
}

struct tx_frame {
	struct session *s;
	struct wire_entries e;
	struct wire_buf b;
	unsigned in_frame;
	int err;
};

static int tx_ship(struct tx_frame *f)
{
	int err = 0;

	if (f->in_frame == 0)
		return 0;
	wire_entries_end(&f->e);
	err = conn_queue(f->s->conn, f->b.data, f->b.len);
	if (!err)
		f->s->peer->stats.bytes_out += f->b.len;
	wire_buf_reset(&f->b);
	f->in_frame = 0;
	return err;
}

static int tx_one(void *arg, const struct journal_change *c)
{
	struct tx_frame *f = arg;
	struct wire_entry w;
	int err = 0;

	wire_entry_from_change(c, &w);
	if (f->in_frame == 0)
		err = wire_state_begin(&f->e, &f->b, PEER_ENTRIES_BUDGET);
	if (!err)
		err = wire_entries_add(&f->e, &w);
	if (err == -EMSGSIZE) {
		err = tx_ship(f);
		if (!err)
			err = wire_state_begin(&f->e, &f->b,
					       PEER_ENTRIES_BUDGET);
		if (!err)
			err = wire_entries_add(&f->e, &w);
	}
	if (!err) {
		f->in_frame++;
		f->s->state_tx->sent++;
	}
	return err;
}

static int tx_end(struct session *s)
{
	struct state_tx *t = s->state_tx;
	struct wire_msg m = { .type = WIRE_STATE_END, .token = t->sent };
	struct wire_vector v = { (uint32_t)t->n, t->vector };
	int err = session_send(s, &m);

	if (err)
		return err;
	log_info("replicate", "sent peer %s the current state: %llu heads",
		 s->peer->id, (unsigned long long)t->sent);
	s->r->exchanges_served++;
	sync_sent_reset(s, &v);
	tx_close(s);
	return 0;
}

bool state_pump(struct session *s)
{
	struct tx_frame f = { .s = s };
	int more = 1, err = 0;

	if (s->state_wanted && !s->state_tx) {
		s->state_wanted = false;
		err = tx_open(s);
	}
	while (!err && s->state_tx && more > 0 &&
	       conn_queued(s->conn) <= PEER_PUMP_LOW) {
		more = journal_exchange_next(s->r->journal, s->state_tx->x,
					     STATE_HEADS_PER_PUMP, tx_one, &f);
		if (more < 0)
			err = more;
		else
			err = tx_ship(&f);
		if (!err && more == 0)
			err = tx_end(s);
	}
	wire_buf_release(&f.b);
	if (err) {
		log_warn("replicate", "sending the current state to %s: %s",
			 s->peer->id, kr_strerror(err));
		tx_close(s);
		session_close(s, "state exchange failed");
		return true;
	}
	return s->state_tx != NULL;
}

/* ---- receiving ---------------------------------------------------------- */

static void rx_drop(struct replicate *r)
{
	free(r->state_rx.vector);
	memset(&r->state_rx, 0, sizeof(r->state_rx));
}

static int on_begin(struct session *s, const struct wire_vector *v)
{
	struct replicate *r = s->r;
	int err;

	if (r->state_rx.from && r->state_rx.from != s) {
		s->state_ignored = true;
		return 0;
	}
	rx_drop(r);
	err = journal_exchange_begin(r->journal);
	r->state_rx.vector = calloc(v->n ? v->n : 1, sizeof(*v->refs));
	if (err || !r->state_rx.vector) {
		rx_drop(r);
		return err ? err : -ENOMEM;
	}
	memcpy(r->state_rx.vector, v->refs, v->n * sizeof(*v->refs));
	r->state_rx.n = v->n;
	r->state_rx.from = s;
	log_info("replicate", "receiving the current state from %s",
		 s->peer->id);
	return 0;
}

static int on_heads(struct session *s, const struct wire_entry_list *l)
{
	struct replicate *r = s->r;

	if (r->state_rx.from != s)
		return s->state_ignored ? 0 : -EPROTO;
	for (uint32_t i = 0; i < l->n; i++) {
		struct journal_change c;
		int err;

		wire_entry_to_change(&l->v[i], &c);
		err = journal_exchange_stage(r->journal, &c);
		if (err == KR_EHOSTILE)
			log_warn("replicate", "refused a head from %s: hostile "
				 "or malformed path '%s/%s'", s->peer->id,
				 c.volume, c.path);
		if (err)
			return err;
		r->state_rx.count++;
	}
	s->peer->stats.entries_in += l->n;
	return 0;
}

/* Every peer is told what this node holds now. */
static void vector_to_all(struct replicate *r)
{
	for (struct session *o = r->sessions; o; o = o->next)
		if (!o->dead && o->state == SESSION_OPEN &&
		    send_vector_as(o, WIRE_VECTOR) == 0)
			session_send_now(o);
}

static int on_end(struct session *s, uint64_t count)
{
	struct replicate *r = s->r;
	uint64_t changed = 0;
	int err;

	if (r->state_rx.from != s) {
		if (!s->state_ignored)
			return -EPROTO;
		s->state_ignored = false;
		return send_vector_as(s, WIRE_VECTOR);
	}
	if (count != r->state_rx.count) {
		log_warn("replicate", "state from %s ended after %llu heads of "
			 "%llu; dropped", s->peer->id,
			 (unsigned long long)r->state_rx.count,
			 (unsigned long long)count);
		rx_drop(r);
		return -EPROTO;
	}
	err = journal_exchange_apply(r->journal, r->state_rx.vector,
				     r->state_rx.n, &changed);
	if (!err)
		err = journal_flush(r->journal);
	rx_drop(r);
	if (err)
		return err;
	log_info("replicate", "caught up with %s by state exchange: %llu heads, "
		 "%llu paths to bring up to date", s->peer->id,
		 (unsigned long long)count, (unsigned long long)changed);
	r->exchanges_applied++;
	r->kicked = true;
	vector_to_all(r);
	return 0;
}

int state_on_frame(struct session *s, const struct wire_msg *m)
{
	switch (m->type) {
	case WIRE_STATE_BEGIN:
		return on_begin(s, &m->vector);
	case WIRE_STATE:
		return on_heads(s, &m->entries);
	case WIRE_STATE_END:
		return on_end(s, m->token);
	case WIRE_ACK:
		state_on_vector(s, &m->vector);
		return 0;
	default:
		return -EPROTO;
	}
}

void replicate_exchanges(const struct replicate *r, uint64_t *served,
			 uint64_t *applied)
{
	*served = r->exchanges_served;
	*applied = r->exchanges_applied;
}

void state_session_gone(struct session *s)
{
	tx_close(s);
	if (s->r->state_rx.from == s)
		rx_drop(s->r);
}
