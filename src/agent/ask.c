/*
 * Questions from the API to the peers (ask.h).  Every question taken is
 * answered exactly once, as api_next_ask requires: by the replication
 * layer's callback, or at once when it cannot be asked.
 */
#include "ask.h"

#include "api.h"
#include "err.h"
#include "log.h"
#include "replicate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(API_ASK_MAX == REPLICATE_ASK_MAX,
	       "one API question is one question to the peers");

static enum api_kept_status ask_status(enum replicate_kept_status s)
{
	switch (s) {
	case REPLICATE_KEPT_ANSWERED:
		return API_KEPT_ANSWERED;
	case REPLICATE_KEPT_OFFLINE:
		return API_KEPT_OFFLINE;
	case REPLICATE_KEPT_OLD:
		return API_KEPT_OLD;
	default:
		return API_KEPT_SILENT;
	}
}

static void ask_answered(void *arg, uint64_t id,
			 const struct replicate_kept *peers, size_t n)
{
	struct api *api = arg;
	struct api_kept *out = calloc(n ? n : 1, sizeof(*out));

	for (size_t i = 0; out && i < n; i++) {
		memcpy(out[i].id, peers[i].id, sizeof(out[i].id));
		out[i].status = ask_status(peers[i].status);
		memcpy(out[i].here, peers[i].here, sizeof(out[i].here));
	}
	api_ask_answered(api, id, out, n);
	free(out);
}

void agent_asks_serve(struct api *api, struct replicate *r)
{
	struct api_ask *q = malloc(sizeof(*q));
	int err;

	while (q && api_next_ask(api, q)) {
		err = r ? replicate_ask_kept(r, q->volume, q->path,
					     (const uint8_t (*)[CONTENT_HASH_LEN])
					     q->hashes, q->n, ask_answered,
					     api, q->id) : -ENOTCONN;
		if (err) {
			log_info("agent", "the peers were not asked which "
				 "versions of %s/%s they keep: %s", q->volume,
				 q->path, !r ? "replication is not running" :
				 err == -EBUSY ? "too many questions open" :
				 kr_strerror(err));
			api_ask_answered(api, q->id, NULL, 0);
		}
	}
	free(q);
}
