/*
 * GET /v1/versions?volume=&path=: every version of one file and where
 * its content can be had (rest_render.h).  Built in two steps because
 * the second needs the network: what this node holds (its live file and
 * version store), then, for what it does not, what each peer said when
 * the loop thread asked (api_ask.c, replicate's ask.c).
 *
 * "gone" is said only when every peer of the cluster answered and none
 * has the content: a peer offline, silent or too old to be asked might
 * have it, so the version stays "not here" and "peers" says which
 * could not be asked.
 */
#include "rest_render.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kept_status_names[] = {
	[API_KEPT_ANSWERED] = "answered", [API_KEPT_OFFLINE] = "offline",
	[API_KEPT_SILENT] = "no answer", [API_KEPT_OLD] = "cannot be asked",
};

struct vlist {
	struct journal_versions *store;
	struct journal_state live;
	bool has_live;
	json_t *rows;
	/* Contents not here, oldest first, at most API_ASK_MAX kept (a
	 * ring of the newest once more come). */
	uint8_t (*missing)[CONTENT_HASH_LEN];
	size_t n_missing;
};

static bool missing_has(const struct vlist *v, const uint8_t *hash)
{
	size_t n = v->n_missing < API_ASK_MAX ? v->n_missing : API_ASK_MAX;

	for (size_t i = 0; i < n; i++)
		if (memcmp(v->missing[i], hash, CONTENT_HASH_LEN) == 0)
			return true;
	return false;
}

static int on_version(void *arg, const struct journal_change *c)
{
	struct vlist *v = arg;
	const char *here = journal_versions_where(v->store, v->has_live ?
						  &v->live : NULL, c);
	json_t *row = rest_change_json(c);

	if (!row || json_object_set_new(row, "content", json_string(here)) ||
	    json_array_append_new(v->rows, row))
		return -ENOMEM;
	if (strcmp(here, "not here") == 0 && !missing_has(v, c->hash))
		memcpy(v->missing[v->n_missing++ % API_ASK_MAX], c->hash,
		       CONTENT_HASH_LEN);
	return 0;
}

/* The contents to ask about into ASK, newest first. */
static void ask_fill(const struct vlist *v, struct api_ask *ask)
{
	size_t n = v->n_missing < API_ASK_MAX ? v->n_missing : API_ASK_MAX;

	ask->n = (uint32_t)n;
	for (size_t i = 0; i < n; i++)
		memcpy(ask->hashes[i],
		       v->missing[(v->n_missing - 1 - i) % API_ASK_MAX],
		       CONTENT_HASH_LEN);
}

int rest_versions_json(struct journal *j, const char *root,
		       const char *volume, const char *path, json_t **out,
		       struct api_ask *ask)
{
	struct vlist v = { 0 };
	int err = -ENOMEM;

	*out = NULL;
	ask->n = 0;
	v.rows = json_array();
	v.missing = malloc(API_ASK_MAX * sizeof(*v.missing));
	if (!v.rows || !v.missing)
		goto out;
	if (root && journal_versions_find(j, root, &v.store) != 0)
		v.store = NULL;
	v.has_live = journal_lookup(j, volume, path, &v.live) == 0;
	err = journal_history(j, volume, path, on_version, &v);
	if (!err && json_array_size(v.rows) == 0)
		err = -ENOENT;
	if (!err)
		*out = json_pack("{s:s,s:s,s:O}", "volume", volume, "path",
				 path, "versions", v.rows);
	if (!err && !*out)
		err = -ENOMEM;
	if (!err) {
		ask_fill(&v, ask);
		snprintf(ask->volume, sizeof(ask->volume), "%s", volume);
		snprintf(ask->path, sizeof(ask->path), "%s", path);
	}
out:
	if (v.has_live)
		journal_state_release(&v.live);
	journal_versions_close(v.store);
	free(v.missing);
	json_decref(v.rows);
	return err;
}

/* Which question of ASK is about the content of ROW; -1 when none. */
static int ask_index(const struct api_ask *ask, json_t *row)
{
	const char *hex = json_string_value(json_object_get(row, "hash"));
	char want[CONTENT_HEX_LEN + 1];

	for (uint32_t i = 0; hex && i < ask->n; i++) {
		content_hex(ask->hashes[i], want);
		if (strcmp(hex, want) == 0)
			return (int)i;
	}
	return -1;
}

/* ROW, a version not here, as the peers' answers place it. */
static int row_answer(json_t *row, int q, const struct api_kept *peers,
		      size_t n_peers)
{
	json_t *who = json_array();
	bool all_answered = true;

	if (!who)
		return -ENOMEM;
	for (size_t i = 0; i < n_peers; i++) {
		if (peers[i].status != API_KEPT_ANSWERED)
			all_answered = false;
		else if (q >= 0 && peers[i].here[q])
			json_array_append_new(who, json_string(peers[i].id));
	}
	if (q < 0)
		all_answered = false;     /* past what one question takes */
	if (json_array_size(who))
		json_object_set_new(row, "content", json_string("peer"));
	else if (all_answered)
		json_object_set_new(row, "content", json_string("gone"));
	return json_object_set_new(row, "peers", who) ? -ENOMEM : 0;
}

int rest_versions_answer(json_t *doc, const struct api_ask *ask,
			 const struct api_kept *peers, size_t n_peers,
			 const char *why)
{
	json_t *rows = json_object_get(doc, "versions"), *row, *list;
	size_t i;
	int err = 0;

	if (!peers)
		return json_object_set_new(doc, "peers_note",
					   json_string(why)) ? -ENOMEM : 0;
	list = json_array();
	for (size_t k = 0; list && k < n_peers; k++)
		json_array_append_new(list, json_pack("{s:s,s:s}", "id",
			peers[k].id, "status",
			kept_status_names[peers[k].status]));
	if (!list || json_object_set_new(doc, "peers", list))
		return -ENOMEM;
	json_array_foreach(rows, i, row) {
		const char *c = json_string_value(json_object_get(row,
								  "content"));

		if (!err && c && strcmp(c, "not here") == 0)
			err = row_answer(row, ask_index(ask, row), peers,
					 n_peers);
	}
	return err;
}
