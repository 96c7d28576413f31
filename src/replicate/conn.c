/*
 * Framing and buffering for one peer connection.
 *
 * Input.  Bytes arrive into one buffer, in[in_start, in_end), which
 * always begins at a frame boundary.  What it holds is one of:
 *
 *   empty            nothing pending; a buffer over CONN_IN_KEEP bytes is
 *                    freed here so an idle peer costs little
 *   partial header   fewer than CONN_HEADER_LEN bytes
 *   partial payload  a whole header, already validated (magic, version,
 *                    flags, length within the cap), and part of its
 *                    payload; the buffer grows towards header + length
 *                    by doubling as bytes arrive, so a peer that
 *                    announces a large frame and stalls holds only what
 *                    it sent
 *
 * Complete frames are handed to the callback straight from the buffer;
 * the bytes are compacted to the front before each read.  A buffer is
 * never sized by a header that has not passed every check.
 *
 * Output.  A queue out[out_start, out_end) of at most out_cap bytes.
 * Queueing is all or nothing, so a frame is never half queued; flushing
 * advances out_start by what the transport took.  A drained buffer is
 * kept for the next burst and given back by conn_trim: freed at every
 * drain, it was grown again by doubling for every batch of chunks
 * served, and realloc copied each byte sent once more (a tenth of the
 * sender's CPU for a large file).  TLS may have encrypted
 * part of the head of the queue already and asks for the same bytes
 * again, which holds because only flushing ever consumes the queue.
 *
 * Failure.  The first fatal error is kept in c->error; later calls
 * return it and conn_want() asks for nothing.
 */
#include "conn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#define CONN_READ_CHUNK (16 * 1024)   /* smallest read buffer */
#define CONN_IN_KEEP (64 * 1024)      /* input kept across idle periods */
#define CONN_OUT_MIN (4 * 1024)       /* first output buffer */
#define CONN_OUT_KEEP (64 * 1024)     /* output kept by conn_trim */

struct conn {
	struct transport *t;
	conn_frame_fn on_frame;
	void *arg;
	uint32_t max_payload;
	size_t out_cap;
	bool open;                /* the transport's handshake finished */
	int error;                /* first fatal error, 0 while usable */
	size_t read_budget;       /* bytes one conn_read() takes; 0: all */
	bool read_more;           /* the last one stopped at its budget */

	uint8_t *in;
	size_t in_start, in_end, in_alloc;

	uint8_t *out;
	size_t out_start, out_end, out_alloc;

	char err[TRANSPORT_ERR_MAX];
};

static int conn_fail(struct conn *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int conn_fail(struct conn *c, int code, const char *fmt, ...)
{
	va_list ap;

	if (c->error)
		return c->error;
	c->error = code;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return code;
}

/* A transport failure: its own words are better than ours. */
static int conn_fail_transport(struct conn *c, int code)
{
	return conn_fail(c, code, "%s", transport_last_error(c->t));
}

static void conn_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t conn_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

void conn_header_encode(uint8_t out[CONN_HEADER_LEN], uint8_t type,
			uint32_t len)
{
	memcpy(out, CONN_MAGIC, CONN_MAGIC_LEN);
	out[4] = CONN_VERSION;
	out[5] = type;
	out[6] = 0;
	out[7] = 0;
	conn_put_be32(out + 8, len);
}

int conn_header_decode(const uint8_t in[CONN_HEADER_LEN], uint8_t *type,
		       uint32_t *len)
{
	if (memcmp(in, CONN_MAGIC, CONN_MAGIC_LEN) != 0 ||
	    in[4] != CONN_VERSION || in[6] != 0 || in[7] != 0)
		return -EPROTO;
	*type = in[5];
	*len = conn_get_be32(in + 8);
	return 0;
}

int conn_new(struct transport *t, uint32_t max_payload, size_t out_cap,
	     conn_frame_fn on_frame, void *arg, struct conn **out)
{
	struct conn *c;

	*out = NULL;
	if (max_payload == 0 || out_cap == 0 || !on_frame)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->t = t;
	c->on_frame = on_frame;
	c->arg = arg;
	c->max_payload = max_payload;
	c->out_cap = out_cap;
	*out = c;
	return 0;
}

void conn_free(struct conn *c)
{
	if (!c)
		return;
	transport_close(c->t);
	free(c->in);
	free(c->out);
	free(c);
}

int conn_handshake(struct conn *c)
{
	int rc;

	if (c->error)
		return c->error;
	if (c->open)
		return 0;
	rc = transport_handshake(c->t);
	if (rc == 0)
		c->open = true;
	else if (rc != -EAGAIN)
		conn_fail_transport(c, rc);
	return rc;
}

/* ---- input ---- */

/* Why a header is bad, for the message; called once decode refused it. */
static const char *conn_header_fault(const uint8_t *h)
{
	if (memcmp(h, CONN_MAGIC, CONN_MAGIC_LEN) != 0)
		return "bad magic";
	if (h[4] != CONN_VERSION)
		return "unsupported protocol version";
	return "non-zero flags";
}

/*
 * Hands every complete frame in the buffer to the callback.  *NEED gets
 * the number of bytes the frame at the head needs in all, so the caller
 * can make room; every header is validated before it counts.
 */
static int conn_dispatch(struct conn *c, size_t *need)
{
	uint8_t type;
	uint32_t len;
	int rc;

	for (;;) {
		const uint8_t *h = c->in + c->in_start;
		size_t have = c->in_end - c->in_start;

		*need = CONN_HEADER_LEN;
		if (have < CONN_HEADER_LEN)
			return 0;
		if (conn_header_decode(h, &type, &len) != 0)
			return conn_fail(c, -EPROTO, "malformed frame header "
					 "from peer: %s", conn_header_fault(h));
		if (len > c->max_payload)
			return conn_fail(c, -EMSGSIZE, "frame of %u bytes from "
					 "peer exceeds the %u byte limit",
					 len, c->max_payload);
		*need = CONN_HEADER_LEN + (size_t)len;
		if (have < *need)
			return 0;
		c->in_start += *need;
		rc = c->on_frame(c->arg, type, h + CONN_HEADER_LEN, len);
		if (rc < 0)
			return conn_fail(c, rc, "frame of type %u refused",
					 (unsigned)type);
	}
}

static void conn_in_compact(struct conn *c)
{
	size_t have = c->in_end - c->in_start;

	if (have == 0 && c->in_alloc > CONN_IN_KEEP) {
		free(c->in);
		c->in = NULL;
		c->in_alloc = 0;
	} else if (c->in_start > 0) {
		memmove(c->in, c->in + c->in_start, have);
	}
	c->in_start = 0;
	c->in_end = have;
}

/*
 * Makes room to read after the buffered bytes of a frame that needs NEED
 * bytes in all (NEED > what is buffered, and within the validated cap).
 */
static int conn_in_reserve(struct conn *c, size_t need)
{
	size_t want = need > CONN_READ_CHUNK ? need : CONN_READ_CHUNK;
	size_t grow;
	uint8_t *p;

	conn_in_compact(c);
	if (c->in_alloc >= want)
		return 0;
	grow = c->in_alloc * 2 > CONN_READ_CHUNK ? c->in_alloc * 2
						   : CONN_READ_CHUNK;
	if (grow > want)
		grow = want;
	p = realloc(c->in, grow);
	if (!p)
		return conn_fail(c, -ENOMEM, "out of memory for a frame of "
				 "%zu bytes", need);
	c->in = p;
	c->in_alloc = grow;
	return 0;
}

int conn_read(struct conn *c)
{
	size_t need;
	ssize_t n;
	int rc;

	if (c->error)
		return c->error;
	if (!c->open)
		return -ENOTCONN;
	c->read_more = false;
	for (size_t got = 0;;) {
		rc = conn_dispatch(c, &need);
		if (rc)
			return rc;
		if (c->read_budget && got >= c->read_budget) {
			c->read_more = true;
			return 0;
		}
		rc = conn_in_reserve(c, need);
		if (rc)
			return rc;
		n = transport_read(c->t, c->in + c->in_end,
				   c->in_alloc - c->in_end);
		if (n == -EAGAIN)
			return 0;
		if (n < 0)
			return conn_fail_transport(c, (int)n);
		if (n == 0)
			return conn_fail(c, -ECONNRESET, "peer closed the "
					 "connection%s", c->in_end ?
					 " in the middle of a frame" : "");
		c->in_end += (size_t)n;
		got += (size_t)n;
	}
}

void conn_set_max_payload(struct conn *c, uint32_t max_payload)
{
	if (max_payload)
		c->max_payload = max_payload;
}

void conn_set_read_budget(struct conn *c, size_t bytes)
{
	c->read_budget = bytes;
}

bool conn_read_more(const struct conn *c)
{
	return c->read_more && !c->error;
}

/* ---- output ---- */

/* Room for LEN more bytes; the caller checked the cap. */
static int conn_out_reserve(struct conn *c, size_t len)
{
	size_t used = c->out_end - c->out_start;
	size_t grow;
	uint8_t *p;

	if (c->out_alloc - c->out_end >= len)
		return 0;
	/* Moving what is queued costs as much as the bytes moved: only
	 * when the room it wins is at least as large, or the buffer may
	 * not grow enough.  A long queue drained a little at a time and
	 * refilled a frame at a time was moved whole for every frame. */
	if (c->out_start > 0 &&
	    (c->out_start >= used || c->out_end + len > c->out_cap)) {
		memmove(c->out, c->out + c->out_start, used);
		c->out_start = 0;
		c->out_end = used;
		if (c->out_alloc - used >= len)
			return 0;
	}
	grow = c->out_alloc ? c->out_alloc * 2 : CONN_OUT_MIN;
	if (grow < c->out_end + len)
		grow = c->out_end + len;
	if (grow > c->out_cap)
		grow = c->out_cap;     /* still >= out_end + len, see above */
	p = realloc(c->out, grow);
	if (!p)
		return -ENOMEM;
	c->out = p;
	c->out_alloc = grow;
	return 0;
}

/* The checks shared by both queue calls; 0 when LEN bytes may go in. */
static int conn_queue_check(struct conn *c, size_t len)
{
	if (c->error)
		return c->error;
	if (len > c->out_cap)
		return -EMSGSIZE;
	if (len > c->out_cap - (c->out_end - c->out_start))
		return -ENOBUFS;
	return conn_out_reserve(c, len);
}

int conn_queue(struct conn *c, const void *data, size_t len)
{
	int rc = conn_queue_check(c, len);

	if (rc)
		return rc;
	if (len)
		memcpy(c->out + c->out_end, data, len);
	c->out_end += len;
	return 0;
}

int conn_frame_reserve(struct conn *c, uint32_t len, uint8_t **payload)
{
	int rc;

	*payload = NULL;
	if (len > c->max_payload)
		return -EMSGSIZE;
	rc = conn_queue_check(c, CONN_HEADER_LEN + (size_t)len);
	if (rc)
		return rc;
	*payload = c->out + c->out_end + CONN_HEADER_LEN;
	return 0;
}

void conn_frame_commit(struct conn *c, uint8_t type, uint32_t len)
{
	conn_header_encode(c->out + c->out_end, type, len);
	c->out_end += CONN_HEADER_LEN + (size_t)len;
}

int conn_queue_frame(struct conn *c, uint8_t type, const void *payload,
		     uint32_t len)
{
	uint8_t *p;
	int rc = conn_frame_reserve(c, len, &p);

	if (rc)
		return rc;
	if (len)
		memcpy(p, payload, len);
	conn_frame_commit(c, type, len);
	return 0;
}

void conn_trim(struct conn *c)
{
	if (c->out_start == c->out_end && c->out_alloc > CONN_OUT_KEEP) {
		free(c->out);
		c->out = NULL;
		c->out_alloc = 0;
		c->out_start = c->out_end = 0;
	}
}

int conn_flush(struct conn *c)
{
	ssize_t n;

	if (c->error)
		return c->error;
	if (!c->open)
		return -ENOTCONN;
	while (c->out_start < c->out_end) {
		n = transport_write(c->t, c->out + c->out_start,
				    c->out_end - c->out_start);
		if (n == -EAGAIN)
			return -EAGAIN;
		if (n < 0)
			return conn_fail_transport(c, (int)n);
		c->out_start += (size_t)n;
	}
	c->out_start = 0;
	c->out_end = 0;
	n = transport_flush(c->t);
	if (n == -EAGAIN)
		return -EAGAIN;
	if (n < 0)
		return conn_fail_transport(c, (int)n);
	return 0;
}

/* ---- state ---- */

uint32_t conn_want(const struct conn *c)
{
	uint32_t events;

	if (c->error)
		return 0;
	if (!c->open)
		return transport_want(c->t);
	events = EPOLLIN | transport_want(c->t);
	if (c->out_end > c->out_start)
		events |= EPOLLOUT;
	return events;
}

size_t conn_queued(const struct conn *c)
{
	return c->out_end - c->out_start;
}

void conn_mem(const struct conn *c, size_t *in_bytes, size_t *out_bytes)
{
	*in_bytes = c->in_alloc;
	*out_bytes = c->out_alloc;
}

struct transport *conn_transport(const struct conn *c)
{
	return c->t;
}

const char *conn_last_error(const struct conn *c)
{
	return c->err[0] ? c->err : transport_last_error(c->t);
}
