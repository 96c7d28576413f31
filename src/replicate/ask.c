/*
 * Asking peers which versions of a file they keep.
 *
 * A version this node does not hold may still be on a peer: in its live
 * file, or in the version store of every node that applied the change
 * that replaced it.  Only the peers can say, so a user listing a file's
 * versions (GET /v1/versions, kraken-journal versions) has the agent ask
 * them: one ASK_KEPT (wire.h) to every connected peer whose HELLO says
 * it answers, naming the file and up to REPLICATE_ASK_MAX content
 * hashes; each answers KEPT with one flag per hash.
 *
 * States of one peer in one question:
 *
 *   asked --KEPT--> answered
 *     |--session lost, or ASK_KEPT_WAIT_NS passed--> silent
 *   (not connected: offline; connected, too old to answer: old)
 *
 * A question ends once no peer is left in "asked"; its callback then runs
 * once, on the loop thread, with every configured peer's status.  A peer
 * is never waited on longer than ASK_KEPT_WAIT_NS, so neither is the
 * caller.  At most ASKS_MAX questions are open at once; answers to
 * questions already ended (a token not open) are dropped.
 *
 * Answering: a hash is there when the journal's current version of the
 * file has it (what serve.c would serve from the live file) or the
 * version store keeps it whole.  An ASK_KEPT costs a bounded amount of
 * lookups (WIRE_MAX_ASK_KEPT), like any request a peer may send.
 */
#include "replicate_int.h"
#include "ask.h"
#include "session.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASKS_MAX 16
#define ASK_KEPT_WAIT_NS (2LL * 1000000000)

struct ask {
	uint64_t token;
	int64_t deadline_ns;
	uint32_t n;
	size_t n_peers;
	struct replicate_kept *peers;   /* one per configured peer, by slot */
	replicate_kept_fn done;
	void *arg;
	uint64_t cookie;
	struct ask *next;
};

struct asks {
	struct ask *open;
	unsigned n_open;
	uint64_t next_token;
};

static struct asks *asks_get(struct replicate *r)
{
	if (!r->asks)
		r->asks = calloc(1, sizeof(*r->asks));
	return r->asks;
}

static bool ask_waiting(const struct ask *a)
{
	for (size_t i = 0; i < a->n_peers; i++)
		if (a->peers[i].status == REPLICATE_KEPT_ASKED)
			return true;
	return false;
}

/* Calls back and frees the question at *LINK. */
static void ask_end(struct asks *q, struct ask **link)
{
	struct ask *a = *link;

	*link = a->next;
	q->n_open--;
	for (size_t i = 0; i < a->n_peers; i++)
		if (a->peers[i].status == REPLICATE_KEPT_ASKED)
			a->peers[i].status = REPLICATE_KEPT_SILENT;
	a->done(a->arg, a->cookie, a->peers, a->n_peers);
	free(a->peers);
	free(a);
}

static bool session_usable(const struct session *s)
{
	return s && !s->dead && s->state == SESSION_OPEN;
}

/* Sends the question to P's open session: the status P starts in. */
static enum replicate_kept_status ask_send(struct peer *p,
					   const struct wire_msg *m)
{
	struct session *s = p->session;

	if (!session_usable(s))
		return REPLICATE_KEPT_OFFLINE;
	if (!p->kept)
		return REPLICATE_KEPT_OLD;
	if (session_send(s, m) != 0)
		return REPLICATE_KEPT_SILENT;
	session_send_now(s);
	return REPLICATE_KEPT_ASKED;
}

int replicate_ask_kept(struct replicate *r, const char *volume,
		       const char *path,
		       const uint8_t (*hashes)[CONTENT_HASH_LEN], size_t n,
		       replicate_kept_fn done, void *arg, uint64_t cookie)
{
	struct asks *q = asks_get(r);
	struct wire_msg m = { .type = WIRE_ASK_KEPT };
	struct ask *a;

	if (!q)
		return -ENOMEM;
	if (n == 0 || n > REPLICATE_ASK_MAX)
		return -EINVAL;
	if (q->n_open >= ASKS_MAX)
		return -EBUSY;
	a = calloc(1, sizeof(*a));
	if (!a || !(a->peers = calloc(r->n_peers + 1, sizeof(*a->peers)))) {
		free(a);
		return -ENOMEM;
	}
	a->token = ++q->next_token;
	a->deadline_ns = loop_now_ns() + ASK_KEPT_WAIT_NS;
	a->n = (uint32_t)n;
	a->n_peers = r->n_peers;
	a->done = done;
	a->arg = arg;
	a->cookie = cookie;
	m.ask_kept = (struct wire_ask_kept){ a->token, volume, path, a->n,
					     hashes };
	for (size_t i = 0; i < r->n_peers; i++) {
		snprintf(a->peers[i].id, sizeof(a->peers[i].id), "%s",
			 r->peers[i]->id);
		a->peers[i].status = ask_send(r->peers[i], &m);
	}
	a->next = q->open;
	q->open = a;
	q->n_open++;
	if (!ask_waiting(a))
		ask_end(q, &q->open);
	return 0;
}

int ask_on_question(struct session *s, const struct wire_ask_kept *a)
{
	struct replicate *r = s->r;
	struct journal_state cur;
	bool found = journal_lookup(r->journal, a->volume, a->path, &cur) == 0;
	bool live = found && cur.has_hash;
	uint8_t here[WIRE_MAX_ASK_KEPT];
	struct wire_msg m = { .type = WIRE_KEPT };

	for (uint32_t i = 0; i < a->n; i++)
		here[i] = (live && memcmp(cur.hash, a->hashes[i],
					  CONTENT_HASH_LEN) == 0) ||
			  journal_versions_has(r->versions, a->hashes[i]);
	if (found)
		journal_state_release(&cur);
	m.kept = (struct wire_kept){ a->token, a->n, here };
	return session_send(s, &m);
}

void ask_on_answer(struct session *s, const struct wire_kept *k)
{
	struct asks *q = s->r->asks;
	struct ask **link = q ? &q->open : NULL;
	struct replicate_kept *p;

	while (link && *link && (*link)->token != k->token)
		link = &(*link)->next;
	if (!link || !*link || !s->peer || s->peer->slot >= (*link)->n_peers)
		return;       /* ended already, or never ours */
	p = &(*link)->peers[s->peer->slot];
	if (p->status != REPLICATE_KEPT_ASKED)
		return;
	if (k->n != (*link)->n) {
		log_warn("replicate", "peer %s answered %u flags for %u "
			 "versions asked about; taken as no answer",
			 s->peer->id, k->n, (*link)->n);
		p->status = REPLICATE_KEPT_SILENT;
	} else {
		p->status = REPLICATE_KEPT_ANSWERED;
		memcpy(p->here, k->here, k->n);
	}
	if (!ask_waiting(*link))
		ask_end(q, link);
}

void ask_tick(struct replicate *r, int64_t now)
{
	struct asks *q = r->asks;
	struct ask **link = q ? &q->open : NULL;

	while (link && *link) {
		struct ask *a = *link;

		for (size_t i = 0; i < a->n_peers; i++)
			if (a->peers[i].status == REPLICATE_KEPT_ASKED &&
			    (now >= a->deadline_ns ||
			     !session_usable(r->peers[i]->session)))
				a->peers[i].status = REPLICATE_KEPT_SILENT;
		if (ask_waiting(a))
			link = &a->next;
		else
			ask_end(q, link);
	}
}

int64_t ask_deadline(const struct replicate *r)
{
	int64_t d = INT64_MAX;

	for (const struct ask *a = r->asks ? r->asks->open : NULL; a;
	     a = a->next)
		if (a->deadline_ns < d)
			d = a->deadline_ns;
	return d;
}

void ask_free(struct replicate *r)
{
	struct asks *q = r->asks;

	while (q && q->open) {
		struct ask *a = q->open;

		q->open = a->next;
		free(a->peers);
		free(a);
	}
	free(q);
	r->asks = NULL;
}
