/*
 * The Docker VolumeDriver protocol on a unix socket (plugin.socket,
 * default /run/docker/plugins/krakenfs.sock), served by libmicrohttpd.
 *
 *   POST path                    body                  answer
 *   /Plugin.Activate             -                     {"Implements":["VolumeDriver"]}
 *   /VolumeDriver.Create         {"Name","Opts"}       {}
 *   /VolumeDriver.Remove         {"Name"}              {}
 *   /VolumeDriver.Mount          {"Name","ID"}         {"Mountpoint"}
 *   /VolumeDriver.Unmount        {"Name","ID"}         {}
 *   /VolumeDriver.Path           {"Name"}              {"Mountpoint"}
 *   /VolumeDriver.Get            {"Name"}              {"Volume":{...}}
 *   /VolumeDriver.List           -                     {"Volumes":[...]}
 *   /VolumeDriver.Capabilities   -                     {"Capabilities":{"Scope":"global"}}
 *
 * Failures are HTTP 200 with {"Err":"..."}, which is how Docker expects
 * a driver to refuse; only an unknown path is a 404.
 *
 * Facts measured with a real dockerd (tests/integration/test_docker.sh
 * starts one and depends on them) and what each one decides here:
 *  - Requests carry no Content-Type, so the body is read raw and parsed
 *    as JSON whatever the headers say.  Bodies are capped at 64 KiB: the
 *    largest legitimate one is a Create with a few options.
 *  - Activate comes once per dockerd lifetime and not after the agent
 *    restarts, so nothing here depends on having seen it.
 *  - A Get answering Err for a volume that exists makes dockerd forget
 *    it and later create a "local" volume of the same name over it.  Get
 *    therefore never fails for an existing volume: whatever goes wrong
 *    is reported inside a degraded Status instead.
 *  - Unmount can be lost (dockerd killed, or the agent down when a
 *    container stopped), so mount references live in the journal's
 *    mounts table and survive restarts.  They are reconciled with the
 *    truth, the bind mounts of the volume's directory that exist in any
 *    mount namespace (mountinfo.h): at start-up for every volume, and on
 *    Remove for that volume, so a lost Unmount never makes a volume
 *    impossible to remove.  A reference younger than mount_grace_ms is
 *    kept: Docker mounts the directory only after Mount has answered.
 *    A repeated Unmount is not an error.
 *  - dockerd waits up to 15 s for an absent plugin socket; the agent is
 *    started before docker, so the socket must be there early and a
 *    stale one from a killed agent is replaced at once.
 *
 * Volumes.  A volume is a directory directly under the root; Create is a
 * mkdir and Remove a move aside into ROOT/.krakenfs-removed (never a
 * delete: a removed volume on one node is a removed volume everywhere,
 * and a mistaken `docker volume rm` must stay recoverable).  The watcher
 * journals both like any other change, which is what makes them
 * cluster-wide; this file never writes volume entries itself.  Scope is
 * "global": every node holds every volume at the same mountpoint.
 *
 * Mount waits (bounded by mount_wait_ms) until the loop's snapshot says
 * this node has caught up with every connected peer and has nothing left
 * to apply, so a container started right after a write on another node
 * sees that write.  On timeout it mounts anyway: a stale view is better
 * than a container that cannot start while a peer is slow.
 *
 * Threads.  libmicrohttpd runs one thread per connection, because a
 * Mount may wait seconds and must not hold up a Get.  All of them share
 * one read-write journal connection (for mount references), used under
 * plugin->lock: SQLite allows a connection on several threads as long as
 * they take turns, and the same lock makes "count references, then move
 * the volume aside" atomic against a concurrent Mount.
 */
#include "api_int.h"

#include "err.h"
#include "log.h"
#include "loop.h"
#include "mountinfo.h"
#include "path.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PLUGIN_BODY_MAX (64 * 1024)
#define PLUGIN_ID_MAX 256          /* Docker's mount IDs are 64 hex */
#define PLUGIN_WAIT_DEFAULT_MS 10000
#define PLUGIN_POLL_MS 50
#define PLUGIN_THREADS 8
#define PLUGIN_CONN_MAX 64
#define PLUGIN_REMOVED_DIR ".krakenfs-removed"
#define PLUGIN_MODULE "plugin"

/* Owned by plugin.c, reached through api->plugin. */
struct plugin {
	struct api *api;
	struct MHD_Daemon *daemon;
	pthread_mutex_t lock;         /* serialises journal and volume moves */
	struct journal *journal;      /* read-write, for mount references */
	dev_t sock_dev;               /* the socket file we made, so that */
	ino_t sock_ino;               /* stop never unlinks a newer one */
};

/* One request's body, collected across the access handler's calls. */
struct plugin_req {
	char *body;
	size_t len;
	bool too_big;
};

/* ---- answers ----------------------------------------------------------- */

/* {"Err": formatted message}; NULL only when out of memory. */
__attribute__((format(printf, 1, 2)))
static json_t *plugin_err(const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Echoed names are cut short, maybe inside a UTF-8 sequence, which
	 * jansson would refuse; the messages themselves are ASCII. */
	for (char *c = msg; *c; c++)
		if ((unsigned char)*c >= 0x80)
			*c = '?';
	return json_pack("{s:s}", "Err", msg);
}

static json_t *plugin_ok(void)
{
	return json_object();
}

/*
 * Joins ROOT and NAME into OUT.  NAME was validated, so only an absurd
 * root can make this fail; the caller turns that into an Err.
 */
static int plugin_volume_dir(struct plugin *p, const char *name, char *out,
			     size_t cap)
{
	return path_join(out, cap, p->api->root, name);
}

/* ---- request fields ---------------------------------------------------- */

/*
 * The string field KEY of REQ into *out (borrowed from REQ).  NULL, or
 * an Err naming the field.  Embedded NULs are refused so that what is
 * validated is what is used.
 */
static json_t *plugin_field(json_t *req, const char *key, size_t max,
			    const char **out)
{
	json_t *v = json_object_get(req, key);

	*out = NULL;
	if (!v)
		return plugin_err("missing field %s", key);
	if (!json_is_string(v))
		return plugin_err("field %s must be a string", key);
	*out = json_string_value(v);
	if (strlen(*out) != json_string_length(v) || **out == '\0' ||
	    strlen(*out) > max)
		return plugin_err("field %s is empty, too long or holds a NUL",
				  key);
	return NULL;
}

/* The Name field, checked against Docker's rule; NULL or an Err. */
json_t *plugin_name(json_t *req, const char **name)
{
	json_t *bad = plugin_field(req, "Name", VOLUME_NAME_MAX, name);

	if (bad)
		return bad;
	/* The rule already refuses a leading '.', which also keeps
	 * .krakenfs-removed and the agent's hidden files out of reach. */
	if ((*name)[0] == '.' || !path_volume_name_ok(*name))
		return plugin_err("invalid volume name '%.80s': use 2 to 255 of "
				  "[A-Za-z0-9_.-], starting with a letter or "
				  "digit", *name);
	return NULL;
}

json_t *plugin_mount_id(json_t *req, const char **id)
{
	json_t *bad = plugin_field(req, "ID", PLUGIN_ID_MAX, id);

	if (bad)
		return bad;
	for (const char *c = *id; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return plugin_err("field ID holds a control character");
	return NULL;
}

/*
 * Create's options.  None changes anything yet.  node_id is accepted
 * because the seed's guide shows `--opt node_id=vm1`: it named the node
 * holding the volume, which means nothing here where every node holds
 * every volume, so it is checked for type and ignored.
 */
json_t *plugin_options(json_t *req)
{
	json_t *opts = json_object_get(req, "Opts");
	const char *key;
	json_t *v;

	if (!opts || json_is_null(opts))
		return NULL;
	if (!json_is_object(opts))
		return plugin_err("field Opts must be an object");
	json_object_foreach(opts, key, v) {
		if (strcmp(key, "node_id") != 0)
			return plugin_err("unknown option '%.80s' (known "
					  "options: node_id)", key);
		if (!json_is_string(v))
			return plugin_err("option %s must be a string", key);
	}
	return NULL;
}

/* ---- volume state ------------------------------------------------------ */

/*
 * Whether volume NAME exists: as a directory here, or in the journal
 * (created on another node, not applied here yet).  Returns 1, 0, or a
 * negative code when the journal could not tell and the disk says no.
 * Caller holds p->lock.
 */
static int plugin_exists(struct plugin *p, const char *name, bool *on_disk)
{
	char dir[PATH_MAX];
	struct journal_state st;
	struct stat sb;
	int err;

	*on_disk = false;
	err = plugin_volume_dir(p, name, dir, sizeof(dir));
	if (err)
		return err;
	*on_disk = lstat(dir, &sb) == 0 && S_ISDIR(sb.st_mode);
	if (*on_disk)
		return 1;
	if (!p->journal)
		return -ENOTCONN;
	err = journal_lookup(p->journal, name, "", &st);
	if (err == -ENOENT)
		return 0;
	if (err)
		return err;
	err = st.mode != 0;
	journal_state_release(&st);
	return err;
}

static int plugin_mount_count(struct plugin *p, const char *name,
			      uint64_t *n)
{
	*n = 0;
	if (!p->journal)
		return -ENOTCONN;
	return journal_mount_count(p->journal, name, n);
}

/* ---- Activate, Capabilities -------------------------------------------- */

static json_t *plugin_activate(struct plugin *p, json_t *req)
{
	(void)p;
	(void)req;
	return json_pack("{s:[s]}", "Implements", "VolumeDriver");
}

static json_t *plugin_capabilities(struct plugin *p, json_t *req)
{
	(void)p;
	(void)req;
	return json_pack("{s:{s:s}}", "Capabilities", "Scope", "global");
}

/* ---- Create, Remove ---------------------------------------------------- */

static json_t *plugin_create(struct plugin *p, json_t *req)
{
	char dir[PATH_MAX];
	const char *name;
	json_t *bad = plugin_name(req, &name);
	struct stat sb;

	if (!bad)
		bad = plugin_options(req);
	if (bad)
		return bad;
	if (plugin_volume_dir(p, name, dir, sizeof(dir)) != 0)
		return plugin_err("volume path for %s is too long", name);
	/* Create is idempotent: dockerd retries it, and on a global driver
	 * every node may be asked for a volume another node made. */
	if (mkdir(dir, 0755) == 0 ||
	    (errno == EEXIST && stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)))
		return plugin_ok();
	if (errno == EEXIST)
		return plugin_err("cannot create volume %s: %s exists and is "
				  "not a directory", name, dir);
	return plugin_err("cannot create volume %s: %s", name,
			  strerror(errno));
}

/*
 * Moves DIR aside as ROOT/.krakenfs-removed/NAME.<unix time>, with a
 * suffix when that name is taken (two removals in one second).  0 or
 * -errno.  Caller holds p->lock.
 */
static int plugin_move_aside(struct plugin *p, const char *name,
			     const char *dir)
{
	char parent[PATH_MAX], dest[PATH_MAX];
	long long now = (long long)time(NULL);
	int n, err;

	err = path_join(parent, sizeof(parent), p->api->root,
			PLUGIN_REMOVED_DIR);
	if (err)
		return err;
	/* 0700: removed volumes may hold anything their users stored. */
	if (mkdir(parent, 0700) != 0 && errno != EEXIST)
		return -errno;
	for (unsigned i = 0; i < 1000; i++) {
		n = i ? snprintf(dest, sizeof(dest), "%s/%s.%lld.%u", parent,
				 name, now, i)
		      : snprintf(dest, sizeof(dest), "%s/%s.%lld", parent,
				 name, now);
		if (n < 0 || (size_t)n >= sizeof(dest))
			return -ENAMETOOLONG;
		if (renameat2(AT_FDCWD, dir, AT_FDCWD, dest,
			      RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

static json_t *plugin_remove(struct plugin *p, json_t *req)
{
	char dir[PATH_MAX];
	const char *name;
	json_t *ans = plugin_name(req, &name);
	uint64_t mounts;
	bool on_disk;
	int err;

	if (ans)
		return ans;
	if (plugin_volume_dir(p, name, dir, sizeof(dir)) != 0)
		return plugin_err("volume path for %s is too long", name);
	plugin_reconcile(p->api, name);
	pthread_mutex_lock(&p->lock);
	err = plugin_exists(p, name, &on_disk);
	if (err == 0) {
		ans = plugin_err("no such volume %s", name);
		goto out;
	}
	if (!on_disk) {
		/* Nothing here to move, and so nothing the watcher could
		 * journal: the removal would silently not happen. */
		ans = plugin_err("volume %s has not arrived on this node yet; "
				 "try again later", name);
		goto out;
	}
	err = plugin_mount_count(p, name, &mounts);
	if (err) {
		ans = plugin_err("cannot count mounts of %s: %s", name,
				 kr_strerror(err));
		goto out;
	}
	if (mounts) {
		ans = plugin_err("volume %s is in use by %" PRIu64 " mounts on "
				 "this node; stop the containers using it "
				 "first", name, mounts);
		goto out;
	}
	err = plugin_move_aside(p, name, dir);
	ans = err ? plugin_err("cannot remove volume %s: %s", name,
			       kr_strerror(err))
		  : plugin_ok();
out:
	pthread_mutex_unlock(&p->lock);
	return ans;
}

/* ---- Mount, Unmount, Path ---------------------------------------------- */

/* Whether every job of volume NAME is done, or stuck: a job that keeps
 * failing (reported in /v1/status) holds up no mount, and jobs of other
 * volumes hold up none of this one. */
static bool plugin_volume_settled(struct plugin *p, const char *name)
{
	uint64_t waiting = 0, stuck = 0;
	int err;

	pthread_mutex_lock(&p->lock);
	err = p->journal ? journal_job_counts(p->journal, name, &waiting,
					      &stuck) : -ENOTCONN;
	pthread_mutex_unlock(&p->lock);
	return err == 0 && waiting == stuck;
}

/* Whether S says this node holds everything its connected peers hold,
 * and has applied what volume NAME needs. */
static bool plugin_caught_up(struct plugin *p, const struct api_snapshot *s,
			     const char *name)
{
	for (size_t i = 0; i < s->n_peers && i < API_PEERS_MAX; i++)
		if (s->peers[i].connected && s->peers[i].behind_entries)
			return false;
	return plugin_volume_settled(p, name);
}

/*
 * Waits until the loop's snapshot says this node has caught up, at most
 * mount_wait_ms.  A node with no snapshot yet (the loop has not run its
 * first turn) counts as not caught up.
 */
static void plugin_wait_catch_up(struct plugin *p, const char *name)
{
	unsigned wait = p->api->mount_wait_ms ? p->api->mount_wait_ms
					      : PLUGIN_WAIT_DEFAULT_MS;
	int64_t deadline = loop_now_ns() + (int64_t)wait * 1000000;
	struct api_snapshot *snap = malloc(sizeof(*snap));
	struct timespec nap = { 0, PLUGIN_POLL_MS * 1000000L };

	if (!snap)
		return;   /* a mount without the wait beats no mount */
	for (;;) {
		if (api_snapshot_get(p->api, snap) &&
		    plugin_caught_up(p, snap, name))
			goto out;
		if (loop_now_ns() >= deadline)
			break;
		nanosleep(&nap, NULL);
	}
	log_warn(PLUGIN_MODULE, "mounting %s before catching up with peers "
		 "(waited %u ms)", name, wait);
out:
	free(snap);
}

static json_t *plugin_mount(struct plugin *p, json_t *req)
{
	char dir[PATH_MAX];
	const char *name, *id;
	json_t *ans = plugin_name(req, &name);
	bool on_disk;
	int err;

	if (!ans)
		ans = plugin_mount_id(req, &id);
	if (ans)
		return ans;
	if (plugin_volume_dir(p, name, dir, sizeof(dir)) != 0)
		return plugin_err("volume path for %s is too long", name);
	plugin_wait_catch_up(p, name);
	pthread_mutex_lock(&p->lock);
	err = plugin_exists(p, name, &on_disk);
	if (err == 0) {
		ans = plugin_err("no such volume %s", name);
		goto out;
	}
	err = p->journal ? journal_mount_add(p->journal, name, id) : -ENOTCONN;
	if (err) {
		ans = plugin_err("cannot record mount of %s: %s", name,
				 kr_strerror(err));
		goto out;
	}
	/* Known to the journal but not applied here yet: make the root now,
	 * the replicator fills it in. */
	if (!on_disk && mkdir(dir, 0755) != 0 && errno != EEXIST) {
		ans = plugin_err("cannot create %s: %s", dir, strerror(errno));
		journal_mount_remove(p->journal, name, id);
		goto out;
	}
	ans = json_pack("{s:s}", "Mountpoint", dir);
out:
	pthread_mutex_unlock(&p->lock);
	return ans;
}

static json_t *plugin_unmount(struct plugin *p, json_t *req)
{
	const char *name, *id;
	json_t *ans = plugin_name(req, &name);
	int err;

	if (!ans)
		ans = plugin_mount_id(req, &id);
	if (ans)
		return ans;
	pthread_mutex_lock(&p->lock);
	err = p->journal ? journal_mount_remove(p->journal, name, id)
			 : -ENOTCONN;
	pthread_mutex_unlock(&p->lock);
	/* A repeated Unmount finds nothing to drop; that is success. */
	if (err && err != -ENOENT)
		return plugin_err("cannot drop mount of %s: %s", name,
				  kr_strerror(err));
	return plugin_ok();
}

static json_t *plugin_path(struct plugin *p, json_t *req)
{
	char dir[PATH_MAX];
	const char *name;
	json_t *ans = plugin_name(req, &name);
	bool on_disk;
	int err;

	if (ans)
		return ans;
	if (plugin_volume_dir(p, name, dir, sizeof(dir)) != 0)
		return plugin_err("volume path for %s is too long", name);
	pthread_mutex_lock(&p->lock);
	err = plugin_exists(p, name, &on_disk);
	pthread_mutex_unlock(&p->lock);
	if (err == 0)
		return plugin_err("no such volume %s", name);
	/* The mountpoint is the same for every container and every state,
	 * so it is answered even before the first Mount. */
	return json_pack("{s:s}", "Mountpoint", dir);
}

/* ---- Get --------------------------------------------------------------- */

static int plugin_count_conflict(void *arg, const struct journal_conflict *c)
{
	uint64_t *n = arg;

	(void)c;
	(*n)++;
	return 0;
}

/* Adds a failure to STATUS and marks it degraded. */
static void plugin_degrade(json_t *status, const char *what, int err)
{
	char msg[256];
	json_t *errors = json_object_get(status, "errors");

	snprintf(msg, sizeof(msg), "%s: %s", what, kr_strerror(err));
	if (!errors) {
		errors = json_array();
		json_object_set_new(status, "errors", errors);
	}
	json_array_append_new(errors, json_string(msg));
	json_object_set_new(status, "state", json_string("degraded"));
}

/* Replication state from the loop's snapshot into STATUS. */
static void plugin_status_peers(struct plugin *p, json_t *status)
{
	struct api_snapshot *s = malloc(sizeof(*s));
	uint64_t in_sync = 0, behind = 0;

	if (!s) {
		plugin_degrade(status, "replication state", -ENOMEM);
		return;
	}
	if (!api_snapshot_get(p->api, s)) {
		plugin_degrade(status, "replication state", -EAGAIN);
		goto out;
	}
	for (size_t i = 0; i < s->n_peers && i < API_PEERS_MAX; i++) {
		const struct api_peer *peer = &s->peers[i];

		behind += peer->behind_entries;
		if (peer->connected && !peer->behind_entries &&
		    !peer->lag_entries)
			in_sync++;
	}
	json_object_set_new(status, "peers_in_sync", json_integer(in_sync));
	json_object_set_new(status, "peers_total",
			    json_integer((json_int_t)s->n_peers));
	json_object_set_new(status, "entries_behind", json_integer(behind));
	json_object_set_new(status, "jobs_waiting",
			    json_integer((json_int_t)s->jobs));
out:
	free(s);
}

/* This volume's conflicts and mounts into STATUS.  Caller holds lock. */
static void plugin_status_journal(struct plugin *p, const char *name,
				  json_t *status)
{
	uint64_t conflicts = 0, mounts = 0;
	int err;

	err = p->journal ? journal_conflicts(p->journal, name,
					     plugin_count_conflict, &conflicts)
			 : -ENOTCONN;
	if (err)
		plugin_degrade(status, "conflicts", err);
	else
		json_object_set_new(status, "conflicts",
				    json_integer((json_int_t)conflicts));
	err = plugin_mount_count(p, name, &mounts);
	if (err)
		plugin_degrade(status, "mounts", err);
	else
		json_object_set_new(status, "mounts_on_node",
				    json_integer((json_int_t)mounts));
}

/*
 * Never Err for a volume that exists (see the top comment): every step
 * that fails only degrades the Status.  When the journal cannot say
 * whether the volume exists, it is answered as existing too, because a
 * forgotten volume is shadowed by a local one and that loses data.
 */
static json_t *plugin_get(struct plugin *p, json_t *req)
{
	char dir[PATH_MAX];
	const char *name;
	json_t *ans = plugin_name(req, &name), *status;
	bool on_disk;
	int exists;

	if (ans)
		return ans;
	if (plugin_volume_dir(p, name, dir, sizeof(dir)) != 0)
		return plugin_err("volume path for %s is too long", name);
	pthread_mutex_lock(&p->lock);
	exists = plugin_exists(p, name, &on_disk);
	status = json_pack("{s:s}", "state", "ok");
	if (status && exists < 0)
		plugin_degrade(status, "volume lookup", exists);
	if (status && exists != 0)
		plugin_status_journal(p, name, status);
	pthread_mutex_unlock(&p->lock);
	if (!status)
		return NULL;
	if (exists == 0) {
		json_decref(status);
		return plugin_err("no such volume %s", name);
	}
	json_object_set_new(status, "on_this_node", json_boolean(on_disk));
	plugin_status_peers(p, status);
	return json_pack("{s:{s:s,s:s,s:o}}", "Volume", "Name", name,
			 "Mountpoint", dir, "Status", status);
}

/* ---- List -------------------------------------------------------------- */

struct plugin_list {
	struct plugin *p;
	json_t *volumes;
	json_t *seen;     /* names already listed, as object keys */
};

static int plugin_list_add(struct plugin_list *l, const char *name)
{
	char dir[PATH_MAX];
	json_t *v;

	if (!path_volume_name_ok(name) || json_object_get(l->seen, name))
		return 0;
	if (plugin_volume_dir(l->p, name, dir, sizeof(dir)) != 0)
		return 0;
	v = json_pack("{s:s,s:s}", "Name", name, "Mountpoint", dir);
	if (!v || json_array_append_new(l->volumes, v) != 0 ||
	    json_object_set_new(l->seen, name, json_true()) != 0)
		return -ENOMEM;
	return 0;
}

static int plugin_list_journal(void *arg, const char *volume,
			       const char *path, const struct journal_state *s)
{
	(void)path;
	(void)s;
	return plugin_list_add(arg, volume);
}

static bool plugin_is_dir_at(int dfd, const char *name)
{
	struct stat sb;

	return fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISDIR(sb.st_mode);
}

/* Volume directories made here that the watcher may not have journalled
 * yet (a List right after Create must show the new volume). */
static int plugin_list_disk(struct plugin_list *l)
{
	DIR *d = opendir(l->p->api->root);
	struct dirent *de;
	int err = 0;

	if (!d)
		return -errno;
	while (!err && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (de->d_type == DT_DIR ||
		    (de->d_type == DT_UNKNOWN &&
		     plugin_is_dir_at(dirfd(d), de->d_name)))
			err = plugin_list_add(l, de->d_name);
	}
	closedir(d);
	return err;
}

static json_t *plugin_list(struct plugin *p, json_t *req)
{
	struct plugin_list l = { p, json_array(), json_object() };
	int jerr, derr;
	json_t *ans = NULL;

	(void)req;
	if (!l.volumes || !l.seen)
		goto out;
	pthread_mutex_lock(&p->lock);
	jerr = p->journal ? journal_foreach_volume(p->journal,
						   plugin_list_journal, &l)
			  : -ENOTCONN;
	pthread_mutex_unlock(&p->lock);
	derr = plugin_list_disk(&l);
	if (jerr == -ENOMEM || derr == -ENOMEM)
		goto out;
	if (jerr && derr) {
		ans = plugin_err("cannot list volumes: %s", kr_strerror(jerr));
		goto out;
	}
	if (jerr)
		log_warn(PLUGIN_MODULE, "listing volumes from disk only: %s",
			 kr_strerror(jerr));
	ans = json_pack("{s:O}", "Volumes", l.volumes);
out:
	json_decref(l.volumes);
	json_decref(l.seen);
	return ans;
}

/* ---- HTTP -------------------------------------------------------------- */

typedef json_t *(*plugin_fn)(struct plugin *p, json_t *req);

static const struct plugin_endpoint {
	const char *path;
	plugin_fn fn;
	bool has_body;   /* Docker sends "null" or nothing to the others */
} plugin_endpoints[] = {
	{ "/Plugin.Activate", plugin_activate, false },
	{ "/VolumeDriver.Create", plugin_create, true },
	{ "/VolumeDriver.Remove", plugin_remove, true },
	{ "/VolumeDriver.Mount", plugin_mount, true },
	{ "/VolumeDriver.Unmount", plugin_unmount, true },
	{ "/VolumeDriver.Path", plugin_path, true },
	{ "/VolumeDriver.Get", plugin_get, true },
	{ "/VolumeDriver.List", plugin_list, false },
	{ "/VolumeDriver.Capabilities", plugin_capabilities, false },
};

static const struct plugin_endpoint *plugin_endpoint(const char *url)
{
	size_t n = sizeof(plugin_endpoints) / sizeof(plugin_endpoints[0]);

	for (size_t i = 0; i < n; i++)
		if (strcmp(url, plugin_endpoints[i].path) == 0)
			return &plugin_endpoints[i];
	return NULL;
}

/* Queues ANS (consumed; NULL means out of memory) with STATUS. */
static enum MHD_Result plugin_send(struct MHD_Connection *conn,
				   unsigned status, json_t *ans)
{
	static char oom[] = "{\"Err\":\"out of memory\"}";
	char *text = ans ? json_dumps(ans, JSON_COMPACT) : NULL;
	struct MHD_Response *resp;
	enum MHD_Result ret;

	json_decref(ans);
	if (text)
		resp = MHD_create_response_from_buffer(strlen(text), text,
						       MHD_RESPMEM_MUST_FREE);
	else
		resp = MHD_create_response_from_buffer(strlen(oom), oom,
						       MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	if (!text)
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				"application/vnd.docker.plugins.v1+json");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

json_t *plugin_parse_body(const char *body, size_t len, json_t **err)
{
	json_error_t jerr;
	json_t *req = json_loadb(body ? body : "", len, 0, &jerr);

	*err = NULL;
	if (!req) {
		*err = plugin_err("malformed JSON: %s", jerr.text);
		return NULL;
	}
	if (!json_is_object(req)) {
		json_decref(req);
		*err = plugin_err("request body must be a JSON object");
		return NULL;
	}
	return req;
}

/* Parses the body and runs E; the answer, or an Err about the body. */
static json_t *plugin_run(struct plugin *p, const struct plugin_endpoint *e,
			  const struct plugin_req *r)
{
	json_t *req, *ans;

	if (r->too_big)
		return plugin_err("request body larger than %d bytes",
				  PLUGIN_BODY_MAX);
	if (!e->has_body)
		return e->fn(p, NULL);
	req = plugin_parse_body(r->body, r->len, &ans);
	if (!req)
		return ans;
	ans = e->fn(p, req);
	json_decref(req);
	return ans;
}

/* Appends one piece of the body; beyond the cap it is read and dropped,
 * so that the client still gets an answer instead of a reset. */
static int plugin_collect(struct plugin_req *r, const char *data, size_t n)
{
	char *grown;

	if (r->too_big)
		return 0;
	if (n > PLUGIN_BODY_MAX - r->len) {
		r->too_big = true;
		free(r->body);
		r->body = NULL;
		r->len = 0;
		return 0;
	}
	grown = realloc(r->body, r->len + n);
	if (!grown)
		return -ENOMEM;
	memcpy(grown + r->len, data, n);
	r->body = grown;
	r->len += n;
	return 0;
}

static enum MHD_Result plugin_handle(void *cls, struct MHD_Connection *conn,
				     const char *url, const char *method,
				     const char *version,
				     const char *upload_data,
				     size_t *upload_data_size, void **ctx)
{
	const struct plugin_endpoint *e;
	struct plugin_req *r = *ctx;

	(void)version;
	if (!r) {
		r = calloc(1, sizeof(*r));
		*ctx = r;
		return r ? MHD_YES : MHD_NO;
	}
	if (*upload_data_size) {
		if (plugin_collect(r, upload_data, *upload_data_size) != 0)
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}
	e = plugin_endpoint(url);
	if (!e)
		return plugin_send(conn, MHD_HTTP_NOT_FOUND,
				   json_pack("{s:s}", "Err",
					     "unknown endpoint"));
	if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
		return plugin_send(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				   plugin_err("use POST for %s", e->path));
	return plugin_send(conn, MHD_HTTP_OK, plugin_run(cls, e, r));
}

static void plugin_completed(void *cls, struct MHD_Connection *conn,
			     void **ctx, enum MHD_RequestTerminationCode toe)
{
	struct plugin_req *r = *ctx;

	(void)cls;
	(void)conn;
	(void)toe;
	if (r)
		free(r->body);
	free(r);
	*ctx = NULL;
}

/* ---- the socket -------------------------------------------------------- */

/* *errmsg (malloc'd, the caller of api_new frees it) unless one is set. */
static void plugin_errmsg(char **errmsg, const char *path, const char *why)
{
	size_t cap = strlen(path) + strlen(why) + 64;

	if (!errmsg || *errmsg)
		return;
	*errmsg = malloc(cap);
	if (*errmsg)
		snprintf(*errmsg, cap, "cannot listen on %s: %s", path, why);
}

static int plugin_sockaddr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return 0;
}

/*
 * Whether a socket file at PATH is still served: 0 when absent or stale
 * (a killed agent's), -EADDRINUSE when a process accepts on it, -EEXIST
 * when something that is not a socket sits there (never deleted).
 */
static int plugin_socket_stale(const char *path)
{
	struct sockaddr_un sa;
	struct stat sb;
	int fd, err = 0;

	if (lstat(path, &sb) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(sb.st_mode))
		return -EEXIST;
	err = plugin_sockaddr(path, &sa);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		err = -EADDRINUSE;
	close(fd);
	return err;
}

static int plugin_mkparent(const char *path)
{
	char parent[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;

	if (n == 0)
		return 0;
	if (n >= sizeof(parent))
		return -ENAMETOOLONG;
	memcpy(parent, path, n);
	parent[n] = '\0';
	return path_mkdirs(parent, 0755);
}

/*
 * Binds under a temporary name, restricts it to 0660, then renames it
 * over PATH: the socket never exists with the umask's looser mode, and a
 * stale file is replaced in one step.  *fd gets the listening socket.
 */
static int plugin_bind(const char *path, int *fd)
{
	char tmp[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct sockaddr_un sa;
	int n, err = 0;

	*fd = -1;
	n = snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	err = plugin_sockaddr(tmp, &sa);
	if (err)
		return err;
	unlink(tmp);   /* left by an agent of the same pid that crashed */
	*fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (*fd < 0)
		return -errno;
	if (bind(*fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		err = -errno;
		goto out;
	}
	if (chmod(tmp, 0660) != 0 || listen(*fd, PLUGIN_CONN_MAX) != 0 ||
	    rename(tmp, path) != 0)
		err = -errno;
	if (err)
		unlink(tmp);
out:
	if (err) {
		close(*fd);
		*fd = -1;
	}
	return err;
}

static int plugin_listen(const char *path, int *fd, char **errmsg)
{
	int err = plugin_mkparent(path);

	if (err) {
		plugin_errmsg(errmsg, path, kr_strerror(err));
		return err;
	}
	err = plugin_socket_stale(path);
	if (err == -EADDRINUSE)
		plugin_errmsg(errmsg, path, "another process serves it");
	else if (err == -EEXIST)
		plugin_errmsg(errmsg, path, "a file that is not a socket is "
			      "in the way");
	else if (err)
		plugin_errmsg(errmsg, path, kr_strerror(err));
	if (err)
		return err;
	err = plugin_bind(path, fd);
	if (err)
		plugin_errmsg(errmsg, path, kr_strerror(err));
	return err;
}

static int plugin_serve(struct plugin *p, int fd, char **errmsg)
{
	/* A pool, not a thread per connection: a Mount waiting to catch up
	 * holds one thread, the others keep answering; and a pool's threads
	 * and wake-up descriptors all end with MHD_stop_daemon(). */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;

	p->daemon = MHD_start_daemon(flags, 0, NULL, NULL, plugin_handle, p,
				     MHD_OPTION_THREAD_POOL_SIZE,
				     (unsigned)PLUGIN_THREADS,
				     MHD_OPTION_LISTEN_SOCKET, fd,
				     MHD_OPTION_NOTIFY_COMPLETED,
				     plugin_completed, p,
				     MHD_OPTION_CONNECTION_LIMIT,
				     (unsigned)PLUGIN_CONN_MAX,
				     MHD_OPTION_CONNECTION_TIMEOUT,
				     (unsigned)60,
				     MHD_OPTION_END);
	if (p->daemon)
		return 0;
	/* Whether libmicrohttpd closed a socket it was handed depends on
	 * how far it got; close it only when it is still open. */
	if (fcntl(fd, F_GETFD) >= 0)
		close(fd);
	plugin_errmsg(errmsg, p->api->plugin_socket,
		      "libmicrohttpd did not start");
	return -EIO;
}

static void plugin_free(struct plugin *p)
{
	if (!p)
		return;
	if (p->daemon)
		MHD_stop_daemon(p->daemon);   /* closes the listening socket */
	journal_close(p->journal);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int plugin_start(struct api *a, char **errmsg)
{
	struct plugin *p;
	struct stat sb;
	int fd = -1, err;

	if (!a->plugin_socket)
		return 0;
	if (!a->root) {
		plugin_errmsg(errmsg, a->plugin_socket, "no volume root");
		return KR_ECONFIG;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->api = a;
	pthread_mutex_init(&p->lock, NULL);
	err = api_journal_open(a, 0, &p->journal, errmsg);
	if (err)
		goto out;
	err = plugin_listen(a->plugin_socket, &fd, errmsg);
	if (err)
		goto out;
	if (stat(a->plugin_socket, &sb) == 0) {
		p->sock_dev = sb.st_dev;
		p->sock_ino = sb.st_ino;
	}
	err = plugin_serve(p, fd, errmsg);
out:
	if (err) {
		plugin_free(p);
		return err;
	}
	a->plugin = p;
	return 0;
}

void plugin_stop(struct api *a)
{
	struct plugin *p = a ? a->plugin : NULL;
	struct stat sb;

	if (!p)
		return;
	/* A socket file nobody serves makes dockerd wait on it; but one
	 * that replaced ours belongs to a newer agent. */
	if (stat(a->plugin_socket, &sb) == 0 && sb.st_dev == p->sock_dev &&
	    sb.st_ino == p->sock_ino)
		unlink(a->plugin_socket);
	plugin_free(p);
	a->plugin = NULL;
}

/* ---- reconciliation ---------------------------------------------------- */

struct plugin_ref {
	char volume[VOLUME_NAME_MAX + 1];
	char id[PLUGIN_ID_MAX + 1];
	int64_t created_ns;
};

struct plugin_refs {
	struct plugin_ref *v;
	size_t n, cap;
};

static int plugin_ref_collect(void *arg, const char *volume, const char *id,
			      int64_t created_ns)
{
	struct plugin_refs *refs = arg;
	struct plugin_ref *grown;

	if (refs->n == refs->cap) {
		size_t cap = refs->cap ? refs->cap * 2 : 16;

		grown = realloc(refs->v, cap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		refs->v = grown;
		refs->cap = cap;
	}
	snprintf(refs->v[refs->n].volume, sizeof(refs->v[0].volume), "%s",
		 volume);
	snprintf(refs->v[refs->n].id, sizeof(refs->v[0].id), "%s", id);
	refs->v[refs->n++].created_ns = created_ns;
	return 0;
}

int plugin_reconcile_mounts(struct api *a, plugin_mount_gone_fn gone,
			    void *arg)
{
	struct plugin *p = a->plugin;
	struct plugin_refs refs = { 0 };
	int err, dropped = 0;

	if (!p)
		return -ENOTCONN;
	pthread_mutex_lock(&p->lock);
	err = journal_mounts(p->journal, plugin_ref_collect, &refs);
	pthread_mutex_unlock(&p->lock);
	if (err)
		goto out;
	/* GONE may be slow (it may ask dockerd), so it runs unlocked. */
	for (size_t i = 0; i < refs.n; i++) {
		struct plugin_ref *r = &refs.v[i];

		if (!gone(arg, r->volume, r->id, r->created_ns))
			continue;
		pthread_mutex_lock(&p->lock);
		err = journal_mount_remove(p->journal, r->volume, r->id);
		pthread_mutex_unlock(&p->lock);
		/* -ENOENT: an Unmount dropped it since it was read. */
		if (err && err != -ENOENT)
			goto out;
		dropped += err == 0;
		err = 0;
	}
out:
	free(refs.v);
	return err ? err : dropped;
}

struct plugin_gone {
	struct plugin *p;
	const char *only;          /* one volume, or NULL for all */
	int64_t now_ns;            /* wall clock */
};

/* A reference is gone when it is old enough and no namespace mounts the
 * volume's directory.  Any doubt (no /proc view, odd filesystem) keeps
 * it: a refused Remove is recoverable, a volume moved away under a
 * running container is not. */
static bool plugin_mount_gone(void *arg, const char *volume, const char *id,
			      int64_t created_ns)
{
	struct plugin_gone *g = arg;
	char dir[PATH_MAX];
	bool used = true;
	int err;

	(void)id;
	if (g->only && strcmp(g->only, volume) != 0)
		return false;
	if (g->now_ns - created_ns < (int64_t)g->p->api->mount_grace_ms *
				     1000000)
		return false;
	if (plugin_volume_dir(g->p, volume, dir, sizeof(dir)) != 0)
		return false;
	err = mountinfo_dir_in_use(dir, &used);
	if (err && err != -ENOTSUP)
		log_debug("plugin", "cannot tell whether %s is mounted: %s",
			  dir, kr_strerror(err));
	return err == 0 && !used;
}

int plugin_reconcile(struct api *a, const char *volume)
{
	struct plugin_gone g = { a->plugin, volume, loop_wall_ns() };
	int n;

	if (!g.p)
		return -ENOTCONN;
	n = plugin_reconcile_mounts(a, plugin_mount_gone, &g);
	if (n > 0)
		log_info("plugin", "dropped %d mount reference%s of %s that no "
			 "container holds any more (a lost Unmount)", n,
			 n == 1 ? "" : "s", volume ? volume : "any volume");
	else if (n < 0)
		log_warn("plugin", "reconciling mount references: %s",
			 kr_strerror(n));
	return n;
}
