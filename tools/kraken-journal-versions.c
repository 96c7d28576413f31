/*
 * kraken-journal versions VOLUME PATH: every version of one path, when
 * and where it was made, its size, and whether its content can be had
 * here: "live" (what the volume holds now), "kept" (in the store of
 * replaced content, src/journal/versions.c) or "not here".  A version
 * not here may be on a peer: every node that applied the change that
 * replaced it keeps it (the node that made that change does not), and
 * the running agent's restore in place fetches it from them.  Only
 * they can tell, so the running agent the config names is asked
 * (GET /v1/versions, which asks the peers): such a version is then "on
 * NODE,...", "gone" when every peer answered and none has it, or still
 * "not here" when one could not be asked.  Without the agent, the
 * listing is what the local journal and store say, and why the peers
 * were not asked.
 *
 * kraken-journal restore VOLUME [PATH] --at TIME --to DEST: the version
 * current at TIME (the newest made by then) written to DEST, a new file,
 * from the store or from the live file when that still holds it; the
 * copy is checked against the version's content hash before it gets its
 * name (src/journal/restore.c).  Without PATH, every path of the volume
 * as it was then into DEST, a new directory: directories and symlinks
 * made, files restored, modes, owners (when allowed) and mtimes set,
 * directories' mtimes last; what cannot be had is named and left out.
 * Restores read only the journal and the store, with the agent running
 * or not; but content only peers keep is first fetched into the store
 * by the running agent the config names (POST /v1/admin/fetch; keep.c
 * in the agent), the restore waiting until it is there or given up.
 */
#include "kraken-journal.h"

#include "config.h"
#include "content.h"
#include "err.h"
#include "loop.h"
#include "path.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct vlist {
	struct journal_versions *store;   /* NULL: nothing kept here */
	struct journal_state live;
	bool has_live;
	json_t *rows;
	unsigned not_here;
};

static void utc(int64_t ns, char *out, size_t cap)
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int on_version(void *arg, const struct journal_change *c)
{
	struct vlist *v = arg;
	const char *here = journal_versions_where(v->store, v->has_live ?
						  &v->live : NULL, c);
	char when[32], hex[2 * CONTENT_HASH_LEN + 1] = "-";

	v->not_here += strcmp(here, "not here") == 0;
	utc(c->wall_ns, when, sizeof(when));
	if (c->has_hash)
		content_hex(c->hash, hex);
	return json_array_append_new(v->rows, json_pack(
		"{s:s,s:I,s:s,s:I,s:s,s:I,s:s,s:s}", "time", when,
		"wall_ns", (json_int_t)c->wall_ns, "origin", c->ref.origin,
		"seq", (json_int_t)c->ref.seq, "op", journal_op_name(c->op),
		"size", (json_int_t)c->size, "hash", hex, "content", here)) ?
		-ENOMEM : 0;
}

/* The store under ROOT (NULL: the volume root the journal names), or
 * NULL when nothing is kept there. */
static struct journal_versions *store_open(struct journal *j, const char *root)
{
	struct journal_versions *v = NULL;
	char *stored = NULL;

	if (!root && journal_meta_get(j, "volume_root", &stored) == 0)
		root = stored;
	if (!root || journal_versions_find(j, root, &v) != 0)
		v = NULL;
	free(stored);
	return v;
}

/* The agent's row for the content of ROW (same hash), or NULL. */
static json_t *agent_row(json_t *doc, json_t *row)
{
	const char *hex = json_string_value(json_object_get(row, "hash"));
	json_t *r;
	size_t i;

	json_array_foreach(json_object_get(doc, "versions"), i, r) {
		const char *h = json_string_value(json_object_get(r, "hash"));

		if (hex && h && strcmp(hex, h) == 0)
			return r;
	}
	return NULL;
}

/* Where the versions not here are, as the running agent's peers said
 * (GET /v1/versions); *WHY says why they were not asked (rows as they
 * were), or is NULL.  Returns the agent's document, or NULL. */
static json_t *ask_peers(const struct config *cfg, const char *volume,
			 const char *path, json_t *rows, char *why, size_t cap)
{
	char v[3 * VOLUME_NAME_MAX + 1], p[3 * PATH_REL_MAX + 1], target[16384];
	json_t *doc = NULL, *row;
	size_t i;

	if (!cfg) {
		snprintf(why, cap, "pass --config FILE so that the running "
			 "agent can ask them");
		return NULL;
	}
	if (kj_url_escape(volume, v, sizeof(v)) ||
	    kj_url_escape(path, p, sizeof(p)))
		return snprintf(why, cap, "name too long"), NULL;
	snprintf(target, sizeof(target), "/v1/versions?volume=%s&path=%s", v,
		 p);
	if (kj_agent_get(cfg, target, &doc, why, cap) != 0)
		return NULL;
	if (json_object_get(doc, "peers_note")) {
		snprintf(why, cap, "%s", json_string_value(
			 json_object_get(doc, "peers_note")));
		json_decref(doc);
		return NULL;
	}
	json_array_foreach(rows, i, row) {
		json_t *r = strcmp(json_string_value(json_object_get(row,
			"content")), "not here") == 0 ? agent_row(doc, row) :
			NULL;

		if (r && json_object_get(r, "peers")) {
			json_object_set(row, "content",
					json_object_get(r, "content"));
			json_object_set(row, "peers", json_object_get(r,
								      "peers"));
		}
	}
	return doc;
}

/* "on n2,n3" for a version peers keep, else its content column. */
static void here_text(json_t *row, char *out, size_t cap)
{
	const char *c = json_string_value(json_object_get(row, "content"));
	json_t *id;
	size_t i, n = 0;

	if (strcmp(c, "peer") != 0) {
		snprintf(out, cap, "%s", c);
		return;
	}
	n = (size_t)snprintf(out, cap, "on ");
	json_array_foreach(json_object_get(row, "peers"), i, id)
		if (n < cap)
			n += (size_t)snprintf(out + n, cap - n, "%s%s",
					      i ? "," : "",
					      json_string_value(id));
}

static unsigned count_content(json_t *rows, const char *what)
{
	unsigned n = 0;
	json_t *row;
	size_t i;

	json_array_foreach(rows, i, row)
		n += strcmp(json_string_value(json_object_get(row, "content")),
			    what) == 0;
	return n;
}

static void print_table(json_t *rows, json_t *doc, const char *why)
{
	json_t *row, *p;
	char here[512];
	size_t i;

	printf("%-20s  %-28s  %-8s  %12s  %-12s  %s\n", "TIME (UTC)",
	       "ORIGIN", "OP", "SIZE", "CONTENT", "HERE");
	json_array_foreach(rows, i, row) {
		here_text(row, here, sizeof(here));
		printf("%-20s  %-28s  %-8s  %12lld  %.12s  %s\n",
		       json_string_value(json_object_get(row, "time")),
		       json_string_value(json_object_get(row, "origin")),
		       json_string_value(json_object_get(row, "op")),
		       (long long)json_integer_value(json_object_get(row,
								     "size")),
		       json_string_value(json_object_get(row, "hash")), here);
	}
	if (doc && json_array_size(json_object_get(doc, "peers"))) {
		printf("\npeers asked:");
		json_array_foreach(json_object_get(doc, "peers"), i, p)
			printf("%s %s (%s)", i ? "," : "",
			       json_string_value(json_object_get(p, "id")),
			       json_string_value(json_object_get(p, "status")));
		putchar('\n');
	}
	if (count_content(rows, "peer"))
		printf("\n'on NODE': a restore in place through the running "
		       "agent (POST /v1/admin/restore) fetches it from them.\n");
	if (count_content(rows, "gone"))
		printf("\n'gone': no node keeps that content any more "
		       "(versions.keep, versions.max_bytes).\n");
	if (count_content(rows, "not here") && doc)
		printf("\n'not here': a peer that could not be asked may keep "
		       "it.\n");
	else if (count_content(rows, "not here"))
		printf("\n'not here': peers that applied the change replacing "
		       "such a version keep it (versions.keep), but they were "
		       "not asked: %s.\n", why);
}

int kj_versions(struct journal *j, const struct config *cfg,
		const char *root, const char *volume, const char *path,
		bool json)
{
	struct vlist v = { 0 };
	json_t *doc = NULL;
	char why[512] = "";
	int err = -ENOMEM;

	v.store = store_open(j, root);
	v.has_live = journal_lookup(j, volume, path, &v.live) == 0;
	v.rows = json_array();
	if (v.rows)
		err = journal_history(j, volume, path, on_version, &v);
	if (!err && v.not_here)
		doc = ask_peers(cfg, volume, path, v.rows, why, sizeof(why));
	if (!err && json_array_size(v.rows) && json) {
		json_dumpf(v.rows, stdout, JSON_INDENT(2));
		putchar('\n');
		if (v.not_here && !doc)
			fprintf(stderr, "kraken-journal: peers not asked: "
				"%s\n", why);
	} else if (!err && json_array_size(v.rows)) {
		print_table(v.rows, doc, why);
	}
	if (!err && json_array_size(v.rows) == 0) {
		fprintf(stderr, "kraken-journal: no versions of %s/%s\n",
			volume, path);
		err = 1;
	}
	json_decref(doc);
	json_decref(v.rows);
	if (v.has_live)
		journal_state_release(&v.live);
	journal_versions_close(v.store);
	if (err < 0) {
		fprintf(stderr, "kraken-journal: versions: %s\n",
			kr_strerror(err));
		return 2;
	}
	return err;
}

/* ---- restore ------------------------------------------------------------ */

static int restore_fail(const char *volume, const char *path, const char *why)
{
	fprintf(stderr, "kraken-journal: restore %s/%s: %s\n", volume, path,
		why);
	return 1;
}

/* Why INFO's restore did not happen, into WHY. */
static void restore_why(const struct journal_restore_info *info, char *why,
			size_t cap)
{
	char when[32];

	utc(info->found ? info->wall_ns : info->first_ns, when, sizeof(when));
	switch (info->status) {
	case JOURNAL_RESTORE_NOT_YET:
		snprintf(why, cap, info->first_ns ? "it did not exist yet at "
			 "that time (its first version is of %s UTC)" :
			 "the journal knows no version of it", when);
		break;
	case JOURNAL_RESTORE_DELETED:
	case JOURNAL_RESTORE_NOT_FILE:
		snprintf(why, cap, "%s at that time (by %s at %s UTC); only "
			 "files are restored", info->status ==
			 JOURNAL_RESTORE_DELETED ? "it was deleted" :
			 "it was not a file", info->ref.origin, when);
		break;
	default:
		snprintf(why, cap, "the content of its version of %s UTC (by "
			 "%s) is not kept on this node: pruned (versions.keep, "
			 "versions.max_bytes), or replaced by a write on this "
			 "node itself; with --config FILE the running agent "
			 "fetches it from a peer that keeps it", when,
			 info->ref.origin);
	}
}

/* DEST's directory, opened, and its last name. */
static int open_dest(const char *dest, const char **name)
{
	const char *slash = strrchr(dest, '/');
	char dir[4096];
	int fd;

	*name = slash ? slash + 1 : dest;
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dest)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - dest), dest);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* ---- fetching from peers ------------------------------------------------- */

/* A version only peers keep, fetched into this node's store by the
 * running agent (POST /v1/admin/fetch) before it is restored from there.
 * A fetch is given up by the agent when no connected peer keeps it: its
 * job goes without the store getting the content. */
enum fetch_state { FETCH_WAITING, FETCH_HERE, FETCH_GONE, FETCH_FAILED };

struct fetch {
	char *path;
	uint8_t hash[CONTENT_HASH_LEN];
	enum fetch_state state;
	bool seen;                /* its job was seen in the journal */
};

struct fetches {
	const struct config *cfg;
	struct journal *j;
	const char *root, *volume;
	struct journal_versions *store;
	struct fetch *v;
	size_t n, cap;
	char why[512];            /* the last failure to ask */
};

/* A fetch job must show within this; a job seen goes at its own pace. */
#define FETCH_START_NS (10LL * 1000000000)
#define FETCH_POLL_US 100000

/* Asks the agent for VOLUME/PATH's version of WALL_NS (its exact time):
 * 0 when it is being fetched or is here already. */
static int fetch_ask(struct fetches *f, const char *path, int64_t wall_ns)
{
	char v[3 * VOLUME_NAME_MAX + 1], p[3 * PATH_REL_MAX + 1], target[16384];
	json_t *doc = NULL;
	int status, err;

	if (kj_url_escape(f->volume, v, sizeof(v)) ||
	    kj_url_escape(path, p, sizeof(p)))
		return snprintf(f->why, sizeof(f->why), "name too long"), -EINVAL;
	snprintf(target, sizeof(target), "/v1/admin/fetch?volume=%s&path=%s&"
		 "at=%%40%lld.%09lld", v, p, (long long)(wall_ns / 1000000000),
		 (long long)(wall_ns % 1000000000));
	err = kj_agent_request(f->cfg, "POST", target, true, &doc, &status,
			       f->why, sizeof(f->why));
	if (!err && status != 200 && status != 202) {
		json_t *e = json_object_get(doc, "error");

		snprintf(f->why, sizeof(f->why), "the agent answered %d: %s",
			 status, e ? json_string_value(e) : "");
		err = -EPROTO;
	}
	json_decref(doc);
	return err;
}

/* Queues VOLUME/PATH's version current at AT_NS for fetching. */
static int fetch_add(struct fetches *f, const char *path, int64_t at_ns)
{
	struct journal_version_at v;
	struct fetch *x;
	int err = journal_version_at(f->j, f->volume, path, at_ns, &v);

	free(v.target);
	if (err || !v.found || !v.has_hash)
		return err ? err : -ENOENT;
	if (f->n == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 16;

		x = realloc(f->v, cap * sizeof(*x));
		if (!x)
			return -ENOMEM;
		f->v = x;
		f->cap = cap;
	}
	x = &f->v[f->n];
	*x = (struct fetch){ .path = strdup(path) };
	memcpy(x->hash, v.hash, CONTENT_HASH_LEN);
	if (!x->path)
		return -ENOMEM;
	f->n++;
	if (fetch_ask(f, path, v.wall_ns) != 0)
		x->state = FETCH_FAILED;
	return 0;
}

static bool fetch_poll(struct fetches *f, int64_t waited_ns)
{
	bool waiting = false;

	if (!f->store)
		journal_versions_find(f->j, f->root, &f->store);
	for (size_t i = 0; i < f->n; i++) {
		struct fetch *x = &f->v[i];

		if (x->state != FETCH_WAITING)
			continue;
		if (journal_versions_has(f->store, x->hash))
			x->state = FETCH_HERE;
		else if (journal_job_fetching(f->j, f->volume, x->hash))
			x->seen = true;
		else if (x->seen || waited_ns > FETCH_START_NS)
			x->state = FETCH_GONE;
		waiting |= x->state == FETCH_WAITING;
	}
	return waiting;
}

/* Waits until every fetch is here or given up, saying so on a tty. */
static void fetch_wait(struct fetches *f)
{
	int64_t start = loop_now_ns(), said = 0;
	bool tty = isatty(STDERR_FILENO);

	while (fetch_poll(f, loop_now_ns() - start)) {
		int64_t s = (loop_now_ns() - start) / 1000000000;

		if (tty && s != said)
			fprintf(stderr, "\rfetching %zu version%s from peers: "
				"%llds", f->n, f->n == 1 ? "" : "s",
				(long long)s);
		said = s;
		usleep(FETCH_POLL_US);
	}
	if (tty && said)
		fputc('\n', stderr);
}

static void fetches_release(struct fetches *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->v[i].path);
	free(f->v);
	journal_versions_close(f->store);
}

/* Why fetch X did not bring its content. */
static const char *fetch_why(const struct fetches *f, const struct fetch *x)
{
	return x->state == FETCH_FAILED ? f->why : "no connected peer keeps "
	       "it any more (the agent's log says more)";
}

/* VOLUME/PATH as it was at AT_NS into DEST, from what this node holds. */
static int restore_here(struct journal *j, const char *root,
			const char *volume, const char *path, int64_t at_ns,
			const char *dest, struct journal_restore_info *info)
{
	struct journal_versions *store;
	const char *name;
	int dirfd = open_dest(dest, &name), err;

	if (dirfd < 0)
		return dirfd;
	store = store_open(j, root);
	err = journal_restore_file(j, store, root, volume, path, at_ns, dirfd,
				   name, false, info);
	journal_versions_close(store);
	close(dirfd);
	return err;
}

/* The same once the running agent fetched the content from peers. */
static int restore_fetched(struct journal *j, const struct config *cfg,
			   const char *root, const char *volume,
			   const char *path, int64_t at_ns, const char *dest,
			   struct journal_restore_info *info)
{
	struct fetches f = { .cfg = cfg, .j = j, .root = root,
			     .volume = volume };
	int err = fetch_add(&f, path, at_ns);

	if (!err && f.v[0].state == FETCH_WAITING)
		fetch_wait(&f);
	if (!err && f.v[0].state == FETCH_HERE) {
		err = restore_here(j, root, volume, path, at_ns, dest, info);
		if (!err && info->status == JOURNAL_RESTORE_NOT_KEPT)
			fprintf(stderr, "kraken-journal: restore %s/%s: fetched "
				"from a peer, but pruned here again before it "
				"could be read (versions.max_bytes)\n", volume,
				path);
	} else if (!err)
		fprintf(stderr, "kraken-journal: restore %s/%s: its content is "
			"not kept on this node, and fetching it from peers "
			"failed: %s\n", volume, path, fetch_why(&f, &f.v[0]));
	fetches_release(&f);
	return err;
}

static int kj_restore(struct journal *j, const struct config *cfg,
		      const char *root, const char *volume, const char *path,
		      int64_t at_ns, const char *dest)
{
	struct journal_restore_info info;
	char when[32], why[768];
	int err = restore_here(j, root, volume, path, at_ns, dest, &info);

	if (!err && info.status == JOURNAL_RESTORE_NOT_KEPT && cfg) {
		err = restore_fetched(j, cfg, root, volume, path, at_ns, dest,
				      &info);
		if (!err && info.status == JOURNAL_RESTORE_NOT_KEPT)
			return 1;         /* said why */
	}
	if (err)
		return restore_fail(volume, path, err == -EEXIST ?
				    "the destination exists; name a new file" :
				    kr_strerror(err)) + 1;
	if (info.status != JOURNAL_RESTORE_DONE) {
		restore_why(&info, why, sizeof(why));
		return restore_fail(volume, path, why);
	}
	utc(info.wall_ns, when, sizeof(when));
	printf("restored %s/%s as it was at that time (the version of %s UTC, "
	       "by %s, %llu bytes) to %s\n", volume, path, when,
	       info.ref.origin, (unsigned long long)info.size, dest);
	return 0;
}

/* ---- a whole volume ----------------------------------------------------- */

struct tree {
	struct journal *j;
	struct journal_versions *store;
	struct fetches *fetches;  /* files only peers keep; NULL: no agent */
	const char *root, *volume;
	int64_t at_ns;
	int dirfd;                /* DIR, the volume's root as restored */
	unsigned files, dirs, links, missing;
	/* directories' mtimes, set last: making entries moves them */
	struct tree_dir { char *path; int64_t mtime_ns; } *dir;
	size_t n_dir, cap_dir;
};

static int tree_note_dir(struct tree *t, const char *path, int64_t mtime_ns)
{
	if (t->n_dir == t->cap_dir) {
		size_t cap = t->cap_dir ? 2 * t->cap_dir : 64;
		struct tree_dir *d = realloc(t->dir, cap * sizeof(*d));

		if (!d)
			return -ENOMEM;
		t->dir = d;
		t->cap_dir = cap;
	}
	t->dir[t->n_dir].path = strdup(path);
	t->dir[t->n_dir].mtime_ns = mtime_ns;
	return t->dir[t->n_dir++].path ? 0 : -ENOMEM;
}

static void tree_times(struct tree *t)
{
	for (size_t i = t->n_dir; i-- > 0;) {
		struct timespec ts[2] = {
			{ .tv_nsec = UTIME_OMIT },
			{ t->dir[i].mtime_ns / 1000000000,
			  t->dir[i].mtime_ns % 1000000000 },
		};

		utimensat(t->dirfd, t->dir[i].path[0] ? t->dir[i].path : ".",
			  ts, AT_SYMLINK_NOFOLLOW);
		free(t->dir[i].path);
	}
	free(t->dir);
}

/* PATH's parent under DIR, opened, and its last name. */
static int tree_parent(struct tree *t, const char *path, const char **name)
{
	const char *slash = strrchr(path, '/');
	char rel[8192];

	*name = slash ? slash + 1 : path;
	if (!slash)
		return dup(t->dirfd);
	snprintf(rel, sizeof(rel), "%.*s", (int)(slash - path), path);
	return path_open_beneath(t->dirfd, rel, O_PATH | O_DIRECTORY);
}

static int tree_file(struct tree *t, int dirfd, const char *path,
		     const char *name)
{
	struct journal_restore_info info;
	int err = journal_restore_file(t->j, t->store, t->root, t->volume, path,
				       t->at_ns, dirfd, name, false, &info);

	if (!err && info.status == JOURNAL_RESTORE_NOT_KEPT && t->fetches) {
		err = fetch_add(t->fetches, path, t->at_ns);
	} else if (!err && info.status == JOURNAL_RESTORE_NOT_KEPT) {
		fprintf(stderr, "kraken-journal: restore %s/%s: its content "
			"is not kept on this node; left out (with --config "
			"FILE the running agent fetches it from peers)\n",
			t->volume, path);
		t->missing++;
	} else if (!err && info.status == JOURNAL_RESTORE_DONE) {
		t->files++;
	}
	return err;
}

static int tree_one(void *arg, const char *path)
{
	struct tree *t = arg;
	struct journal_version_at v;
	const char *name;
	int dirfd, err = journal_version_at(t->j, t->volume, path, t->at_ns,
					     &v);

	if (err || !v.found || v.mode == 0) {
		free(v.target);
		return err;       /* not there at that time */
	}
	if (path[0] == '\0') {
		err = fchmod(t->dirfd, v.mode & 07777) ? -errno : 0;
		if (!err)
			err = tree_note_dir(t, path, v.mtime_ns);
		return err;
	}
	dirfd = tree_parent(t, path, &name);
	if (dirfd < 0) {
		free(v.target);
		fprintf(stderr, "kraken-journal: restore %s/%s: its directory "
			"was not there at that time; left out\n", t->volume,
			path);
		t->missing++;
		return 0;
	}
	if (S_ISDIR(v.mode)) {
		err = mkdirat(dirfd, name, v.mode & 07777) ? -errno : 0;
		if (!err)
			err = tree_note_dir(t, path, v.mtime_ns);
		t->dirs += !err;
	} else if (S_ISLNK(v.mode) && v.target) {
		struct timespec ts[2] = {
			{ .tv_nsec = UTIME_OMIT },
			{ v.mtime_ns / 1000000000, v.mtime_ns % 1000000000 },
		};

		err = symlinkat(v.target, dirfd, name) ? -errno : 0;
		if (!err)
			utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
		t->links += !err;
	} else if (S_ISREG(v.mode)) {
		err = tree_file(t, dirfd, path, name);
	}
	if (!err && !S_ISREG(v.mode) &&
	    fchownat(dirfd, name, v.uid, v.gid, AT_SYMLINK_NOFOLLOW) &&
	    errno != EPERM)
		err = -errno;
	close(dirfd);
	free(v.target);
	return err;
}

/* The files the first pass found only on peers, once fetched. */
static int tree_fetched(struct tree *t)
{
	struct fetches *f = t->fetches;
	int err = 0;

	fetch_wait(f);
	journal_versions_close(t->store);
	t->store = store_open(t->j, t->root);
	for (size_t i = 0; !err && i < f->n; i++) {
		struct fetch *x = &f->v[i];
		const char *name;
		int dirfd;

		if (x->state != FETCH_HERE) {
			fprintf(stderr, "kraken-journal: restore %s/%s: its "
				"content is not kept on this node, and fetching "
				"it from peers failed: %s; left out\n",
				t->volume, x->path, fetch_why(f, x));
			t->missing++;
			continue;
		}
		dirfd = tree_parent(t, x->path, &name);
		if (dirfd < 0)
			return dirfd;
		t->fetches = NULL;   /* a second miss is left out */
		err = tree_file(t, dirfd, x->path, name);
		t->fetches = f;
		close(dirfd);
	}
	return err;
}

/* restore VOLUME --at TIME --to DIR: every path as it was then. */
static int kj_restore_tree(struct journal *j, const struct config *cfg,
			   const char *root, const char *volume,
			   int64_t at_ns, const char *to)
{
	struct fetches f = { .cfg = cfg, .j = j, .root = root,
			     .volume = volume };
	struct tree t = { .j = j, .root = root, .volume = volume,
			  .at_ns = at_ns, .fetches = cfg ? &f : NULL };
	int err;

	if (mkdir(to, 0700) != 0)
		return restore_fail(volume, "", errno == EEXIST ?
				    "the destination exists; name a new "
				    "directory" : strerror(errno)) + 1;
	t.dirfd = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t.dirfd < 0)
		return restore_fail(volume, "", strerror(errno)) + 1;
	t.store = store_open(j, root);
	err = journal_paths(j, volume, tree_one, &t);
	if (!err && f.n)
		err = tree_fetched(&t);
	fetches_release(&f);
	tree_times(&t);
	journal_versions_close(t.store);
	close(t.dirfd);
	if (err)
		return restore_fail(volume, "", kr_strerror(err)) + 1;
	printf("restored volume %s as it was at that time to %s: %u files, "
	       "%u directories, %u symlinks; %u left out\n", volume, to,
	       t.files, t.dirs, t.links, t.missing);
	return t.missing ? 1 : 0;
}

int kj_restore_cmd(struct journal *j, const struct config *cfg,
		   const char *root, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "at", required_argument, NULL, 'a' },
		{ "to", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *at = NULL, *to = NULL;
	char *stored_root = NULL;
	int64_t at_ns = 0;
	int c, rc;

	/* 0, not 1: a full start again, so that options may follow the
	 * operands (the tool's own getopt stopped at the command). */
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'a': at = optarg; break;
		case 't': to = optarg; break;
		case 'h':
			printf("usage: kraken-journal restore VOLUME [PATH] --at "
			       "TIME --to DEST\n");
			return 0;
		default: return 2;
		}
	}
	if (argc - optind < 1 || argc - optind > 2 || !at || !to) {
		fprintf(stderr, "kraken-journal: restore: expected VOLUME [PATH] "
			"--at TIME --to DEST\n");
		return 2;
	}
	if (kj_parse_time(at, &at_ns)) {
		fprintf(stderr, "kraken-journal: restore: --at '%s': expected a "
			"time such as 2026-12-07T10:00:00Z, @SECONDS or an age "
			"(30m, 2h)\n", at);
		return 2;
	}
	if (!root && journal_meta_get(j, "volume_root", &stored_root) == 0)
		root = stored_root;
	if (argc - optind == 1)
		rc = kj_restore_tree(j, cfg, root, argv[optind], at_ns, to);
	else
		rc = kj_restore(j, cfg, root, argv[optind],
				argv[optind + 1] + strspn(argv[optind + 1], "/"),
				at_ns, to);
	free(stored_root);
	return rc;
}
