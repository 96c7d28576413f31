/*
 * Restoring one path as it was at a time (kraken-journal restore, and
 * POST /v1/admin/restore in place).
 *
 * The version current at TIME is the newest of the path made by then
 * (by wall time, then Lamport value): what a reader of the volume saw at
 * that moment, conflicts apart.  Its content comes from the version
 * store (versions.c) or, while it still holds it, from the live file,
 * opened under the volume root without following links; it is copied to
 * a temporary name beside the destination, checked against the
 * version's content hash, and only then given its name, so a restore
 * never leaves a half-written or wrong file behind.
 */
#include "journal_int.h"

#include "content.h"
#include "err.h"
#include "path.h"
#include "tempname.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct pick {
	int64_t at_ns;
	struct journal_restore_info *info;
	uint8_t hash[CONTENT_HASH_LEN];
	bool has_hash;
	uint64_t lamport;
	int64_t mtime_ns;
	uint32_t uid, gid;
	char **target;            /* a symlink's target is copied here */
};

static int on_pick(void *arg, const struct journal_change *c)
{
	struct pick *p = arg;
	struct journal_restore_info *i = p->info;

	if (c->wall_ns > p->at_ns) {
		if (!i->found && (!i->first_ns || c->wall_ns < i->first_ns))
			i->first_ns = c->wall_ns;
		return 0;
	}
	if (i->found && (c->wall_ns < i->wall_ns ||
			 (c->wall_ns == i->wall_ns && c->lamport < p->lamport)))
		return 0;
	i->found = true;
	i->ref = c->ref;
	i->wall_ns = c->wall_ns;
	i->mode = c->mode;
	i->size = c->size;
	p->lamport = c->lamport;
	p->has_hash = c->has_hash;
	memcpy(p->hash, c->hash, CONTENT_HASH_LEN);
	p->mtime_ns = c->mtime_ns;
	p->uid = c->uid;
	p->gid = c->gid;
	if (p->target) {
		free(*p->target);
		*p->target = c->target ? strdup(c->target) : NULL;
		if (c->target && !*p->target)
			return -ENOMEM;
	}
	return 0;
}

/* The live file when it holds HASH still: an fd, or -ENOENT. */
static int open_live(const char *root, const char *volume, const char *path,
		     const uint8_t hash[CONTENT_HASH_LEN])
{
	struct content c = { 0 };
	const char *name;
	int rootfd, dirfd = -1, fd = -ENOENT;

	if (!root)
		return -ENOENT;
	rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd >= 0 && path_open_parent(rootfd, volume, path, &dirfd,
					    &name) == 0)
		fd = path_open_beneath(dirfd, name, O_RDONLY);
	if (rootfd >= 0)
		close(rootfd);
	if (dirfd >= 0)
		close(dirfd);
	if (fd < 0)
		return -ENOENT;
	if (content_hash_fd(fd, &c) != 0 ||
	    memcmp(c.hash, hash, CONTENT_HASH_LEN) != 0) {
		close(fd);
		fd = -ENOENT;
	}
	content_release(&c);
	return fd;
}

/* FROM copied to a new temporary file in DIRFD, checked against P's
 * content hash, with its mode, owner (when allowed) and mtime: its name
 * in TMP. */
static int copy_checked(int from, int dirfd, char *tmp, size_t cap,
			const struct pick *p)
{
	struct timespec times[2] = {
		{ .tv_nsec = UTIME_OMIT },
		{ p->mtime_ns / 1000000000, p->mtime_ns % 1000000000 },
	};
	struct content got = { 0 };
	char buf[65536];
	ssize_t n;
	int to, err = 0;

	tempname_make(tmp, cap);
	to = openat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (to < 0)
		return -errno;
	if (lseek(from, 0, SEEK_SET) != 0)
		err = -errno;
	while (!err && (n = read(from, buf, sizeof(buf))) != 0)
		if (n < 0 || write(to, buf, (size_t)n) != n)
			err = n < 0 ? -errno : -EIO;
	if (!err && fsync(to) != 0)
		err = -errno;
	if (!err && (content_hash_fd(to, &got) != 0 ||
		     memcmp(got.hash, p->hash, CONTENT_HASH_LEN) != 0))
		err = KR_ECORRUPT;
	content_release(&got);
	if (!err && fchown(to, p->uid, p->gid) != 0 && errno != EPERM)
		err = -errno;
	if (!err && (fchmod(to, p->info->mode & 07777) != 0 ||
		     futimens(to, times) != 0))
		err = -errno;
	close(to);
	if (err)
		unlinkat(dirfd, tmp, 0);
	return err;
}

int journal_version_at(struct journal *j, const char *volume, const char *path,
		       int64_t at_ns, struct journal_version_at *out)
{
	struct journal_restore_info info;
	struct pick p = { .at_ns = at_ns, .info = &info };
	int err;

	memset(&info, 0, sizeof(info));
	memset(out, 0, sizeof(*out));
	p.target = &out->target;
	err = journal_history(j, volume, path, on_pick, &p);
	if (err) {
		free(out->target);
		out->target = NULL;
		return err;
	}
	out->found = info.found;
	out->ref = info.ref;
	out->wall_ns = info.wall_ns;
	out->has_hash = p.has_hash;
	memcpy(out->hash, p.hash, CONTENT_HASH_LEN);
	out->mode = info.mode;
	out->size = info.size;
	out->mtime_ns = p.mtime_ns;
	out->uid = p.uid;
	out->gid = p.gid;
	return 0;
}

int journal_paths(struct journal *j, const char *volume,
		  int (*fn)(void *arg, const char *path), void *arg)
{
	sqlite3_stmt *s = NULL;
	int rc = 0, err = journal_prepare(j, "SELECT DISTINCT path FROM "
		"changes WHERE volume = ?1 ORDER BY path", &s);

	if (!err)
		sqlite3_bind_text(s, 1, volume, -1, SQLITE_STATIC);
	while (!err && (rc = journal_row(s)) > 0)
		err = fn(arg, (const char *)sqlite3_column_text(s, 0));
	if (!err && rc < 0)
		err = rc;
	sqlite3_finalize(s);
	return err;
}

int journal_restore_file(struct journal *j, struct journal_versions *store,
			 const char *root, const char *volume, const char *path,
			 int64_t at_ns, int dirfd, const char *name,
			 bool replace, struct journal_restore_info *info)
{
	struct pick p = { .at_ns = at_ns, .info = info };
	char tmp[TEMPNAME_MAX];
	int fd = -ENOENT, err;

	memset(info, 0, sizeof(*info));
	err = journal_history(j, volume, path, on_pick, &p);
	if (err)
		return err;
	if (!info->found)
		info->status = JOURNAL_RESTORE_NOT_YET;
	else if (info->mode == 0)
		info->status = JOURNAL_RESTORE_DELETED;
	else if (!S_ISREG(info->mode) || !p.has_hash)
		info->status = JOURNAL_RESTORE_NOT_FILE;
	if (info->status != JOURNAL_RESTORE_DONE)
		return 0;
	if (store)
		fd = journal_versions_get(store, p.hash);
	if (fd < 0)
		fd = open_live(root, volume, path, p.hash);
	if (fd < 0) {
		info->status = JOURNAL_RESTORE_NOT_KEPT;
		return 0;
	}
	err = copy_checked(fd, dirfd, tmp, sizeof(tmp), &p);
	close(fd);
	if (err)
		return err;
	/* A new name is never put over a file; in place, the restored
	 * version replaces what is there at once. */
	if (replace ? renameat(dirfd, tmp, dirfd, name) != 0 :
		      linkat(dirfd, tmp, dirfd, name, 0) != 0)
		err = -errno;
	if (!replace || err)
		unlinkat(dirfd, tmp, 0);
	return err;
}
