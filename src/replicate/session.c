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
	state_session_gone(s);
	if (p && p->session == s) {
		if (s->state == SESSION_OPEN)
			log_warn("replicate", "peer %s disconnected: %s", p->id,
				 why);
		else
			log_debug("replicate", "peer %s: %s", p->id, why);
		p->session = NULL;
		p->stats.connected = false;
		transfer_peer_gone(s->r, p);
		peer_schedule_dial(s->r, p);
	} else {
		log_debug("replicate", "connection closed: %s", why);
	}
	loop_del_fd(s->r->loop, s->fd);
}

static void session_free(struct session *s)
{
	serve_release(s);
	free(s->asked);
	if (s->conn)
		conn_free(s->conn);      /* closes the fd */
	else if (s->fd >= 0)
		close(s->fd);
	free(s);
}

static void sessions_reap(struct replicate *r)
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

static void strmap_free_values(struct strmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key)
			free(m->slots[i].value);
	strmap_clear(m);
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
			   (apply_held(s->r) ? WIRE_HELLO_REJOINING : 0);
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
	int err = state_send_vector(s);

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
	/* What it holds may be what failing jobs lacked. */
	if (journal_jobs_retry(s->r->journal) == 0)
		apply_kick(s->r);
	if (s->r->tls_server)
		chain_on_connected(s, transport_ssl(conn_transport(s->conn)));
	sync_on_hello(s, h);
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
		err = sync_on_frame(s, &m);
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

		if (s->state == SESSION_OPEN) {
			more = sync_pump(s);
			err = serve_queue(s->r, s);
			more |= serve_pending(s) && !s->r->serve_at;
		}
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

int session_resolve(const char *host, uint16_t port,
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

/* A new outbound session to P in *OUT; QUIET: a failure is not logged. */
static int peer_connect(struct replicate *r, struct peer *p, bool quiet,
			struct session **out)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, fd, err = session_resolve(p->host, p->port, &ss, &len);

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

static int replicate_listen(struct replicate *r, const char *address,
			    uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;
	int err = session_resolve(address, port, &ss, &len);

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

static void peer_set_address(struct peer *p,
			     const struct replicate_peer_config *c)
{
	snprintf(p->host, sizeof(p->host), "%s", c->host);
	p->port = c->port;
	snprintf(p->stats.address, sizeof(p->stats.address), "%s:%u",
		 p->host, p->port);
}

static struct peer *peer_new(struct replicate *r,
			     const struct replicate_peer_config *c)
{
	struct peer *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	snprintf(p->id, sizeof(p->id), "%s", c->id);
	snprintf(p->stats.id, sizeof(p->stats.id), "%s", p->id);
	p->dial = strcmp(r->node_id, p->id) < 0;
	/* The higher id dials once too, at once: a node that starts (or
	 * joins) is otherwise found only at its peer's next retry, which
	 * backs off to 10 s while it was down. */
	p->knock = !p->dial;
	peer_set_address(p, c);
	return p;
}

static void peer_free(struct peer *p)
{
	strmap_free_values(&p->sent);
	strmap_free_values(&p->acked);
	free(p);
}

/* Closes every session bound to P (the open one, and replaced ones not
 * reaped yet) and forgets P in transfers, before P is freed. */
static void peer_remove(struct replicate *r, struct peer *p)
{
	for (struct session *s = r->sessions; s; s = s->next) {
		if (s->peer != p)
			continue;
		session_close(s, "removed from the cluster");
		s->peer = NULL;
	}
	transfer_peer_removed(r, p);
	log_info("replicate", "peer %s removed from the cluster", p->id);
	peer_free(p);
}

static bool peer_listed(const struct peer *p,
			const struct replicate_peer_config *cfg, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(cfg[i].id, p->id) == 0)
			return true;
	return false;
}

/*
 * Two phases so that a failed allocation changes nothing: first every
 * peer of the new list is found or made, then old peers missing from it
 * are removed and the list is swapped in.  Slots are renumbered, so
 * per-slot transfer state ("peer i refused") is reset.
 */
int replicate_set_peers(struct replicate *r,
			const struct replicate_peer_config *cfg, size_t n)
{
	struct peer **next = calloc(n ? n : 1, sizeof(*next));
	bool *made = calloc(n ? n : 1, sizeof(*made));
	int err = next && made ? 0 : -ENOMEM;

	for (size_t i = 0; !err && i < n; i++) {
		next[i] = replicate_peer_by_id(r, cfg[i].id);
		if (!next[i]) {
			next[i] = peer_new(r, &cfg[i]);
			made[i] = true;
			err = next[i] ? 0 : -ENOMEM;
		}
	}
	if (err) {
		for (size_t i = 0; next && made && i < n; i++)
			if (made[i] && next[i])
				peer_free(next[i]);
		goto out;
	}
	for (size_t i = 0; i < r->n_peers; i++)
		if (!peer_listed(r->peers[i], cfg, n))
			peer_remove(r, r->peers[i]);
	for (size_t i = 0; i < n; i++) {
		struct peer *p = next[i];

		p->slot = i;
		if (made[i] && r->listen_fd >= 0) {
			log_info("replicate", "peer %s added at %s:%u", p->id,
				 cfg[i].host, cfg[i].port);
		} else if (!made[i] && (strcmp(p->host, cfg[i].host) ||
					p->port != cfg[i].port)) {
			log_info("replicate", "peer %s moves to %s:%u", p->id,
				 cfg[i].host, cfg[i].port);
			peer_set_address(p, &cfg[i]);
			if (p->session)
				session_close(p->session, "address changed");
			p->backoff_ms = 0;
			p->next_dial_ns = 0;
		}
	}
	free(r->peers);
	r->peers = next;
	r->n_peers = n;
	next = NULL;
	transfer_peers_renumbered(r);
	r->kicked = true;
out:
	free(next);
	free(made);
	return err;
}

int replicate_new(struct journal *j, struct loop *loop,
		  const struct replicate_options *opt, struct replicate **out)
{
	struct replicate *r = calloc(1, sizeof(*r));
	int err;

	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->journal = j;
	r->loop = loop;
	r->listen_fd = -1;
	r->rootfd = -1;
	r->precopy_efd = -1;
	r->xfer.max = transfer_max();
	r->tls_server = opt->tls_server;
	r->tls_client = opt->tls_client;
	r->keyring = opt->keyring;
	r->diverged = opt->diverged;
	r->diverged_arg = opt->diverged_arg;
	r->max_clock_skew_ns = opt->max_clock_skew_ns;
	r->versions = opt->versions;
	r->kicked = true;
	snprintf(r->node_id, sizeof(r->node_id), "%s", opt->node_id);
	snprintf(r->cluster_id, sizeof(r->cluster_id), "%s", opt->cluster_id);
	replicate_set_bandwidth(r, opt->egress_bits_per_sec,
				opt->ingress_bits_per_sec);
	/* What the journal held at start-up arrived at an unknown time
	 * (ns 0): its jobs are not sampled for apply latency. */
	apply_init(r, journal_last_change_id(j));
	r->root = strdup(opt->root);
	err = r->root ? replicate_set_peers(r, opt->peers, opt->n_peers) :
			-ENOMEM;
	if (!err)
		err = scrub_new(&r->scrub);
	if (!err)
		err = chain_setup(r);
	if (!err)
		err = replicate_listen(r, opt->listen_address, opt->port);
	if (err) {
		replicate_free(r);
		return err;
	}
	*out = r;
	return 0;
}

void replicate_free(struct replicate *r)
{
	if (!r)
		return;
	for (struct session *s = r->sessions; s; s = s->next)
		session_close(s, "shutting down");
	sessions_reap(r);
	ask_free(r);
	transfer_stop(r);
	transfer_free_all(r);
	serve_offers_expire(r, INT64_MAX);
	scrub_free(r->scrub);
	for (size_t i = 0; i < r->n_peers; i++)
		peer_free(r->peers[i]);
	free(r->peers);
	if (r->listen_fd >= 0) {
		loop_del_fd(r->loop, r->listen_fd);
		close(r->listen_fd);
	}
	free(r->root);
	free(r);
}

/* Sends what is queued; a failed connection is closed, an open one
 * polled for whatever it waits on next. */
static void session_flush(struct session *s)
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
	serve_idle(s, now);
	if (now - s->last_rx_ns > SESSION_QUIET_NS)
		conn_trim(s->conn);
	if (s->state == SESSION_OPEN && now - s->last_ping_ns > PEER_PING_NS) {
		m.token = (uint64_t)now;
		clock_on_ping(s, now);
		if (session_send(s, &m) == 0)
			session_flush(s);
	}
	state_tick(s, now);
}

void replicate_tick(struct replicate *r)
{
	int64_t now = loop_now_ns();

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
	gate_tick(r, now);
	chain_tick(r);
	if (r->n_offers && now >= r->offers_sweep_ns) {
		r->offers_sweep_ns = now + 1000000000;
		serve_offers_expire(r, now);
	}
	if (r->read_more) {
		r->read_more = false;
		for (struct session *s = r->sessions; s; s = s->next)
			if (s->read_more && !s->dead)
				session_on_event(s, EPOLLIN);
	}
	if (r->kicked) {
		r->kicked = false;
		for (struct session *s = r->sessions; s; s = s->next) {
			if (s->dead || s->state != SESSION_OPEN)
				continue;
			sync_pump(s);
			session_flush(s);
		}
		apply_kick(r);
	}
	if (r->serve_at && now >= r->serve_at) {
		r->serve_at = 0;
		for (struct session *s = r->sessions; s; s = s->next) {
			if (s->dead || s->state != SESSION_OPEN ||
			    !serve_pending(s))
				continue;
			if (serve_queue(r, s) != 0)
				session_close(s, "serving chunks failed");
			else
				session_flush(s);
		}
	}
	apply_tick(r);
	scrub_tick(r, now);
	ask_tick(r, now);
	sessions_reap(r);
}

void replicate_set_bandwidth(struct replicate *r, uint64_t egress_bps,
			     uint64_t ingress_bps)
{
	/* One second of traffic, and at least a few chunks, as burst. */
	bucket_init(&r->egress, egress_bps, egress_bps / 8 + (4u << 20));
	bucket_init(&r->ingress, ingress_bps, ingress_bps / 8 + (4u << 20));
}

void replicate_kick(struct replicate *r)
{
	r->kicked = true;
}

void replicate_changing(struct replicate *r, const char *volume,
			const char *path, const uint8_t base[CONTENT_HASH_LEN],
			uint64_t size)
{
	struct wire_msg m = { .type = WIRE_CHANGING };

	m.changing = (struct wire_changing){ volume, path, { 0 }, size };
	memcpy(m.changing.base, base, CONTENT_HASH_LEN);
	/* Out at once: the caller is about to hash for a while. */
	for (struct session *s = r->sessions; s; s = s->next)
		if (s->state == SESSION_OPEN && !s->dead && s->peer &&
		    s->peer->changing && session_send(s, &m) == 0)
			session_send_now(s);
}

int64_t replicate_next_deadline(struct replicate *r)
{
	int64_t d = loop_now_ns() + 1000000000;

	if (r->kicked || r->read_more)
		return 0;
	if (apply_deadline(r) < d)
		d = apply_deadline(r);
	for (size_t i = 0; i < r->n_peers; i++)
		if ((r->peers[i]->dial || r->peers[i]->knock) &&
		    !r->peers[i]->session && r->peers[i]->next_dial_ns < d)
			d = r->peers[i]->next_dial_ns;
	if (r->serve_at && r->serve_at < d)
		d = r->serve_at;
	if (commit_deadline(r) && commit_deadline(r) < d)
		d = commit_deadline(r);
	if (journal_sign_deadline(r->journal) &&
	    journal_sign_deadline(r->journal) < d)
		d = journal_sign_deadline(r->journal);
	if (r->gate.resume_ns && r->gate.resume_ns < d)
		d = r->gate.resume_ns;
	if (!apply_held(r) && scrub_deadline(r) < d)
		d = scrub_deadline(r);
	if (ask_deadline(r) < d)
		d = ask_deadline(r);
	return d;
}

size_t replicate_peers(struct replicate *r, struct replicate_peer_status *out,
		       size_t max)
{
	for (size_t i = 0; i < r->n_peers && i < max; i++) {
		struct peer *p = r->peers[i];

		sync_lag(r, p, &p->stats.lag_entries, &p->stats.lag_bytes,
			 &p->stats.behind_entries);
		out[i] = p->stats;
		/* Up but silent (stopped, hung, cut off): not connected in
		 * any sense a user cares about.  Nor before its vector came
		 * (VECTOR_NEXT): what it holds, and so how far behind it this
		 * node is, is not known yet; a rejoining node judged "caught
		 * up" from that and adopted its disk against nothing. */
		if (p->session && (p->vector_wait ||
				   loop_now_ns() - p->session->last_rx_ns >
				   PEER_UNRESPONSIVE_NS))
			out[i].connected = false;
	}
	return r->n_peers;
}

uint64_t replicate_backlog(struct replicate *r, uint64_t *stuck)
{
	uint64_t waiting;

	/* Counted when asked (once a second), not on every loop turn: a
	 * count over thousands of jobs is not free. */
	if (journal_job_counts(r->journal, NULL, &waiting, stuck) != 0)
		waiting = *stuck = 0;
	return waiting;
}

uint64_t replicate_applied(struct replicate *r)
{
	return r->apply.applied;
}

const struct hist *replicate_apply_latency(struct replicate *r)
{
	return &r->apply.latency_us;
}

void replicate_hold(struct replicate *r, bool hold)
{
	if (apply_held(r) && !hold) {
		apply_kick(r);
		/* Peers learn from new HELLOs that this node holds history
		 * now, and may adopt their own disks against it. */
		apply_hold(r, false);
		replicate_resync(r);
	}
	apply_hold(r, hold);
}

void replicate_resync(struct replicate *r)
{
	for (struct session *s = r->sessions; s; s = s->next)
		session_close(s, "resync requested");
	for (size_t i = 0; i < r->n_peers; i++) {
		r->peers[i]->backoff_ms = 0;
		r->peers[i]->next_dial_ns = 0;
	}
	r->kicked = true;
}
