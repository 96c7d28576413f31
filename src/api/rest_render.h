/*
 * What the REST server says, apart from how it says it: the journal and
 * the loop's snapshot rendered as JSON documents and as Prometheus text.
 * Private to rest.c and rest_render.c.  Every function runs on the HTTP
 * thread with that thread's journal connection; each returns 0 or a
 * negative code and hands the caller a new reference in *out.
 */
#ifndef KRAKEN_REST_RENDER_H
#define KRAKEN_REST_RENDER_H

#include "api_int.h"
#include "journal.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 3339 UTC with milliseconds ("2026-01-02T03:04:05.678Z"). */
void rest_format_time(int64_t wall_ns, char *out, size_t cap);


/* The status document; SNAP is scratch space the caller provides. */
int rest_status_json(struct api *a, struct journal *j,
		     struct api_snapshot *snap, json_t **out);
/* The peers array of SNAP (NULL when out of memory). */
json_t *rest_peers_json(const struct api_snapshot *snap);
int rest_volumes_json(struct journal *j, json_t **out);
/* -ENOENT when NAME is not a current volume. */
int rest_volume_json(struct journal *j, const char *name, json_t **out);
/* {"entries": [...], "next": cursor or null}, newest first. */
int rest_log_json(struct journal *j, const struct journal_filter *f,
		  json_t **out);
/* One journal change as /v1/journal lists it (NULL: out of memory). */
json_t *rest_change_json(const struct journal_change *c);
/* The newest REST_CONFLICTS_MAX conflicts of VOLUME (NULL: all). */
int rest_conflicts_json(struct journal *j, const char *volume, json_t **out);

#define REST_CONFLICTS_MAX 1000

/*
 * GET /v1/versions (rest_versions.c): {"volume", "path", "versions":
 * [...]}, oldest first, each version a /v1/journal entry with "content":
 * "live" (the file holds it now), "kept" (the version store here),
 * "not here", or "-" (nothing to hold: a directory, symlink or delete).
 * ASK gets the contents not here, newest first, at most API_ASK_MAX
 * (n 0: none).  ROOT is volume.root_path.  -ENOENT when the journal
 * knows no version of the path.
 */
int rest_versions_json(struct journal *j, const char *root,
		       const char *volume, const char *path, json_t **out,
		       struct api_ask *ask);
/* Adds the peers' answers to DOC: each version not here gets "peers"
 * (who has it) and "content" "peer", "gone" (every peer answered, none
 * has it) or still "not here"; DOC gets "peers", each with its status.
 * PEERS NULL: they could not be asked, and DOC's "peers_note" says WHY. */
int rest_versions_answer(json_t *doc, const struct api_ask *ask,
			 const struct api_kept *peers, size_t n_peers,
			 const char *why);

/* Prometheus text exposition (0.0.4); *text is malloc'd, *len its size.
 * J (may be NULL) is read for what the version store keeps. */
int rest_metrics_text(const struct api_snapshot *snap, struct journal *j,
		      int64_t uptime_ns, char **text, size_t *len);

#endif
