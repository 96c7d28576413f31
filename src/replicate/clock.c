/*
 * Peer clocks: how far each peer's wall clock is from ours.
 *
 * Conflicts under the "timestamp" strategy are decided by wall time, so
 * a node whose clock is ahead wins every concurrent write while it is;
 * nothing said so.  Each PING this node sends carries its monotonic send
 * time as the token, and the wall time at sending is kept.  A peer whose
 * HELLO has feature bit CLOCK answers a PING with PONG and then CLOCK
 * (token, its wall time when answering); the offset is its wall time
 * minus ours at the middle of the round trip:
 *
 *   offset = wall_peer - (wall_sent + rtt / 2)
 *
 * exact to within half the round trip.  Samples with a round trip over
 * CLOCK_RTT_MAX (a busy loop on either side) are dropped.  The offset is
 * shown per peer (/v1/peers, metrics, dashboard); one beyond
 * sync.max_clock_skew is warned about once, and said again when it is
 * back within half of it.
 *
 * Correction.  Warning alone left a node whose clock ran a year ahead
 * winning every concurrent write for a year.  When a majority of the
 * whole cluster (this node counting as offset 0) agrees, within
 * max_clock_skew, on an offset beyond max_clock_skew, it is this node's
 * clock that is wrong: its changes are stamped with the majority's time
 * (journal_set_wall_offset) until the offsets agree with it again.  The
 * stamp is made once, at the origin, and signed, so every node orders
 * conflicts alike.  Two nodes that disagree have no majority and are
 * only warned about: nothing says which one is right.
 */
#include "replicate_int.h"
#include "clock.h"
#include "session.h"

#include "log.h"
#include "loop.h"

#include <stdlib.h>
#include <time.h>

#define CLOCK_RTT_MAX (1000LL * 1000000)

void clock_on_ping(struct session *s, int64_t now)
{
	s->last_ping_ns = now;
	s->last_ping_wall_ns = loop_wall_ns();
}

int clock_answer(struct session *s, uint64_t token)
{
	struct wire_msg m = { .type = WIRE_CLOCK };

	if (!s->peer || !s->peer->clock)
		return 0;
	m.clock.token = token;
	m.clock.wall_ns = loop_wall_ns();
	return session_send(s, &m);
}

/* Warns once when P's clock goes past the bound, and once when back. */
static void clock_judge(struct replicate *r, struct peer *p)
{
	int64_t off = p->stats.clock_offset_ns;
	int64_t mag = off < 0 ? -off : off;

	if (!r->max_clock_skew_ns)
		return;
	if (!p->stats.clock_skewed && mag > r->max_clock_skew_ns) {
		p->stats.clock_skewed = true;
		log_warn("replicate", "the clock of peer %s is %.1f s %s ours, "
			 "more than sync.max_clock_skew (%.0f s): under the "
			 "timestamp strategy the faster clock wins concurrent "
			 "writes; check NTP on both", p->id, (double)mag / 1e9,
			 off > 0 ? "ahead of" : "behind",
			 (double)r->max_clock_skew_ns / 1e9);
	} else if (p->stats.clock_skewed && mag < r->max_clock_skew_ns / 2) {
		p->stats.clock_skewed = false;
		log_info("replicate", "the clock of peer %s is within %.1f s of "
			 "ours again", p->id, (double)mag / 1e9);
	}
}

/* How many of the votes (ours, 0, and each measured peer's offset) lie
 * within the bound of OFF; their sum into *SUM. */
static size_t clock_agree(struct replicate *r, int64_t off, int64_t *sum)
{
	size_t n = off >= -r->max_clock_skew_ns &&
		   off <= r->max_clock_skew_ns;

	*sum = 0;
	for (size_t i = 0; i < r->n_peers; i++) {
		int64_t v = r->peers[i]->stats.clock_offset_ns;

		if (!r->peers[i]->stats.clock_known ||
		    v - off > r->max_clock_skew_ns ||
		    off - v > r->max_clock_skew_ns)
			continue;
		n++;
		*sum += v;
	}
	return n;
}

/* The offset a majority of the cluster agrees on, when it is not ours. */
static int64_t clock_consensus(struct replicate *r)
{
	size_t cluster = r->n_peers + 1;

	for (size_t i = 0; r->max_clock_skew_ns && i < r->n_peers; i++) {
		int64_t off = r->peers[i]->stats.clock_offset_ns, sum;
		size_t n;

		if (!r->peers[i]->stats.clock_known ||
		    (off >= -r->max_clock_skew_ns && off <= r->max_clock_skew_ns))
			continue;
		n = clock_agree(r, off, &sum);
		if (2 * n > cluster)
			return sum / (int64_t)n;
	}
	return 0;
}

static void clock_correct(struct replicate *r)
{
	int64_t c = clock_consensus(r);

	if (c && !r->wall_correction_ns)
		log_warn("replicate", "our clock is %.1f s %s most of the "
			 "cluster: changes made here are stamped with the "
			 "cluster's time until it agrees again; fix NTP here",
			 (double)llabs(c) / 1e9, c < 0 ? "ahead of" : "behind");
	else if (!c && r->wall_correction_ns)
		log_info("replicate", "our clock agrees with the cluster again; "
			 "changes are stamped with it");
	r->wall_correction_ns = c;
	journal_set_wall_offset(r->journal, c);
}

void clock_on_sample(struct session *s, const struct wire_clock *c)
{
	struct peer *p = s->peer;
	int64_t rtt = loop_now_ns() - s->last_ping_ns;

	if (c->token != (uint64_t)s->last_ping_ns || rtt < 0 ||
	    rtt > CLOCK_RTT_MAX)
		return;
	p->stats.clock_offset_ns = c->wall_ns -
				   (s->last_ping_wall_ns + rtt / 2);
	p->stats.clock_known = true;
	clock_judge(s->r, p);
	clock_correct(s->r);
}
