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
 *   future NODE VOL      HELLO as NODE, then its first three changes,
 *                        deletes of absent paths, the first stamped with
 *                        wall time INT64_MAX; the frame sent three times
 *   forge NODE VOL PATH ORIGIN_NODE KIND
 *                        HELLO as NODE (with WIRE_HELLO_CHAIN unless KIND
 *                        is plain) and an empty VECTOR, then 3 s of
 *                        reading what the agent sends: the newest entry
 *                        of an origin of ORIGIN_NODE ("ORIGIN_NODE@..."),
 *                        its chain hash, and the key id of that origin's
 *                        last signed entry.  Then one forged DELETE of
 *                        VOL/PATH as that origin's next seq (Lamport
 *                        above any seen, wall time now, based on the
 *                        origin's entry when it was of VOL/PATH):
 *                          plain     in a plain ENTRIES frame
 *                          badprev   CHAIN_ENTRIES, prev all zeros,
 *                                    signed with our own key (--tls)
 *                          ownkey    the right prev, signed with our
 *                                    own key (a member's, not the
 *                                    origin node's)
 *                          stolenid  the right prev, the origin's key
 *                                    id, 72 random signature bytes
 *                        or as a state exchange (HELLO with STATE):
 *                        STATE_BEGIN with a vector naming the forged
 *                        origin at the forged seq, the heads, STATE_END:
 *                          state-plain   the DELETE as an unproven head
 *                                        (STATE)
 *                          state-ownkey  as a proven head (CHAIN_STATE),
 *                                        signed with our own key
 *                          state-vector  no head; the vector names the
 *                                        origin 1000 seqs further
 *                        Exits 2 when no entry of ORIGIN_NODE came
 *                        (nothing to forge after), 4 (printing
 *                        "closed") when the agent hung up before.
 *
 * Option --tls DIR, before HOST: the connection is TLS 1.3 as a client,
 * with DIR/node.pem, DIR/node-key.pem and DIR/ca.pem (not for bighello,
 * idle or flood).  A handshake that fails is reported on stderr with exit
 * status 3.
 *
 * It prints what the agent did ("closed" when the agent hung up within 5 s,
 * "open" otherwise) and exits 0; the test decides what was expected.
 */
#include "conn.h"
#include "tls.h"
#include "wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

/* With --tls: the connection's TLS session; NULL for plain TCP. */
static SSL *tls;
/* With --tls: our own key (DIR/node-key.pem), to sign forged segments. */
static EVP_PKEY *own_key;

/* Sends LEN bytes of BUF whole; 0 or -1 (the agent hung up). */
static int io_send(int fd, const void *buf, size_t len)
{
	if (tls) {
		size_t done = 0;

		return len == 0 || (SSL_write_ex(tls, buf, len, &done) &&
				    done == len) ? 0 : -1;
	}
	return send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* Up to LEN bytes within MS milliseconds: how many (> 0), 0 when the
 * agent hung up (or the connection failed), -1 when nothing came. */
static ssize_t io_recv(int fd, void *buf, size_t len, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	if (tls) {
		struct timeval tv = { .tv_sec = ms / 1000,
				      .tv_usec = (ms % 1000) * 1000 };
		size_t got = 0;
		int err;

		/* A record arriving in pieces may take a few of these. */
		if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
			       sizeof(tv)) != 0)
			return 0;
		if (SSL_read_ex(tls, buf, len, &got))
			return (ssize_t)got;
		err = SSL_get_error(tls, 0);
		ERR_clear_error();
		return err == SSL_ERROR_WANT_READ ? -1 : 0;
	}
	if (poll(&p, 1, ms) <= 0)
		return -1;
	n = recv(fd, buf, len, 0);
	return n > 0 ? n : 0;
}

/* The client side of TLS 1.3 on FD with DIR's credentials; exits 3 when
 * the handshake fails. */
static void tls_start(int fd, const char *dir)
{
	char cert[4096], key[4096], ca[4096];
	char *errmsg = NULL;
	SSL_CTX *ctx;
	int rc;

	snprintf(cert, sizeof(cert), "%s/%s", dir, TLS_NODE_CERT);
	snprintf(key, sizeof(key), "%s/%s", dir, TLS_NODE_KEY);
	snprintf(ca, sizeof(ca), "%s/%s", dir, TLS_CA_CERT);
	ctx = tls_context_new(cert, key, ca, false, &errmsg);
	if (!ctx || tls_read_key(key, &own_key, &errmsg) != 0) {
		fprintf(stderr, "--tls %s: %s\n", dir,
			errmsg ? errmsg : "cannot load");
		exit(2);
	}
	/* A write to a connection the agent closed fails instead of
	 * killing us (OpenSSL's socket BIO writes without MSG_NOSIGNAL). */
	signal(SIGPIPE, SIG_IGN);
	tls = SSL_new(ctx);
	if (!tls || !SSL_set_fd(tls, fd)) {
		fprintf(stderr, "cannot set up TLS\n");
		exit(2);
	}
	rc = SSL_connect(tls);
	if (rc != 1) {
		unsigned long e = ERR_peek_last_error();

		fprintf(stderr, "TLS handshake failed: %s (verify: %s)\n",
			e ? ERR_reason_error_string(e) : "connection closed",
			X509_verify_cert_error_string(
				SSL_get_verify_result(tls)));
		exit(3);
	}
	tls_context_free(ctx);
}

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
	if (io_send(fd, buf, len) != 0) {
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

	if (!err && io_send(fd, b.data, b.len) != 0)
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

	for (int i = 0; i < 50; i++)
		if (io_recv(fd, buf, sizeof(buf), 100) == 0)
			return "closed";
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
/* Three deletes of absent paths as NODE's own first changes, the first
 * stamped INT64_MAX (the year 2262), sent three times over as a peer
 * that is asked again would. */
static void future(int fd, const char *node, const char *vol)
{
	static const char *paths[] = { "future-1", "future-2", "future-3" };
	struct wire_entry e[3];
	struct wire_msg m = { .type = WIRE_ENTRIES };

	memset(e, 0, sizeof(e));
	for (int k = 0; k < 3; k++) {
		snprintf(e[k].ref.origin, sizeof(e[k].ref.origin),
			 "%s@00000000000000ff", node);
		e[k].ref.seq = (uint64_t)k + 1;
		e[k].lamport = (uint64_t)k + 1;
		e[k].wall_ns = k == 0 ? INT64_MAX : 1;
		e[k].volume = vol;
		e[k].path = paths[k];
		e[k].op = JOURNAL_DELETE;
	}
	m.entries.n = 3;
	m.entries.v = e;
	for (int i = 0; i < 3; i++)
		if (send_msg_quiet(fd, &m) != 0)
			return;
}

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
		ssize_t got = io_recv(fd, buf + have, need - have, 5000);

		if (got <= 0) {
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

/* ---- forge ---------------------------------------------------------- */

/* What the agent told us of the origin whose entries we forge. */
struct seen {
	const char *node;         /* ORIGIN_NODE */
	bool have;                /* an entry of it came */
	struct journal_ref ref;   /* the newest one */
	uint64_t lamport;         /* its Lamport value */
	char volume[VOLUME_NAME_MAX + 1];
	char path[PATH_REL_MAX + 1];
	bool chain_known;         /* it came chained: CHAIN is its hash */
	uint8_t chain[CONTENT_HASH_LEN];
	bool signed_seen;         /* a signed segment end of the origin came */
	uint8_t key_id[CONTENT_HASH_LEN];  /* ...with this key id */
	uint64_t max_lamport;     /* over every entry seen */
	unsigned frames;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* LEN bytes into BUF before DEADLINE (ms): 1, 0 when the agent hung up,
 * -1 when time ran out. */
static int read_exact(int fd, uint8_t *buf, size_t len, uint64_t deadline)
{
	size_t have = 0;

	while (have < len) {
		uint64_t now = now_ms();
		ssize_t n;

		if (now >= deadline)
			return -1;
		n = io_recv(fd, buf + have, len - have,
			    (int)(deadline - now < 200 ? deadline - now : 200));
		if (n == 0)
			return 0;
		if (n > 0)
			have += (size_t)n;
	}
	return 1;
}


static void note_entries(struct seen *sn, const struct wire_entry_list *l,
			 bool chained)
{
	for (uint32_t i = 0; i < l->n; i++) {
		const struct wire_entry *w = &l->v[i];
		struct journal_change c;
		uint8_t digest[CONTENT_HASH_LEN];

		if (w->lamport > sn->max_lamport)
			sn->max_lamport = w->lamport;
		if (!journal_origin_of(w->ref.origin, sn->node))
			continue;
		if (chained && w->seg_end && w->sig_len) {
			memcpy(sn->key_id, w->key_id, CONTENT_HASH_LEN);
			sn->signed_seen = true;
		}
		if (sn->have && strcmp(sn->ref.origin, w->ref.origin) == 0 &&
		    w->ref.seq <= sn->ref.seq)
			continue;         /* not newer */
		sn->have = true;
		sn->ref = w->ref;
		sn->lamport = w->lamport;
		snprintf(sn->volume, sizeof(sn->volume), "%s", w->volume);
		snprintf(sn->path, sizeof(sn->path), "%s", w->path);
		sn->chain_known = chained;
		if (chained) {
			wire_entry_to_change(w, &c);
			if (journal_entry_digest(&c, digest) != 0) {
				fprintf(stderr, "cannot digest an entry\n");
				exit(2);
			}
			journal_chain_link(w->prev, digest, sn->chain);
		}
	}
}

/* Frames from the agent for up to MS milliseconds, noting entries. */
static void forge_listen(int fd, struct seen *sn, int ms)
{
	static uint8_t buf[WIRE_MAX_PAYLOAD];
	uint64_t deadline = now_ms() + (uint64_t)ms;

	for (;;) {
		uint8_t h[WIRE_HEADER_LEN];
		enum wire_type type;
		uint32_t len;
		struct wire_msg m = { 0 };
		int rc = read_exact(fd, h, sizeof(h), deadline);

		if (rc > 0 && wire_header_parse(h, &type, &len) != 0) {
			fprintf(stderr, "a bad frame header from the agent\n");
			exit(2);
		}
		if (rc > 0)
			rc = read_exact(fd, buf, len, deadline);
		if (rc < 0)
			return;           /* time is up */
		if (rc == 0) {
			fprintf(stderr, "the agent hung up before anything "
				"was forged (%u frames)\n", sn->frames);
			printf("closed\n");
			exit(4);
		}
		sn->frames++;
		if (wire_decode(type, buf, len, &m) != 0) {
			fprintf(stderr, "cannot decode a %s frame\n",
				wire_type_name(type));
			exit(2);
		}
		if (type == WIRE_ENTRIES || type == WIRE_CHAIN_ENTRIES)
			note_entries(sn, &m.entries,
				     type == WIRE_CHAIN_ENTRIES);
		wire_msg_release(&m);
	}
}

/* SIG signed with our own key over the signature message of (ORIGIN,
 * SEQ, CHAIN); its length. */
static size_t own_sign(const char *origin, uint64_t seq,
		       const uint8_t chain[CONTENT_HASH_LEN],
		       uint8_t sig[WIRE_SIG_MAX])
{
	uint8_t msg[JOURNAL_SIG_MSG_MAX];
	size_t len = journal_sig_message(origin, seq, chain, msg);
	size_t sig_len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (!own_key) {
		fprintf(stderr, "this kind signs with our own key: --tls\n");
		exit(2);
	}
	if (!ctx || !EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL,
					own_key) ||
	    !EVP_DigestSign(ctx, NULL, &sig_len, msg, len) ||
	    sig_len > WIRE_SIG_MAX ||
	    !EVP_DigestSign(ctx, sig, &sig_len, msg, len)) {
		fprintf(stderr, "cannot sign\n");
		exit(2);
	}
	EVP_MD_CTX_free(ctx);
	return sig_len;
}

/* Our own key id: SHA-256 of the DER public key, as keyring.c has it. */
static void own_key_id(uint8_t id[CONTENT_HASH_LEN])
{
	unsigned char *spki = NULL;
	int n = own_key ? i2d_PUBKEY(own_key, &spki) : 0;

	if (n <= 0 || !EVP_Digest(spki, (size_t)n, id, NULL, EVP_sha256(),
				  NULL)) {
		fprintf(stderr, "cannot make our key id\n");
		exit(2);
	}
	OPENSSL_free(spki);
}

/* The forgery E sent as a state exchange (KIND state-...): our own
 * origin OWN and E's in the vector, E as the only head unless the kind
 * forges the vector alone. */
static void forge_state(int fd, const char *kind, const struct journal_ref *own,
			struct wire_entry *e)
{
	bool vector_only = !strcmp(kind, "state-vector");
	struct journal_ref refs[2] = { *own, e->ref };
	struct wire_msg m = { .type = WIRE_STATE_BEGIN };

	if (vector_only)
		refs[1].seq += 1000;
	m.vector.n = 2;
	m.vector.refs = refs;
	send_msg(fd, &m);
	memset(&m, 0, sizeof(m));
	if (!vector_only) {
		m.type = e->chained ? WIRE_CHAIN_STATE : WIRE_STATE;
		m.entries.n = 1;
		m.entries.v = e;
		send_msg(fd, &m);
		memset(&m, 0, sizeof(m));
	}
	m.type = WIRE_STATE_END;
	m.token = vector_only ? 0 : 1;
	send_msg(fd, &m);
}

static void forge(int fd, const char *node, const char *vol, const char *path,
		  const char *origin_node, const char *kind)
{
	bool state = !strncmp(kind, "state-", 6);
	bool plain = !strcmp(kind, "plain") || !strcmp(kind, "state-plain") ||
		     !strcmp(kind, "state-vector");
	struct seen sn = { .node = origin_node };
	struct wire_msg m = { .type = WIRE_HELLO };
	struct journal_ref own = { .seq = 0 }, base;
	struct wire_entry e;
	uint8_t sig[WIRE_SIG_MAX];
	struct timespec now;

	if (!plain && strcmp(kind, "badprev") && strcmp(kind, "ownkey") &&
	    strcmp(kind, "stolenid") && strcmp(kind, "state-ownkey")) {
		fprintf(stderr, "unknown forge kind '%s'\n", kind);
		exit(2);
	}
	/* Our HELLO names our own origin only; the (empty) vector follows,
	 * and the agent sends everything it holds. */
	snprintf(own.origin, sizeof(own.origin), "%s@00000000000000aa", node);
	m.hello.node_id = node;
	m.hello.cluster_id = "krakenfs";
	m.hello.features = WIRE_HELLO_OWN_FIRST | WIRE_HELLO_VECTOR_NEXT |
			   (plain && !state ? 0 : WIRE_HELLO_CHAIN) |
			   (state ? WIRE_HELLO_STATE : 0);
	m.hello.vector.n = 1;
	m.hello.vector.refs = &own;
	send_msg(fd, &m);
	memset(&m, 0, sizeof(m));
	m.type = WIRE_VECTOR;
	send_msg(fd, &m);

	forge_listen(fd, &sn, 3000);
	if (!sn.have) {
		fprintf(stderr, "no entry of %s came in 3 s (%u frames)\n",
			origin_node, sn.frames);
		exit(2);
	}
	if ((!plain || state) && !sn.chain_known) {
		fprintf(stderr, "%s's entries came unchained\n", origin_node);
		exit(2);
	}
	if (!strcmp(kind, "stolenid") && !sn.signed_seen) {
		fprintf(stderr, "no signed entry of %s came\n", origin_node);
		exit(2);
	}

	clock_gettime(CLOCK_REALTIME, &now);
	memset(&e, 0, sizeof(e));
	e.ref = sn.ref;
	e.ref.seq = sn.ref.seq + 1;
	e.lamport = (sn.max_lamport > sn.lamport ? sn.max_lamport :
		     sn.lamport) + 10;
	e.wall_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	e.volume = vol;
	e.path = path;
	e.op = JOURNAL_DELETE;
	e.mode = 0;
	if (!strcmp(sn.volume, vol) && !strcmp(sn.path, path)) {
		base = sn.ref;
		e.n_bases = 1;
		e.bases = &base;
	}
	memset(&m, 0, sizeof(m));
	m.type = plain ? WIRE_ENTRIES : WIRE_CHAIN_ENTRIES;
	m.entries.n = 1;
	m.entries.v = &e;
	if (!plain) {
		e.chained = true;
		e.seg_end = true;
		e.sig = sig;
		if (strcmp(kind, "badprev"))
			memcpy(e.prev, sn.chain, CONTENT_HASH_LEN);
		if (!strcmp(kind, "stolenid")) {
			memcpy(e.key_id, sn.key_id, CONTENT_HASH_LEN);
			e.sig_len = 72;
			if (RAND_bytes(sig, 72) != 1)
				exit(2);
		} else {
			uint8_t chain[CONTENT_HASH_LEN];
			struct journal_change c;
			uint8_t digest[CONTENT_HASH_LEN];

			wire_entry_to_change(&e, &c);
			if (journal_entry_digest(&c, digest) != 0)
				exit(2);
			journal_chain_link(e.prev, digest, chain);
			own_key_id(e.key_id);
			e.sig_len = (uint16_t)own_sign(e.ref.origin,
						       e.ref.seq, chain, sig);
		}
	}
	fprintf(stderr, "forging %s:%llu (after %s/%s, lamport %llu): "
		"DELETE %s/%s, %s\n", e.ref.origin,
		(unsigned long long)e.ref.seq, sn.volume, sn.path,
		(unsigned long long)e.lamport, vol, path, kind);
	if (state)
		forge_state(fd, kind, &own, &e);
	else
		send_msg(fd, &m);
}

int main(int argc, char **argv)
{
	const char *tls_dir = NULL;
	const char *mode;
	int fd;

	if (argc > 2 && !strcmp(argv[1], "--tls")) {
		tls_dir = argv[2];
		argv += 2;
		argc -= 2;
	}
	mode = argc > 3 ? argv[3] : "";
	if (argc < 4) {
		fprintf(stderr, "usage: kraken-fake-peer [--tls DIR] HOST PORT "
			"MODE [ARGS]\n"
			"modes: garbage | oversize | stranger NODE | escape NODE "
			"VOL | through NODE VOL PATH | flood NODE | impostor "
			"NODE | bighello N | idle N SECONDS | vector | origins NODE "
			"VOL N | forge NODE VOL PATH ORIGIN_NODE "
			"plain|badprev|ownkey|stolenid|state-plain|"
			"state-ownkey|state-vector\n");
		return 2;
	}
	if (tls_dir && (!strcmp(mode, "bighello") || !strcmp(mode, "idle") ||
			!strcmp(mode, "flood"))) {
		fprintf(stderr, "--tls does not go with mode %s\n", mode);
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
	if (tls_dir)
		tls_start(fd, tls_dir);
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
	} else if (!strcmp(mode, "future") && argc > 5) {
		hello(fd, argv[4]);
		future(fd, argv[4], argv[5]);
	} else if (!strcmp(mode, "impostor") && argc > 4) {
		hello(fd, argv[4]);
	} else if (!strcmp(mode, "forge") && argc > 8) {
		forge(fd, argv[4], argv[5], argv[6], argv[7], argv[8]);
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
