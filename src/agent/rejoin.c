#include "rejoin.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REJOIN_META "joined"
#define HIDDEN_PREFIX ".krakenfs-"

/* Whether directory FD holds anything but the agent's own hidden names. */
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
			strncmp(de->d_name, HIDDEN_PREFIX,
				strlen(HIDDEN_PREFIX));
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
