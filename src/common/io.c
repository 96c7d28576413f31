/* Reads retried until full or at the end of the file; see io.h. */
#include "io.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <unistd.h>

ssize_t io_pread_full(int fd, void *buf, size_t cap, uint64_t off)
{
	uint8_t *p = buf;
	size_t got = 0;

	assert(cap <= SSIZE_MAX);    /* the count comes back as ssize_t */
	while (got < cap) {
		ssize_t r = pread(fd, p + got, cap - got, (off_t)(off + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}
