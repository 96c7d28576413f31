/*
 * kraken-fake-peer: a misbehaving peer for the integration tests.  It
 * connects to an agent's peer port and does one bad thing:
 *
 *   garbage              64 bytes that are not a frame
 *   oversize             a header announcing a 4 GiB payload
 *   stranger NODE        a well-formed HELLO from a node not in the cluster
 *   escape NODE VOL      HELLO as NODE, then an entry whose path is
 *                        "../escape" (patched in after encoding, since the
 *                        encoder itself refuses such paths)
 *   through NODE VOL P   HELLO as NODE, then a valid entry putting a file at
 *                        VOL/P, for a P that crosses a symlink on the agent
 *   flood NODE           HELLO as NODE, then GET_DELTA requests, up to
 *                        256 MiB of them, without reading a byte of the
 *                        answers: the agent must stop queueing for it
 *   impostor NODE        HELLO as NODE, which the agent knows connected,
 *                        from 127.0.0.9 (no node's address)
 *   bighello N           N connections, each announcing a 4 MiB HELLO and
 *                        sending 64 KiB of it; prints "closed K of N" (K:
 *                        the ones the agent hung up on within 5 s, or
 *                        never let connect); each of these N comes from
 *                        its own address, 127.1.x.y
 *   idle N SECONDS       N connections that send nothing; after SECONDS,
 *                        prints "closed K of N"
 *   vector               reads the agent's HELLO; prints "vector N", the
 *                        number of origins it named
 *   origins NODE VOL N   HELLO as NODE, then N deletes of absent paths in
 *                        VOL, each under a made-up origin NODE@i
 *
 * It prints what the agent did ("closed" when the agent hung up within 5 s,
 * "open" otherwise) and exits 0; the test decides what was expected.
 */
#include "conn.h"
#include "wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A connection to HOST:PORT, from address FROM (NULL: any). */
static int dial(const char *host, int port, const char *from)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port) };
	struct sockaddr_in me = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    (from && (inet_pton(AF_INET, from, &me.sin_addr) != 1 ||
		      bind(fd, (struct sockaddr *)&me, sizeof(me)) != 0)) ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		perror("connect");
		exit(2);
	}
	return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
	if (send(fd, buf, len, MSG_NOSIGNAL) != (ssize_t)len) {
		perror("send");
		exit(2);
	}
}

static void send_msg(int fd, const struct wire_msg *m)
{
	struct wire_buf b = { 0 };

	if (wire_encode(&b, m) != 0) {
		fprintf(stderr, "cannot encode %s\n", wire_type_name(m->type));
		exit(2);
	}
	send_all(fd, b.data, b.len);
	wire_buf_release(&b);
}

/* As send_msg, but a connection the agent closed is not an error. */
static int send_msg_quiet(int fd, const struct wire_msg *m)
{
	struct wire_buf b = { 0 };
	int err = wire_encode(&b, m);

	if (!err && send(fd, b.data, b.len, MSG_NOSIGNAL) != (ssize_t)b.len)
		err = -1;
	wire_buf_release(&b);
	return err;
}

static void hello(int fd, const char *node)
{
	struct wire_msg m = { .type = WIRE_HELLO };

	m.hello.node_id = node;
	m.hello.cluster_id = "krakenfs";
	send_msg(fd, &m);
}

/* Waits up to 5 s for the agent to hang up, draining what it sends. */
static const char *outcome(int fd)
{
	char buf[65536];

	for (int i = 0; i < 50; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 100) > 0) {
			ssize_t n = recv(fd, buf, sizeof(buf), 0);

			if (n <= 0)
				return "closed";
		}
	}
	return "open";
}

static void entry(int fd, const char *node, const char *vol, const char *path,
		  bool escape)
{
	static const uint8_t hash[CONTENT_HASH_LEN] = { 1, 2, 3 };
	struct wire_entry e[2];
	struct wire_msg m = { .type = WIRE_ENTRIES };
	struct wire_buf b = { 0 };
	char origin[JOURNAL_ORIGIN_MAX];

	snprintf(origin, sizeof(origin), "%s@00000000000000aa", node);
	memset(e, 0, sizeof(e));
	for (int i = 0; i < 2; i++) {
		snprintf(e[i].ref.origin, sizeof(e[i].ref.origin), "%s", origin);
		e[i].ref.seq = (uint64_t)i + 1;
		e[i].lamport = (uint64_t)i + 100;
		e[i].wall_ns = 1;
		e[i].volume = vol;
	}
	e[0].path = "";
	e[0].op = JOURNAL_VOLUME_CREATE;
	e[0].mode = 040755;
	e[1].path = escape ? "aa/escape" : path;
	e[1].op = JOURNAL_PUT;
	e[1].mode = 0100644;
	e[1].size = 5;
	e[1].has_hash = true;
	memcpy(e[1].hash, hash, sizeof(hash));
	m.entries.n = 2;
	m.entries.v = e;
	if (wire_encode(&b, &m) != 0) {
		fprintf(stderr, "cannot encode entries\n");
		exit(2);
	}
	if (escape) {
		/* "aa/escape" -> "../escape": the same length, now hostile. */
		uint8_t *p = memmem(b.data, b.len, "aa/escape", 9);

		if (!p)
			exit(2);
		memcpy(p, "..", 2);
	}
	send_all(fd, b.data, b.len);
	wire_buf_release(&b);
}

/* N entries, each the first of an origin of its own, 512 to a frame. */
static void origins(int fd, const char *node, const char *vol, int n)
{
	static struct wire_entry e[512];
	static char paths[512][32];
	struct wire_msg m = { .type = WIRE_ENTRIES };

	for (int i = 0; i < n;) {
		int k = 0;

		memset(e, 0, sizeof(e));
		for (; k < 512 && i < n; k++, i++) {
			snprintf(e[k].ref.origin, sizeof(e[k].ref.origin),
				 "%s@%016x", node, i + 1);
			snprintf(paths[k], sizeof(paths[k]), "absent-%d", i);
			e[k].ref.seq = 1;
			e[k].lamport = (uint64_t)i + 1;
			e[k].wall_ns = 1;
			e[k].volume = vol;
			e[k].path = paths[k];
			e[k].op = JOURNAL_DELETE;
		}
		m.entries.n = (uint32_t)k;
		m.entries.v = e;
		if (send_msg_quiet(fd, &m) != 0)
			return;       /* hung up on */
	}
}

/* Requests until the agent hangs up or 256 MiB went out; the answers are
 * left unread, so the agent's output to us only grows. */
static void flood(int fd)
{
	uint8_t digests[4][DELTA_DIGEST] = { { 0 } };
	struct wire_msg m = { .type = WIRE_GET_DELTA };
	struct wire_buf b = { 0 };
	size_t sent = 0;

	m.get_delta.len = 4 * DELTA_BLOCK;
	m.get_delta.digests = (const uint8_t (*)[DELTA_DIGEST])digests;
	for (uint32_t i = 0; i < 4096; i++) {
		memcpy(m.get_delta.hash, &i, sizeof(i));
		if (wire_encode(&b, &m) != 0)
			exit(2);
	}
	while (sent < (256u << 20)) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		ssize_t n;

		if (poll(&p, 1, 5000) <= 0 || (p.revents & (POLLERR | POLLHUP)))
			break;
		n = send(fd, b.data + sent % b.len, b.len - sent % b.len,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN)
			break;
		sent += n > 0 ? (size_t)n : 0;
	}
	wire_buf_release(&b);
}

/* A connection within MS milliseconds, or -1: a listener that stopped
 * accepting lets its backlog fill, and then connect(2) would wait. */
static int dial_within(const char *host, int port, int ms, int i)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port) };
	/* Each from an address of its own (127.1.x.y, all on loopback), so
	 * that caps per address do not hide the total. */
	struct sockaddr_in me = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(0x7f010001u + ((uint32_t)(i / 250) << 8) +
					 (uint32_t)(i % 250)),
	};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    bind(fd, (struct sockaddr *)&me, sizeof(me)) != 0)
		exit(2);
	if ((connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
	     errno != EINPROGRESS) || poll(&p, 1, ms) <= 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Whether the agent hung up on FD (reading and dropping what it sent). */
static bool hung_up(int fd)
{
	char buf[4096];
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		;
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* N connections (as many as the agent lets connect), each given BYTES of
 * a frame announcing a 4 MiB HELLO (none when BYTES is 0); after WAIT
 * seconds, how many the agent closed. */
static void many(const char *host, int port, int n, size_t bytes, int wait)
{
	uint8_t h[WIRE_HEADER_LEN] = { 'K', 'R', 'F', 'S', 1, WIRE_HELLO,
				       0, 0, 0, 0x40, 0, 0 };
	static uint8_t junk[64 << 10];
	int *fds = calloc((size_t)n, sizeof(*fds));
	int closed = 0;

	if (!fds)
		exit(2);
	for (int i = 0; i < n; i++) {
		fds[i] = dial_within(host, port, 1000, i);
		if (fds[i] < 0) {
			closed++;       /* not even let in */
			continue;
		}
		if (bytes) {
			send(fds[i], h, sizeof(h), MSG_NOSIGNAL);
			send(fds[i], junk, bytes, MSG_NOSIGNAL | MSG_DONTWAIT);
		}
	}
	sleep((unsigned)wait);
	for (int i = 0; i < n; i++) {
		if (fds[i] < 0)
			continue;
		closed += hung_up(fds[i]);
		close(fds[i]);
	}
	printf("closed %d of %d\n", closed, n);
	free(fds);
}

/* The agent's HELLO, read without saying ours: the origins it names. */
static void read_vector(int fd)
{
	static uint8_t buf[WIRE_MAX_PAYLOAD + WIRE_HEADER_LEN];
	size_t have = 0, need = WIRE_HEADER_LEN;
	struct wire_msg m = { 0 };
	uint8_t type;
	uint32_t len;

	while (have < need) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t got;

		if (poll(&p, 1, 5000) <= 0 ||
		    (got = recv(fd, buf + have, need - have, 0)) <= 0) {
			printf("no HELLO\n");
			exit(0);
		}
		have += (size_t)got;
		if (have == WIRE_HEADER_LEN) {
			if (conn_header_decode(buf, &type, &len) != 0)
				exit(2);
			need += len;
		}
	}
	if (wire_decode((enum wire_type)type, buf + WIRE_HEADER_LEN,
			need - WIRE_HEADER_LEN, &m) != 0 || m.type != WIRE_HELLO)
		exit(2);
	printf("vector %u\n", m.hello.vector.n);
	wire_msg_release(&m);
	exit(0);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 3 ? argv[3] : "";
	int fd;

	if (argc < 4) {
		fprintf(stderr, "usage: kraken-fake-peer HOST PORT MODE [ARGS]\n"
			"modes: garbage | oversize | stranger NODE | escape NODE "
			"VOL | through NODE VOL PATH | flood NODE | impostor "
			"NODE | bighello N | idle N SECONDS | vector | origins NODE "
			"VOL N\n");
		return 2;
	}
	if (!strcmp(mode, "bighello") && argc > 4) {
		many(argv[1], (int)strtol(argv[2], NULL, 10),
		     (int)strtol(argv[4], NULL, 10), 64 << 10, 5);
		return 0;
	}
	if (!strcmp(mode, "idle") && argc > 5) {
		many(argv[1], (int)strtol(argv[2], NULL, 10),
		     (int)strtol(argv[4], NULL, 10), 0,
		     (int)strtol(argv[5], NULL, 10));
		return 0;
	}
	/* The impostor comes from an address no node has. */
	fd = dial(argv[1], (int)strtol(argv[2], NULL, 10),
		  !strcmp(mode, "impostor") ? "127.0.0.9" : NULL);
	if (!strcmp(mode, "vector"))
		read_vector(fd);
	if (!strcmp(mode, "garbage")) {
		char junk[64];

		memset(junk, 0x5a, sizeof(junk));
		send_all(fd, junk, sizeof(junk));
	} else if (!strcmp(mode, "oversize")) {
		uint8_t h[WIRE_HEADER_LEN] = { 'K', 'R', 'F', 'S', 1, WIRE_ENTRIES,
					       0, 0, 0xff, 0xff, 0xff, 0xff };

		send_all(fd, h, sizeof(h));
	} else if (!strcmp(mode, "stranger") && argc > 4) {
		hello(fd, argv[4]);
	} else if (!strcmp(mode, "escape") && argc > 5) {
		hello(fd, argv[4]);
		entry(fd, argv[4], argv[5], NULL, true);
	} else if (!strcmp(mode, "through") && argc > 6) {
		hello(fd, argv[4]);
		entry(fd, argv[4], argv[5], argv[6], false);
	} else if (!strcmp(mode, "origins") && argc > 6) {
		hello(fd, argv[4]);
		origins(fd, argv[4], argv[5], (int)strtol(argv[6], NULL, 10));
	} else if (!strcmp(mode, "impostor") && argc > 4) {
		hello(fd, argv[4]);
	} else if (!strcmp(mode, "flood") && argc > 4) {
		hello(fd, argv[4]);
		flood(fd);
	} else {
		fprintf(stderr, "unknown mode '%s'\n", mode);
		return 2;
	}
	printf("%s\n", outcome(fd));
	close(fd);
	return 0;
}
