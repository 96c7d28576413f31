/*
 * kraken-journal asking the running agent, for what only it knows (what
 * its peers keep): one HTTP/1.0 GET to api.listen of the config, with
 * the read token (or the admin token, which also reads) when the file
 * can be read.  HTTP/1.0 without Host, which the agent accepts, so that
 * any name it listens under works.  The answer is capped at
 * KJ_AGENT_MAX bytes; the agent answers within seconds (its peers are
 * given two), so a silent one is given up after KJ_AGENT_WAIT_S.
 */
#include "kraken-journal.h"

#include "config.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define KJ_AGENT_MAX (8u << 20)
#define KJ_AGENT_WAIT_S 10

/* The first line of FILE, trimmed, into OUT; "" when unreadable. */
static void token_read(const char *file, char *out, size_t cap)
{
	FILE *f = file ? fopen(file, "r") : NULL;

	out[0] = '\0';
	if (f && fgets(out, (int)cap, f))
		out[strcspn(out, "\r\n \t")] = '\0';
	if (f)
		fclose(f);
}

/* A connected socket to the agent's API, or a negative code. */
static int agent_connect(const struct config *cfg)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	struct timeval tv = { .tv_sec = KJ_AGENT_WAIT_S };
	const char *host = cfg->api_host;
	char h[256], port[8];
	size_t hl = strlen(host);
	int fd = -EHOSTUNREACH;

	/* A wildcard listen is reached on loopback. */
	if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "") == 0)
		host = "127.0.0.1";
	else if (strcmp(host, "::") == 0 || strcmp(host, "[::]") == 0)
		host = "::1";
	hl = strlen(host);
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']')
		snprintf(h, sizeof(h), "%.*s", (int)(hl - 2), host + 1);
	else
		snprintf(h, sizeof(h), "%s", host);
	snprintf(port, sizeof(port), "%u", cfg->api_port);
	if (getaddrinfo(h, port, &hints, &res) != 0)
		return -EHOSTUNREACH;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			fd = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			int err = -errno;

			close(fd);
			fd = err;
		}
	}
	freeaddrinfo(res);
	return fd;
}

/* The whole answer on FD into *OUT (malloc'd, NUL-terminated). */
static int agent_read(int fd, char **out)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap + 1), *more;
	ssize_t got;

	for (;;) {
		if (buf && n == cap) {
			more = cap < KJ_AGENT_MAX ? realloc(buf, cap * 2 + 1) :
			       NULL;
			if (!more) {
				free(buf);
				return cap < KJ_AGENT_MAX ? -ENOMEM : -EMSGSIZE;
			}
			buf = more;
			cap *= 2;
		}
		if (!buf)
			return -ENOMEM;
		got = read(fd, buf + n, cap - n);
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	if (got < 0) {
		free(buf);
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

/* The status and the body of RESP (a whole HTTP answer). */
static int agent_parse(const char *resp, int *status, const char **body)
{
	const char *end = strstr(resp, "\r\n\r\n");

	if (sscanf(resp, "HTTP/1.%*d %d", status) != 1 || !end)
		return -EPROTO;
	*body = end + 4;
	return 0;
}

int kj_agent_request(const struct config *cfg, const char *method,
		     const char *target, bool admin, json_t **out, int *status,
		     char *why, size_t cap)
{
	char token[512], head[8192], *resp = NULL;
	const char *body;
	json_error_t jerr;
	int fd, n, err;

	*out = NULL;
	*status = 0;
	token_read(admin || !cfg->api_read_token_file ? cfg->api_token_file :
		   cfg->api_read_token_file, token, sizeof(token));
	if (admin && !token[0]) {
		snprintf(why, cap, "cannot read the admin token in %s "
			 "(api.token_file): run as root", cfg->api_token_file);
		return -EACCES;
	}
	n = snprintf(head, sizeof(head), "%s %s HTTP/1.0\r\n%s%s%s\r\n",
		     method, target, token[0] ? "Authorization: Bearer " : "",
		     token, token[0] ? "\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(head))
		return snprintf(why, cap, "request too long"), -ENAMETOOLONG;
	fd = agent_connect(cfg);
	if (fd < 0) {
		snprintf(why, cap, "the agent at %s:%u does not answer: %s",
			 cfg->api_host, cfg->api_port, strerror(-fd));
		return fd;
	}
	err = write(fd, head, (size_t)n) == n ? 0 : -errno;
	if (!err)
		err = agent_read(fd, &resp);
	close(fd);
	if (!err)
		err = agent_parse(resp, status, &body);
	if (!err && !(*out = json_loads(body, 0, &jerr)))
		err = -EPROTO;
	if (err)
		snprintf(why, cap, "the agent at %s:%u gave no answer: %s",
			 cfg->api_host, cfg->api_port, strerror(-err));
	free(resp);
	return err;
}

int kj_agent_get(const struct config *cfg, const char *target, json_t **out,
		 char *why, size_t cap)
{
	int status, err = kj_agent_request(cfg, "GET", target, false, out,
					   &status, why, cap);

	if (!err && status != 200) {
		json_t *e = json_object_get(*out, "error");

		snprintf(why, cap, "the agent at %s:%u answered %d%s%s",
			 cfg->api_host, cfg->api_port, status, e ? ": " : "",
			 e ? json_string_value(e) : "");
		json_decref(*out);
		*out = NULL;
		err = -EPROTO;
	}
	return err;
}

/* S with every byte outside [A-Za-z0-9-._~/] as %XX, into OUT. */
int kj_url_escape(const char *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	assert(cap > 0);    /* room for the terminator at least */
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9') || strchr("-._~/", c);

		if (n + 4 > cap)
			return -ENAMETOOLONG;
		if (plain) {
			out[n++] = (char)c;
		} else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	out[n] = '\0';
	return 0;
}
