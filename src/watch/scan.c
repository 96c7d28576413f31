/*
 * Examining paths: compare what is on disk with the journal's current
 * state and record the difference.  Used for single settled events and,
 * in bulk, by the scan at start-up and after an inotify overflow.
 *
 * Decision per path (cur = the journal's current state):
 *   gone from disk        cur exists -> delete (a directory takes its
 *                         subtree with it)
 *   regular file          size and mtime as cur: same content assumed;
 *                         mode/owner differ -> meta; inode or ctime differ
 *                         -> hash on doubt.  Otherwise hash (from cur's
 *                         chunk list when large, see SCAN_PREVIOUS_MIN):
 *                         same hash -> meta if mtime/mode/owner moved,
 *                         else put.
 *   directory             new -> mkdir, watch it and examine its entries
 *                         (files created before the watch existed);
 *                         mode/owner differ -> meta.  A directory's own
 *                         mtime is noise (it moves with every entry).
 *   symlink               target read, never followed; new or different
 *                         target or owner -> symlink.
 *   fifo, socket, device  skipped with a log line.
 * The scan's fast path skips a file whose size, mtime, inode and ctime all
 * match the journal: 100,000 unchanged files cost 100,000 fstatat calls.
 *
 * Adoption (watch_adopt): a path the journal holds no state for is first
 * judged against the cluster's history (journal_adopt); a known version
 * is taken as it is, and only content known nowhere is recorded, after
 * moving it to a conflict-copy name where another version holds the path.
 */
#include "watch_int.h"

#include "err.h"
#include "log.h"
#include "loop.h"
#include "path.h"
#include "tempname.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCAN_DEPTH_MAX 256
/* From this size a changed file is hashed from its previous version's
 * chunk list (content_hash_fd_from): a third less work when most of it
 * is unchanged, for the price of loading the list. */
#define SCAN_PREVIOUS_MIN (1u << 20)

/* Where one examination stands; keeps the helpers' argument lists short. */
struct exam {
	char vol[VOLUME_NAME_MAX + 1];
	const char *path;         /* within vol; "" is the volume root */
	const char *rel;          /* ROOT-relative */
	char full[PATH_MAX];
	struct stat st;
	struct journal_state cur;
	bool have_cur;            /* cur describes an existing version */
	int64_t event_ns;
	int depth;
};

static int64_t ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static bool same_owner_mode(const struct journal_state *cur,
			    const struct stat *st)
{
	return cur->mode == st->st_mode && cur->uid == st->st_uid &&
	       cur->gid == st->st_gid;
}

/* True when the scan may skip ST without reading it. */
static bool scan_unchanged(const struct journal_state *cur,
			   const struct stat *st)
{
	if (!same_owner_mode(cur, st))
		return false;
	if (S_ISDIR(st->st_mode))
		return true;
	return cur->ino == st->st_ino && cur->ctime_ns == ts_ns(&st->st_ctim) &&
	       (!S_ISREG(st->st_mode) || (cur->size == (uint64_t)st->st_size &&
				  cur->mtime_ns == ts_ns(&st->st_mtim)));
}

static bool volume_live(struct watch *w, const char *vol)
{
	struct journal_state st;
	bool live = journal_lookup(w->journal, vol, "", &st) == 0 &&
		    st.mode != 0;

	journal_state_release(&st);
	return live;
}

/* A file known nowhere where the cluster holds another version: moved
 * to its conflict-copy name (examined next, and recorded there) so that
 * the cluster's version takes the path.  0 when it stays where it is. */
static int exam_keep_aside(struct watch *w, struct exam *e)
{
	struct journal_info info;
	char copy[PATH_REL_MAX + 1], rel[PATH_MAX], full[PATH_MAX];
	int err = journal_info(w->journal, &info);

	if (!err)
		err = journal_conflict_name(e->path, info.origin,
					    info.lamport + 1, copy,
					    sizeof(copy));
	if (!err && snprintf(rel, sizeof(rel), "%s/%s", e->vol, copy) >=
		    (int)sizeof(rel))
		err = -ENAMETOOLONG;
	if (!err)
		err = watch_full_path(w, rel, full, sizeof(full));
	if (!err && renameat2(AT_FDCWD, e->full, AT_FDCWD, full,
			      RENAME_NOREPLACE) != 0)
		err = -errno;
	if (err) {
		log_warn("watch", "adopting %s: another version holds the path "
			 "and it cannot be kept aside (%s); recorded as a "
			 "concurrent version", e->rel, kr_strerror(err));
		return 0;
	}
	log_info("watch", "keeping %s as %s: it changed here while the journal "
		 "was lost, and the cluster holds another version", e->rel,
		 copy);
	w->adoption.kept_aside++;
	watch_pend(w, rel, loop_now_ns(), true);
	return 1;
}

/*
 * A path that is not what the journal says it holds: when it is a
 * peer's version put in place before a crash lost the commit (adopt.c),
 * 1: it is taken as applied, nothing to record.  0 when it is a change
 * of this node's, or a negative code.  HASH: a file's content, TARGET:
 * a symlink's; ST unused when GONE.
 */
static int exam_applied(struct watch *w, struct exam *e, const uint8_t *hash,
			const char *target, bool gone)
{
	bool adopted;
	int err = journal_adopt_applied(w->journal, e->vol, e->path,
					gone ? NULL : &e->st, hash, target,
					&adopted);

	if (err || !adopted)
		return err;
	log_info("watch", "%s holds the version a peer sent, put in place "
		 "before the agent stopped without recording that: taken as "
		 "applied", e->rel);
	return 1;
}

/*
 * A path that is not what the journal says: in watch_adopt, one the
 * journal holds no state for is judged against the cluster's history;
 * otherwise only a peer's version applied before a crash is looked for.
 * 1 when it is taken as a known version or kept aside (nothing to
 * record here), 0 when it is to be recorded as a new change, or a
 * negative code.
 */
static int exam_adopt(struct watch *w, struct exam *e, const struct content *c,
		      const char *target)
{
	enum journal_adoption how;
	int err;

	if (!w->adopting || e->have_cur) {
		err = exam_applied(w, e, c ? c->hash : NULL, target, false);
		/* Its chunk list went with the lost commit: a peer may ask. */
		if (err > 0 && c && journal_content_store(w->journal, c, NULL))
			log_warn("watch", "%s: its chunk list cannot be kept; "
				 "peers get it from another node", e->rel);
		return err;
	}
	err = journal_adopt(w->journal, e->vol, e->path, &e->st,
			    c ? c->hash : NULL, target, &how);
	/* The file is a known version now, which peers may ask this node
	 * for (its only copy, when the journal that recorded it was this
	 * node's) and a later edit is based on: its chunk list is kept as
	 * a recorded file's is. */
	if (!err && c && (how == JOURNAL_ADOPT_CURRENT ||
			  how == JOURNAL_ADOPT_STALE))
		err = journal_content_store(w->journal, c, NULL);
	if (err)
		return err;
	switch (how) {
	case JOURNAL_ADOPT_CURRENT:
		w->adoption.current++;
		return 1;
	case JOURNAL_ADOPT_STALE:
		w->adoption.stale++;
		log_debug("watch", "adopting %s: an older version, replaced "
			  "from the cluster", e->rel);
		return 1;
	case JOURNAL_ADOPT_TAKEN:
		return exam_keep_aside(w, e);
	case JOURNAL_ADOPT_NEW:
		break;
	}
	w->adoption.fresh++;
	return 0;
}

static int exam_record(struct watch *w, struct exam *e, int err)
{
	if (err == 0)
		watch_note_recorded(w, e->event_ns);
	return err;
}

static int exam_delete(struct watch *w, struct exam *e)
{
	int err;

	if (!e->have_cur)
		return 0;
	if (S_ISDIR(e->cur.mode))
		watch_drop_dirs(w, e->rel);
	err = exam_applied(w, e, NULL, NULL, true);
	if (err)
		return err < 0 ? err : 0;
	log_debug("watch", "delete %s", e->rel);
	return exam_record(w, e, journal_record_delete(w->journal, e->vol,
						       e->path));
}

/* A small file read once: its bytes go to the small-file callback. */
static int exam_hash_small(struct watch *w, int fd, struct content *c)
{
	uint8_t buf[WATCH_SMALL_MAX];
	size_t len = 0;
	int err = content_hash_fd_keep(fd, buf, sizeof(buf), &len, c);

	if (!err && len > 0)
		w->small(w->small_arg, c, buf);
	return err;
}

static int exam_hash(struct watch *w, struct exam *e,
		     const struct content *prev, struct content *c)
{
	int fd = open(e->full, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	int err = 0;
	bool small;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &e->st) != 0)
		err = -errno;
	else if (!S_ISREG(e->st.st_mode))
		err = -EAGAIN;    /* replaced under us: look again */
	small = w->small && e->st.st_size <= (off_t)WATCH_SMALL_MAX;
	if (!err && small)
		err = exam_hash_small(w, fd, c);
	if ((!err && !small) || err == -EFBIG)    /* -EFBIG: it grew since */
		err = content_hash_fd_from(fd, prev, c);
	if (!err)
		w->stats.hashed_bytes += c->size;
	close(fd);
	return err;
}

/* Reports a file that cannot be read now and decides when to retry. */
static int exam_hash_failed(struct watch *w, struct exam *e, int err)
{
	if (err == KR_ECHANGED || err == -EAGAIN) {
		watch_pend(w, e->rel, e->event_ns, false);
		return 0;
	}
	if (err == -ENOENT) {
		watch_pend(w, e->rel, e->event_ns, true);
		return 0;
	}
	w->stats.skipped++;
	log_warn("watch", "cannot read %s: %s; not recorded until it changes "
		 "again", e->full, kr_strerror(err));
	return 0;
}

/* Hashes the file, from the version the journal knows when it is large. */
static int exam_hash_changed(struct watch *w, struct exam *e,
			     struct content *c)
{
	struct content prev = { 0 };
	bool have_prev = e->have_cur && S_ISREG(e->cur.mode) &&
			 e->cur.has_hash &&
			 e->st.st_size >= (off_t)SCAN_PREVIOUS_MIN &&
			 journal_content_load(w->journal, e->cur.hash,
					      &prev) == 0;
	int err;

	/* Only for a write: a file hashed on doubt (same size and mtime,
	 * another ctime) is almost always unchanged, and peers would copy
	 * it for nothing. */
	if (have_prev && w->changing &&
	    e->st.st_size >= (off_t)WATCH_CHANGING_MIN &&
	    (e->cur.size != (uint64_t)e->st.st_size ||
	     e->cur.mtime_ns != ts_ns(&e->st.st_mtim)))
		w->changing(w->changing_arg, e->vol, e->path, e->cur.hash,
			    (uint64_t)e->st.st_size);
	err = exam_hash(w, e, have_prev ? &prev : NULL, c);

	content_release(&prev);
	return err;
}

static int exam_file(struct watch *w, struct exam *e)
{
	struct content c = { 0 };
	int64_t hash_ns;
	int err;

	if (e->have_cur && S_ISREG(e->cur.mode) &&
	    e->cur.size == (uint64_t)e->st.st_size &&
	    e->cur.mtime_ns == ts_ns(&e->st.st_mtim)) {
		if (!same_owner_mode(&e->cur, &e->st)) {
			err = e->cur.has_hash ? exam_applied(w, e, e->cur.hash,
							     NULL, false) : 0;
			if (err)
				return err < 0 ? err : 0;
			return exam_record(w, e, journal_record_meta(
				w->journal, e->vol, e->path, &e->st));
		}
		if (e->cur.ino == e->st.st_ino &&
		    e->cur.ctime_ns == ts_ns(&e->st.st_ctim))
			return 0;
	}
	hash_ns = loop_now_ns();
	err = exam_hash_changed(w, e, &c);
	if (err)
		return exam_hash_failed(w, e, err);
	hash_ns = loop_now_ns() - hash_ns;
	err = exam_adopt(w, e, &c, NULL);
	if (err) {
		content_release(&c);
		return err < 0 ? err : 0;
	}
	if (e->have_cur && S_ISREG(e->cur.mode) && e->cur.has_hash &&
	    memcmp(e->cur.hash, c.hash, CONTENT_HASH_LEN) == 0) {
		content_release(&c);
		if (same_owner_mode(&e->cur, &e->st) &&
		    e->cur.mtime_ns == ts_ns(&e->st.st_mtim))
			return journal_touch_state(w->journal, e->vol, e->path,
						   &e->st);
		return exam_record(w, e, journal_record_meta(
			w->journal, e->vol, e->path, &e->st));
	}
	log_debug("watch", "put %s (%llu bytes, hashed in %lld ms)", e->rel,
		  (unsigned long long)c.size, (long long)hash_ns / 1000000);
	err = journal_record_put(w->journal, e->vol, e->path, &e->st, &c);
	content_release(&c);
	return exam_record(w, e, err);
}

static int exam_symlink(struct watch *w, struct exam *e)
{
	char target[PATH_MAX];
	ssize_t n = readlink(e->full, target, sizeof(target) - 1);
	int err;

	if (n < 0)
		return errno == ENOENT ? 0 : -errno;
	target[n] = '\0';
	if (!path_utf8_ok(target, (size_t)n)) {
		w->stats.skipped++;
		log_warn("watch", "skipping symlink %s: target is not valid "
			 "UTF-8", e->rel);
		return 0;
	}
	if (e->have_cur && S_ISLNK(e->cur.mode) && e->cur.target &&
	    strcmp(e->cur.target, target) == 0 &&
	    e->cur.uid == e->st.st_uid && e->cur.gid == e->st.st_gid)
		return journal_touch_state(w->journal, e->vol, e->path, &e->st);
	err = exam_adopt(w, e, NULL, target);
	if (err)
		return err < 0 ? err : 0;
	return exam_record(w, e, journal_record_symlink(w->journal, e->vol,
							e->path, &e->st,
							target));
}

/*
 * A transfer cut short by a crash or a stop leaves its temp file: ours
 * (tempname.h: a user's look-alike is left alone) and worthless, the job
 * starts again.  Removed by the start-up walk,
 * whichever way it meets the name (a known volume's fast path, or the
 * examination of a new volume or of a rejoining node's disk).
 */
static bool scan_sweep_temp(struct watch *w, int dfd, const char *name)
{
	if (!w->sweep_temps || !tempname_stale(name))
		return false;
	unlinkat(dfd, name, 0);
	return true;
}

static int exam_run(struct watch *w, const char *rel, int64_t event_ns,
		    bool subtree, int depth);

static int exam_children(struct watch *w, struct exam *e)
{
	DIR *d;
	struct dirent *de;
	int err = 0;

	if (e->depth >= SCAN_DEPTH_MAX) {
		log_warn("watch", "not descending into %s: deeper than %d "
			 "directories", e->rel, SCAN_DEPTH_MAX);
		return 0;
	}
	d = opendir(e->full);
	if (!d)
		return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
	while (!err && (de = readdir(d))) {
		char child[PATH_MAX];

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    scan_sweep_temp(w, dirfd(d), de->d_name))
			continue;
		if (path_join(child, sizeof(child), e->rel, de->d_name)) {
			log_warn("watch", "skipping %s/%s: path too long", e->rel,
				 de->d_name);
			continue;
		}
		err = exam_run(w, child, e->event_ns, true, e->depth + 1);
	}
	closedir(d);
	return err;
}

static int exam_dir(struct watch *w, struct exam *e, bool subtree)
{
	bool fresh = !e->have_cur || !S_ISDIR(e->cur.mode), adopted;
	int err = exam_adopt(w, e, NULL, NULL);

	if (err < 0)
		return err;
	/* A known directory: nothing to record, on to what it holds. */
	adopted = err > 0;
	err = 0;
	if (adopted)
		fresh = false;
	else if (fresh && e->path[0] == '\0')
		err = journal_record_volume(w->journal, e->vol, true, &e->st);
	else if (fresh)
		err = journal_record_mkdir(w->journal, e->vol, e->path, &e->st);
	else if (!same_owner_mode(&e->cur, &e->st))
		err = journal_record_meta(w->journal, e->vol, e->path, &e->st);
	else
		err = journal_touch_state(w->journal, e->vol, e->path, &e->st);
	if (err)
		return err;
	if (!adopted && (fresh || !same_owner_mode(&e->cur, &e->st)))
		watch_note_recorded(w, e->event_ns);
	if (!fresh && !adopted && !subtree && strmap_get(&w->dir_wd, e->rel))
		return 0;
	/* Watch before listing, so an entry made in between is an event. */
	err = watch_add_dir(w, e->rel);
	if (err && err != -ENOSPC && err != -ENOENT)
		return err;
	return exam_children(w, e);
}

static int exam_volume_gone(struct watch *w, struct exam *e)
{
	if (!e->have_cur)
		return 0;
	watch_drop_dirs(w, e->rel);
	log_info("watch", "volume %s removed", e->vol);
	return exam_record(w, e, journal_record_volume(w->journal, e->vol,
						       false, NULL));
}

static int exam_dispatch(struct watch *w, struct exam *e, bool subtree)
{
	if (lstat(e->full, &e->st) != 0) {
		if (errno != ENOENT && errno != ENOTDIR)
			return -errno;
		return e->path[0] ? exam_delete(w, e) : exam_volume_gone(w, e);
	}
	if (e->path[0] == '\0' && !S_ISDIR(e->st.st_mode))
		return 0;         /* a plain file beside the volumes */
	if (S_ISREG(e->st.st_mode))
		return exam_file(w, e);
	if (S_ISDIR(e->st.st_mode))
		return exam_dir(w, e, subtree);
	if (S_ISLNK(e->st.st_mode))
		return exam_symlink(w, e);
	w->stats.skipped++;
	log_info("watch", "skipping %s: fifos, sockets and devices are not "
		 "replicated", e->rel);
	return exam_delete(w, e);  /* what the journal held there is gone */
}

/* Splits REL into E->vol / E->path and applies the name rules. */
static bool exam_names(struct watch *w, struct exam *e, const char *rel)
{
	const char *slash = strchr(rel, '/');
	size_t n = slash ? (size_t)(slash - rel) : strlen(rel);

	if (n == 0 || n > VOLUME_NAME_MAX)
		return false;
	memcpy(e->vol, rel, n);
	e->vol[n] = '\0';
	e->rel = rel;
	e->path = slash ? slash + 1 : "";
	if (!path_volume_name_ok(e->vol)) {
		if (!slash && e->vol[0] != '.')
			log_info("watch", "ignoring %s: not a valid volume name",
				 e->vol);
		return false;
	}
	if (!watch_volume_wanted(w, e->vol))
		return false;
	if (e->path[0] && path_check_rel(e->path) != 0) {
		w->stats.skipped++;
		log_warn("watch", "skipping a name in %s: not valid UTF-8 or "
			 "too long", e->vol);
		return false;
	}
	return !(e->path[0] && watch_excluded(w, e->path));
}

static int exam_run(struct watch *w, const char *rel, int64_t event_ns,
		    bool subtree, int depth)
{
	struct exam *e = calloc(1, sizeof(*e));
	int err = 0;

	if (!e)
		return -ENOMEM;
	e->event_ns = event_ns;
	e->depth = depth;
	if (!exam_names(w, e, rel))
		goto out;
	err = watch_full_path(w, rel, e->full, sizeof(e->full));
	if (err) {
		w->stats.skipped++;
		log_warn("watch", "skipping %s: path too long", rel);
		err = 0;
		goto out;
	}
	err = journal_lookup(w->journal, e->vol, e->path, &e->cur);
	e->have_cur = err == 0 && e->cur.mode != 0;
	if (err == -ENOENT)
		err = 0;
	/* Anything inside a volume the journal does not know yet makes the
	 * volume first; examining the volume walks to this path anyway. */
	if (!err && e->path[0] && !volume_live(w, e->vol))
		err = exam_run(w, e->vol, event_ns, true, depth);
	else if (!err)
		err = exam_dispatch(w, e, subtree);
out:
	journal_state_release(&e->cur);
	free(e);
	return err;
}

int watch_examine(struct watch *w, const char *rel, int64_t event_ns,
		  bool subtree)
{
	return exam_run(w, rel, event_ns, subtree, 0);
}

/*
 * The bulk scan of one volume.  The journal's view of the volume is
 * loaded into a map once; walking the tree consumes it, and whatever is
 * left afterwards was deleted while nobody watched.
 */
struct scan {
	struct watch *w;
	const char *vol;
	struct strmap known;      /* path -> struct journal_state */
};

static int scan_load_one(void *arg, const char *volume, const char *path,
			 const struct journal_state *s)
{
	struct scan *sc = arg;
	struct journal_state *copy = malloc(sizeof(*copy));
	int err;

	(void)volume;
	if (!copy)
		return -ENOMEM;
	*copy = *s;
	copy->target = NULL;      /* the fast path never needs it */
	err = strmap_put(&sc->known, path, copy, NULL);
	if (err)
		free(copy);
	return err;
}

static void scan_forget(struct scan *sc, const char *path)
{
	free(strmap_del(&sc->known, path));
}

static int scan_dir(struct scan *sc, const char *path, int depth);

static int scan_entry(struct scan *sc, int dfd, const char *path, int depth)
{
	struct journal_state *known = strmap_get(&sc->known, path);
	char rel[PATH_MAX];
	struct stat st;
	bool unchanged, was_dir;
	int err;

	if (path_check_rel(path) != 0) {
		sc->w->stats.skipped++;
		log_warn("watch", "skipping a name in %s: not valid UTF-8 or "
			 "too long", sc->vol);
		return 0;
	}
	if (scan_sweep_temp(sc->w, dfd, path_basename(path)))
		return 0;
	if (watch_excluded(sc->w, path)) {
		/* Excluded now but journalled before: leave it alone rather
		 * than let the sweep turn it into a delete. */
		if (known)
			scan_forget(sc, path);
		return 0;
	}
	if (fstatat(dfd, path_basename(path), &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : -errno;
	unchanged = known && scan_unchanged(known, &st);
	was_dir = known && S_ISDIR(known->mode);
	if (known)
		scan_forget(sc, path);
	if (path_join(rel, sizeof(rel), sc->vol, path))
		return 0;
	if (S_ISDIR(st.st_mode) && was_dir) {
		/* Walk first: it installs the watch, so examining the
		 * directory's metadata afterwards does not walk it again. */
		err = scan_dir(sc, path, depth + 1);
		if (!err && !unchanged)
			err = watch_examine(sc->w, rel, 0, false);
		return err;
	}
	return unchanged ? 0 : watch_examine(sc->w, rel, 0, true);
}

static int scan_dir(struct scan *sc, const char *path, int depth)
{
	char rel[PATH_MAX], full[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int err;

	if (depth >= SCAN_DEPTH_MAX) {
		log_warn("watch", "not descending into %s/%s: deeper than %d "
			 "directories", sc->vol, path, SCAN_DEPTH_MAX);
		return 0;
	}
	if (path_join(rel, sizeof(rel), sc->vol, path) ||
	    watch_full_path(sc->w, rel, full, sizeof(full)))
		return 0;
	err = watch_add_dir(sc->w, rel);
	if (err && err != -ENOSPC)
		return err == -ENOENT ? 0 : err;
	d = opendir(full);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	err = 0;
	while (!err && (de = readdir(d))) {
		char child[PATH_MAX];

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (path_join(child, sizeof(child), path, de->d_name)) {
			log_warn("watch", "skipping %s/%s/%s: path too long",
				 sc->vol, path, de->d_name);
			continue;
		}
		err = scan_entry(sc, dirfd(d), child, depth);
	}
	closedir(d);
	return err;
}

/* Paths the journal holds that the walk did not meet: gone. */
static int scan_sweep(struct scan *sc)
{
	int err = 0;

	for (size_t i = 0; !err && i < sc->known.cap; i++) {
		char rel[PATH_MAX];
		const char *path = sc->known.slots[i].key;

		if (!path)
			continue;
		if (path_join(rel, sizeof(rel), sc->vol, path) == 0)
			err = watch_examine(sc->w, rel, 0, false);
	}
	return err;
}

static void scan_release(struct scan *sc)
{
	for (size_t i = 0; i < sc->known.cap; i++)
		if (sc->known.slots[i].key)
			free(sc->known.slots[i].value);
	strmap_clear(&sc->known);
}

static int scan_volume(struct watch *w, const char *vol)
{
	struct scan sc = { .w = w, .vol = vol };
	bool known;
	int err;

	err = journal_foreach_state(w->journal, vol, scan_load_one, &sc);
	known = strmap_get(&sc.known, "") != NULL;
	scan_forget(&sc, "");
	/* A known volume is walked here with the fast path; that installs
	 * its watch, so examining its root afterwards only checks metadata.
	 * A new one is recorded and walked by the examination itself. */
	if (!err && known)
		err = scan_dir(&sc, "", 0);
	if (!err)
		err = watch_examine(w, vol, 0, false);
	if (!err)
		err = scan_sweep(&sc);
	scan_release(&sc);
	return err;
}

struct volume_sweep {
	struct watch *w;
	struct strmap seen;
	char **gone;
	size_t n_gone;
};

static int volume_sweep_one(void *arg, const char *volume, const char *path,
			    const struct journal_state *s)
{
	struct volume_sweep *vs = arg;
	char **p;

	(void)path;
	(void)s;
	if (strmap_get(&vs->seen, volume) || !watch_volume_wanted(vs->w, volume))
		return 0;
	p = realloc(vs->gone, (vs->n_gone + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	vs->gone = p;
	p[vs->n_gone] = strdup(volume);
	return p[vs->n_gone++] ? 0 : -ENOMEM;
}

/* Refuses to scan a missing root the journal knows volumes under: an
 * unmounted disk must not turn into cluster-wide volume removals. */
static int scan_check_root(struct watch *w)
{
	struct journal_info info;
	struct stat st;
	int err;

	if (stat(w->root, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	if (errno != ENOENT)
		return -errno;
	err = journal_info(w->journal, &info);
	if (err)
		return err;
	if (info.n_volumes > 0) {
		log_error("watch", "volume root %s is missing but the journal "
			  "knows %llu volumes; refusing to record them as "
			  "removed (mount the volume disk, or move the journal "
			  "aside to start afresh)", w->root,
			  (unsigned long long)info.n_volumes);
		return -ENOENT;
	}
	return path_mkdirs(w->root, 0755);
}

int watch_scan_all(struct watch *w)
{
	struct volume_sweep vs = { .w = w };
	struct dirent *de;
	DIR *d;
	int err = scan_check_root(w);

	if (err)
		return err;
	w->stats.scans++;
	err = watch_add_dir(w, "");
	if (err)
		return err;
	d = opendir(w->root);
	if (!d)
		return -errno;
	while (!err && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (!path_volume_name_ok(de->d_name)) {
			/* Docker's rule, so every node can mount it; say so,
			 * or the user waits for data that never comes. */
			log_warn("watch", "ignoring %s/%s: a volume name needs "
				 "at least 2 characters from a-z A-Z 0-9 _ . - "
				 "and must start with a letter or digit",
				 w->root, de->d_name);
			continue;
		}
		if (!watch_volume_wanted(w, de->d_name))
			continue;
		if (strmap_put(&vs.seen, de->d_name, NULL, NULL))
			err = -ENOMEM;
		else
			err = scan_volume(w, de->d_name);
	}
	closedir(d);
	if (!err)
		err = journal_foreach_volume(w->journal, volume_sweep_one, &vs);
	for (size_t i = 0; i < vs.n_gone; i++) {
		if (!err)
			err = watch_examine(w, vs.gone[i], 0, false);
		free(vs.gone[i]);
	}
	free(vs.gone);
	strmap_clear(&vs.seen);
	return err;
}
