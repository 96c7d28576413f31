/*
 * Peer sessions: listening, dialling, the transport handshake, HELLO, and
 * keeping connections alive.
 *
 * States of a session and what holds in each:
 *   CONNECTING  outbound only; connect(2) under way; nothing queued.
 *   HANDSHAKE   the transport verifies the peer (TLS); nothing is read
 *               or sent before it completes (conn refuses to).
 *   HELLO       our HELLO is queued; the peer is not trusted yet and
 *               every frame but HELLO is a protocol error.
 *   OPEN        the peer is a known cluster node (and, with TLS, its
 *               certificate names the same node); entries flow.
 * A peer has at most one session past HELLO; a newer one replaces it.
 */
#include "replicate_int.h"
#include "gate.h"
#include "session.h"

#include "err.h"
#include "log.h"
#include "loop.h"
#include "tls.h"
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A peer that asked nothing for this long lets its output buffer go. */
#define SESSION_QUIET_NS (1LL * 1000000000)

struct peer *replicate_peer_by_id(struct replicate *r, const char *id)
{
	for (size_t i = 0; i < r->n_peers; i++)
		if (strcmp(r->peers[i]->id, id) == 0)
			return r->peers[i];
	return NULL;
}

static void session_on_event(void *arg, uint32_t events);

void session_update_poll(struct session *s)
{
	uint32_t want;

	if (s->dead)
		return;
	want = s->state == SESSION_CONNECTING ? EPOLLOUT : conn_want(s->conn);
	if (want == 0)
		want = EPOLLIN;
	if (want != s->polled && loop_mod_fd(s->r->loop, s->fd, want) == 0)
		s->polled = want;
}

static void peer_schedule_dial(struct replicate *r, struct peer *p)
{
	uint32_t jitter = 0;

	if (!p->dial)
		return;
	p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : PEER_BACKOFF_MIN_MS;
	if (p->backoff_ms > PEER_BACKOFF_MAX_MS)
		p->backoff_ms = PEER_BACKOFF_MAX_MS;
	if (getrandom(&jitter, sizeof(jitter), GRND_NONBLOCK) < 0)
		jitter = 0;
	/* Up to a quarter more, so nodes restarted together do not retry
	 * in lockstep. */
	p->next_dial_ns = loop_now_ns() + (int64_t)p->backoff_ms * 1000000 +
			  (int64_t)(jitter % (p->backoff_ms / 4 + 1)) * 1000000;
	(void)r;
}

void session_close(struct session *s, const char *why)
{
	struct peer *p = s->peer;

	if (s->dead)
		return;
	s->dead = true;
	if (p && p->session != s)
		p = NULL;
	s->r->session_ops->closing(s, p);
	if (p) {
		if (s->state == SESSION_OPEN)
			log_warn("replicate", "peer %s disconnected: %s", p->id,
				 why);
		else
			log_debug("replicate", "peer %s: %s", p->id, why);
		p->session = NULL;
		p->stats.connected = false;
		peer_schedule_dial(s->r, p);
	} else {
		log_debug("replicate", "connection closed: %s", why);
	}
	loop_del_fd(s->r->loop, s->fd);
}

static void session_free(struct session *s)
{
	s->r->session_ops->freeing(s);
	free(s->asked);
	if (s->conn)
		conn_free(s->conn);      /* closes the fd */
	else if (s->fd >= 0)
		close(s->fd);
	free(s);
}

void sessions_reap(struct replicate *r)
{
	for (struct session **pp = &r->sessions; *pp;) {
		struct session *s = *pp;

		if (!s->dead) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		session_free(s);
	}
}

int session_send(struct session *s, const struct wire_msg *m)
{
	struct wire_buf b = { 0 };
	int err = wire_encode(&b, m);

	if (!err)
		err = conn_queue(s->conn, b.data, b.len);
	if (!err && s->peer)
		s->peer->stats.bytes_out += b.len;
	wire_buf_release(&b);
	return err;
}

void session_send_now(struct session *s)
{
	int err;

	if (s->dead)
		return;
	err = conn_flush(s->conn);
	if (err == 0 || err == -EAGAIN)
		session_update_poll(s);
	else if (loop_mod_fd(s->r->loop, s->fd, EPOLLIN | EPOLLOUT) == 0)
		s->polled = EPOLLIN | EPOLLOUT;  /* its handler closes it */
}

/* Only this node's own origin: the rest of its vector waits until the
 * peer is identified (gate.c). */
static int session_send_hello(struct session *s)
{
	struct wire_msg m = { .type = WIRE_HELLO };
	struct journal_ref own = { 0 };
	int err;

	snprintf(own.origin, sizeof(own.origin), "%s",
		 journal_origin(s->r->journal));
	own.seq = journal_durable_seq(s->r->journal);
	m.hello.features = WIRE_HELLO_OWN_FIRST | WIRE_HELLO_CHANGING |
			   WIRE_HELLO_DELTA | WIRE_HELLO_STATE |
			   WIRE_HELLO_VECTOR_NEXT | WIRE_HELLO_CLOCK |
			   WIRE_HELLO_CHAIN | WIRE_HELLO_KEPT |
			   s->r->session_ops->hello_flags(s->r);
	m.hello.node_id = s->r->node_id;
	m.hello.cluster_id = s->r->cluster_id;
	m.hello.vector.n = 1;
	m.hello.vector.refs = &own;
	err = session_send(s, &m);
	if (!err)
		s->state = SESSION_HELLO;
	return err;
}

/* The transport is up: check the TLS identity later, at HELLO. */
static int session_step_handshake(struct session *s)
{
	int err = conn_handshake(s->conn);

	if (err)
		return err;
	return session_send_hello(s);
}

static int session_check_identity(struct session *s, const char *node_id)
{
	struct transport *t = conn_transport(s->conn);
	char proven[TLS_NODE_ID_MAX + 1];
	SSL *ssl;

	if (!s->r->tls_server)
		return 0;
	ssl = transport_ssl(t);
	if (!ssl || tls_peer_node_id(ssl, proven, sizeof(proven)) != 0)
		return -EACCES;
	return strcmp(proven, node_id) == 0 ? 0 : -EACCES;
}

static void session_refuse(struct session *s, uint16_t code, const char *text)
{
	struct wire_msg m = { .type = WIRE_ERROR };

	m.error.code = code;
	m.error.text = text;
	session_send(s, &m);
	conn_flush(s->conn);
	session_close(s, text);
}

/* The connection in the usual direction: dialled by the lower id. */
static bool session_canonical(const struct session *s, const struct peer *p)
{
	return s->outbound == p->dial;
}

/*
 * Whether NEW, whose HELLO names OLD's peer, may replace OLD.  With TLS
 * the certificate proved the name.  Without, anyone can claim any name,
 * so an open session that is heard from is replaced only by a
 * connection we dialled or one from the peer's configured address
 * (gate.c); any other waits until OLD has been silent PEER_PROBE_NS.
 */
static bool session_may_replace(const struct session *new,
				const struct session *old)
{
	return new->r->tls_server || old->state != SESSION_OPEN ||
	       loop_now_ns() - old->last_rx_ns > PEER_PROBE_NS ||
	       new->outbound || gate_from_peer(new->r, new, old->peer);
}

/* This node's whole vector, now that the peer is known (gate.c). */
static int session_send_vector(struct session *s)
{
	int err = s->r->session_ops->welcome(s);

	if (err)
		session_close(s, "cannot send the version vector");
	return err;
}

static void session_on_hello(struct session *s, const struct wire_hello *h)
{
	struct peer *p = replicate_peer_by_id(s->r, h->node_id);
	char why[1024];

	if (strcmp(h->cluster_id, s->r->cluster_id) != 0) {
		snprintf(why, sizeof(why), "peer %s is in cluster '%s', not '%s'",
			 h->node_id, h->cluster_id, s->r->cluster_id);
		log_error("replicate", "%s; refused", why);
		session_refuse(s, WIRE_ERR_CLUSTER, why);
		return;
	}
	if (!p || (s->outbound && s->peer != p)) {
		snprintf(why, sizeof(why), "node '%s' is not in this node's "
			 "cluster list", h->node_id);
		log_error("replicate", "%s; refused", why);
		session_refuse(s, WIRE_ERR_IDENTITY, why);
		return;
	}
	if (session_check_identity(s, h->node_id) != 0) {
		snprintf(why, sizeof(why), "peer claims to be '%s' but its "
			 "certificate does not say so", h->node_id);
		log_error("replicate", "%s; refused", why);
		session_refuse(s, WIRE_ERR_IDENTITY, why);
		return;
	}
	if (p->session && p->session != s) {
		/* Both ends dialled at once (a node knocking at start-up while
		 * its peer retried): both keep the one the lower id dialled. */
		if (!session_canonical(s, p) &&
		    session_canonical(p->session, p)) {
			session_close(s, "the other connection is kept");
			return;
		}
		if (!session_may_replace(s, p->session)) {
			snprintf(why, sizeof(why), "node '%s' is connected "
				 "already; without TLS a connection from "
				 "another address than its own replaces it "
				 "only once it has been silent for %lld s",
				 h->node_id,
				 (long long)(PEER_PROBE_NS / 1000000000));
			log_warn("replicate", "%s; refused one from %s", why,
				 s->source[0] ? s->source : "here");
			session_refuse(s, WIRE_ERR_IDENTITY, why);
			return;
		}
		session_close(p->session, "replaced by a new connection");
	}
	if (session_send_vector(s) != 0)
		return;
	conn_set_max_payload(s->conn, WIRE_MAX_PAYLOAD);
	s->peer = p;
	s->probe = false;
	p->session = s;
	p->backoff_ms = 0;
	p->stats.connected = true;
	s->state = SESSION_OPEN;
	log_info("replicate", "peer %s connected (%s)", p->id,
		 s->outbound ? "outbound" : "inbound");
	s->r->session_ops->opened(s, h);
}

static int session_on_frame(void *arg, uint8_t type, const uint8_t *payload,
			    uint32_t len)
{
	struct session *s = arg;
	struct wire_msg m = { 0 };
	int err = wire_decode((enum wire_type)type, payload, len, &m);

	s->last_rx_ns = loop_now_ns();
	if (s->peer) {
		s->peer->stats.bytes_in += len + WIRE_HEADER_LEN;
		s->peer->last_seen_wall_ns = loop_wall_ns();
		s->peer->stats.last_seen_ns = s->peer->last_seen_wall_ns;
	}
	if (err) {
		log_warn("replicate", "malformed %s frame from %s: %s",
			 wire_type_name((enum wire_type)type),
			 s->peer ? s->peer->id : "unidentified peer",
			 kr_strerror(err));
		wire_msg_release(&m);
		return -EPROTO;
	}
	if (s->state == SESSION_HELLO && m.type == WIRE_HELLO) {
		session_on_hello(s, &m.hello);
	} else if (s->state == SESSION_OPEN && m.type != WIRE_HELLO) {
		err = s->r->session_ops->frame(s, &m);
	} else {
		log_warn("replicate", "unexpected %s frame before HELLO; "
			 "closing", wire_type_name(m.type));
		err = -EPROTO;
	}
	wire_msg_release(&m);
	return s->dead ? -ECONNABORTED : err;
}

static int session_connect_done(struct session *s)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
		return -errno;
	if (soerr)
		return -soerr;
	s->state = SESSION_HANDSHAKE;
	return 0;
}

static int session_step(struct session *s, uint32_t events)
{
	int err = 0;

	if (s->state == SESSION_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return 0;
		err = session_connect_done(s);
	}
	if (!err && s->state == SESSION_HANDSHAKE)
		err = session_step_handshake(s);
	if (!err && !s->dead) {
		err = conn_read(s->conn);
		/* The rest after the loop's other work (replicate_tick). */
		s->read_more = conn_read_more(s->conn);
		s->r->read_more |= s->read_more;
	}
	/*
	 * Fill, flush, and fill again while the socket takes everything:
	 * once the queue is empty no writable event comes, so stopping at
	 * the queue's low-water mark with more to send would stall until
	 * some other event (a ping, seconds later).
	 */
	for (int round = 0; !err && !s->dead && round < 1024; round++) {
		bool more = false;

		if (s->state == SESSION_OPEN)
			err = s->r->session_ops->writable(s, &more);
		if (!err)
			err = conn_flush(s->conn);
		if (err || !more || conn_queued(s->conn) > 0)
			break;
	}
	return err == -EAGAIN ? 0 : err;
}

static void session_on_event(void *arg, uint32_t events)
{
	struct session *s = arg;
	int err;

	if (s->dead)
		return;
	err = session_step(s, events);
	if (err && !s->dead) {
		const char *why = s->conn ? conn_last_error(s->conn) : "";

		session_close(s, why[0] ? why : kr_strerror(err));
		if (s->peer == NULL && err != -ECONNRESET)
			log_warn("replicate", "connection refused or dropped "
				 "before HELLO: %s", why[0] ? why :
				 kr_strerror(err));
		return;
	}
	session_update_poll(s);
}

static int session_new(struct replicate *r, int fd, bool outbound,
		       struct peer *p, struct session **out)
{
	struct session *s = calloc(1, sizeof(*s));
	struct transport *t = NULL;
	SSL_CTX *ctx = outbound ? r->tls_client : r->tls_server;
	int err;

	if (!s)
		return -ENOMEM;
	s->r = r;
	s->fd = fd;
	s->peer = outbound ? p : NULL;
	s->outbound = outbound;
	s->state = outbound ? SESSION_CONNECTING : SESSION_HANDSHAKE;
	s->last_rx_ns = s->started_ns = loop_now_ns();
	err = ctx ? transport_tls_new(fd, ctx, !outbound, &t) :
		    transport_plain_new(fd, &t);
	if (!err)
		err = conn_new(t, GATE_FRAME_MAX, PEER_OUT_CAP, session_on_frame,
			       s, &s->conn);
	if (err) {
		if (t)
			transport_close(t);   /* closes fd */
		else
			close(fd);
		free(s);
		return err;
	}
	conn_set_read_budget(s->conn, PEER_READ_BUDGET);
	s->polled = outbound ? EPOLLOUT : EPOLLIN;
	err = loop_add_fd(r->loop, fd, s->polled, session_on_event, s);
	if (err) {
		conn_free(s->conn);
		free(s);
		return err;
	}
	s->next = r->sessions;
	r->sessions = s;
	*out = s;
	return 0;
}


/* A new outbound session to P in *OUT; QUIET: a failure is not logged. */
static int peer_connect(struct replicate *r, struct peer *p, bool quiet,
			struct session **out)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, fd, err = transport_resolve(p->host, p->port, &ss, &len);

	if (err) {
		if (!quiet)
			log_warn("replicate", "cannot resolve peer %s at %s",
				 p->id, p->host);
		return err;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	gate_bind_source(r, fd, ss.ss_family);
	if (connect(fd, (struct sockaddr *)&ss, len) != 0 &&
	    errno != EINPROGRESS) {
		err = -errno;
		log_debug("replicate", "connect to %s: %s", p->id,
			  strerror(-err));
		close(fd);
		return err;
	}
	return session_new(r, fd, true, p, out);
}

static void peer_dial(struct replicate *r, struct peer *p)
{
	struct session *s = NULL;

	if (peer_connect(r, p, false, &s) != 0) {
		peer_schedule_dial(r, p);
		return;
	}
	p->session = s;
	p->next_dial_ns = 0;
}

/* A second connection to P beside its silent session (PEER_PROBE_NS):
 * not P's session until its HELLO replaces the silent one. */
static void peer_probe(struct replicate *r, struct peer *p)
{
	struct session *s = NULL;

	for (s = r->sessions; s; s = s->next)
		if (s->probe && s->peer == p && !s->dead)
			return;
	if (peer_connect(r, p, true, &s) == 0) {
		s->probe = true;
		log_debug("replicate", "peer %s silent for %lld s: trying a "
			  "new connection", p->id,
			  (long long)(PEER_PROBE_NS / 1000000000));
	}
}

static void replicate_on_accept(void *arg, uint32_t events)
{
	struct replicate *r = arg;

	(void)events;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		char source[GATE_SOURCE_MAX];
		struct session *s = NULL;
		int one = 1;
		int fd = accept4(r->listen_fd, (struct sockaddr *)&ss, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				gate_pause(r, errno);
			return;   /* EAGAIN, or a transient error: next event */
		}
		if (!gate_admit(r, &ss, fd, source)) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (session_new(r, fd, false, NULL, &s) != 0)
			continue;
		snprintf(s->source, sizeof(s->source), "%s", source);
		session_on_event(s, EPOLLIN);
	}
}

int session_listen(struct replicate *r, const char *address, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;
	int err = transport_resolve(address, port, &ss, &len);

	if (err)
		return err;
	r->listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
			      SOCK_CLOEXEC, 0);
	if (r->listen_fd < 0)
		return -errno;
	setsockopt(r->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(r->listen_fd, (struct sockaddr *)&ss, len) != 0 ||
	    listen(r->listen_fd, 64) != 0)
		return -errno;
	gate_note_listen(r, &ss, len);
	return loop_add_fd(r->loop, r->listen_fd, EPOLLIN, replicate_on_accept,
			   r);
}

/* Sends what is queued; a failed connection is closed, an open one
 * polled for whatever it waits on next. */
void session_flush(struct session *s)
{
	int err = conn_flush(s->conn);

	if (err && err != -EAGAIN)
		session_close(s, conn_last_error(s->conn));
	else
		session_update_poll(s);
}

static void session_heartbeat(struct session *s, int64_t now)
{
	struct wire_msg m = { .type = WIRE_PING };
	bool pinged = false;

	if (now - s->last_rx_ns > PEER_DEAD_NS) {
		session_close(s, "no answer for 60 s");
		return;
	}
	if (gate_expired(s, now)) {
		session_close(s, "no HELLO in time");
		return;
	}
	if (s->state == SESSION_OPEN && s->peer && s->peer->dial &&
	    now - s->last_rx_ns > PEER_PROBE_NS)
		peer_probe(s->r, s->peer);
	if (now - s->last_rx_ns > SESSION_QUIET_NS)
		conn_trim(s->conn);
	if (s->state == SESSION_OPEN && now - s->last_ping_ns > PEER_PING_NS) {
		m.token = (uint64_t)now;
		s->last_ping_ns = now;
		pinged = true;
		if (session_send(s, &m) == 0)
			session_flush(s);
	}
	s->r->session_ops->heartbeat(s, now, pinged);
}

void session_tick(struct replicate *r, int64_t now)
{
	for (size_t i = 0; i < r->n_peers; i++) {
		struct peer *p = r->peers[i];

		if ((p->dial || p->knock) && !p->session &&
		    now >= p->next_dial_ns) {
			p->knock = false;
			peer_dial(r, p);
		}
	}
	for (struct session *s = r->sessions; s; s = s->next)
		if (!s->dead)
			session_heartbeat(s, now);
}

void session_read_more(struct replicate *r)
{
	for (struct session *s = r->sessions; s; s = s->next)
		if (s->read_more && !s->dead)
			session_on_event(s, EPOLLIN);
}
