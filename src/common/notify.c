/*
 * sd_notify without libsystemd.  The protocol is a single datagram per
 * state change on a unix socket whose path the manager passes in
 * $NOTIFY_SOCKET; the manager reads the sender's credentials itself, so
 * nothing but the text is sent.  A fresh socket per call keeps this
 * stateless: notifications are rare (start, reload, stop, a watchdog ping
 * every few seconds).
 */
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int notify_address(struct sockaddr_un *sun, socklen_t *len)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t n;

	if (!path || !*path)
		return 1;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sun->sun_path))
		return -EINVAL;
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, n);
	if (path[0] == '@')
		sun->sun_path[0] = '\0';
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
			   (path[0] == '/'));
	return 0;
}

int notify_send(const char *state)
{
	struct sockaddr_un sun;
	socklen_t len;
	int fd, err = notify_address(&sun, &len);

	if (err)
		return err > 0 ? 0 : err;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL,
		   (struct sockaddr *)&sun, len) < 0)
		err = -errno;
	close(fd);
	return err;
}

int64_t notify_watchdog_ns(void)
{
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	char *end;
	unsigned long long v;

	if (!usec || !*usec)
		return 0;
	if (pid && *pid) {
		errno = 0;
		v = strtoull(pid, &end, 10);
		if (errno || *end || v != (unsigned long long)getpid())
			return 0;
	}
	errno = 0;
	v = strtoull(usec, &end, 10);
	/* Clamped, not ignored: pinging more often than asked is harmless,
	 * never pinging gets the service killed. */
	if (errno || *end || v == 0)
		return 0;
	if (v > 86400ULL * 1000000)
		v = 86400ULL * 1000000;
	return (int64_t)v * 1000;
}
