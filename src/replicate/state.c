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
 * frames (every head), SEALS and STATE_END (the count of heads), as the
 * peer's queue takes them.  Then `sent` becomes that vector, which the
 * peer holds once it has applied the exchange, and ENTRIES resume from
 * there.  A peer without the feature cannot be caught up: the error
 * says so once per session.  One exchange per session every
 * STATE_AGAIN_NS: a peer still below what we compacted after one lacks
 * what it would not take without a proof, and gets that from the
 * origin; serving it again would only loop.
 *
 * Proofs.  To a peer with feature CHAIN, heads this node can prove go in
 * CHAIN_STATE frames with their proofs, the rest in STATE; SEALS then
 * prove the vector entries past what the peer holds, where this node
 * keeps the origin's signature (src/journal/exchange_proof.c).
 *
 * Receiving.  One exchange at a time: STATE_BEGIN from a second peer
 * while one is being received makes that session ignore its STATE
 * frames, and its STATE_END is answered with a VECTOR, from which the
 * sender starts again if it still must.  The heads are staged by the
 * journal and applied at STATE_END when the count matches; after that
 * every session gets a VECTOR, so that peers stop sending what an
 * exchange just covered.  A session closed midway drops the exchange;
 * the next STATE_BEGIN starts it over.
 *
 * What is taken, in a TLS cluster.  A member could otherwise forge any
 * origin through an exchange, as it once could through ENTRIES:
 *   - a proven run is checked before it is staged (chaincheck.c); a
 *     proof that fails refuses the whole exchange and closes the session;
 *   - an unproven head is taken only of the sender's own node (its
 *     certificate proves that much), and one past the clock bounds is
 *     not taken; the vector is then taken as ending below it, so the
 *     head is not "held" here: it comes later from its origin;
 *   - the vector is taken, per origin, only as far as a checked
 *     signature goes (a run's or a seal's), or as far as the sender says
 *     for its own node.  A forged vector so neither raises a floor past
 *     what its origin signed nor drops a head that is not covered.
 * A sender can still withhold heads: a path it leaves out whose head
 * here the vector covers is dropped (step 3 of exchange.c), as for a
 * tombstone it forgot.  In a plaintext cluster nothing can be checked.
 */
#include "replicate_int.h"
#include "held.h"
#include "chaincheck.h"
#include "session.h"
#include "state.h"
#include "sync.h"

#include "err.h"
#include "keyring.h"
#include "log.h"
#include "loop.h"

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
#define STATE_SEALS_PER_FRAME 512
#define STATE_AGAIN_NS (600LL * 1000000000)

struct state_tx {
	struct journal_exchange *x;
	const struct journal_ref *vector;
	size_t n;
	uint64_t sent;            /* heads queued */
	bool heads_done;
	size_t seal_next;         /* vector entries looked at for SEALS */
};

/* ---- acknowledgements --------------------------------------------------- */

void state_on_vector(struct session *s, const struct wire_vector *v)
{
	int err = journal_peer_report(s->r->journal, s->peer->id, v->refs, v->n,
				      loop_wall_ns());

	held_acked(s->peer, v);
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

bool state_want(struct session *s, const char *origin, uint64_t from)
{
	if (s->state_tx || s->state_wanted)
		return true;
	if (!s->peer->state) {
		if (!s->state_refused)
			log_error("replicate", "peer %s holds %s only up to %llu, "
				  "below what this node compacted, and is too old "
				  "to catch up by state exchange: upgrade it",
				  s->peer->id, origin, (unsigned long long)from);
		s->state_refused = true;
		return false;
	}
	if (s->state_served_ns &&
	    loop_now_ns() - s->state_served_ns < STATE_AGAIN_NS) {
		if (!s->state_refused)
			log_info("replicate", "peer %s still holds %s only up to "
				 "%llu after the state we sent: it takes what it "
				 "could not be proven from %s's origin", s->peer->id,
				 origin, (unsigned long long)from, origin);
		s->state_refused = true;
		return false;
	}
	log_info("replicate", "peer %s holds %s only up to %llu, below what "
		 "this node compacted: sending it the current state instead",
		 s->peer->id, origin, (unsigned long long)from);
	s->state_wanted = true;
	return true;
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
	bool proven;              /* the frame being built is CHAIN_STATE */
	bool mid;                 /* ...and the run of its last head goes on */
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

/* A proven frame may take a whole run past the budget (a run is at most
 * a segment, which always fits). */
static int tx_begin(struct tx_frame *f, bool proven)
{
	f->proven = proven;
	return proven ? wire_chain_state_begin(&f->e, &f->b, WIRE_MAX_PAYLOAD) :
			wire_state_begin(&f->e, &f->b, PEER_ENTRIES_BUDGET);
}

static int tx_add(struct tx_frame *f, const struct wire_entry *w, bool proven)
{
	int err = 0;

	if (f->in_frame && !f->mid &&
	    (proven != f->proven || (proven && f->b.len > PEER_ENTRIES_BUDGET)))
		err = tx_ship(f);
	if (!err && f->in_frame == 0)
		err = tx_begin(f, proven);
	if (!err && proven && w->seg_end && w->sig_len)
		err = chain_send_key(f->s, w->key_id);
	if (!err)
		err = wire_entries_add(&f->e, w);
	if (err == -EMSGSIZE && !f->mid) {
		err = tx_ship(f);
		if (!err)
			err = tx_begin(f, proven);
		if (!err)
			err = wire_entries_add(&f->e, w);
	}
	return err;
}

static int tx_one(void *arg, const struct journal_change *c)
{
	struct tx_frame *f = arg;
	bool proven = c->chain.chained && f->s->peer->chain;
	struct wire_entry w;
	int err;

	if (f->mid && !proven)
		return -EPROTO;   /* the journal never breaks a run */
	wire_entry_from_change(c, &w);
	err = tx_add(f, &w, proven);
	if (!err) {
		f->in_frame++;
		f->mid = proven && !w.seg_end;
		f->s->state_tx->sent++;
	}
	return err;
}

/* Up to STATE_SEALS_PER_FRAME seals of vector entries past what the
 * peer holds, in one SEALS frame: 1 while entries are left, 0 at the
 * end.  Our own node's entries need none: the peer knows who we are. */
static int tx_seals(struct session *s)
{
	struct state_tx *t = s->state_tx;
	struct wire_msg m = { .type = WIRE_SEALS };
	struct wire_seal *v = calloc(STATE_SEALS_PER_FRAME, sizeof(*v));
	uint8_t (*sig)[JOURNAL_SIG_MAX] = malloc(STATE_SEALS_PER_FRAME *
						 JOURNAL_SIG_MAX);
	uint32_t n = 0;
	int err = v && sig ? 0 : -ENOMEM;

	while (!err && s->peer->chain && t->seal_next < t->n &&
	       n < STATE_SEALS_PER_FRAME) {
		const struct journal_ref *ref = &t->vector[t->seal_next++];
		size_t len = 0;

		if (journal_origin_of(ref->origin, s->r->node_id) ||
		    ref->seq <= held_sent(s->peer, ref->origin) ||
		    journal_exchange_seal(s->r->journal, ref->origin, ref->seq,
					  v[n].chain, v[n].key_id, sig[n],
					  &len) != 0)
			continue;
		v[n].ref = *ref;
		v[n].sig = sig[n];
		v[n].sig_len = (uint16_t)len;
		err = chain_send_key(s, v[n++].key_id);
	}
	if (!err && n) {
		m.seals.n = n;
		m.seals.v = v;
		err = session_send(s, &m);
	}
	free(v);
	free(sig);
	if (err)
		return err;
	return s->peer->chain && t->seal_next < t->n ? 1 : 0;
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
	s->state_served_ns = loop_now_ns();
	held_sent_reset(s, &v);
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
		if (s->state_tx->heads_done)
			more = tx_seals(s);
		else
			more = journal_exchange_next(s->r->journal,
						     s->state_tx->x,
						     STATE_HEADS_PER_PUMP,
						     tx_one, &f);
		if (more < 0)
			err = more;
		else if (!s->state_tx->heads_done)
			err = f.mid ? -EPROTO : tx_ship(&f);
		if (!err && more == 0 && !s->state_tx->heads_done) {
			s->state_tx->heads_done = true;
			more = 1;
		} else if (!err && more == 0) {
			err = tx_end(s);
		}
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
	held_clear(&r->state_rx.proven);
	held_clear(&r->state_rx.capped);
	memset(&r->state_rx, 0, sizeof(r->state_rx));
}

static void rx_proven(void *arg, const char *origin, uint64_t seq)
{
	struct replicate *r = arg;

	held_raise(&r->state_rx.proven, origin, seq);
}

/* Head W is not taken: the vector is taken as ending below it. */
static int rx_cap(struct replicate *r, const struct wire_entry *w)
{
	uint64_t *v = strmap_get(&r->state_rx.capped, w->ref.origin);

	r->state_rx.untaken++;
	if (v) {
		if (w->ref.seq - 1 < *v)
			*v = w->ref.seq - 1;
		return 0;
	}
	v = malloc(sizeof(*v));
	if (!v)
		return -ENOMEM;
	*v = w->ref.seq - 1;
	if (strmap_put(&r->state_rx.capped, w->ref.origin, v, NULL)) {
		free(v);
		return -ENOMEM;
	}
	return 0;
}

/* Whether unproven head W may be taken from S's peer. */
static bool rx_unproven_ok(struct session *s, const struct wire_entry *w)
{
	return !keyring_verifies(s->r->keyring) ||
	       journal_origin_of(w->ref.origin, s->peer->id);
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

static int on_head(struct session *s, const struct wire_entry *w)
{
	struct replicate *r = s->r;
	struct journal_change c;
	int err;

	r->state_rx.count++;
	if (!w->chained && !rx_unproven_ok(s, w))
		return rx_cap(r, w);
	wire_entry_to_change(w, &c);
	err = journal_exchange_stage(r->journal, &c);
	if (err == -ERANGE)
		return rx_cap(r, w);
	if (err == KR_EHOSTILE)
		log_warn("replicate", "refused a head from %s: hostile "
			 "or malformed path '%s/%s'", s->peer->id,
			 c.volume, c.path);
	return err;
}

static int on_heads(struct session *s, const struct wire_entry_list *l,
		    bool proven)
{
	struct replicate *r = s->r;
	int err = 0;

	if (r->state_rx.from != s)
		return s->state_ignored ? 0 : -EPROTO;
	if (proven)
		err = chain_check_state(s, l, rx_proven, r);
	for (uint32_t i = 0; i < l->n && !err; i++)
		err = on_head(s, &l->v[i]);
	if (err == KR_EHOSTILE)
		s->peer->stats.entries_refused += l->n;
	else
		s->peer->stats.entries_in += l->n;
	return err;
}

static int on_seals(struct session *s, const struct wire_seals *m)
{
	struct replicate *r = s->r;
	int err = 0;

	if (r->state_rx.from != s)
		return s->state_ignored ? 0 : -EPROTO;
	/* One per vector entry at most: each costs a signature check. */
	r->state_rx.seals += m->n;
	if (r->state_rx.seals > r->state_rx.n)
		return -EPROTO;
	for (uint32_t i = 0; i < m->n && !err; i++) {
		const struct wire_seal *e = &m->v[i];

		err = chain_check_seal(s, e);
		if (!err)
			err = journal_exchange_stage_seal(r->journal,
				e->ref.origin, e->ref.seq, e->chain,
				e->key_id, e->sig, e->sig_len);
		if (!err)
			held_raise(&r->state_rx.proven, e->ref.origin,
				       e->ref.seq);
	}
	return err;
}

/* The sender's vector as this node takes it (the top of this file). */
static void rx_clamp(struct session *s)
{
	struct replicate *r = s->r;
	bool verifies = keyring_verifies(r->keyring);

	size_t lowered = 0;

	for (size_t i = 0; i < r->state_rx.n; i++) {
		struct journal_ref *v = &r->state_rx.vector[i];
		const uint64_t *cap = strmap_get(&r->state_rx.capped, v->origin);
		uint64_t proven = held_get(&r->state_rx.proven, v->origin);

		if (cap && *cap < v->seq)
			v->seq = *cap;
		if (!verifies || v->seq <= proven ||
		    journal_origin_of(v->origin, s->peer->id))
			continue;
		if (lowered++ == 0)
			log_warn("replicate", "the state from %s says it holds "
				 "%s up to %llu, but no signature of %s proves "
				 "more than %llu: taken only that far", s->peer->id,
				 v->origin, (unsigned long long)v->seq, v->origin,
				 (unsigned long long)proven);
		v->seq = proven;
	}
	if (lowered > 1)
		log_warn("replicate", "the state from %s claims %zu origins "
			 "further than their signatures prove", s->peer->id,
			 lowered);
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
	if (r->state_rx.untaken)
		log_warn("replicate", "the state from %s holds %llu heads not "
			 "taken: without a proof of their origin (changes made "
			 "before it signed its journal, relayed by an older "
			 "node), or stamped past the clock bounds; they come "
			 "from their origin instead", s->peer->id,
			 (unsigned long long)r->state_rx.untaken);
	rx_clamp(s);
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
	case WIRE_CHAIN_STATE:
		return on_heads(s, &m->entries, m->type == WIRE_CHAIN_STATE);
	case WIRE_SEALS:
		return on_seals(s, &m->seals);
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
