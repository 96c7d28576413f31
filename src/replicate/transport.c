/*
 * Transports: the generic wrappers, a plain socket, and TLS over OpenSSL.
 *
 * The wrappers make failure sticky: once an operation returns a negative
 * code other than -EAGAIN, every later read, write or handshake returns
 * that code without touching the socket, so a caller that misses one
 * error cannot talk over a broken stream.
 *
 * A TLS transport is in one of three states:
 *
 *   HANDSHAKING  created; SSL_do_handshake() has not finished.  No
 *                application byte has been read or written; hs_want
 *                holds the events the handshake waits for.
 *   OPEN         the handshake finished and the peer's chain verified
 *                against the cluster CA (OpenSSL fails the handshake
 *                otherwise, the context requires a peer certificate in
 *                both directions).  rd_want / wr_want hold the events a
 *                blocked read or write waits for, 0 when not blocked.
 *   CLOSED       the peer sent close_notify (reads return 0), or a
 *                fatal error happened (the wrappers hold the code).
 *                OpenSSL forbids SSL_shutdown() after a fatal error, so
 *                only a transport closed while OPEN sends close_notify.
 *
 * OpenSSL talks to the socket through a small BIO of our own rather than
 * its socket BIO, which writes with write(2): a peer that resets the
 * connection would raise SIGPIPE in the agent.  send(MSG_NOSIGNAL) keeps
 * that an error code, and the BIO keeps errno for the error message.
 *
 * Gathered writes.  OpenSSL hands the BIO one record (16 KiB at most) at
 * a time (with partial writes on, one per SSL_write), and a send(2) for
 * each was a third of a sending loop's CPU for a large file: the cost of
 * a send on loopback is mostly per call and per packet.  tls_write
 * writes as many records as fit, and the BIO gathers them into out[]
 * (TLS_WRITE_BUFFER) and sends them in large writes; what the socket
 * does not take at the end stays there, wanted as EPOLLOUT and sent by
 * tls_flush (and before anything else is written: bytes leave in
 * order).  Records written elsewhere (handshake, alerts) go straight
 * out, once out[] is empty.
 */
#include "transport.h"

#include <errno.h>
#include <netdb.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

enum tls_state { TLS_HANDSHAKING, TLS_OPEN, TLS_CLOSED };

#define TLS_READ_BUFFER (128u << 10)
#define TLS_WRITE_BUFFER (128u << 10)
/* A TLS 1.3 record on the wire, header, tag and padding included. */
#define TLS_RECORD_MAX (16384u + 512u)

struct tls_transport {
	struct transport base;
	SSL *ssl;                 /* owns the BIO */
	enum tls_state state;
	uint32_t hs_want, rd_want, wr_want;
	int sys_errno;            /* errno of the last failed socket call */
	bool peer_eof;            /* the socket reached end of stream */
	bool fatal;               /* OpenSSL reported a fatal error */
	bool gather;              /* inside tls_write: records go to out */
	uint8_t *out;             /* gathered records, [out_sent, out_len) */
	size_t out_sent, out_len; /* left to send */
};

static BIO_METHOD *tls_bio_method;
static pthread_once_t tls_bio_once = PTHREAD_ONCE_INIT;

void transport_set_error(struct transport *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->err, sizeof(t->err), fmt, ap);
	va_end(ap);
}

/* strerror() capitalises; our messages are lower case throughout. */
static void transport_errno_error(struct transport *t, const char *what,
				  int err)
{
	char text[128];

	snprintf(text, sizeof(text), "%s", strerror(err));
	if (text[0] >= 'A' && text[0] <= 'Z')
		text[0] = (char)(text[0] - 'A' + 'a');
	transport_set_error(t, "%s: %s", what, text);
}

static int transport_set_nonblock(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0)
		return -errno;
	if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static ssize_t transport_check(struct transport *t, ssize_t rc)
{
	if (rc < 0 && rc != -EAGAIN) {
		t->error = (int)rc;
		/* A test double may fail without words; errno has some. */
		if (!t->err[0])
			transport_errno_error(t, "transport failed",
					      rc > -4096 ? (int)-rc : EIO);
	}
	return rc;
}

ssize_t transport_read(struct transport *t, void *buf, size_t len)
{
	if (t->error)
		return t->error;
	return transport_check(t, t->ops->read(t, buf, len));
}

ssize_t transport_write(struct transport *t, const void *buf, size_t len)
{
	if (t->error)
		return t->error;
	return transport_check(t, t->ops->write(t, buf, len));
}

int transport_handshake(struct transport *t)
{
	if (t->error)
		return t->error;
	return (int)transport_check(t, t->ops->handshake(t));
}

int transport_flush(struct transport *t)
{
	if (t->error)
		return t->error;
	return t->ops->flush ? (int)transport_check(t, t->ops->flush(t)) : 0;
}

uint32_t transport_want(const struct transport *t)
{
	return t->error ? 0 : t->ops->want(t);
}

void transport_close(struct transport *t)
{
	if (t)
		t->ops->close(t);
}

int transport_fd(const struct transport *t)
{
	return t->fd;
}

const char *transport_last_error(const struct transport *t)
{
	return t->err;
}

/* ---- plain sockets ---- */

static ssize_t plain_read(struct transport *t, void *buf, size_t len)
{
	ssize_t n;
	int err;

	do
		n = recv(t->fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return n;
	err = errno;
	if (err == EAGAIN || err == EWOULDBLOCK)
		return -EAGAIN;
	transport_errno_error(t, "read from peer", err);
	return -err;
}

static ssize_t plain_write(struct transport *t, const void *buf, size_t len)
{
	ssize_t n;
	int err;

	do
		n = send(t->fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return n;
	err = errno;
	if (err == EAGAIN || err == EWOULDBLOCK)
		return -EAGAIN;
	transport_errno_error(t, "write to peer", err);
	return -err;
}

static int plain_handshake(struct transport *t)
{
	(void)t;
	return 0;
}

/* A plain socket never needs more than the caller already polls for. */
static uint32_t plain_want(const struct transport *t)
{
	(void)t;
	return 0;
}

static void plain_close(struct transport *t)
{
	close(t->fd);
	free(t);
}

static const struct transport_ops plain_ops = {
	.name = "plain",
	.read = plain_read,
	.write = plain_write,
	.handshake = plain_handshake,
	.want = plain_want,
	.close = plain_close,
};

int transport_plain_new(int fd, struct transport **out)
{
	struct transport *t;
	int rc;

	*out = NULL;
	rc = transport_set_nonblock(fd);
	if (rc)
		return rc;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ops = &plain_ops;
	t->fd = fd;
	*out = t;
	return 0;
}

/* ---- TLS: the socket BIO ---- */

static struct tls_transport *tls_of(const struct transport *t)
{
	return (struct tls_transport *)t;
}

/* Sends the gathered records: 0 when none are left, -EAGAIN, or -errno
 * (kept for the error message). */
static int tls_out_send(struct tls_transport *tt)
{
	while (tt->out_sent < tt->out_len) {
		ssize_t n = send(tt->base.fd, tt->out + tt->out_sent,
				 tt->out_len - tt->out_sent, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return -EAGAIN;
		if (n < 0) {
			tt->sys_errno = errno;
			return -errno;
		}
		tt->out_sent += (size_t)n;
	}
	tt->out_sent = tt->out_len = 0;
	return 0;
}

/* Adds LEN (at most TLS_WRITE_BUFFER) bytes to the gathered records,
 * sending them first when there is no room: true when taken. */
static bool tls_out_gather(struct tls_transport *tt, const char *buf,
			   size_t len)
{
	if (!tt->out && !(tt->out = malloc(TLS_WRITE_BUFFER)))
		return false;
	if (len > TLS_WRITE_BUFFER - tt->out_len && tls_out_send(tt) != 0)
		return false;
	memcpy(tt->out + tt->out_len, buf, len);
	tt->out_len += len;
	return true;
}

static int tls_bio_write(BIO *b, const char *buf, size_t len, size_t *done)
{
	struct tls_transport *tt = BIO_get_data(b);
	ssize_t n;
	int rc;

	BIO_clear_retry_flags(b);
	if (tt->gather && len <= TLS_WRITE_BUFFER &&
	    tls_out_gather(tt, buf, len)) {
		*done = len;
		return 1;
	}
	rc = tls_out_send(tt);
	if (rc == -EAGAIN)
		BIO_set_retry_write(b);
	if (rc)
		return 0;
	do
		n = send(tt->base.fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n >= 0) {
		*done = (size_t)n;
		return 1;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		BIO_set_retry_write(b);
	else
		tt->sys_errno = errno;
	return 0;
}

static int tls_bio_read(BIO *b, char *buf, size_t len, size_t *done)
{
	struct tls_transport *tt = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	do
		n = recv(tt->base.fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		*done = (size_t)n;
		return 1;
	}
	if (n == 0)
		tt->peer_eof = true;
	else if (errno == EAGAIN || errno == EWOULDBLOCK)
		BIO_set_retry_read(b);
	else
		tt->sys_errno = errno;
	return 0;
}

/* OpenSSL asks BIO_eof() to tell a truncated stream from a dead socket. */
static long tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls_transport *tt = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_EOF:
		return tt->peer_eof;
	default:
		return 0;
	}
}

/* One method for the process: BIO type indexes are a small finite pool. */
static void tls_bio_method_init(void)
{
	int index = BIO_get_new_index();
	BIO_METHOD *m;

	if (index < 0)
		return;
	m = BIO_meth_new(index | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
			 "krakenfs socket");
	if (!m)
		return;
	if (!BIO_meth_set_write_ex(m, tls_bio_write) ||
	    !BIO_meth_set_read_ex(m, tls_bio_read) ||
	    !BIO_meth_set_ctrl(m, tls_bio_ctrl)) {
		BIO_meth_free(m);
		return;
	}
	tls_bio_method = m;
}

/* ---- TLS: errors ---- */

static bool tls_alert_is_about_our_cert(int alert)
{
	switch (alert) {
	case SSL_AD_BAD_CERTIFICATE:
	case SSL_AD_UNSUPPORTED_CERTIFICATE:
	case SSL_AD_CERTIFICATE_REVOKED:
	case SSL_AD_CERTIFICATE_EXPIRED:
	case SSL_AD_CERTIFICATE_UNKNOWN:
	case SSL_AD_UNKNOWN_CA:
	case SSL_AD_ACCESS_DENIED:
	case SSL_AD_DECRYPT_ERROR:
	case SSL_AD_CERTIFICATE_REQUIRED:
		return true;
	default:
		return false;
	}
}

/* The first OpenSSL reason in the queue: later entries only add context. */
static int tls_first_reason(const char **text)
{
	unsigned long e = ERR_peek_error();

	*text = e ? ERR_reason_error_string(e) : NULL;
	if (!*text)
		*text = "unknown tls error";
	return e ? ERR_GET_REASON(e) : 0;
}

/*
 * Turns a fatal SSL_ERROR_SSL into a code and a sentence.  -EACCES: we
 * refused the peer's certificate; -ECONNREFUSED: the peer refused ours;
 * -ECONNRESET: the stream ended early; -EPROTO: anything else.
 */
static int tls_ssl_failure(struct tls_transport *tt, const char *what)
{
	struct transport *t = &tt->base;
	const char *text;
	int reason = tls_first_reason(&text);
	long verify = SSL_get_verify_result(tt->ssl);
	int rc = -EPROTO;

	if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK) {
		transport_set_error(t, "%s failed: peer certificate "
				    "rejected: %s", what,
				    X509_verify_cert_error_string(verify));
		rc = -EACCES;
	} else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		transport_set_error(t, "%s failed: peer sent no certificate",
				    what);
		rc = -EACCES;
	} else if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
		transport_set_error(t, "%s failed: peer closed the connection "
				    "without a tls close_notify", what);
		rc = -ECONNRESET;
	} else if (reason > SSL_AD_REASON_OFFSET &&
		   tls_alert_is_about_our_cert(reason - SSL_AD_REASON_OFFSET)) {
		transport_set_error(t, "%s failed: peer refused our "
				    "certificate (%s)", what, text);
		rc = -ECONNREFUSED;
	} else {
		transport_set_error(t, "%s failed: %s", what, text);
	}
	return rc;
}

/*
 * The result of an SSL call that did not succeed: -EAGAIN with *WANT set
 * to the events to wait for, 0 for the peer's close_notify, or a fatal
 * code.  The error queue is cleared before each call, so what is in it
 * belongs to this one.
 */
static int tls_result(struct tls_transport *tt, int ret, uint32_t *want,
		      const char *what)
{
	int err = SSL_get_error(tt->ssl, ret);
	int rc;

	switch (err) {
	case SSL_ERROR_WANT_READ:
		*want = EPOLLIN;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*want = EPOLLOUT;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		tt->state = TLS_CLOSED;
		return 0;
	case SSL_ERROR_SYSCALL:
		if (tt->sys_errno) {
			transport_errno_error(&tt->base, what, tt->sys_errno);
			rc = -tt->sys_errno;
		} else {
			transport_set_error(&tt->base, "%s failed: peer closed "
					    "the connection", what);
			rc = -ECONNRESET;
		}
		break;
	default:
		rc = tls_ssl_failure(tt, what);
		break;
	}
	tt->fatal = true;
	tt->state = TLS_CLOSED;
	ERR_clear_error();
	return rc;
}

/* ---- TLS: operations ---- */

static int tls_not_open(struct tls_transport *tt)
{
	transport_set_error(&tt->base, "tls transport used before its "
			    "handshake finished");
	return -ENOTCONN;
}

static ssize_t tls_read(struct transport *t, void *buf, size_t len)
{
	struct tls_transport *tt = tls_of(t);
	size_t n = 0;

	if (tt->state == TLS_CLOSED && !tt->fatal)
		return 0;
	if (tt->state != TLS_OPEN)
		return tls_not_open(tt);
	ERR_clear_error();
	if (SSL_read_ex(tt->ssl, buf, len, &n)) {
		tt->rd_want = 0;
		return (ssize_t)n;
	}
	return tls_result(tt, 0, &tt->rd_want, "tls read");
}

/* RC of sending gathered records, with the words for a failure.  No
 * want to set for -EAGAIN: tls_want asks for EPOLLOUT while any wait. */
static int tls_out_failed(struct tls_transport *tt, int rc)
{
	if (rc != -EAGAIN)
		transport_errno_error(&tt->base, "tls write", -rc);
	return rc;
}

static ssize_t tls_write(struct transport *t, const void *buf, size_t len)
{
	struct tls_transport *tt = tls_of(t);
	size_t done = 0, n;
	int ok, rc;

	if (tt->state != TLS_OPEN)
		return tls_not_open(tt);
	/* Records gathered by an earlier call leave first. */
	rc = tls_out_send(tt);
	if (rc)
		return tls_out_failed(tt, rc);
	ERR_clear_error();
	/* With partial writes on, a call writes one record: as many calls
	 * as out[] has room for. */
	tt->gather = true;
	do {
		n = 0;
		ok = SSL_write_ex(tt->ssl, (const uint8_t *)buf + done,
				  len - done, &n);
		done += ok ? n : 0;
	} while (ok && done < len &&
		 TLS_WRITE_BUFFER - tt->out_len >= TLS_RECORD_MAX);
	tt->gather = false;
	if (done) {
		/* A failure after some records comes back on the next
		 * call, which retries the record it stopped at. */
		ERR_clear_error();
		tt->wr_want = 0;
		rc = tls_out_send(tt);
		if (rc && rc != -EAGAIN)
			return tls_out_failed(tt, rc);
		return (ssize_t)done;
	}
	rc = tls_result(tt, 0, &tt->wr_want, "tls write");
	if (rc == 0) {
		/* The peer said goodbye; nothing we write will be read. */
		transport_set_error(t, "tls write failed: peer closed the "
				    "connection");
		rc = -EPIPE;
	}
	return rc;
}

static int tls_flush(struct transport *t)
{
	struct tls_transport *tt = tls_of(t);
	int rc;

	if (tt->state != TLS_OPEN || tt->out_sent == tt->out_len)
		return 0;
	rc = tls_out_send(tt);
	return rc ? tls_out_failed(tt, rc) : 0;
}

static int tls_handshake(struct transport *t)
{
	struct tls_transport *tt = tls_of(t);
	int ret, rc;

	if (tt->state == TLS_OPEN)
		return 0;
	if (tt->state == TLS_CLOSED)
		return tls_not_open(tt);
	ERR_clear_error();
	ret = SSL_do_handshake(tt->ssl);
	if (ret == 1) {
		tt->state = TLS_OPEN;
		tt->hs_want = 0;
		return 0;
	}
	rc = tls_result(tt, ret, &tt->hs_want, "tls handshake");
	if (rc == 0) {
		transport_set_error(t, "tls handshake failed: peer closed "
				    "the connection");
		rc = -ECONNRESET;
	}
	return rc;
}

static uint32_t tls_want(const struct transport *t)
{
	const struct tls_transport *tt = tls_of(t);

	switch (tt->state) {
	case TLS_HANDSHAKING:
		return tt->hs_want;
	case TLS_OPEN:
		return tt->rd_want | tt->wr_want |
		       (tt->out_sent < tt->out_len ? EPOLLOUT : 0);
	default:
		return 0;
	}
}

/* Best effort close_notify: one non-blocking attempt, never waited for. */
static void tls_close(struct transport *t)
{
	struct tls_transport *tt = tls_of(t);

	if (tt->state == TLS_OPEN && !tt->fatal) {
		ERR_clear_error();
		(void)SSL_shutdown(tt->ssl);
		ERR_clear_error();
	}
	SSL_free(tt->ssl);
	free(tt->out);
	close(t->fd);
	free(tt);
}

static const struct transport_ops tls_ops = {
	.name = "tls",
	.read = tls_read,
	.write = tls_write,
	.handshake = tls_handshake,
	.want = tls_want,
	.flush = tls_flush,
	.close = tls_close,
};

static int tls_attach_bio(struct tls_transport *tt)
{
	BIO *bio;

	pthread_once(&tls_bio_once, tls_bio_method_init);
	if (!tls_bio_method)
		return -ENOMEM;
	bio = BIO_new(tls_bio_method);
	if (!bio)
		return -ENOMEM;
	BIO_set_data(bio, tt);
	BIO_set_init(bio, 1);
	SSL_set_bio(tt->ssl, bio, bio);
	return 0;
}

int transport_tls_new(int fd, SSL_CTX *ctx, bool server,
		      struct transport **out)
{
	struct tls_transport *tt = NULL;
	int rc;

	*out = NULL;
	rc = transport_set_nonblock(fd);
	if (rc)
		goto out;
	rc = -ENOMEM;
	tt = calloc(1, sizeof(*tt));
	if (!tt)
		goto out;
	tt->ssl = SSL_new(ctx);
	if (!tt->ssl)
		goto out;
	rc = tls_attach_bio(tt);
	if (rc)
		goto out;
	/* conn.c retries from a queue that may move and grow in between. */
	SSL_set_mode(tt->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
		     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Records are read several at a time, not with two recv(2) calls
	 * each (header, then body): bulk transfers spent a good share of
	 * their CPU on those calls.  Safe because conn.c reads until the
	 * transport says EAGAIN, which OpenSSL only does once what it
	 * buffered is consumed: no record waits unseen by epoll. */
	SSL_set_read_ahead(tt->ssl, 1);
	SSL_set_default_read_buffer_len(tt->ssl, TLS_READ_BUFFER);
	if (server)
		SSL_set_accept_state(tt->ssl);
	else
		SSL_set_connect_state(tt->ssl);
	tt->base.ops = &tls_ops;
	tt->base.fd = fd;
	tt->hs_want = server ? EPOLLIN : EPOLLOUT;
	*out = &tt->base;
	tt = NULL;
	rc = 0;
out:
	if (tt) {
		SSL_free(tt->ssl);
		free(tt);
	}
	ERR_clear_error();
	return rc;
}

SSL *transport_ssl(struct transport *t)
{
	return t->ops == &tls_ops ? tls_of(t)->ssl : NULL;
}

int transport_resolve(const char *host, uint16_t port,
		      struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char service[8];
	int rc;

	snprintf(service, sizeof(service), "%u", port);
	rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0 || !res)
		return -EHOSTUNREACH;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}
