/*
 * The REST calls about versions: which node keeps each version of a file
 * (GET /v1/versions, whose request waits while the peers are asked:
 * api_ask.c), a restore in place (POST /v1/admin/restore, restore.c in
 * the journal; content only peers keep is fetched by the loop thread,
 * keep.c), and a fetch into the version store (POST /v1/admin/fetch) for
 * kraken-journal restore --to, which then reads the store itself.
 */
#include "rest_int.h"
#include "rest_render.h"

#include "err.h"
#include "loop.h"
#include "path.h"
#include "timefmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned rest_restore_code(enum journal_restore_status st)
{
	switch (st) {
	case JOURNAL_RESTORE_NOT_YET: return MHD_HTTP_NOT_FOUND;
	case JOURNAL_RESTORE_NOT_KEPT: return MHD_HTTP_GONE;
	default: return MHD_HTTP_CONFLICT;
	}
}

static const char *const rest_restore_why[] = {
	[JOURNAL_RESTORE_NOT_YET] = "no version of it was made by then",
	[JOURNAL_RESTORE_DELETED] = "it was deleted at that time",
	[JOURNAL_RESTORE_NOT_FILE] = "it was not a file at that time",
	[JOURNAL_RESTORE_NOT_KEPT] = "the content of its version of that "
		"time is not kept on this node (pruned, or replaced by a "
		"write on this node itself)",
};

/* Writes the version into the volume in place, where the watcher
 * records it as a new change: a restore is itself a version, journaled,
 * replicated, and undone like any other. */
static int rest_restore_at(struct rest_call *c, struct journal *j,
			   const char *volume, const char *path, int64_t at_ns,
			   struct journal_restore_info *info)
{
	const struct api *a = c->r->api;
	struct journal_versions *store = NULL;
	const char *name;
	int rootfd = open(a->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	int dirfd = -1, err = rootfd < 0 ? -errno : 0;

	if (!err)
		err = path_open_parent(rootfd, volume, path, &dirfd, &name);
	if (!err && journal_versions_find(j, a->root, &store) != 0)
		store = NULL;
	if (!err)
		err = journal_restore_file(j, store, a->root, volume, path,
					   at_ns, dirfd, name, true, info);
	journal_versions_close(store);
	if (dirfd >= 0)
		close(dirfd);
	if (rootfd >= 0)
		close(rootfd);
	return err;
}

static json_t *rest_restore_json(const char *volume, const char *path,
				 const struct journal_restore_info *info,
				 const char *fetching)
{
	char when[64];
	json_t *o;

	rest_format_time(info->wall_ns, when, sizeof(when));
	o = json_pack("{s:s,s:s,s:{s:s,s:I,s:s},s:I}", "volume", volume,
		      "path", path, "version", "origin", info->ref.origin,
		      "seq", (json_int_t)info->ref.seq, "time", when, "size",
		      (json_int_t)info->size);
	if (o && fetching)
		json_object_set_new(o, "fetching", json_string(fetching));
	return o;
}

/* Content this node does not keep: the loop thread fetches it from
 * peers and records it once in place (replicate_restore), or, TO_STORE,
 * puts it in the version store (replicate_fetch); 202, and the log says
 * how it ended.  Without peers there is nobody to ask. */
static enum MHD_Result rest_restore_fetch(struct rest_call *c,
					  const char *volume, const char *path,
					  const struct journal_restore_info *info,
					  bool to_store)
{
	struct api_restore *req = calloc(1, sizeof(*req));
	struct api_snapshot *snap = malloc(sizeof(*snap));
	enum MHD_Result res;
	int err = req && snap ? 0 : -ENOMEM;

	if (!err && (!api_snapshot_get(c->r->api, snap) || !snap->n_peers)) {
		res = rest_error(c, MHD_HTTP_GONE, "%s/%s: %s, and this node "
				 "has no peers to fetch it from", volume, path,
				 rest_restore_why[JOURNAL_RESTORE_NOT_KEPT]);
		goto out;
	}
	if (!err) {
		snprintf(req->volume, sizeof(req->volume), "%s", volume);
		snprintf(req->path, sizeof(req->path), "%s", path);
		req->ref = info->ref;
		req->to_store = to_store;
		err = api_restore_push(c->r->api, req);
	}
	if (err == -ENOSPC)
		res = rest_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "%u restores "
				 "are waiting already; try again",
				 API_RESTORES_MAX);
	else if (err)
		res = rest_journal_error(c, err);
	else
		res = rest_json(c, MHD_HTTP_ACCEPTED, rest_restore_json(volume,
				path, info, to_store ? "from peers into the "
				"version store: the agent's log says when it "
				"is there" : "from peers: the agent's log says "
				"when it is in place"));
out:
	free(req);
	free(snap);
	return res;
}

/* The admin token and ?volume=&path=&at= of a restore or fetch: 0, or
 * the error answer through *RES. */
static int restore_args(struct rest_call *c, const char **volume,
			const char **path, int64_t *at_ns,
			enum MHD_Result *res)
{
	const char *at = MHD_lookup_connection_value(c->conn,
		MHD_GET_ARGUMENT_KIND, "at");

	*volume = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND,
					      "volume");
	*path = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND,
					    "path");
	if (rest_admin_check(c, res))
		return -EACCES;
	if (!*volume || !*path || !at) {
		*res = rest_error(c, MHD_HTTP_BAD_REQUEST, "volume, path and "
				  "at are needed: ?volume=V&path=P&at=TIME");
		return -EINVAL;
	}
	*path += strspn(*path, "/");
	if (timefmt_parse(at, loop_wall_ns(), at_ns)) {
		*res = rest_error(c, MHD_HTTP_BAD_REQUEST, "at: expected a "
				  "time such as 2026-12-07T10:00:00Z, @SECONDS "
				  "or an age such as 2h, got '%s'", at);
		return -EINVAL;
	}
	return 0;
}

enum MHD_Result rest_post_restore(struct rest_call *c)
{
	const char *volume, *path;
	struct journal_restore_info info;
	struct journal *j;
	enum MHD_Result res;
	int64_t at_ns;
	int err;

	if (restore_args(c, &volume, &path, &at_ns, &res))
		return res;
	err = rest_journal(c, &j);
	if (!err)
		err = rest_restore_at(c, j, volume, path, at_ns, &info);
	if (err == KR_EHOSTILE)
		return rest_error(c, MHD_HTTP_BAD_REQUEST, "a hostile or "
				  "malformed volume or path");
	if (err == -ENOENT || err == -ENOTDIR)
		return rest_error(c, MHD_HTTP_CONFLICT, "%s/%s: its directory "
				  "does not exist now; restore that first",
				  volume, path);
	if (err)
		return rest_journal_error(c, err);
	if (info.status == JOURNAL_RESTORE_NOT_KEPT)
		return rest_restore_fetch(c, volume, path, &info, false);
	if (info.status != JOURNAL_RESTORE_DONE)
		return rest_error(c, rest_restore_code(info.status), "%s/%s: %s",
				  volume, path, rest_restore_why[info.status]);
	return rest_json(c, MHD_HTTP_OK, rest_restore_json(volume, path, &info,
							   NULL));
}

/* ---- versions ------------------------------------------------------ */

static void rest_park(void *conn)
{
	MHD_suspend_connection(conn);
}

static void rest_wake(void *conn)
{
	MHD_resume_connection(conn);
}

/* The answer once the peers said what they keep (or could not). */
enum MHD_Result rest_versions_done(struct rest_call *c)
{
	struct rest_req *req = c->req;
	struct api_kept *peers = NULL;
	size_t n = 0;
	int err = api_ask_take(c->r->api, req->ask->id, &peers, &n);
	json_t *doc = req->doc;

	req->doc = NULL;
	if (rest_versions_answer(doc, req->ask, err ? NULL : peers, n,
				 "the peers could not be asked: the agent "
				 "is stopping, or out of memory")) {
		json_decref(doc);
		doc = NULL;
	}
	free(peers);
	free(req->ask);
	req->ask = NULL;
	return rest_json(c, MHD_HTTP_OK, doc);
}

/* GET /v1/versions?volume=&path=: what rest_render.h says.  A request
 * whose versions are not all here waits (parked, api_ask.c) while the
 * loop asks the peers, two seconds at most. */
enum MHD_Result rest_get_versions(struct rest_call *c)
{
	const char *volume, *path, *why;
	struct rest_req *req = c->req;
	struct journal *j;
	json_t *doc;
	int err;

	if (rest_arg_str(c, "volume", VOLUME_NAME_MAX, &volume) || !volume ||
	    rest_arg_str(c, "path", PATH_REL_MAX, &path) || !path)
		return rest_error(c, MHD_HTTP_BAD_REQUEST, "volume and path "
				  "are needed: ?volume=V&path=P");
	path += strspn(path, "/");
	req->ask = calloc(1, sizeof(*req->ask));
	err = req->ask ? rest_journal(c, &j) : -ENOMEM;
	if (!err)
		err = rest_versions_json(j, c->r->api->root, volume, path,
					 &req->doc, req->ask);
	if (err == -ENOENT)
		return rest_error(c, MHD_HTTP_NOT_FOUND, "the journal knows no "
				  "version of %s/%s", volume, path);
	if (err)
		return rest_journal_error(c, err);
	if (req->ask->n == 0)
		why = "every version is here";
	else if ((err = api_ask_push(c->r->api, req->ask, rest_park,
				     rest_wake, c->conn)) == 0)
		return MHD_YES;   /* rest_versions_done when woken */
	else
		why = err == -EBUSY ? "too many questions to peers at once; "
		      "try again" : "the agent is stopping";
	doc = req->doc;
	req->doc = NULL;
	if (rest_versions_answer(doc, req->ask, NULL, 0, why)) {
		json_decref(doc);
		doc = NULL;
	}
	return rest_json(c, MHD_HTTP_OK, doc);
}


/* Where this node holds V's content: "live", "kept" (in STORE), or
 * NULL. */
static const char *fetch_held(struct journal *j,
			      struct journal_versions *store,
			      const char *volume, const char *path,
			      const struct journal_version_at *v)
{
	struct journal_state live;
	const char *held = NULL;

	if (journal_lookup(j, volume, path, &live) == 0) {
		if (live.has_hash && memcmp(live.hash, v->hash,
					    CONTENT_HASH_LEN) == 0)
			held = "live";
		journal_state_release(&live);
	}
	if (!held && journal_versions_has(store, v->hash))
		held = "kept";
	return held;
}

/* POST /v1/admin/fetch?volume=&path=&at=: the content of the version
 * current at AT into this node's version store, from peers, so that
 * kraken-journal restore --to can read it here: 202 as a restore in
 * place would be, or 200 when this node holds it already. */
enum MHD_Result rest_post_fetch(struct rest_call *c)
{
	const char *volume, *path, *held;
	struct journal_restore_info info = { .status = JOURNAL_RESTORE_NOT_KEPT };
	struct journal_versions *store;
	struct journal_version_at v;
	struct journal *j;
	enum MHD_Result res;
	int64_t at_ns;
	json_t *o;
	int err;

	if (restore_args(c, &volume, &path, &at_ns, &res))
		return res;
	err = rest_journal(c, &j);
	if (!err)
		err = journal_version_at(j, volume, path, at_ns, &v);
	if (err)
		return rest_journal_error(c, err);
	free(v.target);
	info.status = !v.found ? JOURNAL_RESTORE_NOT_YET : v.mode == 0 ?
		      JOURNAL_RESTORE_DELETED : !S_ISREG(v.mode) || !v.has_hash ?
		      JOURNAL_RESTORE_NOT_FILE : JOURNAL_RESTORE_NOT_KEPT;
	if (info.status != JOURNAL_RESTORE_NOT_KEPT)
		return rest_error(c, rest_restore_code(info.status), "%s/%s: %s",
				  volume, path, rest_restore_why[info.status]);
	info = (struct journal_restore_info){ JOURNAL_RESTORE_NOT_KEPT, true,
		v.ref, v.wall_ns, v.mode, v.size, 0 };
	if (journal_versions_find(j, c->r->api->root, &store) != 0)
		store = NULL;
	held = fetch_held(j, store, volume, path, &v);
	journal_versions_close(store);
	if (!held && !store)
		return rest_error(c, MHD_HTTP_CONFLICT, "%s/%s: this node keeps "
				  "no versions (versions.keep is 0): restore it "
				  "on a peer that keeps it", volume, path);
	if (!held)
		return rest_restore_fetch(c, volume, path, &info, true);
	o = rest_restore_json(volume, path, &info, NULL);
	if (o)
		json_object_set_new(o, "content", json_string(held));
	return rest_json(c, MHD_HTTP_OK, o);
}
