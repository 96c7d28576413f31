#include "path.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

bool path_utf8_ok(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		unsigned c = p[i];
		size_t n;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (i + n >= len)
			return false;   /* truncated sequence */
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		/* Overlong forms, surrogates and values past U+10FFFF. */
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		i += n + 1;
	}
	return true;
}

int path_check_rel(const char *rel)
{
	size_t len = strlen(rel);
	const char *p = rel;

	if (len == 0)
		return 0;
	if (len > PATH_REL_MAX || rel[0] == '/' || rel[len - 1] == '/')
		return KR_EHOSTILE;
	if (!path_utf8_ok(rel, len))
		return KR_EHOSTILE;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);

		if (n == 0 || n > NAME_MAX)
			return KR_EHOSTILE;
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return KR_EHOSTILE;
		p += n;
		if (*p == '/')
			p++;
	}
	return 0;
}

bool path_volume_name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len < 2 || len > VOLUME_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
			return false;
	}
	return true;
}

int path_join(char *out, size_t cap, const char *a, const char *b)
{
	int n;

	if (b[0] == '\0')
		n = snprintf(out, cap, "%s", a);
	else if (a[0] == '\0')
		n = snprintf(out, cap, "%s", b);
	else
		n = snprintf(out, cap, "%s/%s", a, b);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	return 0;
}

const char *path_basename(const char *p)
{
	const char *slash = strrchr(p, '/');

	return slash ? slash + 1 : p;
}

int path_mkdirs(const char *dir, unsigned mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, dir, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char saved = buf[i];

		buf[i] = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return -errno;
		buf[i] = saved;
	}
	return 0;
}

int path_open_beneath(int dirfd, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
			   RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));

	return fd < 0 ? -errno : (int)fd;
}

int path_open_parent(int rootfd, const char *volume, const char *path,
		     int *dirfd, const char **name)
{
	char rel[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd;

	if (path_check_rel(path) || !path_volume_name_ok(volume))
		return KR_EHOSTILE;
	if (slash)
		snprintf(rel, sizeof(rel), "%s/%.*s", volume,
			 (int)(slash - path), path);
	else
		snprintf(rel, sizeof(rel), "%s", volume);
	fd = path_open_beneath(rootfd, rel, O_PATH | O_DIRECTORY);
	if (fd < 0)
		return fd == -ELOOP || fd == -EXDEV ? KR_EHOSTILE : fd;
	*dirfd = fd;
	*name = slash ? slash + 1 : path;
	return 0;
}
