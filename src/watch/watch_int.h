/* Internals shared by watch.c and scan.c; private to kwatch, whose users
 * see src/watch/include (watch.h) only. */
#ifndef KRAKEN_WATCH_INT_H
#define KRAKEN_WATCH_INT_H

#include "watch.h"

#include "journal.h"
#include "strmap.h"

#include <limits.h>
#include <sys/stat.h>

/* A path waiting to be examined, in one of two FIFO lists. */
struct pending {
	char *rel;                /* ROOT-relative: "VOLUME" or "VOLUME/PATH" */
	int64_t due_ns;
	int64_t event_ns;         /* first event since last examined */
	bool now;                 /* on the immediate list */
	struct pending *prev, *next;
};

struct pending_list {
	struct pending *head, *tail;
};

struct watch {
	struct journal *journal;
	char *root;
	int ifd;                  /* inotify */
	int64_t settle_ns;
	int64_t turn_ns;          /* longest examining per watch_process() */
	char **volumes;           /* NULL: every volume */
	size_t n_volumes;
	char **exclude;
	size_t n_exclude;

	char **wd_rel;            /* wd -> ROOT-relative dir ("" is ROOT) */
	size_t wd_cap;
	struct strmap dir_wd;     /* ROOT-relative dir -> wd + 1 */
	bool watch_limit_warned;

	struct strmap pending;    /* rel -> struct pending */
	struct pending_list now_list, settle_list;
	bool scan_owed;
	bool sweep_temps;         /* remove stale temp files while scanning */
	bool adopting;            /* in watch_adopt */
	struct watch_adoption adoption;
	void (*changing)(void *arg, const char *volume, const char *path,
			 const uint8_t base[CONTENT_HASH_LEN], uint64_t size);
	void *changing_arg;
	void (*small)(void *arg, const struct content *c, const void *data);
	void *small_arg;

	int64_t *uncommitted;     /* event times of changes not yet committed */
	size_t n_uncommitted, cap_uncommitted;
	struct watch_stats stats;
};

/* scan.c */
int watch_examine(struct watch *w, const char *rel, int64_t event_ns,
		  bool subtree);
int watch_scan_all(struct watch *w);

/* watch.c */
int watch_add_dir(struct watch *w, const char *rel);
void watch_drop_dirs(struct watch *w, const char *rel);
void watch_pend(struct watch *w, const char *rel, int64_t event_ns, bool now);
bool watch_excluded(const struct watch *w, const char *vol_path);
bool watch_volume_wanted(const struct watch *w, const char *volume);
void watch_note_recorded(struct watch *w, int64_t event_ns);
int watch_full_path(const struct watch *w, const char *rel, char *out,
		    size_t cap);

#endif
