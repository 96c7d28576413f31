/*
 * The gate: what a connection gets before its peer is identified.
 *
 * Anyone who reaches the peer port can connect, and until its HELLO is
 * accepted (with TLS: its certificate verified and naming the node its
 * HELLO claims) it is a stranger.  A stranger gets almost nothing:
 *
 *   - frames of at most GATE_FRAME_MAX bytes (a HELLO is a few hundred;
 *     the 4 MiB cap applies only once the peer is known), so thirty
 *     connections announcing 4 MiB HELLOs cost kilobytes, not 100 MB;
 *   - GATE_DEADLINE_NS to say HELLO, or the connection is closed;
 *   - at most GATE_STRANGERS_MAX such connections at once, and
 *     GATE_PER_SOURCE_MAX from one address, and none once half the
 *     descriptor limit is in use: more are closed as soon as they are
 *     accepted, so idle connections cannot use up the descriptors the
 *     agent needs to apply files;
 *   - this node's HELLO names only its own origin; its version vector
 *     follows in a VECTOR frame once the peer is identified (feature bit
 *     VECTOR_NEXT, wire.h).
 *
 * Without TLS nothing proves a HELLO's node id, so an open session that
 * is heard from is replaced only by a connection this node dialled, or
 * by one coming from the address the peer is configured at (a stranger
 * elsewhere cannot take a node's place by naming it).  For that check to
 * mean something, outbound connections leave from the listener's
 * address when it is a specific one.
 *
 * When accept(2) fails for lack of descriptors or memory, the listener
 * is paused for GATE_PAUSE_NS instead of being polled again at once: it
 * is level-triggered, and the connection still waiting would wake the
 * loop in a spin (95% CPU seen).  The first pause is logged at warn,
 * later ones at debug, with a count; so is the first refusal for each
 * reason, then every 1000th.
 */
#include "replicate_int.h"
#include "gate.h"
#include "transport.h"

#include "log.h"
#include "loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* The address of SS as text into OUT (GATE_SOURCE_MAX bytes). */
static void gate_source_name(const struct sockaddr_storage *ss, char *out)
{
	const void *addr = NULL;

	if (ss->ss_family == AF_INET)
		addr = &((const struct sockaddr_in *)ss)->sin_addr;
	else if (ss->ss_family == AF_INET6)
		addr = &((const struct sockaddr_in6 *)ss)->sin6_addr;
	if (!addr || !inet_ntop(ss->ss_family, addr, out, GATE_SOURCE_MAX))
		snprintf(out, GATE_SOURCE_MAX, "?");
}

/* Whether descriptor FD (the lowest free one) is in the upper half of
 * what the process may open: then strangers would take what the agent
 * needs for its own work (files being applied, the journal). */
static bool gate_fds_short(int fd)
{
	struct rlimit rl;

	return getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	       rl.rlim_cur != RLIM_INFINITY && (rlim_t)fd >= rl.rlim_cur / 2;
}

enum gate_why { GATE_FDS = 1, GATE_TOTAL = 2, GATE_SOURCE = 4 };

/* Logged the first time for each reason and every 1000th, with the
 * count. */
static void gate_refused(struct replicate *r, enum gate_why kind,
			 const char *source, const char *why)
{
	bool first = !(r->gate.said & kind);

	r->gate.said |= kind;
	r->gate.refused++;
	if (first || r->gate.refused % 1000 == 0)
		log_warn("replicate", "refusing a connection from %s before "
			 "its HELLO: %s; %llu refused so far", source, why,
			 (unsigned long long)r->gate.refused);
}

bool gate_admit(struct replicate *r, const struct sockaddr_storage *ss,
		int fd, char *source)
{
	unsigned total = 0, same = 0;
	char why[64];

	gate_source_name(ss, source);
	if (gate_fds_short(fd)) {
		gate_refused(r, GATE_FDS, source,
			     "half the descriptor limit is in use");
		return false;
	}
	for (const struct session *s = r->sessions; s; s = s->next) {
		if (s->dead || s->outbound || s->state == SESSION_OPEN)
			continue;
		total++;
		same += strcmp(s->source, source) == 0;
	}
	if (total < GATE_STRANGERS_MAX && same < GATE_PER_SOURCE_MAX)
		return true;
	if (total >= GATE_STRANGERS_MAX) {
		snprintf(why, sizeof(why), "%u connections wait for HELLO",
			 total);
		gate_refused(r, GATE_TOTAL, source, why);
	} else {
		snprintf(why, sizeof(why), "%u connections from it wait for "
			 "HELLO", same);
		gate_refused(r, GATE_SOURCE, source, why);
	}
	return false;
}

void gate_pause(struct replicate *r, int err)
{
	r->gate.pauses++;
	r->gate.resume_ns = loop_now_ns() + GATE_PAUSE_NS;
	loop_mod_fd(r->loop, r->listen_fd, 0);
	if (r->gate.pauses == 1)
		log_warn("replicate", "cannot accept a peer connection: %s; "
			 "pausing the listener for a second (raise the "
			 "descriptor limit, e.g. LimitNOFILE, if this "
			 "repeats)", strerror(err));
	else
		log_debug("replicate", "accept: %s; listener paused "
			  "(%llu times)", strerror(err),
			  (unsigned long long)r->gate.pauses);
}

void gate_tick(struct replicate *r, int64_t now)
{
	if (!r->gate.resume_ns || now < r->gate.resume_ns)
		return;
	r->gate.resume_ns = 0;
	loop_mod_fd(r->loop, r->listen_fd, EPOLLIN);
}

bool gate_expired(const struct session *s, int64_t now)
{
	return s->state != SESSION_OPEN &&
	       now - s->started_ns > (s->probe ? PEER_PROBE_NS :
					     GATE_DEADLINE_NS);
}

void gate_note_listen(struct replicate *r, const struct sockaddr_storage *ss,
		      socklen_t len)
{
	struct sockaddr_storage a = *ss;
	bool any;

	if (a.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&a;

		any = in->sin_addr.s_addr == htonl(INADDR_ANY);
		in->sin_port = 0;
	} else if (a.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a;

		any = IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
		in6->sin6_port = 0;
	} else {
		any = true;
	}
	r->gate.source = a;
	r->gate.source_len = any ? 0 : len;
}

void gate_bind_source(struct replicate *r, int fd, int family)
{
	if (r->gate.source_len && r->gate.source.ss_family == family &&
	    bind(fd, (struct sockaddr *)&r->gate.source,
		 r->gate.source_len) != 0)
		log_debug("replicate", "binding an outbound connection to "
			  "the listen address: %s", strerror(errno));
}

bool gate_from_peer(struct replicate *r, const struct session *s,
		    const struct peer *p)
{
	struct sockaddr_storage ss;
	char want[GATE_SOURCE_MAX];
	socklen_t len;

	(void)r;
	if (!p || transport_resolve(p->host, p->port, &ss, &len) != 0)
		return false;
	gate_source_name(&ss, want);
	return strcmp(want, s->source) == 0;
}
