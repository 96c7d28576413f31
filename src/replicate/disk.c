/* Paths beneath a volume and the checks before a replacement (disk.h). */
#include "disk.h"
#include "replicate_int.h"
#include "writer.h"

#include "path.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int disk_open_parent(struct replicate *r, const char *volume,
		     const char *path, int *dirfd, const char **name)
{
	/* Opened once: every file applied starts here. */
	if (r->rootfd < 0)
		r->rootfd = open(r->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (r->rootfd < 0)
		return -errno;
	return path_open_parent(r->rootfd, volume, path, dirfd, name);
}

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

bool disk_file_current(const struct journal_state *cur, int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink > 0 &&
	       (uint64_t)st.st_size == cur->size &&
	       ts_ns(&st.st_mtim) == cur->mtime_ns &&
	       (uint64_t)st.st_ino == cur->ino &&
	       ts_ns(&st.st_ctim) == cur->ctime_ns;
}

bool disk_as_journal(struct replicate *r, int dirfd, const char *name,
		     const struct journal_job *job, uint64_t *size)
{
	struct journal_state cur;
	struct stat st;
	bool have = journal_lookup(r->journal, job->volume, job->path,
				   &cur) == 0 && cur.mode != 0;
	bool same;

	if (size)
		*size = 0;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		journal_state_release(&cur);
		return !have;
	}
	if (!have) {
		journal_state_release(&cur);
		return false;
	}
	/* A directory's ctime moves with every entry made in it; what it
	 * holds is judged entry by entry, so its inode is enough here. */
	same = (cur.mode & S_IFMT) == (st.st_mode & S_IFMT) &&
	       cur.ino == st.st_ino &&
	       (S_ISDIR(st.st_mode) || (cur.ctime_ns == ts_ns(&st.st_ctim) &&
		(S_ISLNK(st.st_mode) || cur.size == (uint64_t)st.st_size)));
	journal_state_release(&cur);
	if (size && S_ISREG(st.st_mode))
		*size = (uint64_t)st.st_size;
	return same;
}

void disk_diverged(struct replicate *r, const struct journal_job *job)
{
	if (r->diverged)
		r->diverged(r->diverged_arg, job->volume, job->path);
}

int disk_set_meta(int fd, const struct journal_job *job)
{
	return writer_set_meta(fd, job->mode, job->uid, job->gid,
			       job->mtime_ns);
}

bool disk_chunk_verify(const void *data, size_t len, const uint8_t *hash)
{
	uint8_t got[EVP_MAX_MD_SIZE];
	unsigned n = 0;

	return EVP_Digest(data, len, got, &n, EVP_sha256(), NULL) == 1 &&
	       n == CONTENT_HASH_LEN && memcmp(got, hash, n) == 0;
}

bool disk_copy_pending(struct replicate *r, const struct journal_job *job)
{
	uint64_t n = 0;

	return !job->copy_of &&
	       journal_copies_pending(r->journal, job->volume, job->path,
				      &n) == 0 && n > 0;
}
