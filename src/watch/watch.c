/*
 * inotify side of the watcher: one watch per directory, events turned into
 * pending paths, and the settle logic that decides when a path is due.
 *
 * Why two lists: a path whose writer closed it (or that was deleted,
 * renamed, created as a directory, chmod'ed) is complete and goes on the
 * immediate list; a path only modified waits on the settle list until no
 * event touched it for settle_ns.  Each list stays sorted by due time
 * because every entry of a list gets the same delay, and a path that sees a
 * new event moves to the tail of its list.  Due paths are examined in
 * turns of at most turn_ns, oldest first, so a burst is committed and
 * sent while it goes on.
 *
 * Watch descriptors are mapped both ways (wd -> dir, dir -> wd) so that
 * events find their directory and a moved or deleted subtree can drop its
 * watches at once: the kernel keeps a moved directory's watch, and its
 * old name would otherwise be reused for events under the new one.
 */
#include "watch_int.h"

#include "err.h"
#include "hist.h"
#include "log.h"
#include "loop.h"
#include "path.h"
#include "tempname.h"

#include <assert.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WATCH_SETTLE_MS_DEFAULT 200
#define WATCH_UNCOMMITTED_MAX 65536
#define WATCH_TURN_MS_DEFAULT 25
#define WATCH_DIR_MASK (IN_CREATE | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | \
			IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | \
			IN_DELETE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | \
			IN_EXCL_UNLINK)

static char **watch_strv_dup(char *const *v, size_t n)
{
	char **out = calloc(n + 1, sizeof(*out));

	for (size_t i = 0; out && i < n; i++) {
		out[i] = strdup(v[i]);
		if (!out[i]) {
			while (i--)
				free(out[i]);
			free(out);
			return NULL;
		}
	}
	return out;
}

static void watch_strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

int watch_new(struct journal *j, const struct watch_options *opt,
	      struct watch **out)
{
	struct watch *w = calloc(1, sizeof(*w));
	int err = -ENOMEM;

	*out = NULL;
	if (!w)
		return -ENOMEM;
	w->journal = j;
	w->ifd = -1;
	w->settle_ns = (int64_t)(opt->settle_ms ? opt->settle_ms :
				 WATCH_SETTLE_MS_DEFAULT) * 1000000;
	w->turn_ns = (int64_t)(opt->turn_ms ? opt->turn_ms :
			       WATCH_TURN_MS_DEFAULT) * 1000000;
	w->changing = opt->changing;
	w->changing_arg = opt->changing_arg;
	w->small = opt->small;
	w->small_arg = opt->small_arg;
	w->root = strdup(opt->root);
	w->exclude = watch_strv_dup(opt->exclude, opt->n_exclude);
	w->n_exclude = opt->n_exclude;
	if (opt->volumes) {
		w->volumes = watch_strv_dup(opt->volumes, opt->n_volumes);
		w->n_volumes = opt->n_volumes;
		if (!w->volumes)
			goto fail;
	}
	if (!w->root || !w->exclude)
		goto fail;
	w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->ifd < 0) {
		err = -errno;
		goto fail;
	}
	*out = w;
	return 0;
fail:
	watch_free(w);
	return err;
}

static void watch_list_unlink(struct pending_list *l, struct pending *p)
{
	/* P is on L (p->now says which list): unlinking it from the other
	 * would corrupt both. */
	assert(p->prev ? p->prev->next == p : l->head == p);
	assert(p->next ? p->next->prev == p : l->tail == p);
	if (p->prev)
		p->prev->next = p->next;
	else
		l->head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		l->tail = p->prev;
	p->prev = p->next = NULL;
}

static void watch_list_append(struct pending_list *l, struct pending *p)
{
	p->prev = l->tail;
	p->next = NULL;
	if (l->tail)
		l->tail->next = p;
	else
		l->head = p;
	l->tail = p;
}

static void watch_pending_free(struct watch *w, struct pending *p)
{
	watch_list_unlink(p->now ? &w->now_list : &w->settle_list, p);
	strmap_del(&w->pending, p->rel);
	free(p->rel);
	free(p);
}

void watch_free(struct watch *w)
{
	if (!w)
		return;
	while (w->now_list.head)
		watch_pending_free(w, w->now_list.head);
	while (w->settle_list.head)
		watch_pending_free(w, w->settle_list.head);
	strmap_clear(&w->pending);
	for (size_t i = 0; i < w->wd_cap; i++)
		free(w->wd_rel[i]);
	free(w->wd_rel);
	strmap_clear(&w->dir_wd);
	if (w->ifd >= 0)
		close(w->ifd);
	watch_strv_free(w->volumes, w->n_volumes);
	watch_strv_free(w->exclude, w->n_exclude);
	free(w->uncommitted);
	free(w->root);
	free(w);
}

int watch_fd(const struct watch *w)
{
	return w->ifd;
}

int watch_full_path(const struct watch *w, const char *rel, char *out,
		    size_t cap)
{
	return path_join(out, cap, w->root, rel);
}

bool watch_volume_wanted(const struct watch *w, const char *volume)
{
	if (!w->volumes)
		return true;
	for (size_t i = 0; i < w->n_volumes; i++)
		if (strcmp(w->volumes[i], volume) == 0)
			return true;
	return false;
}

/* VOL_PATH is relative to its volume; patterns match it or its last name. */
bool watch_excluded(const struct watch *w, const char *vol_path)
{
	const char *base = path_basename(vol_path);

	if (tempname_ours(base))
		return true;
	for (size_t i = 0; i < w->n_exclude; i++) {
		if (fnmatch(w->exclude[i], vol_path, 0) == 0 ||
		    fnmatch(w->exclude[i], base, 0) == 0)
			return true;
	}
	return false;
}

static int watch_wd_set(struct watch *w, int wd, const char *rel)
{
	size_t need = (size_t)wd + 1;
	char *copy;

	assert(wd >= 0);    /* inotify_add_watch succeeded */
	if (need > w->wd_cap) {
		size_t ncap = w->wd_cap ? w->wd_cap : 64;
		char **p;

		while (ncap < need)
			ncap *= 2;
		p = realloc(w->wd_rel, ncap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		memset(p + w->wd_cap, 0, (ncap - w->wd_cap) * sizeof(*p));
		w->wd_rel = p;
		w->wd_cap = ncap;
	}
	copy = strdup(rel);
	if (!copy)
		return -ENOMEM;
	free(w->wd_rel[wd]);
	w->wd_rel[wd] = copy;
	return strmap_put(&w->dir_wd, rel, (void *)(intptr_t)(wd + 1), NULL);
}

int watch_add_dir(struct watch *w, const char *rel)
{
	char full[PATH_MAX];
	int wd, err = watch_full_path(w, rel, full, sizeof(full));

	if (err)
		return err;
	wd = inotify_add_watch(w->ifd, full, WATCH_DIR_MASK);
	if (wd < 0) {
		err = -errno;
		if (err == -ENOSPC && !w->watch_limit_warned) {
			log_error("watch", "inotify watch limit reached at %s: "
				  "changes below it are only found by scans; "
				  "raise fs.inotify.max_user_watches", full);
			w->watch_limit_warned = true;
		}
		return err;
	}
	/* Re-adding a directory already watched under another name (moved
	 * while we were not looking) returns its wd: forget the old name. */
	if ((size_t)wd < w->wd_cap && w->wd_rel[wd] &&
	    strcmp(w->wd_rel[wd], rel) != 0)
		strmap_del(&w->dir_wd, w->wd_rel[wd]);
	return watch_wd_set(w, wd, rel);
}

static bool watch_rel_below(const char *rel, const char *top, size_t n)
{
	return strncmp(rel, top, n) == 0 && (rel[n] == '\0' || rel[n] == '/');
}

/* Forgets the watches of REL and every directory below it. */
void watch_drop_dirs(struct watch *w, const char *rel)
{
	size_t n = strlen(rel);

	for (size_t wd = 0; wd < w->wd_cap; wd++) {
		char *r = w->wd_rel[wd];

		if (!r || !watch_rel_below(r, rel, n))
			continue;
		inotify_rm_watch(w->ifd, (int)wd);
		strmap_del(&w->dir_wd, r);
		free(r);
		w->wd_rel[wd] = NULL;
	}
}

static void watch_forget_wd(struct watch *w, int wd)
{
	if (wd < 0 || (size_t)wd >= w->wd_cap || !w->wd_rel[wd])
		return;
	strmap_del(&w->dir_wd, w->wd_rel[wd]);
	free(w->wd_rel[wd]);
	w->wd_rel[wd] = NULL;
}

void watch_pend(struct watch *w, const char *rel, int64_t event_ns, bool now)
{
	struct pending *p = strmap_get(&w->pending, rel);

	if (p) {
		/* Already due at once: a later modify does not delay it, the
		 * examination will see the file as it is then. */
		if (p->now)
			return;
		watch_list_unlink(&w->settle_list, p);
	} else {
		p = calloc(1, sizeof(*p));
		if (p)
			p->rel = strdup(rel);
		if (!p || !p->rel || strmap_put(&w->pending, rel, p, NULL)) {
			if (p)
				free(p->rel);
			free(p);
			w->scan_owed = true;   /* out of memory: fall back */
			return;
		}
		p->event_ns = event_ns;
	}
	p->now = now;
	p->due_ns = now ? event_ns : event_ns + w->settle_ns;
	watch_list_append(now ? &w->now_list : &w->settle_list, p);
}

/* Splits a ROOT-relative name into volume and path for the filters. */
static bool watch_rel_wanted(const struct watch *w, const char *rel)
{
	const char *slash = strchr(rel, '/');
	char vol[VOLUME_NAME_MAX + 1];
	size_t n = slash ? (size_t)(slash - rel) : strlen(rel);

	if (n == 0 || n > VOLUME_NAME_MAX)
		return false;
	memcpy(vol, rel, n);
	vol[n] = '\0';
	if (!watch_volume_wanted(w, vol))
		return false;
	return !slash || !watch_excluded(w, slash + 1);
}

static bool watch_is_symlink_or_special(const struct watch *w, const char *rel)
{
	char full[PATH_MAX];
	struct stat st;

	if (watch_full_path(w, rel, full, sizeof(full)) || lstat(full, &st))
		return true;
	return !S_ISREG(st.st_mode);
}

static void watch_on_event(struct watch *w, const struct inotify_event *ev,
			   int64_t now)
{
	char rel[PATH_MAX];
	const char *dir;

	w->stats.events++;
	if (ev->mask & IN_Q_OVERFLOW) {
		w->stats.overflows++;
		w->scan_owed = true;
		log_warn("watch", "inotify queue overflowed; rescanning");
		return;
	}
	if (ev->mask & IN_IGNORED) {
		watch_forget_wd(w, ev->wd);
		return;
	}
	if (ev->wd < 0 || (size_t)ev->wd >= w->wd_cap || !w->wd_rel[ev->wd])
		return;
	dir = w->wd_rel[ev->wd];
	if (ev->len == 0 || ev->name[0] == '\0') {
		/* The directory itself: its own mode or owner changed. */
		if ((ev->mask & IN_ATTRIB) && dir[0])
			watch_pend(w, dir, now, true);
		return;
	}
	if (path_join(rel, sizeof(rel), dir, ev->name)) {
		w->stats.skipped++;
		log_warn("watch", "skipping %s/%s: path too long", dir, ev->name);
		return;
	}
	if (!watch_rel_wanted(w, rel))
		return;
	if ((ev->mask & IN_MOVED_FROM) && (ev->mask & IN_ISDIR))
		watch_drop_dirs(w, rel);
	if (ev->mask & IN_MODIFY)
		watch_pend(w, rel, now, false);
	else if ((ev->mask & IN_CREATE) && !(ev->mask & IN_ISDIR))
		/* A new regular file will be closed soon; anything else
		 * (symlink, hard link, fifo) is complete now. */
		watch_pend(w, rel, now, watch_is_symlink_or_special(w, rel));
	else
		watch_pend(w, rel, now, true);
}

int watch_dispatch(struct watch *w)
{
	char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));

	for (;;) {
		ssize_t n = read(w->ifd, buf, sizeof(buf));
		int64_t now = loop_now_ns();

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return -errno;
		}
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const void *)p;

			watch_on_event(w, ev, now);
			p += sizeof(*ev) + ev->len;
		}
	}
}

int64_t watch_next_deadline(const struct watch *w)
{
	if (w->scan_owed || w->now_list.head)
		return 0;
	return w->settle_list.head ? w->settle_list.head->due_ns : -1;
}

/*
 * A writer that copies inside the kernel (cp's copy_file_range, sendfile)
 * can go longer than settle_ns between two events, so "no event for
 * settle_ns" does not prove it is done; the file's mtime, which every
 * such call moves, does better: a file modified within settle_ns is
 * still being written, and hashing it now would be wasted.
 */
static bool watch_still_written(struct watch *w, const char *rel)
{
	char full[PATH_MAX];
	struct timespec now;
	struct stat st;
	int64_t age;

	if (path_join(full, sizeof(full), w->root, rel) ||
	    lstat(full, &st) != 0 || !S_ISREG(st.st_mode))
		return false;
	clock_gettime(CLOCK_REALTIME, &now);
	age = (now.tv_sec - st.st_mtim.tv_sec) * 1000000000LL +
	      (now.tv_nsec - st.st_mtim.tv_nsec);
	/* A clock step backwards must not defer a file forever. */
	return age >= 0 && age < w->settle_ns;
}

static int watch_process_one(struct watch *w, struct pending *p)
{
	char *rel = p->rel;
	int64_t event_ns = p->event_ns;
	int err;

	/* The map and the lists hold the same entries. */
	assert(strmap_get(&w->pending, rel) == p);
	/* Detach first: examining may pend this very path again. */
	p->rel = NULL;
	watch_list_unlink(p->now ? &w->now_list : &w->settle_list, p);
	strmap_del(&w->pending, rel);
	free(p);
	err = watch_examine(w, rel, event_ns, false);
	free(rel);
	return err;
}

/*
 * Paths are examined for at most turn_ns per call unless FLUSH: a
 * writer creating files faster than they are hashed would otherwise make
 * each call longer than the last (everything that arrived during one is
 * due in the next), and nothing recorded would be committed or sent to
 * peers until it stopped.  What is left stays due, so the next call
 * comes at once.
 */
static bool watch_turn_over(const struct watch *w, int64_t start, bool flush)
{
	return !flush && loop_now_ns() - start >= w->turn_ns;
}

int watch_process(struct watch *w, bool flush)
{
	int64_t now = loop_now_ns();
	int err = 0;

	if (w->scan_owed) {
		w->scan_owed = false;
		err = watch_scan_all(w);
	}
	while (!err && w->now_list.head && !watch_turn_over(w, now, flush))
		err = watch_process_one(w, w->now_list.head);
	while (!err && w->settle_list.head &&
	       (flush || w->settle_list.head->due_ns <= now) &&
	       !watch_turn_over(w, now, flush)) {
		struct pending *p = w->settle_list.head;

		if (!flush && watch_still_written(w, p->rel)) {
			watch_list_unlink(&w->settle_list, p);
			p->due_ns = now + w->settle_ns;
			watch_list_append(&w->settle_list, p);
			continue;
		}
		err = watch_process_one(w, p);
	}
	return err;
}

int watch_scan(struct watch *w)
{
	int err;

	/* Only before replication starts is no transfer using a temp file. */
	w->scan_owed = false;
	w->sweep_temps = true;
	err = watch_scan_all(w);
	w->sweep_temps = false;
	return err;
}

int watch_adopt(struct watch *w, struct watch_adoption *out)
{
	int err;

	memset(&w->adoption, 0, sizeof(w->adoption));
	w->adopting = true;
	err = watch_scan(w);
	w->adopting = false;
	*out = w->adoption;
	return err;
}

void watch_touch(struct watch *w, const char *volume, const char *path)
{
	char rel[PATH_MAX];

	if (path_join(rel, sizeof(rel), volume, path) == 0)
		watch_pend(w, rel, loop_now_ns(), true);
}

void watch_request_scan(struct watch *w)
{
	w->scan_owed = true;
}

void watch_note_recorded(struct watch *w, int64_t event_ns)
{
	w->stats.recorded++;
	if (event_ns <= 0 || w->n_uncommitted >= WATCH_UNCOMMITTED_MAX)
		return;
	if (w->n_uncommitted == w->cap_uncommitted) {
		size_t ncap = w->cap_uncommitted ? w->cap_uncommitted * 2 : 256;
		int64_t *p = realloc(w->uncommitted, ncap * sizeof(*p));

		if (!p)
			return;   /* a lost latency sample is harmless */
		w->uncommitted = p;
		w->cap_uncommitted = ncap;
	}
	w->uncommitted[w->n_uncommitted++] = event_ns;
}

void watch_committed(struct watch *w, struct hist *h)
{
	int64_t now = loop_now_ns();

	for (size_t i = 0; h && i < w->n_uncommitted; i++)
		hist_record(h, (uint64_t)(now - w->uncommitted[i]) / 1000);
	w->n_uncommitted = 0;
}

void watch_stats(const struct watch *w, struct watch_stats *out)
{
	*out = w->stats;
}
