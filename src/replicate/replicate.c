/*
 * The replicator's public face (replicate.h): making and freeing it, its
 * peers, the tick that drives every part, and what the agent reads.
 *
 * replicate_tick runs on the loop thread after each turn's events, in
 * this order: due dials and heartbeats (session.c), the gate's and the
 * chain's timers, offers of small files, input left over from a read
 * budget, then entries pumped to peers after new commits (sync.c),
 * chunks served once the egress bucket refills (serve.c), jobs applied
 * (apply.c), the scrubber, questions to peers (ask.c), and last the
 * sessions closed during the turn are freed.  replicate_next_deadline
 * is the earliest of what each part waits for.
 *
 * The files call only downwards, in this order (a line calls only lines
 * below it; a public replicate_* function may live in the file of its
 * concern):
 *
 *   replicate.c                          wiring: the tick, session_ops
 *   sync.c                               entries to and from peers
 *   state.c  ask.c  scrub.c              exchanges, questions, scrubbing
 *   apply.c                              jobs
 *   transfer.c reuse.c fetch.c commit.c  transfers (transfer.h)
 *   precopy.c  keep.c                    copies ahead, the version store
 *   serve.c  chaincheck.c  clock.c       serving, signed entries, clocks
 *   session.c                            connections
 *   gate.c  keyring.c  outcome.c  disk.c  plan.c  push.c  held.c
 *   conn.c  wire.c  writer.c  syncer.c
 *   transport.c  tls.c  delta.c
 *
 * Sessions tell what happens to them through struct session_ops (this
 * file fills it), so that they never call the layers above.
 */
#include "replicate_int.h"
#include "ask.h"
#include "chaincheck.h"
#include "clock.h"
#include "gate.h"
#include "scrub.h"
#include "serve.h"
#include "session.h"
#include "state.h"
#include "sync.h"
#include "transport.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static void strmap_free_values(struct strmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key)
			free(m->slots[i].value);
	strmap_clear(m);
}

static void peer_set_address(struct peer *p,
			     const struct replicate_peer_config *c)
{
	snprintf(p->host, sizeof(p->host), "%s", c->host);
	p->port = c->port;
	snprintf(p->stats.address, sizeof(p->stats.address), "%s:%u",
		 p->host, p->port);
}

static struct peer *peer_new(struct replicate *r,
			     const struct replicate_peer_config *c)
{
	struct peer *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	snprintf(p->id, sizeof(p->id), "%s", c->id);
	snprintf(p->stats.id, sizeof(p->stats.id), "%s", p->id);
	p->dial = strcmp(r->node_id, p->id) < 0;
	/* The higher id dials once too, at once: a node that starts (or
	 * joins) is otherwise found only at its peer's next retry, which
	 * backs off to 10 s while it was down. */
	p->knock = !p->dial;
	peer_set_address(p, c);
	return p;
}

static void peer_free(struct peer *p)
{
	strmap_free_values(&p->sent);
	strmap_free_values(&p->acked);
	free(p);
}

/* Closes every session bound to P (the open one, and replaced ones not
 * reaped yet) and forgets P in transfers, before P is freed. */
static void peer_remove(struct replicate *r, struct peer *p)
{
	for (struct session *s = r->sessions; s; s = s->next) {
		if (s->peer != p)
			continue;
		session_close(s, "removed from the cluster");
		s->peer = NULL;
	}
	transfer_peer_removed(r, p);
	log_info("replicate", "peer %s removed from the cluster", p->id);
	peer_free(p);
}

static bool peer_listed(const struct peer *p,
			const struct replicate_peer_config *cfg, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(cfg[i].id, p->id) == 0)
			return true;
	return false;
}

/*
 * Two phases so that a failed allocation changes nothing: first every
 * peer of the new list is found or made, then old peers missing from it
 * are removed and the list is swapped in.  Slots are renumbered, so
 * per-slot transfer state ("peer i refused") is reset.
 */
int replicate_set_peers(struct replicate *r,
			const struct replicate_peer_config *cfg, size_t n)
{
	struct peer **next = calloc(n ? n : 1, sizeof(*next));
	bool *made = calloc(n ? n : 1, sizeof(*made));
	int err = next && made ? 0 : -ENOMEM;

	for (size_t i = 0; !err && i < n; i++) {
		next[i] = replicate_peer_by_id(r, cfg[i].id);
		if (!next[i]) {
			next[i] = peer_new(r, &cfg[i]);
			made[i] = true;
			err = next[i] ? 0 : -ENOMEM;
		}
	}
	if (err) {
		for (size_t i = 0; next && made && i < n; i++)
			if (made[i] && next[i])
				peer_free(next[i]);
		goto out;
	}
	for (size_t i = 0; i < r->n_peers; i++)
		if (!peer_listed(r->peers[i], cfg, n))
			peer_remove(r, r->peers[i]);
	for (size_t i = 0; i < n; i++) {
		struct peer *p = next[i];

		p->slot = i;
		if (made[i] && r->listen_fd >= 0) {
			log_info("replicate", "peer %s added at %s:%u", p->id,
				 cfg[i].host, cfg[i].port);
		} else if (!made[i] && (strcmp(p->host, cfg[i].host) ||
					p->port != cfg[i].port)) {
			log_info("replicate", "peer %s moves to %s:%u", p->id,
				 cfg[i].host, cfg[i].port);
			peer_set_address(p, &cfg[i]);
			if (p->session)
				session_close(p->session, "address changed");
			p->backoff_ms = 0;
			p->next_dial_ns = 0;
		}
	}
	free(r->peers);
	r->peers = next;
	r->n_peers = n;
	next = NULL;
	transfer_peers_renumbered(r);
	r->kicked = true;
out:
	free(next);
	free(made);
	return err;
}

/* ---- what sessions tell (session.h) ----------------------------------- */

static uint32_t on_hello_flags(struct replicate *r)
{
	return apply_held(r) ? WIRE_HELLO_REJOINING : 0;
}

static void on_opened(struct session *s, const struct wire_hello *h)
{
	/* What it holds may be what failing jobs lacked. */
	if (journal_jobs_retry(s->r->journal) == 0)
		apply_kick(s->r);
	if (s->r->tls_server)
		chain_on_connected(s, transport_ssl(conn_transport(s->conn)));
	sync_on_hello(s, h);
}

static int on_writable(struct session *s, bool *more)
{
	int err;

	*more = sync_pump(s);
	err = serve_queue(s->r, s);
	*more |= serve_pending(s) && !s->r->serve_at;
	return err;
}

static void on_heartbeat(struct session *s, int64_t now, bool pinged)
{
	serve_idle(s, now);
	if (pinged)
		clock_on_ping(s, now);
	state_tick(s, now);
}

static void on_closing(struct session *s, struct peer *p)
{
	state_session_gone(s);
	if (p)
		transfer_peer_gone(s->r, p);
}

static const struct session_ops replicate_session_ops = {
	.hello_flags = on_hello_flags,
	.welcome = state_send_vector,
	.opened = on_opened,
	.frame = sync_on_frame,
	.writable = on_writable,
	.heartbeat = on_heartbeat,
	.closing = on_closing,
	.freeing = serve_release,
};

int replicate_new(struct journal *j, struct loop *loop,
		  const struct replicate_options *opt, struct replicate **out)
{
	struct replicate *r = calloc(1, sizeof(*r));
	int err;

	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->journal = j;
	r->loop = loop;
	r->session_ops = &replicate_session_ops;
	r->listen_fd = -1;
	r->rootfd = -1;
	r->precopy_efd = -1;
	r->xfer.max = transfer_max();
	r->tls_server = opt->tls_server;
	r->tls_client = opt->tls_client;
	r->keyring = opt->keyring;
	r->diverged = opt->diverged;
	r->diverged_arg = opt->diverged_arg;
	r->max_clock_skew_ns = opt->max_clock_skew_ns;
	r->versions = opt->versions;
	r->kicked = true;
	snprintf(r->node_id, sizeof(r->node_id), "%s", opt->node_id);
	snprintf(r->cluster_id, sizeof(r->cluster_id), "%s", opt->cluster_id);
	replicate_set_bandwidth(r, opt->egress_bits_per_sec,
				opt->ingress_bits_per_sec);
	/* What the journal held at start-up arrived at an unknown time
	 * (ns 0): its jobs are not sampled for apply latency. */
	outcome_init(r, journal_last_change_id(j));
	r->root = strdup(opt->root);
	err = r->root ? replicate_set_peers(r, opt->peers, opt->n_peers) :
			-ENOMEM;
	if (!err)
		err = scrub_new(&r->scrub);
	if (!err)
		err = chain_setup(r);
	if (!err)
		err = session_listen(r, opt->listen_address, opt->port);
	if (err) {
		replicate_free(r);
		return err;
	}
	*out = r;
	return 0;
}

void replicate_free(struct replicate *r)
{
	if (!r)
		return;
	for (struct session *s = r->sessions; s; s = s->next)
		session_close(s, "shutting down");
	sessions_reap(r);
	ask_free(r);
	transfer_stop(r);
	transfer_free_all(r);
	serve_offers_expire(r, INT64_MAX);
	scrub_free(r->scrub);
	for (size_t i = 0; i < r->n_peers; i++)
		peer_free(r->peers[i]);
	free(r->peers);
	if (r->listen_fd >= 0) {
		loop_del_fd(r->loop, r->listen_fd);
		close(r->listen_fd);
	}
	free(r->root);
	free(r);
}

void replicate_tick(struct replicate *r)
{
	int64_t now = loop_now_ns();

	session_tick(r, now);
	gate_tick(r, now);
	chain_tick(r);
	if (r->n_offers && now >= r->offers_sweep_ns) {
		r->offers_sweep_ns = now + 1000000000;
		serve_offers_expire(r, now);
	}
	if (r->read_more) {
		r->read_more = false;
		session_read_more(r);
	}
	if (r->kicked) {
		r->kicked = false;
		for (struct session *s = r->sessions; s; s = s->next) {
			if (s->dead || s->state != SESSION_OPEN)
				continue;
			sync_pump(s);
			session_flush(s);
		}
		apply_kick(r);
	}
	if (r->serve_at && now >= r->serve_at) {
		r->serve_at = 0;
		for (struct session *s = r->sessions; s; s = s->next) {
			if (s->dead || s->state != SESSION_OPEN ||
			    !serve_pending(s))
				continue;
			if (serve_queue(r, s) != 0)
				session_close(s, "serving chunks failed");
			else
				session_flush(s);
		}
	}
	apply_tick(r);
	scrub_tick(r, now);
	ask_tick(r, now);
	sessions_reap(r);
}

void replicate_set_bandwidth(struct replicate *r, uint64_t egress_bps,
			     uint64_t ingress_bps)
{
	/* One second of traffic, and at least a few chunks, as burst. */
	bucket_init(&r->egress, egress_bps, egress_bps / 8 + (4u << 20));
	bucket_init(&r->ingress, ingress_bps, ingress_bps / 8 + (4u << 20));
}

void replicate_kick(struct replicate *r)
{
	r->kicked = true;
}

void replicate_changing(struct replicate *r, const char *volume,
			const char *path, const uint8_t base[CONTENT_HASH_LEN],
			uint64_t size)
{
	struct wire_msg m = { .type = WIRE_CHANGING };

	m.changing = (struct wire_changing){ volume, path, { 0 }, size };
	memcpy(m.changing.base, base, CONTENT_HASH_LEN);
	/* Out at once: the caller is about to hash for a while. */
	for (struct session *s = r->sessions; s; s = s->next)
		if (s->state == SESSION_OPEN && !s->dead && s->peer &&
		    s->peer->changing && session_send(s, &m) == 0)
			session_send_now(s);
}

int64_t replicate_next_deadline(struct replicate *r)
{
	int64_t d = loop_now_ns() + 1000000000;

	if (r->kicked || r->read_more)
		return 0;
	if (apply_deadline(r) < d)
		d = apply_deadline(r);
	for (size_t i = 0; i < r->n_peers; i++)
		if ((r->peers[i]->dial || r->peers[i]->knock) &&
		    !r->peers[i]->session && r->peers[i]->next_dial_ns < d)
			d = r->peers[i]->next_dial_ns;
	if (r->serve_at && r->serve_at < d)
		d = r->serve_at;
	if (commit_deadline(r) && commit_deadline(r) < d)
		d = commit_deadline(r);
	if (journal_sign_deadline(r->journal) &&
	    journal_sign_deadline(r->journal) < d)
		d = journal_sign_deadline(r->journal);
	if (r->gate.resume_ns && r->gate.resume_ns < d)
		d = r->gate.resume_ns;
	if (!apply_held(r) && scrub_deadline(r) < d)
		d = scrub_deadline(r);
	if (ask_deadline(r) < d)
		d = ask_deadline(r);
	return d;
}

size_t replicate_peers(struct replicate *r, struct replicate_peer_status *out,
		       size_t max)
{
	for (size_t i = 0; i < r->n_peers && i < max; i++) {
		struct peer *p = r->peers[i];

		sync_lag(r, p, &p->stats.lag_entries, &p->stats.lag_bytes,
			 &p->stats.behind_entries);
		out[i] = p->stats;
		/* Up but silent (stopped, hung, cut off): not connected in
		 * any sense a user cares about.  Nor before its vector came
		 * (VECTOR_NEXT): what it holds, and so how far behind it this
		 * node is, is not known yet; a rejoining node judged "caught
		 * up" from that and adopted its disk against nothing. */
		if (p->session && (p->vector_wait ||
				   loop_now_ns() - p->session->last_rx_ns >
				   PEER_UNRESPONSIVE_NS))
			out[i].connected = false;
	}
	return r->n_peers;
}

uint64_t replicate_backlog(struct replicate *r, uint64_t *stuck)
{
	uint64_t waiting;

	/* Counted when asked (once a second), not on every loop turn: a
	 * count over thousands of jobs is not free. */
	if (journal_job_counts(r->journal, NULL, &waiting, stuck) != 0)
		waiting = *stuck = 0;
	return waiting;
}

uint64_t replicate_applied(struct replicate *r)
{
	return r->outcome.applied;
}

const struct hist *replicate_apply_latency(struct replicate *r)
{
	return &r->outcome.latency_us;
}

void replicate_hold(struct replicate *r, bool hold)
{
	if (apply_held(r) && !hold) {
		apply_kick(r);
		/* Peers learn from new HELLOs that this node holds history
		 * now, and may adopt their own disks against it. */
		apply_hold(r, false);
		replicate_resync(r);
	}
	apply_hold(r, hold);
}

void replicate_resync(struct replicate *r)
{
	for (struct session *s = r->sessions; s; s = s->next)
		session_close(s, "resync requested");
	for (size_t i = 0; i < r->n_peers; i++) {
		r->peers[i]->backoff_ms = 0;
		r->peers[i]->next_dial_ns = 0;
	}
	r->kicked = true;
}
