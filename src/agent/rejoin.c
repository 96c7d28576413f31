#include "rejoin.h"

#include "err.h"
#include "log.h"
#include "loop.h"
#include "tempname.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REJOIN_META "joined"
/* How often the peers are looked at while waiting, and it is said. */
#define REJOIN_POLL_NS (200LL * 1000000)
#define REJOIN_SAY_NS (30LL * 1000000000)
#define REJOIN_RETRY_NS (5LL * 1000000000)
/* Peers looked at, as many as the API reports. */
#define REJOIN_PEERS_MAX 64

/* Whether directory FD holds anything but the agent's own temp files. */
static bool dir_holds_something(int fd)
{
	DIR *d = fdopendir(fd);
	struct dirent *de;
	bool found = false;

	if (!d) {
		close(fd);
		return false;
	}
	while (!found && (de = readdir(d)))
		found = strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
			!tempname_stale(de->d_name);
	closedir(d);
	return found;
}

/* Whether any volume under ROOT holds a file, link or directory. */
static bool volumes_hold_something(const char *root)
{
	DIR *d = opendir(root);
	struct dirent *de;
	bool found = false;

	if (!d)
		return false;     /* no root yet: nothing to adopt */
	while (!found && (de = readdir(d))) {
		int fd;

		if (de->d_name[0] == '.')
			continue;
		fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY |
			    O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0)
			found = dir_holds_something(fd);
	}
	closedir(d);
	return found;
}

bool rejoin_needed(struct journal *j, const char *root, size_t n_others,
		   uint64_t wait_ms)
{
	char *joined = NULL;

	if (journal_meta_get(j, REJOIN_META, &joined) == 0) {
		free(joined);
		return false;
	}
	if (n_others > 0 && wait_ms > 0 && volumes_hold_something(root))
		return true;
	/* Nothing here for history to judge: whatever the disk gets from
	 * now on is recorded or applied as usual. */
	if (rejoin_mark(j, n_others ? "empty volumes" : "single node") != 0)
		log_warn("agent", "cannot mark the journal as joined; the next "
			 "start checks the volumes again");
	return false;
}

bool rejoin_learned(const struct replicate_peer_status *st, size_t n)
{
	bool connected = false;

	for (size_t i = 0; i < n; i++) {
		/* A peer learning the history itself teaches nothing. */
		if (!st[i].connected || st[i].rejoining)
			continue;
		if (st[i].behind_entries)
			return false;
		connected = true;
	}
	return connected;
}

int rejoin_mark(struct journal *j, const char *how)
{
	return journal_meta_set(j, REJOIN_META, how);
}

void rejoin_begin(struct rejoin *rj, int64_t now)
{
	replicate_hold(rj->replicate, true);
	rj->until = now + (int64_t)rj->wait_ms * 1000000;
	rj->next = now;
	rj->said = now;
	log_info("agent", "the journal is new but the volumes hold files: "
		 "learning the cluster's history from a peer before adopting "
		 "them (nothing of this node is published meanwhile; at most "
		 "journal.rejoin_wait, %llu s)",
		 (unsigned long long)(rj->wait_ms / 1000));
}

/* The history is learned: each file is judged against it. */
static enum rejoin_step rejoin_adopt(struct rejoin *rj, int64_t now)
{
	struct watch_adoption ad;
	int err = watch_adopt(rj->watch, &ad);

	if (!err)
		err = journal_flush(rj->journal);
	if (err) {
		log_error("agent", "adopting the volumes failed: %s; trying "
			  "again in %lld s", kr_strerror(err),
			  REJOIN_RETRY_NS / 1000000000);
		rj->next = now + REJOIN_RETRY_NS;
		return REJOIN_WAITING;
	}
	log_info("agent", "rejoined the cluster's history in %lld ms: %llu "
		 "paths as the cluster has them, %llu stale ones to be "
		 "replaced, %llu new, %llu kept aside as conflict copies",
		 (long long)((loop_now_ns() - now) / 1000000),
		 (unsigned long long)ad.current, (unsigned long long)ad.stale,
		 (unsigned long long)ad.fresh,
		 (unsigned long long)ad.kept_aside);
	return REJOIN_ADOPTED;
}

enum rejoin_step rejoin_tick(struct rejoin *rj, int64_t now)
{
	struct replicate_peer_status st[REJOIN_PEERS_MAX];
	size_t n = replicate_peers(rj->replicate, st, REJOIN_PEERS_MAX);

	rj->next = now + REJOIN_POLL_NS;
	if (rejoin_learned(st, n < REJOIN_PEERS_MAX ? n : REJOIN_PEERS_MAX))
		return rejoin_adopt(rj, now);
	if (now >= rj->until) {
		log_warn("agent", "no peer answered within journal.rejoin_wait "
			 "(%llu s): recording the files in the volumes as new "
			 "versions", (unsigned long long)(rj->wait_ms / 1000));
		rj->next = now + REJOIN_RETRY_NS;   /* if the scan fails */
		return REJOIN_TIMED_OUT;
	}
	if (now >= rj->said + REJOIN_SAY_NS) {
		rj->said = now;
		log_info("agent", "waiting for a peer to learn the cluster's "
			 "history from (%lld s left of journal.rejoin_wait)",
			 (long long)((rj->until - now) / 1000000000));
	}
	return REJOIN_WAITING;
}

void rejoin_end(struct rejoin *rj, enum rejoin_step step)
{
	int err = rejoin_mark(rj->journal, step == REJOIN_ADOPTED ?
			      "adopted" : "published without peers");

	if (!err)
		err = journal_flush(rj->journal);
	if (err)
		log_warn("agent", "cannot mark the journal as rejoined (%s); the "
			 "next start adopts the volumes again", kr_strerror(err));
	replicate_hold(rj->replicate, false);
}
