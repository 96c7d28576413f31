/*
 * One scalar value: the checks (each returns NULL when the text is fine,
 * else the reason) and storing the result in struct config at the
 * field the key table names.
 */
#include "config_int.h"

#include "log.h"
#include "nodeid.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *parse_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	/* strtoull alone would accept " 12", "+12" and "-12" (wrapped). */
	if (!isdigit((unsigned char)s[0]))
		return "";
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return "too large";
	if (errno || *end != '\0')
		return "";
	*out = v;
	return NULL;
}

/* A jump past the largest Lamport value a change may carry bounds
 * nothing that the overflow check does not already refuse: such a value
 * is a typo, not a choice. */
static const char *parse_lamport_jump(const char *s, uint64_t *out)
{
	uint64_t v;
	const char *why = parse_u64(s, &v);

	if (why)
		return why;
	if (v > CONFIG_LAMPORT_JUMP_MAX)
		return "at most 2^62 = 4611686018427387904, the largest "
		       "Lamport value a change may carry";
	*out = v;
	return NULL;
}

static const char *parse_port(const char *s, uint16_t *out)
{
	uint64_t v;

	if (parse_u64(s, &v) || v < 1 || v > 65535)
		return "";
	*out = (uint16_t)v;
	return NULL;
}

static const char *parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return NULL;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return NULL;
		}
	}
	return "";
}

static const char *parse_recursive(const char *s, bool *out)
{
	bool v;

	if (parse_bool(s, &v))
		return "";
	if (!v)
		return "not supported: volumes replicate as whole trees";
	*out = v;
	return NULL;
}

static const char *parse_level(const char *s, int *out)
{
	char lower[16];
	enum log_level level;
	size_t i;

	for (i = 0; s[i] && i < sizeof(lower) - 1; i++)
		lower[i] = (char)tolower((unsigned char)s[i]);
	if (s[i])
		return "";
	lower[i] = '\0';
	if (log_level_parse(lower, &level))
		return "";
	*out = (int)level;
	return NULL;
}

static const char *parse_strategy(const char *s, enum config_strategy *out)
{
	if (strcasecmp(s, "timestamp") == 0)
		*out = CONFIG_STRATEGY_TIMESTAMP;
	else if (strcasecmp(s, "lamport") == 0)
		*out = CONFIG_STRATEGY_LAMPORT;
	else
		return "";
	return NULL;
}

static const char *check_node_id_n(const char *s, size_t len)
{
	if (node_id_ok(s, len))
		return NULL;
	/* Node ids end up in file names (conflict copies): no dot dirs. */
	if ((len == 1 && s[0] == '.') || (len == 2 && !memcmp(s, "..", 2)))
		return "\".\" and \"..\" are reserved";
	return "";
}

const char *config_check_node_id(const char *s)
{
	return check_node_id_n(s, strlen(s));
}

static const char *check_name(const char *s)
{
	size_t len = strlen(s);

	if (len < 1 || len > 255)
		return "";
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return "";
	}
	return NULL;
}

static const char *check_driver(const char *s)
{
	size_t len = strlen(s);

	if (len < 1 || len > 64)
		return "";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!islower(c) && !isdigit(c) && c != '.' && c != '_' &&
		    c != '-')
			return "";
	}
	return NULL;
}

static const char *check_address(const char *s)
{
	unsigned char addr[sizeof(struct in6_addr)];

	if (inet_pton(AF_INET, s, addr) == 1 ||
	    inet_pton(AF_INET6, s, addr) == 1)
		return NULL;
	return "";
}

static const char *check_ipv6_n(const char *s, size_t len)
{
	char buf[INET6_ADDRSTRLEN];
	unsigned char addr[sizeof(struct in6_addr)];

	if (len == 0 || len >= sizeof(buf))
		return "invalid IPv6 address";
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET6, buf, addr) != 1)
		return "invalid IPv6 address";
	return NULL;
}

/* A host name (labels of letters, digits, '-', '_') or a dotted IPv4. */
static const char *check_host_n(const char *s, size_t len)
{
	char buf[HOST_NAME_LEN + 1];
	unsigned char addr[sizeof(struct in_addr)];
	size_t label = 0;

	if (len == 0)
		return "missing host";
	if (len > HOST_NAME_LEN)
		return "host name longer than 253 characters";
	if (strspn(s, "0123456789.") >= len) {
		memcpy(buf, s, len);
		buf[len] = '\0';
		return inet_pton(AF_INET, buf, addr) == 1 ?
			NULL : "invalid IPv4 address";
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.' && label > 0) {
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_')
			return "invalid host name";
		if (++label > 63 || (label == 1 && c == '-'))
			return "invalid host name";
	}
	return label > 0 ? NULL : "invalid host name";
}

/* Parses "host[:port]" or "[ipv6][:port]". */
static const char *parse_hostport(const char *s, bool need_port,
				  struct hostport *hp)
{
	const char *port = NULL;
	const char *why;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close)
			return "missing ']' after the IPv6 address";
		hp->host = s + 1;
		hp->host_len = (size_t)(close - s - 1);
		if ((why = check_ipv6_n(hp->host, hp->host_len)))
			return why;
		if (close[1] != '\0' && close[1] != ':')
			return "unexpected text after ']'";
		if (close[1] == ':')
			port = close + 2;
	} else {
		const char *colon = strchr(s, ':');

		if (colon && strchr(colon + 1, ':'))
			return "IPv6 addresses must be written in brackets";
		hp->host = s;
		hp->host_len = colon ? (size_t)(colon - s) : strlen(s);
		if ((why = check_host_n(hp->host, hp->host_len)))
			return why;
		if (colon)
			port = colon + 1;
	}
	hp->port = 0;
	if (!port)
		return need_port ? "missing port" : NULL;
	if (parse_port(port, &hp->port))
		return "the port must be an integer from 1 to 65535";
	return NULL;
}

/* Parses "id:host[:port]"; the id is S up to ID_LEN. */
const char *config_parse_peer(const char *s, size_t *id_len,
			      struct hostport *hp)
{
	const char *colon = strchr(s, ':');

	if (!colon)
		return "missing ':' between the node id and the host";
	*id_len = (size_t)(colon - s);
	if (check_node_id_n(s, *id_len))
		return "invalid node id";
	return parse_hostport(colon + 1, false, hp);
}

/* 0 for "0", otherwise a number with a unit; no unit is a likely mistake. */
int config_parse_duration_ms(const char *text, uint64_t *out_ms)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		      { "h", 3600000 }, { "d", DAY_MS } };
	unsigned long long v;
	char *end;

	if (!text || !isdigit((unsigned char)text[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end == '\0') {
		if (v != 0)
			return -EINVAL;
		*out_ms = 0;
		return 0;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (v > UINT64_MAX / units[i].ms)
			return -EINVAL;
		*out_ms = v * units[i].ms;
		return 0;
	}
	return -EINVAL;
}

/* ---- storing values ---- */

static char *dup_path(const char *s)
{
	char *copy = strdup(s);
	size_t len;

	if (!copy)
		return NULL;
	len = strlen(copy);
	while (len > 1 && copy[len - 1] == '/')
		copy[--len] = '\0';
	return copy;
}

/* Replaces *FIELD by a copy of S; a failed copy is remembered, not said. */
void config_store_string(struct parse *p, char **field, char *copy)
{
	if (!copy) {
		p->nomem = true;
		return;
	}
	free(*field);
	*field = copy;
}

static const char *store_path(struct parse *p, char **field, const char *s,
			      bool socket)
{
	char *copy;

	if (s[0] != '/')
		return "";
	copy = dup_path(s);
	if (copy && socket && strlen(copy) >= SOCKET_PATH_MAX) {
		free(copy);
		return "";
	}
	config_store_string(p, field, copy);
	return NULL;
}

static const char *store_checked(struct parse *p, char **field, const char *s,
				 const char *why)
{
	if (!why)
		config_store_string(p, field, strdup(s));
	return why;
}

static const char *store_listen(struct parse *p, const char *s)
{
	struct hostport hp;
	const char *why = parse_hostport(s, true, &hp);

	if (why)
		return why;
	config_store_string(p, &p->cfg->api_host,
			    strndup(hp.host, hp.host_len));
	p->cfg->api_port = hp.port;
	return NULL;
}

/* "N" bytes with a binary unit (B, KiB, MiB, GiB, TiB), or "N%" of the
 * volume file system (1 to 100). */
static const char *store_capacity(struct parse *p, const char *s)
{
	static const struct { const char *unit; unsigned shift; } units[] = {
		{ "", 0 }, { "B", 0 }, { "KiB", 10 }, { "MiB", 20 },
		{ "GiB", 30 }, { "TiB", 40 },
	};
	char *end;
	unsigned long long n;

	if (s[0] < '0' || s[0] > '9')
		return "";
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno)
		return "";
	if (strcmp(end, "%") == 0) {
		if (n < 1 || n > 100)
			return "";
		p->cfg->versions_max_percent = (unsigned)n;
		p->cfg->versions_max_bytes = 0;
		return NULL;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (n > (UINT64_MAX >> units[i].shift))
			return "";
		p->cfg->versions_max_bytes = (uint64_t)n << units[i].shift;
		p->cfg->versions_max_percent = 0;
		return NULL;
	}
	return "";
}

static const char *store_scalar(struct parse *p, const struct key_def *k,
				const char *s)
{
	void *field = (char *)p->cfg + k->off;

	switch (k->kind) {
	case KIND_LEVEL:
		return parse_level(s, field);
	case KIND_BOOL:
		return parse_bool(s, field);
	case KIND_RECURSIVE:
		return parse_recursive(s, field);
	case KIND_PORT:
		return parse_port(s, field);
	case KIND_RATE:
		return parse_u64(s, field);
	case KIND_LAMPORT_JUMP:
		return parse_lamport_jump(s, field);
	case KIND_DURATION:
		return config_parse_duration_ms(s, field) ? "" : NULL;
	case KIND_STRATEGY:
		return parse_strategy(s, field);
	case KIND_NODE_ID:
		return store_checked(p, field, s, config_check_node_id(s));
	case KIND_NAME:
		return store_checked(p, field, s, check_name(s));
	case KIND_ADDRESS:
		return store_checked(p, field, s, check_address(s));
	case KIND_DRIVER:
		return store_checked(p, field, s, check_driver(s));
	case KIND_PATH:
	case KIND_SOCKET:
		return store_path(p, field, s, k->kind == KIND_SOCKET);
	case KIND_LISTEN:
		return store_listen(p, s);
	case KIND_CAPACITY:
		return store_capacity(p, s);
	default:
		return "";
	}
}

/* The text of a scalar node, or NULL after saying why there is none. */
const char *config_scalar_text(struct parse *p, struct loc at,
			       const char *expect, const yaml_node_t *node)
{
	const char *s = (const char *)node->data.scalar.value;

	if (node->type != YAML_SCALAR_NODE) {
		config_bad_node(p, at, expect, node, NULL);
		return NULL;
	}
	/* A double-quoted "\0" would silently cut every C string after it. */
	if (strlen(s) != node->data.scalar.length) {
		config_bad_node(p, at, expect, node, "contains a NUL byte");
		return NULL;
	}
	return s;
}

bool config_is_null(const yaml_node_t *node)
{
	const char *s = (const char *)node->data.scalar.value;

	if (node->type != YAML_SCALAR_NODE ||
	    node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return !strcmp(s, "") || !strcmp(s, "~") || !strcmp(s, "null") ||
	       !strcmp(s, "Null") || !strcmp(s, "NULL");
}

void config_set_scalar(struct parse *p, enum key_id id,
		       const yaml_node_t *node)
{
	const struct key_def *k = &config_keys[id];
	struct loc at = config_at_line(p, config_node_line(node), k->name);
	const char *s = config_scalar_text(p, at, config_expects[k->kind],
					   node);
	const char *why;

	if (!s) {
		p->bad[id] = true;
		return;
	}
	why = store_scalar(p, k, s);
	if (why) {
		config_bad_node(p, at, config_expects[k->kind], node, why);
		p->bad[id] = true;
		return;
	}
	p->set[id] = true;
}
