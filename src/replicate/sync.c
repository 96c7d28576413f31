/*
 * Journal ranges between peers.
 *
 * For each peer the replicator keeps `sent`: per origin, the highest seq
 * the peer is known to hold (from its HELLO or VECTOR, from what we sent,
 * from what it sent us).  Pumping walks our version vector and streams,
 * for every origin, the entries past that mark, in seq order, in ENTRIES
 * frames, until the peer's queue is comfortably full.  Entries relayed
 * from other origins flow the same way, so a node catches up from any
 * peer that is up.  TCP keeps each stream in order; entries that arrive
 * twice over two streams are recognised by (origin, seq) and dropped.
 *
 * Changed origins only.  A pump runs after every commit and socket event;
 * walking every origin each time cost 0.2 s with 90,000 of them.  The
 * journal gives each origin a generation when it is touched
 * (vector.c), and a session keeps pumped_gen: every origin touched up to
 * it went to the peer as far as it may.  A pump walks the origins
 * touched since, in generation order, and moves pumped_gen past those it
 * finished: all of them, or those before the one where the queue filled
 * or the peer needs a state exchange (that one comes again).  An origin
 * it stops short of for good reason comes again once touched: our own
 * changes wait for their signature (signing touches our origin), a third
 * node's entries without a chain or signature wait for more of them, and
 * a compacted range for which no state exchange is due to the peer
 * (state.c) waits for the origin's next change.  pumped_gen goes back to 0 whenever `sent` is reset (HELLO, VECTOR, a
 * state exchange sent), since what the peer holds may then be less.
 *
 * Lag.  Counted from memory once a second per peer, and only when the
 * vector or what the peer holds changed since; the content bytes behind
 * cost a query per origin, so they are measured on the LAG_MEASURED_MAX
 * origins touched last and estimated for the rest.
 */
#include "replicate_int.h"
#include "held.h"
#include "ask.h"
#include "chaincheck.h"
#include "clock.h"
#include "precopy.h"
#include "serve.h"
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

/* The origin the peer names as its own, if it is one of its node id. */
static void own_origin_note(struct peer *p, const struct wire_hello *h)
{
	const char *o = h->vector.n ? h->vector.refs[0].origin : "";

	p->own_origin[0] = '\0';
	if ((h->features & WIRE_HELLO_OWN_FIRST) && journal_origin_of(o, p->id))
		snprintf(p->own_origin, sizeof(p->own_origin), "%s", o);
}

void sync_on_hello(struct session *s, const struct wire_hello *h)
{
	held_sent_reset(s, &h->vector);
	own_origin_note(s->peer, h);
	s->peer->changing = (h->features & WIRE_HELLO_CHANGING) != 0;
	s->peer->delta = (h->features & WIRE_HELLO_DELTA) != 0;
	s->peer->state = (h->features & WIRE_HELLO_STATE) != 0;
	s->peer->stats.rejoining = (h->features & WIRE_HELLO_REJOINING) != 0;
	/* Its vector comes next: what it holds is not known yet. */
	s->peer->vector_wait = (h->features & WIRE_HELLO_VECTOR_NEXT) != 0;
	s->peer->clock = (h->features & WIRE_HELLO_CLOCK) != 0;
	s->peer->chain = (h->features & WIRE_HELLO_CHAIN) != 0;
	s->peer->kept = (h->features & WIRE_HELLO_KEPT) != 0;
	if (s->peer->vector_wait)
		return;
	state_on_vector(s, &h->vector);
	s->r->kicked = true;
	sync_pump(s);
}

/* ---- sending ----------------------------------------------------------- */

struct push {
	char *volume, *path;
	uint64_t size;
	uint8_t hash[CONTENT_HASH_LEN];
};

#define PUMP_PUSHES 64

struct pump {
	struct session *s;
	struct wire_entries e;
	struct wire_buf b;
	const char *origin;
	uint64_t last;            /* last seq put in a frame */
	uint64_t max;             /* of ORIGIN, the last seq to send */
	unsigned in_frame;
	bool full;
	bool own;                 /* ORIGIN is this node */
	bool chained;             /* the frame being built is CHAIN_ENTRIES */
	bool mid;                 /* ...and its last entry ends no segment */
	bool skip;                /* the rest of ORIGIN cannot go to the peer */
	bool verifies;            /* the cluster signs (TLS) */
	/* every origin walked up to this generation was finished */
	uint64_t done_gen;
	int64_t now_wall;
	/* small files of the frame being built: a frame is cut once it
	 * holds PUMP_PUSHES of them, at a segment's end, so a segment of
	 * pushes always fits */
	struct push push[PUMP_PUSHES + JOURNAL_SEGMENT_MAX];
	unsigned n_push;
};

/* A recent small file of ours goes out with its content right behind
 * the frame announcing it (push.h says why). */
static void pump_note_push(struct pump *pu, const struct journal_change *c)
{
	struct push *p;

	if (!pu->own || c->op != JOURNAL_PUT || !c->has_hash ||
	    c->size == 0 || c->size > PUSH_MAX_SIZE ||
	    pu->now_wall - c->wall_ns > PUSH_RECENT_NS ||
	    pu->n_push == sizeof(pu->push) / sizeof(pu->push[0]))
		return;
	p = &pu->push[pu->n_push];
	p->volume = strdup(c->volume);
	p->path = strdup(c->path);
	if (!p->volume || !p->path) {
		free(p->volume);
		free(p->path);
		return;
	}
	p->size = c->size;
	memcpy(p->hash, c->hash, CONTENT_HASH_LEN);
	pu->n_push++;
}

static void pump_send_pushes(struct pump *pu)
{
	for (unsigned i = 0; i < pu->n_push; i++) {
		struct push *p = &pu->push[i];

		serve_push(pu->s->r, pu->s, p->volume, p->path, p->size,
			   p->hash);
		free(p->volume);
		free(p->path);
	}
	pu->n_push = 0;
}


static int pump_ship(struct pump *pu)
{
	int err = 0;

	if (pu->in_frame == 0)
		return 0;
	wire_entries_end(&pu->e);
	err = conn_queue(pu->s->conn, pu->b.data, pu->b.len);
	if (!err) {
		pu->s->peer->stats.bytes_out += pu->b.len;
		pu->s->peer->stats.entries_out += pu->in_frame;
		held_sent_raise(pu->s->peer, pu->origin, pu->last);
	}
	wire_buf_reset(&pu->b);
	pu->in_frame = 0;
	pump_send_pushes(pu);
	return err;
}

/* Whether the frame being built must go before C joins: full, or of the
 * other kind.  A chained frame is only ever cut at a segment's end. */
static bool pump_cut_before(const struct pump *pu, bool chained)
{
	if (pu->in_frame == 0 || pu->mid)
		return false;
	return pu->n_push >= PUMP_PUSHES ||
	       chained != pu->chained ||
	       (chained && pu->b.len > PEER_ENTRIES_BUDGET);
}

/* A plain frame stops at its budget; a chained one may take a whole
 * segment past it (JOURNAL_SEGMENT_MAX entries always fit the cap). */
static int pump_begin(struct pump *pu, bool chained)
{
	pu->chained = chained;
	return chained ? wire_chain_entries_begin(&pu->e, &pu->b,
						  WIRE_MAX_PAYLOAD) :
			 wire_entries_begin(&pu->e, &pu->b,
					    PEER_ENTRIES_BUDGET);
}

static int pump_add(struct pump *pu, const struct wire_entry *w, bool chained)
{
	int err = 0;

	if (pump_cut_before(pu, chained))
		err = pump_ship(pu);
	if (!err && pu->in_frame == 0)
		err = pump_begin(pu, chained);
	if (!err && chained && w->seg_end && w->sig_len)
		err = chain_send_key(pu->s, w->key_id);
	if (!err)
		err = wire_entries_add(&pu->e, w);
	if (err == -EMSGSIZE && !pu->mid) {
		err = pump_ship(pu);
		if (!err)
			err = pump_begin(pu, chained);
		if (!err)
			err = wire_entries_add(&pu->e, w);
	}
	return err;
}

static int pump_one(void *arg, const struct journal_change *c)
{
	struct pump *pu = arg;
	bool chained = pu->s->peer->chain && c->chain.chained;
	struct wire_entry w;
	int err;

	if (c->ref.seq > pu->max)
		return 1;         /* not signed yet */
	/* A peer that checks signatures refuses a third node's entries
	 * without them (chaincheck.c): it gets those from their origin. */
	if (pu->s->peer->chain && !c->chain.chained && pu->verifies &&
	    !pu->own) {
		pu->skip = true;
		return 1;
	}
	wire_entry_from_change(c, &w);
	err = pump_add(pu, &w, chained);
	if (err)
		return err;
	pu->in_frame++;
	pu->last = c->ref.seq;
	pu->mid = chained && !c->chain.seg_end;
	pump_note_push(pu, c);
	if (!pu->mid &&
	    conn_queued(pu->s->conn) + pu->b.len > PEER_PUMP_LOW) {
		pu->full = true;
		return 1;         /* stop the walk; the rest goes next time */
	}
	return 0;
}

/* Ships what is whole; a frame ending inside a segment (none should:
 * every origin's held range ends where it was signed) is dropped. */
static int pump_settle(struct pump *pu)
{
	if (!pu->mid)
		return pump_ship(pu);
	log_warn("replicate", "entries of %s after seq %llu have no "
		 "signature here; not sent", pu->origin,
		 (unsigned long long)pu->last);
	wire_buf_reset(&pu->b);
	pu->in_frame = 0;
	pu->mid = false;
	pu->skip = true;
	return 0;
}

/* Sends ORIGIN's entries up to MAX_SEQ that the peer lacks and may get
 * from us; sets full when the queue filled (or the peer needs the state
 * first) before the end. */
static int pump_range(struct pump *pu, const char *origin, uint64_t max_seq)
{
	uint64_t from = held_sent(pu->s->peer, origin);
	int err;

	if (max_seq <= from)
		return 0;
	/* Its own changes reached us through a third node before it sent
	 * them itself: it has them. */
	if (strcmp(origin, pu->s->peer->own_origin) == 0)
		return 0;
	/* Nothing of ours leaves the node before it is on stable storage:
	 * a power cut must never make us issue a seq a peer holds again. */
	if (strcmp(origin, journal_origin(pu->s->r->journal)) == 0 &&
	    journal_durable_seq(pu->s->r->journal) < max_seq) {
		unsigned pending = journal_pending(pu->s->r->journal);

		err = journal_sync(pu->s->r->journal);
		if (err)
			return err;
		/* The sync committed the batch the agent would have: what
		 * it held must still be relayed and applied. */
		if (pending)
			pu->s->r->kicked = true;
	}
	pu->origin = origin;
	pu->own = strcmp(origin, journal_origin(pu->s->r->journal)) == 0;
	/* Our changes leave once signed (chaincheck.c: chain_tick). */
	if (pu->own && journal_signed_seq(pu->s->r->journal) < max_seq)
		max_seq = journal_signed_seq(pu->s->r->journal);
	if (max_seq <= from)
		return 0;
	pu->max = max_seq;
	pu->skip = false;
	while (!pu->full && !pu->skip && from < max_seq) {
		uint64_t before = from;

		err = journal_entries_since(pu->s->r->journal, origin, from,
					    1000, pump_one, pu);
		if (err == KR_ECOMPACTED &&
		    journal_epoch_acked(pu->s->r->journal, pu->s->peer->id,
					origin)) {
			/* An old epoch it holds whole, and may have retired
			 * (compact.c): nothing to send, no state either. */
			held_sent_raise(pu->s->peer, origin, max_seq);
			return 0;
		}
		if (err == KR_ECOMPACTED) {
			/* The range is gone here: the peer gets the state,
			 * after what this walk has queued (full stops it);
			 * when none is coming, the other origins go on. */
			pu->full = state_want(pu->s, origin, from);
			return 0;
		}
		if (err < 0)
			return err;
		/* Inside a segment: read on, the frame goes at its end. */
		if (pu->mid && pu->last > from && pu->last < max_seq) {
			from = pu->last;
			continue;
		}
		err = pump_settle(pu);
		if (err)
			return err;
		from = held_sent(pu->s->peer, origin);
		if (from == before)
			break;    /* nothing more to read: never spin */
	}
	return 0;
}

static int pump_origin(void *arg, const char *origin, uint64_t max_seq,
		       uint64_t gen)
{
	struct pump *pu = arg;
	int err = pump_range(pu, origin, max_seq);

	if (err)
		return err;
	if (pu->full)
		return 1;         /* stop: this origin and the rest next time */
	pu->done_gen = gen;
	return 0;
}

bool sync_pump(struct session *s)
{
	struct pump pu = { .s = s, .now_wall = loop_wall_ns() };
	uint64_t gen;
	int err;

	pu.verifies = keyring_verifies(s->r->keyring);

	if (s->dead || s->state != SESSION_OPEN || s->peer->vector_wait)
		return false;
	if (conn_queued(s->conn) > PEER_PUMP_LOW)
		return true;
	if ((s->state_tx || s->state_wanted) && state_pump(s))
		return true;      /* no entries while the state goes out */
	/* Taken first: what is touched during the walk comes next time. */
	gen = journal_vector_gen(s->r->journal);
	err = journal_vector_since(s->r->journal, s->pumped_gen, pump_origin,
				   &pu);
	if (err > 0)
		err = 0;          /* stopped by a full queue */
	if (!err)
		err = pump_ship(&pu);
	if (!err && !pu.full)
		s->pumped_gen = gen;
	else if (pu.done_gen > s->pumped_gen)
		s->pumped_gen = pu.done_gen;
	if (!err && s->state_wanted) {
		pu.full = state_pump(s);
		s->r->kicked |= !pu.full;   /* the entries after it */
	}
	for (unsigned i = 0; i < pu.n_push; i++) {    /* after an error */
		free(pu.push[i].volume);
		free(pu.push[i].path);
	}
	wire_buf_release(&pu.b);
	if (err && err != -ENOBUFS)
		log_warn("replicate", "sending entries to %s: %s", s->peer->id,
			 kr_strerror(err));
	return pu.full;
}

/* Origins whose content bytes behind are measured per count; the rest
 * are estimated at the measured ones' bytes per entry.  A peer behind on
 * many origins was once 90,000 queries a second. */
#define LAG_MEASURED_MAX 64

struct lag {
	struct peer *p;
	uint64_t entries;
	/* the last origins found behind (the latest touched): a ring */
	struct {
		char origin[JOURNAL_ORIGIN_MAX];
		uint64_t have, max;
	} last[LAG_MEASURED_MAX];
	unsigned n_last;
};

/* What P is known to hold of ORIGIN: what it said it holds (nothing of
 * an origin it has not named: it names every origin it holds within a
 * second of getting it); a peer too old to say (no ACK), or one naming
 * more origins than we keep of its ACKs, what it was sent. */
static uint64_t lag_have(const struct peer *p, const char *origin)
{
	const uint64_t *acked = strmap_get(&p->acked, origin);

	if (!p->state || (!acked && p->acked.count >= PEER_ACKED_MAX))
		return held_sent(p, origin);
	return acked ? *acked : 0;
}

static int lag_origin(void *arg, const char *origin, uint64_t max_seq,
		      uint64_t gen)
{
	struct lag *l = arg;
	uint64_t have = lag_have(l->p, origin);
	unsigned i;

	(void)gen;
	if (max_seq <= have || strcmp(origin, l->p->own_origin) == 0)
		return 0;
	l->entries += max_seq - have;
	i = l->n_last++ % LAG_MEASURED_MAX;
	snprintf(l->last[i].origin, sizeof(l->last[i].origin), "%s", origin);
	l->last[i].have = have;
	l->last[i].max = max_seq;
	return 0;
}

/* Content bytes behind: the last origins found measured, the rest
 * estimated from them. */
static uint64_t lag_bytes(struct journal *j, const struct lag *l)
{
	unsigned n = l->n_last < LAG_MEASURED_MAX ? l->n_last :
		     LAG_MEASURED_MAX;
	uint64_t bytes = 0, entries = 0, b;

	for (unsigned i = 0; i < n; i++) {
		if (journal_range_bytes(j, l->last[i].origin, l->last[i].have,
					&b) != 0)
			continue;
		bytes += b;
		entries += l->last[i].max - l->last[i].have;
	}
	if (entries == 0 || entries >= l->entries)
		return bytes;
	return bytes + (uint64_t)((double)(l->entries - entries) *
				  ((double)bytes / (double)entries));
}

/* What P holds beyond what we hold. */
static uint64_t lag_behind(struct journal *j, const struct peer *p)
{
	uint64_t behind = 0;

	for (size_t i = 0; i < p->sent.cap; i++) {
		const char *origin = p->sent.slots[i].key;
		uint64_t theirs, ours;

		if (!origin)
			continue;
		theirs = *(uint64_t *)p->sent.slots[i].value;
		ours = journal_have(j, origin);
		if (theirs > ours)
			behind += theirs - ours;
	}
	return behind;
}

void sync_lag(struct replicate *r, struct peer *p, uint64_t *entries,
	      uint64_t *bytes, uint64_t *behind)
{
	uint64_t gen = journal_vector_gen(r->journal);
	struct lag *l;

	/* Nothing moved on either side: the figures stand. */
	if (p->lag.valid && p->lag.gen == gen && p->lag.maps == p->maps_changed)
		goto out;
	l = calloc(1, sizeof(*l));
	if (!l)
		goto out;         /* the last figures, for once */
	l->p = p;
	if (journal_vector_since(r->journal, 0, lag_origin, l) == 0) {
		p->lag.entries = l->entries;
		p->lag.bytes = lag_bytes(r->journal, l);
		p->lag.behind = lag_behind(r->journal, p);
		p->lag.gen = gen;
		p->lag.maps = p->maps_changed;
		p->lag.valid = true;
	}
	free(l);
out:
	*entries = p->lag.entries;
	*bytes = p->lag.bytes;
	*behind = p->lag.behind;
}

/* ---- receiving ---------------------------------------------------------- */


static int send_vector(struct session *s)
{
	struct journal_ref *refs = NULL;
	struct wire_msg m = { .type = WIRE_VECTOR };
	size_t n = 0, cap = 0;
	int err = 0;

	for (size_t i = 0; i < s->peer->sent.cap; i++)
		cap += s->peer->sent.slots[i].key != NULL;
	refs = calloc(cap + 1, sizeof(*refs));
	if (!refs)
		return -ENOMEM;
	for (size_t i = 0; i < s->peer->sent.cap; i++) {
		const char *origin = s->peer->sent.slots[i].key;

		if (!origin)
			continue;
		snprintf(refs[n].origin, sizeof(refs[n].origin), "%s", origin);
		refs[n++].seq = journal_have(s->r->journal, origin);
	}
	m.vector.n = (uint32_t)n;
	m.vector.refs = refs;
	err = session_send(s, &m);
	free(refs);
	return err;
}

/* Whether W, when it is the first entry of an origin this node does not
 * know, stays within its sender's SYNC_NEW_ORIGINS. */
static bool new_origin_allowed(struct session *s, const struct wire_entry *w)
{
	struct peer *p = s->peer;
	int64_t now = loop_now_ns();

	if (w->ref.seq != 1 || journal_have(s->r->journal, w->ref.origin) > 0)
		return true;
	if (now - p->origins_since_ns >= SYNC_NEW_ORIGINS_NS) {
		p->origins_since_ns = now;
		p->origins_new = 0;
	}
	if (p->origins_new < SYNC_NEW_ORIGINS) {
		p->origins_new++;
		return true;
	}
	log_warn("replicate", "peer %s brought more than %d new origins in a "
		 "minute (now %s); disconnecting it, the rest is taken after "
		 "the minute", p->id, SYNC_NEW_ORIGINS, w->ref.origin);
	return false;
}

/* Whether S's peer sent an entry of ORIGIN that was refused: the rest
 * of that origin is not taken from it either.  Asking again (a VECTOR
 * at the hole) would only bring the same entry back, over and over. */
static bool origin_refused(const struct session *s, const char *origin)
{
	for (unsigned i = 0; i < s->n_refused; i++)
		if (strcmp(s->refused[i], origin) == 0)
			return true;
	return false;
}

static int refuse_origin(struct session *s, const struct wire_entry *w,
			 int err)
{
	s->peer->stats.entries_refused++;
	if (s->n_refused == SESSION_REFUSED_MAX)
		return -EPROTO;   /* too many to keep apart: hang up */
	snprintf(s->refused[s->n_refused++], JOURNAL_ORIGIN_MAX, "%s",
		 w->ref.origin);
	if (err == -ERANGE)
		log_warn("replicate", "refused entry %s:%llu from %s: its "
			 "Lamport value %llu is more than sync.max_lamport_jump "
			 "above ours, or its time is more than a day ahead of "
			 "our clock; the rest of %s is not taken from %s on "
			 "this connection", w->ref.origin,
			 (unsigned long long)w->ref.seq, s->peer->id,
			 (unsigned long long)w->lamport, w->ref.origin,
			 s->peer->id);
	else
		log_warn("replicate", "refused entry %s:%llu from %s: a "
			 "hostile or malformed path '%s/%s', a broken chain, "
			 "or a Lamport value past 2^62; the rest of %s is not "
			 "taken from %s on this connection", w->ref.origin,
			 (unsigned long long)w->ref.seq, s->peer->id,
			 w->volume, w->path, w->ref.origin, s->peer->id);
	return 0;
}

/* Adds W (as TAKE says); counts it into *ADDED, a hole into *GAP. */
static int on_entry(struct session *s, const struct wire_entry *w,
		    enum chain_take take, unsigned *added, bool *gap)
{
	struct peer *p = s->peer;
	struct journal_change c;
	int err;

	if (origin_refused(s, w->ref.origin)) {
		p->stats.entries_refused++;
		return 0;
	}
	if (!new_origin_allowed(s, w))
		return -EDQUOT;
	wire_entry_to_change(w, &c);
	if (take == CHAIN_TAKE_UNSIGNED)
		c.chain.seg_end = false;
	err = journal_add_remote(s->r->journal, &c);
	if (err == 0 && s->r->precopies)
		precopy_on_entry(s->r, w);
	if (err == 0)
		(*added)++;
	else if (err == -EAGAIN)
		*gap = true;
	else if (err == KR_EHOSTILE || err == -ERANGE)
		return refuse_origin(s, w, err);
	else if (err != -EALREADY) {
		log_warn("replicate", "cannot add entry %s:%llu from %s "
			 "(%s/%s): %s", w->ref.origin,
			 (unsigned long long)w->ref.seq, p->id,
			 w->volume, w->path, kr_strerror(err));
		return err;
	}
	/* It holds this entry: never send it back. */
	held_sent_raise(p, w->ref.origin, w->ref.seq);
	return 0;
}

static int on_entries(struct session *s, const struct wire_entry_list *l,
		      bool chained)
{
	uint8_t *take = chained ? calloc(l->n + 1, sizeof(*take)) : NULL;
	unsigned added = 0;
	bool gap = false;
	int refused = 0, err = 0;

	if (chained && !take)
		return -ENOMEM;
	if (chained)
		refused = chain_check_entries(s, l, take, &gap);
	if (refused && refused != KR_EHOSTILE)
		err = refused;
	for (uint32_t i = 0; i < l->n && !err; i++)
		if (chained ? take[i] != CHAIN_SKIP :
			      chain_plain_allowed(s, &l->v[i]))
			err = on_entry(s, &l->v[i], chained ? take[i] :
				       CHAIN_TAKE, &added, &gap);
	free(take);
	s->peer->stats.entries_in += added;
	if (added) {
		s->r->kicked = true;
		outcome_note_arrival(s->r, journal_last_change_id(s->r->journal));
	}
	if (err || refused)
		return err ? err : refused;
	/* Entries past a hole: tell the peer what we really hold, and it
	 * starts again from there. */
	return gap ? send_vector(s) : 0;
}

/* Requests are queued and served as the egress limit and the peer's
 * queue allow; a peer asking for more than it could ever be sent is
 * misbehaving. */
static int on_get_chunks(struct session *s, const struct wire_get_chunks *g)
{
	if (s->asked_n + g->n > PEER_ASKED_MAX) {
		log_warn("replicate", "peer %s asked for %zu chunks without "
			 "reading the answers; disconnecting", s->peer->id,
			 s->asked_n + g->n);
		return -ENOBUFS;
	}
	if (s->asked_head + s->asked_n + g->n > s->asked_cap) {
		size_t cap = s->asked_n + g->n + 1024;
		uint8_t (*p)[CONTENT_HASH_LEN] = malloc(cap * CONTENT_HASH_LEN);

		if (!p)
			return -ENOMEM;
		if (s->asked_n)
			memcpy(p, s->asked[s->asked_head],
			       s->asked_n * CONTENT_HASH_LEN);
		free(s->asked);
		s->asked = p;
		s->asked_cap = cap;
		s->asked_head = 0;
	}
	memcpy(s->asked[s->asked_head + s->asked_n], g->hashes,
	       (size_t)g->n * CONTENT_HASH_LEN);
	s->asked_n += g->n;
	return serve_queue(s->r, s);
}

int sync_on_frame(struct session *s, const struct wire_msg *m)
{
	struct wire_msg pong = { .type = WIRE_PONG };
	int err;

	switch (m->type) {
	case WIRE_ENTRIES:
	case WIRE_CHAIN_ENTRIES:
		return on_entries(s, &m->entries,
				  m->type == WIRE_CHAIN_ENTRIES);
	case WIRE_KEY:
		chain_on_key(s, &m->key);
		return 0;
	case WIRE_VECTOR:
		s->peer->vector_wait = false;
		held_sent_reset(s, &m->vector);
		state_on_vector(s, &m->vector);
		s->r->kicked = true;
		sync_pump(s);
		return 0;
	case WIRE_STATE_BEGIN:
	case WIRE_STATE:
	case WIRE_CHAIN_STATE:
	case WIRE_SEALS:
	case WIRE_STATE_END:
	case WIRE_ACK:
		return state_on_frame(s, m);
	case WIRE_GET_CHUNKLIST:
		return serve_chunklist(s->r, s, &m->get_chunklist);
	case WIRE_CHUNKLIST:
		fetch_on_chunklist(s->r, s->peer, &m->chunklist);
		return 0;
	case WIRE_GET_CHUNKS:
		return on_get_chunks(s, &m->get_chunks);
	case WIRE_CHUNK:
		fetch_on_chunk(s->r, s->peer, &m->chunk);
		return 0;
	case WIRE_NOT_HERE:
		fetch_on_not_here(s->r, s->peer, m->not_here);
		return 0;
	case WIRE_GET_DELTA:
		return serve_ask_delta(s->r, s, &m->get_delta);
	case WIRE_DELTA:
		fetch_on_delta(s->r, s->peer, &m->delta);
		return 0;
	case WIRE_PING:
		pong.token = m->token;
		err = session_send(s, &pong);
		return err ? err : clock_answer(s, m->token);
	case WIRE_PONG:
		return 0;
	case WIRE_CLOCK:
		clock_on_sample(s, &m->clock);
		return 0;
	case WIRE_ERROR:
		log_error("replicate", "peer %s: %s", s->peer->id,
			  m->error.text);
		return -ECONNABORTED;
	case WIRE_ASK_KEPT:
		return ask_on_question(s, &m->ask_kept);
	case WIRE_KEPT:
		ask_on_answer(s, &m->kept);
		return 0;
	case WIRE_CHANGING:
		/* A transfer under way has its temp file already. */
		if (!apply_held(s->r) &&
		    !transfer_busy(s->r, m->changing.volume, m->changing.path))
			precopy_on_changing(s->r, s->peer, &m->changing);
		return 0;
	default:
		return -EPROTO;
	}
}
