/*
 * Who the REST server answers: the Host rule and the bearer tokens
 * (rest_auth.c).  Pure functions of their arguments and the token files,
 * so that tests reach them without a server.
 */
#ifndef KRAKEN_REST_AUTH_H
#define KRAKEN_REST_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A token file's content is at most this long; more is not a token. */
#define REST_TOKEN_MAX 4096

/* What a Host header may name. */
struct rest_hosts {
	const char *listen_host;     /* api.listen's host: a name, an IPv4
				      * or IPv6 address, brackets or not */
	uint16_t port;               /* the port the server really has */
	char *const *allowed;        /* api.allowed_hosts */
	size_t n_allowed;
};

/* Whether VALUE, a Host header, names this server (rest_auth.c says
 * which names do). */
bool rest_host_allowed(const struct rest_hosts *h, const char *value);

/* The credentials of an Authorization header value "Bearer TOKEN" (the
 * scheme in any case), NULL for a missing header or another scheme. */
const char *rest_bearer(const char *header);

/*
 * Checks GIVEN (NULL: the request has none) against the token in FILE.
 * 0 when it matches, -EACCES when not; when FILE holds no token (NULL,
 * unreadable, empty or longer than REST_TOKEN_MAX) that negative errno
 * instead, whatever was given.
 */
int rest_token_check(const char *file, const char *given);

#endif
