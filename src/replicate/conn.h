/*
 * A framed peer connection over a transport (transport.h): cuts the
 * incoming byte stream into frames and queues outgoing bytes, without
 * looking inside a payload (wire.h does that).
 *
 * Every frame starts with a 12-byte header, big-endian:
 *
 *     offset  size  field
 *          0     4  magic "KRFS"
 *          4     1  version, CONN_VERSION
 *          5     1  type (the conn layer passes it through)
 *          6     2  flags, 0 (anything else is refused)
 *          8     4  payload length, at most the connection's cap
 *         12   len  payload
 *
 * The header is checked in full, the length against the cap included,
 * before any memory is sized by it; a bad header fails the connection
 * and the caller closes it.
 *
 * Driving it from an event loop: call conn_handshake() until it returns
 * 0, then on any event call conn_read() and, when bytes are queued,
 * conn_flush(), and poll for conn_want() next.  Both are cheap when there
 * is nothing to do, and a TLS write can wait on a readable socket.
 *
 * Threads: a conn belongs to the loop thread that created it.
 */
#ifndef KRAKEN_CONN_H
#define KRAKEN_CONN_H

#include "transport.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONN_HEADER_LEN 12
#define CONN_MAGIC "KRFS"           /* four bytes, no NUL on the wire */
#define CONN_MAGIC_LEN 4
#define CONN_VERSION 1

struct conn;

/*
 * Called once per complete frame.  PAYLOAD is borrowed until the callback
 * returns (it points into the input buffer; never NULL, even when LEN is
 * 0).  The callback may queue output, but must not call conn_read() or
 * conn_free() on this conn.  Returns 0 to go on, or a negative code that
 * stops reading, fails the conn and comes back from conn_read().
 */
typedef int (*conn_frame_fn)(void *arg, uint8_t type, const uint8_t *payload,
			     uint32_t len);

/* Writes the header of a frame of TYPE with a LEN-byte payload into OUT. */
void conn_header_encode(uint8_t out[CONN_HEADER_LEN], uint8_t type,
			uint32_t len);

/*
 * Checks magic, version and flags of the header in IN and returns its
 * type and payload length.  0 or -EPROTO; the length is not capped here.
 */
int conn_header_decode(const uint8_t in[CONN_HEADER_LEN], uint8_t *type,
		       uint32_t *len);

/*
 * A connection over T that accepts payloads of at most MAX_PAYLOAD bytes
 * and queues at most OUT_CAP bytes for sending; ON_FRAME(ARG, ...) gets
 * each frame.  On success *out owns T (conn_free() closes it); on failure
 * the caller still owns T.  0, -EINVAL (a cap of 0) or -ENOMEM.
 */
int conn_new(struct transport *t, uint32_t max_payload, size_t out_cap,
	     conn_frame_fn on_frame, void *arg, struct conn **out);

/* From now on payloads of at most MAX_PAYLOAD bytes (not 0) are taken. */
void conn_set_max_payload(struct conn *c, uint32_t max_payload);

/* Closes the transport and frees everything.  NULL is ignored. */
void conn_free(struct conn *c);

/*
 * Advances the transport's handshake.  0 once it is done (and ever
 * after), -EAGAIN while it waits for conn_want(), or the failure.  Until
 * it has returned 0, conn_read() and conn_flush() return -ENOTCONN and
 * queued bytes stay queued: nothing reaches a peer before it is verified.
 */
int conn_handshake(struct conn *c);

/*
 * Reads all the transport has now and hands each complete frame to the
 * callback.  0 when there is nothing more to read for now; -ECONNRESET
 * when the peer closed the stream (between frames or inside one);
 * -EPROTO for a malformed header; -EMSGSIZE for a length over the cap;
 * the callback's code; or a transport failure.  Any failure is final.
 */
int conn_read(struct conn *c);

/*
 * Caps what one conn_read() takes from the transport at about BYTES (0,
 * the default: all there is), so that a peer sending without pause
 * cannot hold the caller's loop: the frames read are handed over, and
 * conn_read_more() says the caller must call conn_read() again soon.
 * The rest may wait inside the transport (TLS), where no poll sees it.
 */
void conn_set_read_budget(struct conn *c, size_t bytes);
bool conn_read_more(const struct conn *c);

/*
 * Queues LEN bytes of DATA (copied) to be sent as they are; for frames
 * built elsewhere.  All or nothing: -ENOBUFS when the queue would pass
 * its cap (flush, and queue again once conn_queued() has dropped),
 * -EMSGSIZE when LEN alone is over the cap, -ENOMEM, or the conn's
 * failure.  0 on success.
 */
int conn_queue(struct conn *c, const void *data, size_t len);

/*
 * Queues a frame of TYPE carrying LEN bytes of PAYLOAD (copied), header
 * included.  As conn_queue(), and -EMSGSIZE when LEN is over the payload
 * cap the peer would enforce.
 */
int conn_queue_frame(struct conn *c, uint8_t type, const void *payload,
		     uint32_t len);

/*
 * A frame filled in place, for payloads read straight from a file into
 * the queue: conn_frame_reserve() makes room for a LEN-byte payload and
 * points *PAYLOAD at it (valid until the next call on C); nothing is
 * queued until conn_frame_commit() with the same LEN writes the header.
 * A reservation never committed is dropped by the next one.  Errors as
 * conn_queue_frame().
 */
int conn_frame_reserve(struct conn *c, uint32_t len, uint8_t **payload);
void conn_frame_commit(struct conn *c, uint8_t type, uint32_t len);

/*
 * Writes as much of the queue as the transport takes.  0 when the queue
 * is empty, -EAGAIN when bytes remain (poll for conn_want()), or the
 * failure, which is final.
 */
int conn_flush(struct conn *c);

/* Gives back an empty output buffer over a small size.  For when the
 * peer has been quiet a while: a drained buffer is otherwise kept for
 * the next burst. */
void conn_trim(struct conn *c);

/* The EPOLLIN/EPOLLOUT mask to poll for next; 0 once the conn failed. */
uint32_t conn_want(const struct conn *c);

/* Bytes queued and not yet taken by the transport. */
size_t conn_queued(const struct conn *c);

/* Bytes held by the input and output buffers, for metrics and tests. */
void conn_mem(const struct conn *c, size_t *in_bytes, size_t *out_bytes);

/* The transport, still owned by C; for its fd and its TLS session. */
struct transport *conn_transport(const struct conn *c);

/*
 * A lower-case sentence about the failure, "" when there is none.
 * Borrowed: valid until the next call on C or conn_free().
 */
const char *conn_last_error(const struct conn *c);

#endif
