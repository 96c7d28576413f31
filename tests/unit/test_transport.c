/*
 * Transports, framing and credentials: frames over a plain socketpair,
 * over a transport that moves one byte at a time, and over mutual TLS
 * 1.3 with certificates made by tls_ca_init() and tls_issue().
 */
#include "conn.h"
#include "err.h"
#include "tls.h"
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define CAP (4 * 1024 * 1024 + 64 * 1024)
#define OUT_CAP (8 * 1024 * 1024)
#define MAX_FRAMES 64

/* ---- helpers: frames received ---- */

struct rec {
	size_t n;
	uint8_t types[MAX_FRAMES];
	uint32_t lens[MAX_FRAMES];
	uint8_t *data[MAX_FRAMES];
	int fail_with;            /* returned by the callback when non-zero */
};

static int rec_frame(void *arg, uint8_t type, const uint8_t *payload,
		     uint32_t len)
{
	struct rec *r = arg;

	assert_non_null(payload);
	if (r->fail_with)
		return r->fail_with;
	assert_true(r->n < MAX_FRAMES);
	r->types[r->n] = type;
	r->lens[r->n] = len;
	r->data[r->n] = malloc(len ? len : 1);
	assert_non_null(r->data[r->n]);
	memcpy(r->data[r->n], payload, len);
	r->n++;
	return 0;
}

static void rec_release(struct rec *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		free(r->data[i]);
	memset(r, 0, sizeof(*r));
}

static uint8_t *pattern(size_t len, unsigned seed)
{
	uint8_t *p = malloc(len ? len : 1);
	size_t i;

	assert_non_null(p);
	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + seed + (i >> 11));
	return p;
}

static void assert_frame(const struct rec *r, size_t i, uint8_t type,
			 uint32_t len, unsigned seed)
{
	uint8_t *want = pattern(len, seed);

	assert_true(i < r->n);
	assert_int_equal(r->types[i], type);
	assert_int_equal(r->lens[i], len);
	if (len)
		assert_memory_equal(r->data[i], want, len);
	free(want);
}

static void queue_pattern(struct conn *c, uint8_t type, uint32_t len,
			  unsigned seed)
{
	uint8_t *p = pattern(len, seed);

	assert_int_equal(conn_queue_frame(c, type, p, len), 0);
	free(p);
}

/* ---- helpers: sockets and pumping ---- */

static void make_pair(int fds[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
				    SOCK_CLOEXEC, 0, fds), 0);
}

static void small_buffers(int fd)
{
	int size = 4096;

	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size,
				    sizeof(size)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size,
				    sizeof(size)), 0);
}

static struct conn *plain_conn(int fd, struct rec *r, uint32_t cap,
			       size_t out_cap)
{
	struct transport *t;
	struct conn *c;

	assert_int_equal(transport_plain_new(fd, &t), 0);
	assert_int_equal(conn_new(t, cap, out_cap, rec_frame, r, &c), 0);
	return c;
}

struct side {
	struct conn *c;
	struct rec *r;
	int rc;                   /* first failure, 0 while healthy */
	bool open;
	unsigned flush_again;     /* times conn_flush() had to wait */
};

/* One step of the event handler a session would run. */
static void side_step(struct side *s)
{
	int rc;

	if (s->rc)
		return;
	rc = conn_handshake(s->c);
	if (rc == -EAGAIN)
		return;
	if (rc == 0) {
		s->open = true;
		rc = conn_read(s->c);
	}
	/* A transport may hold back what the queue no longer does. */
	if (rc == 0 && (conn_queued(s->c) || conn_want(s->c) & EPOLLOUT)) {
		rc = conn_flush(s->c);
		if (rc == -EAGAIN) {
			s->flush_again++;
			rc = 0;
		}
	}
	s->rc = rc;
}

static short poll_events(uint32_t want)
{
	return (short)((want & EPOLLIN ? POLLIN : 0) |
		       (want & EPOLLOUT ? POLLOUT : 0));
}

typedef bool (*pump_done_fn)(struct side *a, struct side *b, void *arg);

/* Runs both ends until DONE says so or both failed; 10 s at most. */
static void pump(struct side *a, struct side *b, pump_done_fn done,
		 void *arg)
{
	time_t deadline = time(NULL) + 10;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = transport_fd(conn_transport(a->c)),
			  .events = poll_events(conn_want(a->c)) },
			{ .fd = transport_fd(conn_transport(b->c)),
			  .events = poll_events(conn_want(b->c)) },
		};

		side_step(a);
		side_step(b);
		if (done(a, b, arg) || (a->rc && b->rc))
			return;
		assert_true(time(NULL) < deadline);
		p[0].events = a->rc ? 0 : poll_events(conn_want(a->c));
		p[1].events = b->rc ? 0 : poll_events(conn_want(b->c));
		assert_true(poll(p, 2, 100) >= 0);
	}
}

struct want_frames {
	size_t a, b;
};

static bool frames_arrived(struct side *a, struct side *b, void *arg)
{
	struct want_frames *w = arg;

	return a->r->n >= w->a && b->r->n >= w->b &&
	       conn_queued(a->c) == 0 && conn_queued(b->c) == 0;
}

static bool both_open(struct side *a, struct side *b, void *arg)
{
	(void)arg;
	return a->open && b->open;
}

/* ---- framing over plain sockets ---- */

static void test_header_layout(void **state)
{
	uint8_t h[CONN_HEADER_LEN];
	uint8_t type;
	uint32_t len;

	(void)state;
	conn_header_encode(h, 7, 0x01020304);
	assert_memory_equal(h, "KRFS\x01\x07\x00\x00\x01\x02\x03\x04",
			    CONN_HEADER_LEN);
	assert_int_equal(conn_header_decode(h, &type, &len), 0);
	assert_int_equal(type, 7);
	assert_int_equal(len, 0x01020304);
	h[0] = 'k';
	assert_int_equal(conn_header_decode(h, &type, &len), -EPROTO);
	h[0] = 'K';
	h[4] = 2;
	assert_int_equal(conn_header_decode(h, &type, &len), -EPROTO);
	h[4] = 1;
	h[7] = 1;
	assert_int_equal(conn_header_decode(h, &type, &len), -EPROTO);
}

static void test_plain_round_trip(void **state)
{
	struct rec ra = { 0 }, rb = { 0 };
	struct side a = { .r = &ra }, b = { .r = &rb };
	struct want_frames w = { 2, 4 };
	int fds[2];

	(void)state;
	make_pair(fds);
	a.c = plain_conn(fds[0], &ra, CAP, OUT_CAP);
	b.c = plain_conn(fds[1], &rb, CAP, OUT_CAP);
	/* Nothing moves before the handshake, even a plain one. */
	assert_int_equal(conn_read(a.c), -ENOTCONN);
	assert_int_equal(conn_flush(a.c), -ENOTCONN);
	queue_pattern(a.c, 1, 0, 1);
	queue_pattern(a.c, 2, 1, 2);
	queue_pattern(a.c, 3, 100, 3);
	queue_pattern(a.c, 255, 70000, 4);
	queue_pattern(b.c, 9, 5, 5);
	queue_pattern(b.c, 10, 20000, 6);
	pump(&a, &b, frames_arrived, &w);
	assert_int_equal(a.rc, 0);
	assert_int_equal(b.rc, 0);
	assert_int_equal(rb.n, 4);
	assert_frame(&rb, 0, 1, 0, 1);
	assert_frame(&rb, 1, 2, 1, 2);
	assert_frame(&rb, 2, 3, 100, 3);
	assert_frame(&rb, 3, 255, 70000, 4);
	assert_int_equal(ra.n, 2);
	assert_frame(&ra, 0, 9, 5, 5);
	assert_frame(&ra, 1, 10, 20000, 6);
	assert_int_equal(conn_want(a.c), EPOLLIN);
	assert_string_equal(conn_last_error(a.c), "");
	assert_null(transport_ssl(conn_transport(a.c)));
	conn_free(a.c);
	conn_free(b.c);
	rec_release(&ra);
	rec_release(&rb);
}

static void test_plain_big_frames_partial_io(void **state)
{
	struct rec ra = { 0 }, rb = { 0 };
	struct side a = { .r = &ra }, b = { .r = &rb };
	struct want_frames w = { 2, 3 };
	size_t in_bytes, out_bytes;
	int fds[2];

	(void)state;
	make_pair(fds);
	small_buffers(fds[0]);
	small_buffers(fds[1]);
	a.c = plain_conn(fds[0], &ra, CAP, OUT_CAP);
	b.c = plain_conn(fds[1], &rb, CAP, OUT_CAP);
	queue_pattern(a.c, 1, 1024 * 1024, 11);
	queue_pattern(a.c, 2, 4 * 1024 * 1024, 12);
	queue_pattern(a.c, 3, 3, 13);
	queue_pattern(b.c, 4, 2 * 1024 * 1024 + 5, 14);
	queue_pattern(b.c, 5, CAP, 15);
	pump(&a, &b, frames_arrived, &w);
	assert_int_equal(a.rc, 0);
	assert_int_equal(b.rc, 0);
	assert_true(a.flush_again > 0);
	assert_true(b.flush_again > 0);
	assert_frame(&rb, 0, 1, 1024 * 1024, 11);
	assert_frame(&rb, 1, 2, 4 * 1024 * 1024, 12);
	assert_frame(&rb, 2, 3, 3, 13);
	assert_frame(&ra, 0, 4, 2 * 1024 * 1024 + 5, 14);
	assert_frame(&ra, 1, 5, CAP, 15);
	/* A drained output buffer is kept for the next burst until
	 * trimmed; the input goes back to a small size at once. */
	conn_mem(a.c, &in_bytes, &out_bytes);
	assert_true(in_bytes <= 64 * 1024);
	assert_true(out_bytes >= 4 * 1024 * 1024);
	conn_trim(a.c);
	conn_mem(a.c, &in_bytes, &out_bytes);
	assert_true(out_bytes <= 64 * 1024);
	/* ...and it still works after. */
	queue_pattern(a.c, 6, 1024 * 1024, 16);
	w.b = 4;
	pump(&a, &b, frames_arrived, &w);
	assert_int_equal(a.rc, 0);
	assert_frame(&rb, 3, 6, 1024 * 1024, 16);
	conn_free(a.c);
	conn_free(b.c);
	rec_release(&ra);
	rec_release(&rb);
}

/* A test double that reads and writes one byte per call, and says
 * "try again" every other call. */
struct trickle {
	struct transport base;
	unsigned reads, writes;   /* apart, or the two fall into step */
};

static ssize_t trickle_read(struct transport *t, void *buf, size_t len)
{
	struct trickle *tr = (struct trickle *)t;
	ssize_t n;

	assert_true(len > 0);
	if (tr->reads++ % 2)
		return -EAGAIN;
	n = recv(t->fd, buf, 1, 0);
	if (n < 0)
		return errno == EAGAIN ? -EAGAIN : -errno;
	return n;
}

static ssize_t trickle_write(struct transport *t, const void *buf, size_t len)
{
	struct trickle *tr = (struct trickle *)t;
	ssize_t n;

	assert_true(len > 0);
	if (tr->writes++ % 2)
		return -EAGAIN;
	n = send(t->fd, buf, 1, MSG_NOSIGNAL);
	if (n < 0)
		return errno == EAGAIN ? -EAGAIN : -errno;
	return n;
}

static int trickle_handshake(struct transport *t)
{
	(void)t;
	return 0;
}

static uint32_t trickle_want(const struct transport *t)
{
	(void)t;
	return 0;
}

static void trickle_close(struct transport *t)
{
	close(t->fd);
	free(t);
}

static const struct transport_ops trickle_ops = {
	.name = "trickle",
	.read = trickle_read,
	.write = trickle_write,
	.handshake = trickle_handshake,
	.want = trickle_want,
	.close = trickle_close,
};

static struct conn *trickle_conn(int fd, struct rec *r)
{
	struct trickle *tr = calloc(1, sizeof(*tr));
	struct conn *c;

	assert_non_null(tr);
	tr->base.ops = &trickle_ops;
	tr->base.fd = fd;
	assert_int_equal(conn_new(&tr->base, CAP, OUT_CAP, rec_frame, r, &c),
			 0);
	return c;
}

static void test_byte_by_byte(void **state)
{
	struct rec ra = { 0 }, rb = { 0 };
	struct side a = { .r = &ra }, b = { .r = &rb };
	struct want_frames w = { 1, 3 };
	int fds[2];

	(void)state;
	make_pair(fds);
	a.c = trickle_conn(fds[0], &ra);
	b.c = trickle_conn(fds[1], &rb);
	queue_pattern(a.c, 1, 0, 21);
	queue_pattern(a.c, 2, 300, 22);
	queue_pattern(a.c, 3, 1, 23);
	queue_pattern(b.c, 4, 40, 24);
	pump(&a, &b, frames_arrived, &w);
	assert_int_equal(a.rc, 0);
	assert_int_equal(b.rc, 0);
	assert_int_equal(rb.n, 3);
	assert_frame(&rb, 0, 1, 0, 21);
	assert_frame(&rb, 1, 2, 300, 22);
	assert_frame(&rb, 2, 3, 1, 23);
	assert_int_equal(ra.n, 1);
	assert_frame(&ra, 0, 4, 40, 24);
	conn_free(a.c);
	conn_free(b.c);
	rec_release(&ra);
	rec_release(&rb);
}

/* A receiving conn (with cap CAP_) and the raw socket feeding it. */
struct raw_peer {
	struct conn *c;
	struct rec r;
	int fd;
};

static void raw_peer_open(struct raw_peer *p, uint32_t cap)
{
	int fds[2];

	memset(p, 0, sizeof(*p));
	make_pair(fds);
	p->c = plain_conn(fds[1], &p->r, cap, OUT_CAP);
	p->fd = fds[0];
	assert_int_equal(conn_handshake(p->c), 0);
}

static void raw_peer_send(struct raw_peer *p, const void *data, size_t len)
{
	assert_int_equal(send(p->fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void raw_peer_close(struct raw_peer *p)
{
	conn_free(p->c);
	if (p->fd >= 0)
		close(p->fd);
	rec_release(&p->r);
}

static void test_over_cap_rejected_before_allocating(void **state)
{
	static const uint32_t lens[] = { 4097, 0xffffffffu };
	uint8_t h[CONN_HEADER_LEN + 4096];
	struct raw_peer p;
	size_t i, in_bytes, out_bytes;

	(void)state;
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		raw_peer_open(&p, 4096);
		/* Exactly the cap passes... */
		memset(h, 0xab, sizeof(h));
		conn_header_encode(h, 1, 4096);
		raw_peer_send(&p, h, sizeof(h));
		assert_int_equal(conn_read(p.c), 0);
		assert_int_equal(p.r.n, 1);
		assert_int_equal(p.r.lens[0], 4096);
		/* ...one byte more fails on the header alone. */
		conn_header_encode(h, 1, lens[i]);
		raw_peer_send(&p, h, CONN_HEADER_LEN);
		assert_int_equal(conn_read(p.c), -EMSGSIZE);
		assert_non_null(strstr(conn_last_error(p.c), "exceeds"));
		conn_mem(p.c, &in_bytes, &out_bytes);
		assert_true(in_bytes <= 16 * 1024);
		/* Failure is final. */
		assert_int_equal(conn_read(p.c), -EMSGSIZE);
		assert_int_equal(conn_want(p.c), 0);
		raw_peer_close(&p);
	}
}

static void test_large_announced_frame_grows_gradually(void **state)
{
	uint8_t h[CONN_HEADER_LEN + 100];
	struct raw_peer p;
	size_t in_bytes, out_bytes;

	(void)state;
	raw_peer_open(&p, CAP);
	memset(h, 0, sizeof(h));
	conn_header_encode(h, 1, CAP);
	raw_peer_send(&p, h, sizeof(h));
	assert_int_equal(conn_read(p.c), 0);
	conn_mem(p.c, &in_bytes, &out_bytes);
	/* A stalled peer holds what it sent, not what it announced. */
	assert_true(in_bytes <= 64 * 1024);
	assert_int_equal(p.r.n, 0);
	raw_peer_close(&p);
}

/* With a read budget one conn_read() hands over a slice and says more
 * is waiting; reading on gets every frame, whole and in order, then says
 * nothing is left. */
static void test_read_budget_slices(void **state)
{
	enum { FRAMES = 24, LEN = 4000 };
	uint8_t f[CONN_HEADER_LEN + LEN];
	struct raw_peer p;
	int calls = 0;

	(void)state;
	raw_peer_open(&p, CAP);
	conn_set_read_budget(p.c, 8 * 1024);
	for (int i = 0; i < FRAMES; i++) {
		conn_header_encode(f, 1, LEN);
		memset(f + CONN_HEADER_LEN, i, LEN);
		raw_peer_send(&p, f, sizeof(f));
	}
	assert_int_equal(conn_read(p.c), 0);
	assert_true(conn_read_more(p.c));
	assert_true(p.r.n > 0 && p.r.n < FRAMES);
	while (conn_read_more(p.c) && ++calls < 100)
		assert_int_equal(conn_read(p.c), 0);
	assert_false(conn_read_more(p.c));
	assert_int_equal(p.r.n, FRAMES);
	for (int i = 0; i < FRAMES; i++) {
		assert_int_equal(p.r.lens[i], LEN);
		assert_int_equal(p.r.data[i][0], i);
		assert_int_equal(p.r.data[i][LEN - 1], i);
	}
	raw_peer_close(&p);
}

static void test_malformed_headers_rejected(void **state)
{
	static const struct {
		size_t at;
		uint8_t value;
		const char *why;
	} bad[] = {
		{ 0, 'X', "bad magic" },
		{ 3, 's', "bad magic" },
		{ 4, 2, "unsupported protocol version" },
		{ 4, 0, "unsupported protocol version" },
		{ 6, 0x80, "non-zero flags" },
		{ 7, 1, "non-zero flags" },
	};
	uint8_t h[CONN_HEADER_LEN];
	struct raw_peer p;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		raw_peer_open(&p, CAP);
		conn_header_encode(h, 1, 0);
		h[bad[i].at] = bad[i].value;
		raw_peer_send(&p, h, sizeof(h));
		assert_int_equal(conn_read(p.c), -EPROTO);
		assert_non_null(strstr(conn_last_error(p.c), bad[i].why));
		assert_int_equal(p.r.n, 0);
		raw_peer_close(&p);
	}
}

static void test_good_frames_before_bad_are_delivered(void **state)
{
	uint8_t buf[2 * CONN_HEADER_LEN + 3];
	struct raw_peer p;

	(void)state;
	raw_peer_open(&p, CAP);
	conn_header_encode(buf, 5, 3);
	memcpy(buf + CONN_HEADER_LEN, "abc", 3);
	memcpy(buf + CONN_HEADER_LEN + 3, "HTTP/1.1 200", CONN_HEADER_LEN);
	raw_peer_send(&p, buf, sizeof(buf));
	assert_int_equal(conn_read(p.c), -EPROTO);
	assert_int_equal(p.r.n, 1);
	assert_memory_equal(p.r.data[0], "abc", 3);
	raw_peer_close(&p);
}

static void test_peer_close(void **state)
{
	uint8_t h[CONN_HEADER_LEN];
	struct raw_peer p;

	(void)state;
	raw_peer_open(&p, CAP);
	close(p.fd);
	p.fd = -1;
	assert_int_equal(conn_read(p.c), -ECONNRESET);
	assert_string_equal(conn_last_error(p.c), "peer closed the connection");
	raw_peer_close(&p);

	raw_peer_open(&p, CAP);
	conn_header_encode(h, 1, 10);
	raw_peer_send(&p, h, 7);
	close(p.fd);
	p.fd = -1;
	assert_int_equal(conn_read(p.c), -ECONNRESET);
	assert_non_null(strstr(conn_last_error(p.c), "middle of a frame"));
	raw_peer_close(&p);
}

static void test_callback_error_stops_reading(void **state)
{
	uint8_t h[CONN_HEADER_LEN];
	struct raw_peer p;

	(void)state;
	raw_peer_open(&p, CAP);
	p.r.fail_with = -EBADMSG;
	conn_header_encode(h, 1, 0);
	raw_peer_send(&p, h, sizeof(h));
	raw_peer_send(&p, h, sizeof(h));
	assert_int_equal(conn_read(p.c), -EBADMSG);
	assert_int_equal(conn_read(p.c), -EBADMSG);
	raw_peer_close(&p);
}

/* Frames filled in place arrive like queued ones; a reservation never
 * committed sends nothing; the payload cap holds as for conn_queue_frame
 * (the queue cap is the same check, see test_output_cap). */
static void test_frame_in_place(void **state)
{
	struct rec ra = { 0 }, rb = { 0 };
	struct side a = { .r = &ra }, b = { .r = &rb };
	struct want_frames w = { 0, 2 };
	uint8_t *p, *want = pattern(70000, 7);
	int fds[2];

	(void)state;
	make_pair(fds);
	a.c = plain_conn(fds[0], &ra, CAP, OUT_CAP);
	b.c = plain_conn(fds[1], &rb, CAP, OUT_CAP);
	assert_int_equal(conn_frame_reserve(a.c, 500, &p), 0);
	memset(p, 'x', 500);                /* dropped: never committed */
	assert_int_equal(conn_queued(a.c), 0);
	assert_int_equal(conn_frame_reserve(a.c, 70000, &p), 0);
	memcpy(p, want, 70000);
	conn_frame_commit(a.c, 7, 70000);
	assert_int_equal(conn_queued(a.c), CONN_HEADER_LEN + 70000);
	queue_pattern(a.c, 8, 100, 8);
	assert_int_equal(conn_frame_reserve(a.c, CAP + 1, &p), -EMSGSIZE);
	assert_null(p);
	pump(&a, &b, frames_arrived, &w);
	assert_int_equal(rb.n, 2);
	assert_frame(&rb, 0, 7, 70000, 7);
	assert_frame(&rb, 1, 8, 100, 8);
	free(want);
	conn_free(a.c);
	conn_free(b.c);
	rec_release(&ra);
	rec_release(&rb);
}

static void test_output_cap(void **state)
{
	uint8_t payload[200] = { 0 };
	uint8_t big[1001] = { 0 };
	uint8_t sink[4096];
	struct rec r = { 0 };
	struct conn *c;
	int fds[2], i;

	(void)state;
	make_pair(fds);
	c = plain_conn(fds[0], &r, 4096, 1000);
	/* Eight frames of 112 bytes fit in 1000, the ninth does not. */
	for (i = 0; i < 8; i++)
		assert_int_equal(conn_queue_frame(c, 1, payload, 100), 0);
	assert_int_equal(conn_queued(c), 896);
	assert_int_equal(conn_queue_frame(c, 1, payload, 100), -ENOBUFS);
	assert_int_equal(conn_queue(c, payload, 105), -ENOBUFS);
	assert_int_equal(conn_queued(c), 896);
	assert_int_equal(conn_queue(c, payload, 104), 0);
	assert_int_equal(conn_queued(c), 1000);
	/* What can never fit is a different error from "not now". */
	assert_int_equal(conn_queue(c, big, sizeof(big)), -EMSGSIZE);
	assert_int_equal(conn_queue_frame(c, 1, big, 4097), -EMSGSIZE);

	assert_int_equal(conn_handshake(c), 0);
	assert_true(conn_want(c) & EPOLLOUT);
	assert_int_equal(conn_flush(c), 0);
	assert_int_equal(conn_queued(c), 0);
	assert_int_equal(conn_want(c), EPOLLIN);
	assert_int_equal(recv(fds[1], sink, sizeof(sink), 0), 1000);
	assert_int_equal(conn_queue_frame(c, 1, payload, 100), 0);
	conn_free(c);
	close(fds[1]);
}

static void test_flush_waits_when_socket_full(void **state)
{
	uint8_t *p = pattern(900 * 1024, 3);
	uint8_t sink[65536];
	struct rec r = { 0 };
	struct conn *c;
	int fds[2], rc;
	ssize_t n;
	size_t got = 0;

	(void)state;
	make_pair(fds);
	small_buffers(fds[0]);
	small_buffers(fds[1]);
	c = plain_conn(fds[0], &r, CAP, OUT_CAP);
	assert_int_equal(conn_handshake(c), 0);
	assert_int_equal(conn_queue_frame(c, 1, p, 900 * 1024), 0);
	assert_int_equal(conn_flush(c), -EAGAIN);
	assert_true(conn_queued(c) > 0);
	assert_true(conn_want(c) & EPOLLOUT);
	while (got < CONN_HEADER_LEN + 900 * 1024) {
		n = recv(fds[1], sink, sizeof(sink), 0);
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			rc = conn_flush(c);
			assert_true(rc == 0 || rc == -EAGAIN);
			continue;
		}
		got += (size_t)n;
	}
	assert_int_equal(conn_flush(c), 0);
	free(p);
	conn_free(c);
	close(fds[1]);
}

static void test_write_to_closed_peer(void **state)
{
	struct rec r = { 0 };
	struct conn *c;
	int fds[2];

	(void)state;
	make_pair(fds);
	c = plain_conn(fds[0], &r, CAP, OUT_CAP);
	close(fds[1]);
	assert_int_equal(conn_handshake(c), 0);
	assert_int_equal(conn_queue_frame(c, 1, "x", 1), 0);
	/* No SIGPIPE: an error code instead. */
	assert_int_equal(conn_flush(c), -EPIPE);
	assert_non_null(strstr(conn_last_error(c), "write to peer"));
	assert_int_equal(conn_queue_frame(c, 1, "x", 1), -EPIPE);
	conn_free(c);
}

/* ---- credentials ---- */

struct tls_fixture {
	char root[64];
	char *a;                  /* the cluster CA and node vm1 */
	char *b;                  /* the same CA and node vm2 */
	char *c;                  /* another CA, and a vm1 of its own */
};

static struct tls_fixture fx;

static char *path_in(const char *dir, const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static void copy_file(const char *from_dir, const char *to_dir,
		      const char *name)
{
	char *from = path_in(from_dir, name), *to = path_in(to_dir, name);
	char buf[8192];
	int in = open(from, O_RDONLY), out;
	struct stat st;
	ssize_t n;

	assert_true(in >= 0);
	assert_int_equal(fstat(in, &st), 0);
	out = open(to, O_WRONLY | O_CREAT | O_EXCL, st.st_mode & 0777);
	assert_true(out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
	free(from);
	free(to);
}

static char *make_subdir(const char *name)
{
	char *dir = path_in(fx.root, name);

	assert_int_equal(mkdir(dir, 0700), 0);
	return dir;
}

static void ok_or_print(int rc, char *errmsg)
{
	if (rc)
		print_error("%s\n", errmsg ? errmsg : "(no message)");
	assert_int_equal(rc, 0);
	free(errmsg);
}

static int tls_group_setup(void **state)
{
	char *err = NULL;

	(void)state;
	snprintf(fx.root, sizeof(fx.root), "/tmp/krakenfs-tls-XXXXXX");
	if (!mkdtemp(fx.root))
		return -1;
	fx.a = path_in(fx.root, "a");
	ok_or_print(tls_ca_init(fx.a, false, &err), err);
	err = NULL;
	ok_or_print(tls_issue(fx.a, "vm1", false, &err), err);
	err = NULL;
	fx.b = make_subdir("b");
	copy_file(fx.a, fx.b, TLS_CA_CERT);
	copy_file(fx.a, fx.b, TLS_CA_KEY);
	ok_or_print(tls_issue(fx.b, "vm2", false, &err), err);
	err = NULL;
	fx.c = path_in(fx.root, "c");
	ok_or_print(tls_ca_init(fx.c, false, &err), err);
	err = NULL;
	ok_or_print(tls_issue(fx.c, "vm1", false, &err), err);
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int tls_group_teardown(void **state)
{
	(void)state;
	nftw(fx.root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx.a);
	free(fx.b);
	free(fx.c);
	return 0;
}

static mode_t mode_of(const char *dir, const char *name)
{
	char *p = path_in(dir, name);
	struct stat st;

	assert_int_equal(stat(p, &st), 0);
	free(p);
	return st.st_mode & 07777;
}

static void test_tls_file_modes(void **state)
{
	(void)state;
	assert_int_equal(mode_of(fx.a, TLS_CA_KEY), 0600);
	assert_int_equal(mode_of(fx.a, TLS_NODE_KEY), 0600);
	assert_int_equal(mode_of(fx.b, TLS_NODE_KEY), 0600);
	assert_int_equal(mode_of(fx.a, TLS_CA_CERT), 0644);
	assert_int_equal(mode_of(fx.a, TLS_NODE_CERT), 0644);
	assert_int_equal(mode_of(fx.root, "a"), 0700);
}

static char *slurp(const char *dir, const char *name)
{
	char *p = path_in(dir, name);
	char *text = calloc(1, 65536);
	int fd = open(p, O_RDONLY);

	assert_non_null(text);
	assert_true(fd >= 0);
	assert_true(read(fd, text, 65535) > 0);
	close(fd);
	free(p);
	return text;
}

static void test_tls_refuses_to_overwrite(void **state)
{
	char *before = slurp(fx.a, TLS_CA_KEY), *after;
	char *err = NULL;
	char *dir;

	(void)state;
	assert_int_equal(tls_ca_init(fx.a, false, &err), -EEXIST);
	assert_non_null(strstr(err, "already exists; use --force"));
	free(err);
	err = NULL;
	assert_int_equal(tls_issue(fx.a, "vm1", false, &err), -EEXIST);
	assert_non_null(strstr(err, TLS_NODE_KEY));
	free(err);
	err = NULL;
	after = slurp(fx.a, TLS_CA_KEY);
	assert_string_equal(before, after);
	free(after);

	/* --force replaces, and keeps the mode. */
	dir = make_subdir("force");
	copy_file(fx.a, dir, TLS_CA_CERT);
	copy_file(fx.a, dir, TLS_CA_KEY);
	ok_or_print(tls_ca_init(dir, true, &err), err);
	after = slurp(dir, TLS_CA_KEY);
	assert_string_not_equal(before, after);
	assert_int_equal(mode_of(dir, TLS_CA_KEY), 0600);
	free(after);
	free(before);
	free(dir);
}

static void test_tls_issue_checks_node_id(void **state)
{
	static const char *const bad[] = {
		"", "a b", "../x", "vm1,DNS:vm2", "caf\xc3\xa9",
		("x123456789012345678901234567890"
		 "1234567890123456789012345678901234"),  /* 65 characters */
	};
	char *err = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(tls_issue(fx.a, bad[i], true, &err), -EINVAL);
		assert_non_null(strstr(err, "invalid node id"));
		free(err);
		err = NULL;
	}
}

static void test_tls_instructions(void **state)
{
	char *text;

	(void)state;
	text = tls_instructions("/x", NULL);
	assert_non_null(strstr(text, "/x/ca.pem"));
	assert_non_null(strstr(text, "krakenfs-agent tls issue"));
	free(text);
	text = tls_instructions("/x", "vm7");
	assert_non_null(strstr(text, "/x/node-key.pem"));
	assert_non_null(strstr(text, "vm7"));
	free(text);
}

static SSL_CTX *ctx_for(const char *dir, const char *ca_dir, bool server)
{
	char *cert = path_in(dir, TLS_NODE_CERT);
	char *key = path_in(dir, TLS_NODE_KEY);
	char *ca = path_in(ca_dir, TLS_CA_CERT);
	char *err = NULL;
	SSL_CTX *ctx = tls_context_new(cert, key, ca, server, &err);

	if (!ctx)
		print_error("%s\n", err);
	assert_non_null(ctx);
	assert_null(err);
	free(cert);
	free(key);
	free(ca);
	return ctx;
}

static void test_tls_key_permissions(void **state)
{
	char *cert = path_in(fx.a, TLS_NODE_CERT);
	char *key = path_in(fx.a, TLS_NODE_KEY);
	char *ca = path_in(fx.a, TLS_CA_CERT);
	char *missing = path_in(fx.a, "missing.pem");
	char *err = NULL, *want;

	(void)state;
	assert_int_equal(chmod(key, 0640), 0);
	assert_null(tls_context_new(cert, key, ca, true, &err));
	assert_true(asprintf(&want, "key %s is accessible by group or other "
			     "(mode 0640); run chmod 600 %s", key, key) > 0);
	assert_string_equal(err, want);
	free(want);
	free(err);
	err = NULL;
	assert_int_equal(chmod(key, 0604), 0);
	assert_null(tls_context_new(cert, key, ca, true, &err));
	assert_non_null(strstr(err, "chmod 600"));
	free(err);
	err = NULL;
	assert_int_equal(chmod(key, 0600), 0);

	assert_null(tls_context_new(cert, missing, ca, true, &err));
	assert_true(asprintf(&want, "cannot read key %s: no such file or "
			     "directory", missing) > 0);
	assert_string_equal(err, want);
	free(want);
	free(err);
	err = NULL;

	/* Issuing reads the CA key under the same rule. */
	free(key);
	key = path_in(fx.a, TLS_CA_KEY);
	assert_int_equal(chmod(key, 0644), 0);
	assert_int_equal(tls_issue(fx.a, "vm9", true, &err), -EACCES);
	assert_non_null(strstr(err, "chmod 600"));
	assert_int_equal(chmod(key, 0600), 0);
	free(err);
	free(cert);
	free(key);
	free(ca);
	free(missing);
}

static void test_tls_context_checks_files(void **state)
{
	char *cert = path_in(fx.a, TLS_NODE_CERT);
	char *other_key = path_in(fx.b, TLS_NODE_KEY);
	char *ca = path_in(fx.a, TLS_CA_CERT);
	char *other_ca = path_in(fx.c, TLS_CA_CERT);
	char *key = path_in(fx.a, TLS_NODE_KEY);
	char *err = NULL;

	(void)state;
	assert_null(tls_context_new(cert, other_key, ca, false, &err));
	assert_non_null(strstr(err, "does not match certificate"));
	free(err);
	err = NULL;
	assert_null(tls_context_new(cert, key, other_ca, false, &err));
	assert_non_null(strstr(err, "does not verify against ca"));
	free(err);
	err = NULL;
	/* A key is not a certificate. */
	assert_null(tls_context_new(key, key, ca, false, &err));
	assert_non_null(strstr(err, "no pem certificate"));
	free(err);
	free(cert);
	free(other_key);
	free(ca);
	free(other_ca);
	free(key);
}

/* ---- TLS sessions ---- */

struct tls_pair {
	struct rec rs, rc;
	struct side server, client;
};

static void tls_pair_open(struct tls_pair *p, SSL_CTX *sctx, SSL_CTX *cctx)
{
	struct transport *ts, *tc;
	int fds[2];

	memset(p, 0, sizeof(*p));
	make_pair(fds);
	assert_int_equal(transport_tls_new(fds[0], sctx, true, &ts), 0);
	assert_int_equal(transport_tls_new(fds[1], cctx, false, &tc), 0);
	/* Transports hold their own references. */
	tls_context_free(sctx);
	tls_context_free(cctx);
	assert_int_equal(conn_new(ts, CAP, OUT_CAP, rec_frame, &p->rs,
				  &p->server.c), 0);
	assert_int_equal(conn_new(tc, CAP, OUT_CAP, rec_frame, &p->rc,
				  &p->client.c), 0);
	p->server.r = &p->rs;
	p->client.r = &p->rc;
}

static void tls_pair_close(struct tls_pair *p)
{
	conn_free(p->server.c);
	conn_free(p->client.c);
	rec_release(&p->rs);
	rec_release(&p->rc);
}

static SSL *ssl_of(struct side *s)
{
	return transport_ssl(conn_transport(s->c));
}

static void test_tls_mutual_round_trip(void **state)
{
	struct want_frames w = { 3, 2 };
	struct tls_pair p;
	char id[TLS_NODE_ID_MAX + 1];

	(void)state;
	tls_pair_open(&p, ctx_for(fx.a, fx.a, true),
		      ctx_for(fx.b, fx.b, false));
	/* Queued before the handshake: held back until it is done. */
	queue_pattern(p.client.c, 1, 10, 31);
	pump(&p.server, &p.client, both_open, NULL);
	assert_int_equal(p.server.rc, 0);
	assert_int_equal(p.client.rc, 0);
	assert_int_equal(SSL_version(ssl_of(&p.server)), TLS1_3_VERSION);
	assert_int_equal(tls_peer_node_id(ssl_of(&p.server), id, sizeof(id)),
			 0);
	assert_string_equal(id, "vm2");
	assert_int_equal(tls_peer_node_id(ssl_of(&p.client), id, sizeof(id)),
			 0);
	assert_string_equal(id, "vm1");
	assert_int_equal(tls_peer_node_id(ssl_of(&p.client), id, 3),
			 -ENAMETOOLONG);

	queue_pattern(p.client.c, 2, 3 * 1024 * 1024, 32);
	queue_pattern(p.client.c, 3, 0, 33);
	queue_pattern(p.server.c, 4, 1024 * 1024 + 1, 34);
	queue_pattern(p.server.c, 5, 17, 35);
	pump(&p.server, &p.client, frames_arrived, &w);
	assert_int_equal(p.server.rc, 0);
	assert_int_equal(p.client.rc, 0);
	assert_frame(&p.rs, 0, 1, 10, 31);
	assert_frame(&p.rs, 1, 2, 3 * 1024 * 1024, 32);
	assert_frame(&p.rs, 2, 3, 0, 33);
	assert_frame(&p.rc, 0, 4, 1024 * 1024 + 1, 34);
	assert_frame(&p.rc, 1, 5, 17, 35);
	tls_pair_close(&p);
}

static void test_tls_close_notify_is_eof(void **state)
{
	struct tls_pair p;

	(void)state;
	tls_pair_open(&p, ctx_for(fx.a, fx.a, true),
		      ctx_for(fx.b, fx.b, false));
	pump(&p.server, &p.client, both_open, NULL);
	conn_free(p.client.c);
	p.client.c = NULL;
	assert_int_equal(conn_read(p.server.c), -ECONNRESET);
	assert_string_equal(conn_last_error(p.server.c),
			    "peer closed the connection");
	tls_pair_close(&p);
}

/* Records the socket has no room for wait in the transport once the
 * conn's queue has handed them over: the conn still asks to be writable,
 * and they arrive whole when the peer reads. */
static void test_tls_records_held_until_socket_takes_them(void **state)
{
	struct want_frames w = { 1, 0 };
	struct tls_pair p;

	(void)state;
	tls_pair_open(&p, ctx_for(fx.a, fx.a, true),
		      ctx_for(fx.b, fx.b, false));
	pump(&p.server, &p.client, both_open, NULL);
	small_buffers(transport_fd(conn_transport(p.server.c)));
	small_buffers(transport_fd(conn_transport(p.client.c)));
	queue_pattern(p.client.c, 7, 100000, 61);
	assert_int_equal(conn_flush(p.client.c), -EAGAIN);
	assert_int_equal(conn_queued(p.client.c), 0);
	assert_true(conn_want(p.client.c) & EPOLLOUT);
	pump(&p.server, &p.client, frames_arrived, &w);
	assert_int_equal(p.server.rc, 0);
	assert_int_equal(p.client.rc, 0);
	assert_int_equal(p.rs.n, 1);
	assert_frame(&p.rs, 0, 7, 100000, 61);
	assert_int_equal(conn_flush(p.client.c), 0);
	assert_false(conn_want(p.client.c) & EPOLLOUT);
	tls_pair_close(&p);
}

/* Trusts CA_DIR's CA as well, so only the other side can refuse. */
static void trust_also(SSL_CTX *ctx, const char *ca_dir)
{
	char *ca = path_in(ca_dir, TLS_CA_CERT);
	FILE *fp = fopen(ca, "r");
	X509 *x;

	assert_non_null(fp);
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	assert_non_null(x);
	assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x),
			 1);
	X509_free(x);
	fclose(fp);
	free(ca);
}

/* Pump until both ends have failed. */
static bool never(struct side *a, struct side *b, void *arg)
{
	(void)a;
	(void)b;
	(void)arg;
	return false;
}

static void test_tls_client_from_other_ca_refused(void **state)
{
	SSL_CTX *cctx = ctx_for(fx.c, fx.c, false);
	struct tls_pair p;

	(void)state;
	trust_also(cctx, fx.a);
	tls_pair_open(&p, ctx_for(fx.a, fx.a, true), cctx);
	queue_pattern(p.client.c, 1, 10, 41);
	pump(&p.server, &p.client, never, NULL);
	assert_false(p.server.open);
	assert_int_equal(p.server.rc, -EACCES);
	assert_string_equal(conn_last_error(p.server.c),
			    "tls handshake failed: peer certificate rejected: "
			    "unable to get local issuer certificate");
	assert_int_equal(p.client.rc, -ECONNREFUSED);
	assert_non_null(strstr(conn_last_error(p.client.c),
			       "peer refused our certificate"));
	assert_int_equal(p.rs.n, 0);
	tls_pair_close(&p);
}

static void test_tls_server_from_other_ca_refused(void **state)
{
	SSL_CTX *sctx = ctx_for(fx.c, fx.c, true);
	struct tls_pair p;

	(void)state;
	trust_also(sctx, fx.a);
	tls_pair_open(&p, sctx, ctx_for(fx.b, fx.b, false));
	pump(&p.server, &p.client, never, NULL);
	assert_false(p.client.open);
	assert_int_equal(p.client.rc, -EACCES);
	assert_non_null(strstr(conn_last_error(p.client.c),
			       "peer certificate rejected"));
	assert_int_equal(p.server.rc, -ECONNREFUSED);
	assert_false(p.server.open);
	tls_pair_close(&p);
}

static void test_tls_client_without_certificate_refused(void **state)
{
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	char *ca = path_in(fx.a, TLS_CA_CERT);
	struct tls_pair p;

	(void)state;
	assert_non_null(cctx);
	assert_int_equal(SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION),
			 1);
	assert_int_equal(SSL_CTX_load_verify_locations(cctx, ca, NULL), 1);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	tls_pair_open(&p, ctx_for(fx.a, fx.a, true), cctx);
	queue_pattern(p.client.c, 1, 10, 51);
	pump(&p.server, &p.client, never, NULL);
	assert_false(p.server.open);
	assert_int_equal(p.server.rc, -EACCES);
	assert_string_equal(conn_last_error(p.server.c),
			    "tls handshake failed: peer sent no certificate");
	assert_int_equal(p.client.rc, -ECONNREFUSED);
	assert_int_equal(p.rs.n, 0);
	tls_pair_close(&p);
	free(ca);
}

static void test_tls_not_tls_peer(void **state)
{
	SSL_CTX *ctx = ctx_for(fx.a, fx.a, true);
	struct transport *t;
	struct rec r = { 0 };
	struct conn *c;
	int fds[2];
	int rc;

	(void)state;
	make_pair(fds);
	assert_int_equal(transport_tls_new(fds[0], ctx, true, &t), 0);
	tls_context_free(ctx);
	assert_int_equal(conn_new(t, CAP, OUT_CAP, rec_frame, &r, &c), 0);
	assert_int_equal(conn_handshake(c), -EAGAIN);
	assert_int_equal(conn_want(c), EPOLLIN);
	assert_int_equal(send(fds[1], "GET / HTTP/1.1\r\n\r\n", 18, 0), 18);
	rc = conn_handshake(c);
	assert_int_equal(rc, -EPROTO);
	assert_non_null(strstr(conn_last_error(c), "tls handshake failed"));
	assert_int_equal(conn_want(c), 0);
	conn_free(c);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest framing[] = {
		cmocka_unit_test(test_header_layout),
		cmocka_unit_test(test_plain_round_trip),
		cmocka_unit_test(test_plain_big_frames_partial_io),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_over_cap_rejected_before_allocating),
		cmocka_unit_test(test_large_announced_frame_grows_gradually),
		cmocka_unit_test(test_read_budget_slices),
		cmocka_unit_test(test_malformed_headers_rejected),
		cmocka_unit_test(test_good_frames_before_bad_are_delivered),
		cmocka_unit_test(test_peer_close),
		cmocka_unit_test(test_callback_error_stops_reading),
		cmocka_unit_test(test_frame_in_place),
		cmocka_unit_test(test_output_cap),
		cmocka_unit_test(test_flush_waits_when_socket_full),
		cmocka_unit_test(test_write_to_closed_peer),
	};
	const struct CMUnitTest tls[] = {
		cmocka_unit_test(test_tls_file_modes),
		cmocka_unit_test(test_tls_refuses_to_overwrite),
		cmocka_unit_test(test_tls_issue_checks_node_id),
		cmocka_unit_test(test_tls_instructions),
		cmocka_unit_test(test_tls_key_permissions),
		cmocka_unit_test(test_tls_context_checks_files),
		cmocka_unit_test(test_tls_mutual_round_trip),
		cmocka_unit_test(test_tls_close_notify_is_eof),
		cmocka_unit_test(test_tls_records_held_until_socket_takes_them),
		cmocka_unit_test(test_tls_client_from_other_ca_refused),
		cmocka_unit_test(test_tls_server_from_other_ca_refused),
		cmocka_unit_test(test_tls_client_without_certificate_refused),
		cmocka_unit_test(test_tls_not_tls_peer),
	};
	int failed;

	failed = cmocka_run_group_tests_name("framing", framing, NULL, NULL);
	failed += cmocka_run_group_tests_name("tls", tls, tls_group_setup,
					      tls_group_teardown);
	return failed ? 1 : 0;
}
