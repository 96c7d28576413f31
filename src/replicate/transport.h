/*
 * A byte transport under a peer connection: a table of operations, so the
 * same framing and session code runs over a plain socket (tests, clusters
 * without TLS), over OpenSSL, or over a test double that moves one byte at
 * a time.
 *
 * Every operation is non-blocking.  Results:
 *
 *     read      > 0 bytes read, 0 on an orderly end of stream, -EAGAIN
 *               when nothing can be read now, or another negative code
 *     write     > 0 bytes taken (possibly fewer than offered), -EAGAIN,
 *               or another negative code; never 0 for a non-empty buffer
 *     handshake 0 once the transport is open, -EAGAIN while it needs the
 *               events want() names, or a negative code when it failed
 *     flush     0 once nothing the transport holds back is left to send,
 *               -EAGAIN (EPOLLOUT wanted), or another negative code;
 *               NULL when it holds nothing back
 *     want      the EPOLLIN/EPOLLOUT events that the last operation that
 *               returned -EAGAIN is waiting for, beyond whatever the
 *               caller polls for its own reasons (a TLS write may need the
 *               socket readable, a TLS read may need it writable)
 *     close     releases everything, the socket included
 *
 * After a failure other than -EAGAIN the transport is unusable; calls
 * return the same code and transport_last_error() says what happened.
 *
 * Threads: a transport belongs to the thread that runs its connection.
 */
#ifndef KRAKEN_TRANSPORT_H
#define KRAKEN_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

#define TRANSPORT_ERR_MAX 256

struct transport;

struct transport_ops {
	const char *name;
	ssize_t (*read)(struct transport *t, void *buf, size_t len);
	ssize_t (*write)(struct transport *t, const void *buf, size_t len);
	int (*handshake)(struct transport *t);
	uint32_t (*want)(const struct transport *t);
	int (*flush)(struct transport *t);
	void (*close)(struct transport *t);
};

/*
 * The part every implementation shares.  An implementation embeds it as
 * its first member; everyone else treats it as opaque and goes through
 * the transport_* calls below.
 */
struct transport {
	const struct transport_ops *ops;
	int fd;                         /* owned; closed by ops->close */
	int error;                      /* sticky failure, 0 while usable */
	char err[TRANSPORT_ERR_MAX];    /* last failure, "" when none */
};

/*
 * For implementations: records a failure sentence (lower case, no
 * trailing period) in T->err.  The transport_* wrappers make the code
 * sticky; this only keeps the words.
 */
void transport_set_error(struct transport *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * A transport straight over the connected socket FD, which is switched to
 * non-blocking mode.  On success *out owns FD (transport_close() closes
 * it); on failure the caller still owns FD.  0, -ENOMEM or -errno.
 */
int transport_plain_new(int fd, struct transport **out);

/*
 * A TLS transport over the connected socket FD using CTX (see
 * tls_context_new()); SERVER picks the side of the handshake.  The
 * transport takes its own reference on CTX, so the caller may free CTX at
 * any time.  Ownership of FD as for transport_plain_new().  Nothing but
 * the handshake travels until transport_handshake() has returned 0.
 * 0, -ENOMEM, -EPROTO (OpenSSL refused) or -errno.
 */
int transport_tls_new(int fd, SSL_CTX *ctx, bool server,
		      struct transport **out);

ssize_t transport_read(struct transport *t, void *buf, size_t len);
ssize_t transport_write(struct transport *t, const void *buf, size_t len);
int transport_handshake(struct transport *t);
/* Sends what a write took but held back (TLS gathers records). */
int transport_flush(struct transport *t);
uint32_t transport_want(const struct transport *t);

/* Closes the socket and frees T.  NULL is ignored. */
void transport_close(struct transport *t);

/* The socket, still owned by T; for registering with the event loop. */
int transport_fd(const struct transport *t);

/*
 * A lower-case sentence about the last failure, "" when there was none.
 * Borrowed: valid until the next call on T or transport_close().
 */
const char *transport_last_error(const struct transport *t);

/*
 * The OpenSSL session of a TLS transport, NULL for any other kind.
 * Borrowed from T; for tls_peer_node_id() once the handshake is done.
 */
SSL *transport_ssl(struct transport *t);

/* HOST:PORT as a socket address.  0 or -EHOSTUNREACH. */
int transport_resolve(const char *host, uint16_t port,
		      struct sockaddr_storage *ss, socklen_t *len);

#endif
