/*
 * Who the REST server answers.
 *
 * Host.  A browser puts the name it resolved in Host.  A page from
 * evil.example whose name the attacker re-points at 127.0.0.1 (DNS
 * rebinding) reaches the loopback API as same-origin, but its requests
 * still say "Host: evil.example"; answering only Host values that name
 * this server is what keeps such pages out, token or not.  Accepted, with
 * the server's port or with no port: the api.listen host, localhost,
 * 127.0.0.1, [::1] and every api.allowed_hosts entry.  When api.listen is
 * a wildcard address (0.0.0.0, ::) any IP address literal is accepted as
 * well, because clients then reach the server by whichever address the
 * machine has, and a literal address cannot be re-pointed; a DNS name
 * still has to be listed.  Names compare without case, addresses by
 * value.  Anything else (a second ':', an IPv6 address without brackets,
 * a port that is not ours) names something else and is refused.
 *
 * Tokens.  A token file is read again for every request, so a token
 * created or rotated takes effect without a restart, and compared in
 * time that depends on its length only.
 */
#include "rest_auth.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* A longer Host names nothing we accept (names are capped at 255). */
#define REST_HOST_MAX 300

/* The host part of a Host header or of a configured name. */
struct rest_name {
	const char *s;               /* brackets removed */
	size_t len;
	int family;                  /* AF_INET, AF_INET6, 0: a name */
	unsigned char addr[sizeof(struct in6_addr)];
};

/* Sets N->family when S (LEN bytes) is an address of FAMILY. */
static void rest_name_address(struct rest_name *n, int family)
{
	char buf[INET6_ADDRSTRLEN];

	if (n->len >= sizeof(buf))
		return;
	memcpy(buf, n->s, n->len);
	buf[n->len] = '\0';
	if (inet_pton(family, buf, n->addr) == 1)
		n->family = family;
}

/* LEN bytes of S, a host with or without brackets, as a name. */
static void rest_name_set(struct rest_name *n, const char *s, size_t len)
{
	memset(n, 0, sizeof(*n));
	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
	}
	n->s = s;
	n->len = len;
	rest_name_address(n, memchr(s, ':', len) ? AF_INET6 : AF_INET);
}

/* Whether the rest of a Host value, after its host, is "" or ":PORT". */
static bool rest_port_ok(const char *p, uint16_t port)
{
	unsigned long n = 0;
	size_t i;

	if (*p == '\0')
		return true;
	if (*p++ != ':')
		return false;
	for (i = 0; p[i]; i++) {
		if (i == 5 || !isdigit((unsigned char)p[i]))
			return false;
		n = n * 10 + (unsigned long)(p[i] - '0');
	}
	return i > 0 && n == port;
}

/* Splits VALUE into its host and port; false when it is neither
 * "host[:port]" nor "[ipv6][:port]", or the port is not PORT. */
static bool rest_host_parse(const char *value, uint16_t port,
			    struct rest_name *n)
{
	const char *end;

	if (value[0] == '[') {
		end = strchr(value, ']');
		if (!end)
			return false;
		end++;
	} else {
		end = value + strcspn(value, ":");
	}
	if (end == value || !rest_port_ok(end, port))
		return false;
	rest_name_set(n, value, (size_t)(end - value));
	/* Brackets hold an IPv6 address and nothing else. */
	return (value[0] == '[') == (n->family == AF_INET6);
}

static bool rest_name_is(const struct rest_name *n, const char *want)
{
	struct rest_name w;

	if (!want)
		return false;
	rest_name_set(&w, want, strlen(want));
	if (n->family || w.family)
		return n->family == w.family &&
		       !memcmp(n->addr, w.addr, sizeof(n->addr));
	return n->len == w.len && strncasecmp(n->s, w.s, n->len) == 0;
}

static bool rest_wildcard(const char *listen_host)
{
	static const unsigned char zero[sizeof(struct in6_addr)];
	struct rest_name w;

	if (!listen_host)
		return false;
	rest_name_set(&w, listen_host, strlen(listen_host));
	return w.family && !memcmp(w.addr, zero, sizeof(zero));
}

bool rest_host_allowed(const struct rest_hosts *h, const char *value)
{
	static const char *const local[] = { "localhost", "127.0.0.1",
					     "::1" };
	struct rest_name n;

	if (!value || strlen(value) > REST_HOST_MAX ||
	    !rest_host_parse(value, h->port, &n))
		return false;
	if (rest_name_is(&n, h->listen_host))
		return true;
	for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++)
		if (rest_name_is(&n, local[i]))
			return true;
	for (size_t i = 0; i < h->n_allowed; i++)
		if (rest_name_is(&n, h->allowed[i]))
			return true;
	return n.family && rest_wildcard(h->listen_host);
}

const char *rest_bearer(const char *header)
{
	if (!header || strncasecmp(header, "Bearer ", 7) != 0)
		return NULL;
	header += 7;
	while (*header == ' ')
		header++;
	return header;
}

/* Reads a token: the file's content without trailing newlines. */
static int rest_token_load(const char *file, char *out, size_t cap,
			   size_t *len)
{
	ssize_t n;
	int fd, err = 0;

	*len = 0;
	if (!file)
		return -ENOENT;
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	do
		n = read(fd, out, cap);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		err = -errno;
	else if ((size_t)n == cap)
		err = -EFBIG;   /* not a token; refuse rather than truncate */
	close(fd);
	if (err)
		return err;
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		n--;
	*len = (size_t)n;
	return n > 0 ? 0 : -ENODATA;
}

/* Time depends on the secret's length only, never on where they differ. */
static bool rest_token_equal(const char *given, size_t glen, const char *want,
			     size_t wlen)
{
	unsigned char diff = glen != wlen;

	for (size_t i = 0; i < wlen; i++)
		diff |= (unsigned char)want[i] ^
			(unsigned char)(i < glen ? given[i] : 0);
	return diff == 0;
}

int rest_token_check(const char *file, const char *given)
{
	char token[REST_TOKEN_MAX];
	size_t len;
	int err = rest_token_load(file, token, sizeof(token), &len);

	if (!err && !(given && rest_token_equal(given, strlen(given), token,
						len)))
		err = -EACCES;
	explicit_bzero(token, sizeof(token));
	return err;
}
