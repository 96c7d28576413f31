/*
 * Path rules shared by everything that turns names into files.
 *
 * A journal path is relative to its volume, '/'-separated, with no empty,
 * "." or ".." component, no leading or trailing '/', valid UTF-8, at most
 * PATH_REL_MAX bytes, each component at most NAME_MAX bytes.  The empty
 * string names the volume's root.  Nothing that fails these rules is ever
 * journalled or opened, which is what keeps every write inside its volume.
 */
#ifndef KRAKEN_PATH_H
#define KRAKEN_PATH_H

#include <stdbool.h>
#include <stddef.h>

#define PATH_REL_MAX 4000
#define VOLUME_NAME_MAX 255

/* 0 when REL is a valid journal path (see above), else KR_EHOSTILE. */
int path_check_rel(const char *rel);

/* Docker's volume-name rule: [A-Za-z0-9][A-Za-z0-9_.-]+, at most 255. */
bool path_volume_name_ok(const char *name);

bool path_utf8_ok(const char *s, size_t len);

/*
 * Joins A and B with one '/' into OUT (B empty: A alone).  Returns 0 or
 * -ENAMETOOLONG when OUT (CAP bytes) is too small.
 */
int path_join(char *out, size_t cap, const char *a, const char *b);

/* Last component of P (P itself when it has no '/'). */
const char *path_basename(const char *p);

/* Creates DIR and its missing parents with MODE; 0 or -errno. */
int path_mkdirs(const char *dir, unsigned mode);

/* Opens PATH under DIRFD with FLAGS, never leaving DIRFD and following
 * no symlink (openat2, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): whatever
 * links a container made, nothing opened this way is outside.  An fd, or
 * -errno (-ELOOP or -EXDEV: it would have left). */
int path_open_beneath(int dirfd, const char *path, int flags);
/* The parent directory of VOLUME/PATH under ROOTFD, as an O_PATH fd in
 * *DIRFD, and the last name of PATH in *NAME (pointing into PATH): 0,
 * KR_EHOSTILE for a hostile name or one that would leave, or -errno. */
int path_open_parent(int rootfd, const char *volume, const char *path,
		     int *dirfd, const char **name);

#endif
