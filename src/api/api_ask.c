/*
 * Questions to peers on behalf of an HTTP request (GET /v1/versions).
 *
 * The HTTP thread cannot wait for the network: it serves every request
 * in turn.  So a request that needs the peers' answers is parked (MHD
 * suspend) in one of API_ASKS_MAX slots, and its question queued for the
 * loop thread, which asks the peers and hands back their answers with
 * api_ask_answered, which wakes the request.  A slot's life:
 *
 *   free --push--> reserved --parked--> queued --api_next_ask--> taken
 *   taken --api_ask_answered--> answered --api_ask_take--> free
 *   reserved, queued, taken --api_asks_close--> answered (no peers)
 *
 * The slots are guarded by api.lock, which is never held across a call
 * into MHD: a request is parked after its slot is reserved and before
 * its question is queued, so the loop, which sees only queued ones, can
 * never wake it before it sleeps; the request to wake is taken out of
 * the slot under the lock and woken after.  A question closed while its
 * request was being parked is woken by the push itself.  The loop
 * answers every question it takes within seconds (replicate_ask_kept's
 * bound); api_asks_close wakes what still waits when the server stops,
 * since MHD cannot stop with requests parked.  Both run on the loop
 * thread, so a request is never woken twice.
 */
#include "api_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct api_asking *ask_find(struct api *a, uint64_t id)
{
	for (unsigned i = 0; i < API_ASKS_MAX; i++)
		if (a->asks[i].used && a->asks[i].q.id == id)
			return &a->asks[i];
	return NULL;
}

/* Ends SLOT's wait with PEERS (NULL: unanswered); the request to wake,
 * if it is parked, is returned for a call outside the lock. */
static void *ask_end(struct api_asking *slot, struct api_kept *peers,
		     size_t n_peers)
{
	void *conn = slot->parked ? slot->conn : NULL;

	slot->answered = true;
	slot->queued = slot->parked = false;
	slot->peers = peers;
	slot->n_peers = peers ? n_peers : 0;
	slot->conn = NULL;
	return conn;
}

int api_ask_push(struct api *a, struct api_ask *q, api_conn_fn park,
		 api_conn_fn resume, void *conn)
{
	struct api_asking *slot = NULL;
	bool cancelled;
	int err = 0;

	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; !slot && i < API_ASKS_MAX; i++)
		if (!a->asks[i].used)
			slot = &a->asks[i];
	if (a->asks_closed)
		err = -ESHUTDOWN;
	else if (!slot)
		err = -EBUSY;
	else
		*slot = (struct api_asking){ .used = true, .conn = conn,
			.resume = resume };
	if (!err)
		slot->q = *q;
	if (!err)
		q->id = slot->q.id = ++a->last_ask_id;
	pthread_mutex_unlock(&a->lock);
	if (err)
		return err;
	/* Parked before the loop can see the question, and outside the
	 * lock, which is never held across a call into MHD. */
	park(conn);
	pthread_mutex_lock(&a->lock);
	cancelled = slot->answered || api_command_push_locked(a,
							      API_CMD_ASK);
	if (cancelled)
		ask_end(slot, NULL, 0);
	slot->queued = slot->parked = !cancelled;
	pthread_mutex_unlock(&a->lock);
	if (cancelled)
		resume(conn);       /* woken at once: "peers not asked" */
	return 0;
}

bool api_next_ask(struct api *a, struct api_ask *out)
{
	bool have = false;

	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; !have && i < API_ASKS_MAX; i++) {
		struct api_asking *s = &a->asks[i];

		if (s->used && s->queued) {
			s->queued = false;
			*out = s->q;
			have = true;
		}
	}
	pthread_mutex_unlock(&a->lock);
	return have;
}

void api_ask_answered(struct api *a, uint64_t id,
		      const struct api_kept *peers, size_t n_peers)
{
	struct api_kept *copy = peers ? malloc((n_peers ? n_peers : 1) *
					       sizeof(*copy)) : NULL;
	struct api_asking *slot;
	api_conn_fn resume = NULL;
	void *conn = NULL;

	if (copy && n_peers)
		memcpy(copy, peers, n_peers * sizeof(*copy));
	pthread_mutex_lock(&a->lock);
	slot = ask_find(a, id);
	if (slot && !slot->answered) {
		resume = slot->resume;
		conn = ask_end(slot, copy, n_peers);
		copy = NULL;
	}
	pthread_mutex_unlock(&a->lock);
	free(copy);
	if (conn)
		resume(conn);
}

int api_ask_take(struct api *a, uint64_t id, struct api_kept **peers,
		 size_t *n_peers)
{
	struct api_asking *slot;
	int err = -ECANCELED;

	*peers = NULL;
	*n_peers = 0;
	pthread_mutex_lock(&a->lock);
	slot = ask_find(a, id);
	if (slot && slot->answered && slot->peers) {
		*peers = slot->peers;
		*n_peers = slot->n_peers;
		err = 0;
	}
	/* Taken or given up: an answer coming later finds no slot. */
	if (slot)
		*slot = (struct api_asking){ 0 };
	pthread_mutex_unlock(&a->lock);
	return err;
}

void api_asks_close(struct api *a)
{
	void *conns[API_ASKS_MAX];
	api_conn_fn resume[API_ASKS_MAX];
	unsigned n = 0;

	pthread_mutex_lock(&a->lock);
	a->asks_closed = true;
	for (unsigned i = 0; i < API_ASKS_MAX; i++) {
		struct api_asking *s = &a->asks[i];

		if (!s->used || s->answered)
			continue;
		resume[n] = s->resume;
		/* Not parked yet: api_ask_push wakes it once it is. */
		conns[n] = ask_end(s, NULL, 0);
		n += conns[n] != NULL;
	}
	pthread_mutex_unlock(&a->lock);
	for (unsigned i = 0; i < n; i++)
		resume[i](conns[i]);
}

void api_asks_free(struct api *a)
{
	for (unsigned i = 0; a->asks && i < API_ASKS_MAX; i++)
		free(a->asks[i].peers);
	free(a->asks);
	a->asks = NULL;
}
