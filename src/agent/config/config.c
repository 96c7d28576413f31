/*
 * Configuration loading.
 *
 * The file is read whole, capped at CONFIG_FILE_MAX so that a wrong path
 * (a disk image, /dev/zero) cannot exhaust memory, and composed into a
 * libyaml document.  One walk visits every mapping pair once: the dotted
 * key is looked up in keys[], whose kind says how the value is checked and
 * stored.  Checks that involve several keys (watch paths against
 * volume.root_path, duplicate node ids, this node in the cluster list,
 * the journal's pin limit against its retention) and the defaults derived
 * from other keys run after the walk and after the NODE_ID / CLUSTER_NODES
 * overrides, because YAML does not order keys.
 *
 * Nothing stops at the first problem.  Each one is appended to the
 * caller's config_diag as "FILE:LINE: KEY: message", located where the
 * value came from: a file line, an environment variable, or (for a
 * default) the file as a whole.  A key whose value failed is marked bad so
 * that the cross-checks do not add follow-on noise about it.
 *
 * Aliases are resolved by libyaml (the value is reported at its anchor's
 * line).  The walk only descends into known sections, whose depth is
 * fixed, and list items must be scalars, so neither an alias cycle nor an
 * alias bomb can make it loop or blow up.  A YAML null ("key:" with
 * nothing after it, "~", "null") leaves the default in place, so a section
 * whose keys are all commented out is fine.
 */
#include "config.h"

#include "err.h"
#include "log.h"
#include "nodeid.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

#define CONFIG_FILE_MAX (1024 * 1024)
#define KEY_PART_MAX 64         /* a longer key is unknown, no lookup needed */
#define KEY_FULL_MAX 128        /* a known section plus '.' plus a key part */
#define QUOTE_MAX 96            /* longer values are cut in messages */
#define DEPTH_MAX 32            /* the schema needs 3 */
#define HOST_NAME_LEN 253
#define SOCKET_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)
#define ENV_NODE_ID "NODE_ID"
#define ENV_CLUSTER_NODES "CLUSTER_NODES"
#define DAY_MS UINT64_C(86400000)

enum kind {
	KIND_SECTION,
	KIND_LEVEL,
	KIND_BOOL,
	KIND_RECURSIVE,
	KIND_PORT,
	KIND_RATE,
	KIND_LAMPORT_JUMP,
	KIND_DURATION,
	KIND_STRATEGY,
	KIND_NODE_ID,
	KIND_NAME,
	KIND_ADDRESS,
	KIND_DRIVER,
	KIND_PATH,
	KIND_SOCKET,
	KIND_LISTEN,
	KIND_WATCH_LIST,
	KIND_PATTERN_LIST,
	KIND_PEER_LIST,
	KIND_HOST_LIST,
	KIND_CAPACITY,
};

/* What a value of each kind must look like, as said in messages. */
static const char *const expects[] = {
	[KIND_SECTION] = "a mapping",
	[KIND_LEVEL] = "one of error, warn, info, debug",
	[KIND_BOOL] = "true or false",
	[KIND_RECURSIVE] = "true",
	[KIND_PORT] = "an integer from 1 to 65535",
	[KIND_RATE] = "a non-negative integer",
	[KIND_LAMPORT_JUMP] = "a non-negative integer (0: no bound)",
	[KIND_DURATION] = ("a duration such as \"500ms\", \"30s\", \"2m\", "
			   "\"1h\" or \"30d\""),
	[KIND_STRATEGY] = "timestamp or lamport",
	[KIND_NODE_ID] = "a node id of 1 to 64 characters from A-Z a-z 0-9 . _ -",
	[KIND_NAME] = "a name of 1 to 255 printable characters",
	[KIND_ADDRESS] = "an IPv4 or IPv6 address",
	[KIND_DRIVER] = "a name of 1 to 64 characters from a-z 0-9 . _ -",
	[KIND_PATH] = "an absolute path",
	[KIND_SOCKET] = "an absolute path shorter than 108 bytes",
	[KIND_LISTEN] = "host:port or [ipv6]:port",
	[KIND_WATCH_LIST] = "a list of absolute paths",
	[KIND_PATTERN_LIST] = "a list of patterns",
	[KIND_PEER_LIST] = "a list of \"id:host[:port]\" entries",
	[KIND_HOST_LIST] = "a list of host names",
	[KIND_CAPACITY] = ("a size such as \"500MiB\" or \"20GiB\", or a "
			   "share of the volume file system such as \"10%\""),
};

static const char *const item_expects[] = {
	[KIND_WATCH_LIST] = "an absolute path",
	[KIND_PATTERN_LIST] = "a non-empty pattern",
	[KIND_PEER_LIST] = "\"id:host[:port]\"",
	[KIND_HOST_LIST] = "a host name or address of 1 to 255 bytes, without "
			   "spaces, control characters or a port",
};

enum key_id {
	K_LOG, K_LOG_LEVEL,
	K_FS, K_WATCH_PATHS, K_EXCLUDE, K_RECURSIVE,
	K_SYNC, K_NODE_ID, K_CLUSTER_NODES, K_P2P_PORT, K_LISTEN_ADDRESS,
	K_CLUSTER_ID, K_MAX_CLOCK_SKEW, K_MAX_LAMPORT_JUMP,
	K_BW, K_BW_ENABLE, K_BW_EGRESS, K_BW_INGRESS,
	K_CR, K_CR_STRATEGY, K_CR_TIMEOUT,
	K_TLS, K_TLS_ENABLE, K_TLS_CERT, K_TLS_KEY, K_TLS_CA,
	K_VOLUME, K_ROOT_PATH, K_DRIVER_NAME, K_SCRUB_PERIOD,
	K_JOURNAL, K_JOURNAL_PATH, K_JOURNAL_RETENTION, K_JOURNAL_PIN_MAX,
	K_JOURNAL_REJOIN_WAIT,
	K_VERSIONS, K_VERSIONS_KEEP, K_VERSIONS_MAX_BYTES,
	K_API, K_API_LISTEN, K_API_TOKEN_FILE, K_API_READ_TOKEN_FILE,
	K_API_ALLOWED_HOSTS,
	K_PLUGIN, K_PLUGIN_SOCKET, K_PLUGIN_MOUNT_WAIT,
	N_KEYS
};

#define FIELD(f) offsetof(struct config, f)

static const struct key_def {
	const char *name;
	enum kind kind;
	size_t off;             /* where a scalar kind stores its value */
} keys[N_KEYS] = {
	[K_LOG] = { "log", KIND_SECTION, 0 },
	[K_LOG_LEVEL] = { "log.level", KIND_LEVEL, FIELD(log_level) },
	[K_FS] = { "filesystem", KIND_SECTION, 0 },
	[K_WATCH_PATHS] = { "filesystem.watch_paths", KIND_WATCH_LIST, 0 },
	[K_EXCLUDE] = { "filesystem.exclude_patterns", KIND_PATTERN_LIST, 0 },
	[K_RECURSIVE] = { "filesystem.recursive", KIND_RECURSIVE,
			  FIELD(recursive) },
	[K_SYNC] = { "sync", KIND_SECTION, 0 },
	[K_NODE_ID] = { "sync.node_id", KIND_NODE_ID, FIELD(node_id) },
	[K_CLUSTER_NODES] = { "sync.cluster_nodes", KIND_PEER_LIST, 0 },
	[K_P2P_PORT] = { "sync.p2p_port", KIND_PORT, FIELD(p2p_port) },
	[K_LISTEN_ADDRESS] = { "sync.listen_address", KIND_ADDRESS,
			       FIELD(listen_address) },
	[K_CLUSTER_ID] = { "sync.cluster_id", KIND_NAME, FIELD(cluster_id) },
	[K_MAX_CLOCK_SKEW] = { "sync.max_clock_skew", KIND_DURATION,
			       FIELD(max_clock_skew_ms) },
	[K_MAX_LAMPORT_JUMP] = { "sync.max_lamport_jump", KIND_LAMPORT_JUMP,
				 FIELD(max_lamport_jump) },
	[K_BW] = { "sync.bandwidth", KIND_SECTION, 0 },
	[K_BW_ENABLE] = { "sync.bandwidth.enable", KIND_BOOL,
			  FIELD(bandwidth_enable) },
	[K_BW_EGRESS] = { "sync.bandwidth.egress_bits_per_sec", KIND_RATE,
			  FIELD(egress_bits_per_sec) },
	[K_BW_INGRESS] = { "sync.bandwidth.ingress_bits_per_sec", KIND_RATE,
			   FIELD(ingress_bits_per_sec) },
	[K_CR] = { "sync.conflict_resolution", KIND_SECTION, 0 },
	[K_CR_STRATEGY] = { "sync.conflict_resolution.strategy",
			    KIND_STRATEGY, FIELD(strategy) },
	[K_CR_TIMEOUT] = { "sync.conflict_resolution.timeout", KIND_DURATION,
			   FIELD(conflict_timeout_ms) },
	[K_TLS] = { "sync.tls", KIND_SECTION, 0 },
	[K_TLS_ENABLE] = { "sync.tls.enable", KIND_BOOL, FIELD(tls_enable) },
	[K_TLS_CERT] = { "sync.tls.cert_file", KIND_PATH,
			 FIELD(tls_cert_file) },
	[K_TLS_KEY] = { "sync.tls.key_file", KIND_PATH, FIELD(tls_key_file) },
	[K_TLS_CA] = { "sync.tls.ca_file", KIND_PATH, FIELD(tls_ca_file) },
	[K_VOLUME] = { "volume", KIND_SECTION, 0 },
	[K_ROOT_PATH] = { "volume.root_path", KIND_PATH, FIELD(root_path) },
	[K_DRIVER_NAME] = { "volume.driver_name", KIND_DRIVER,
			    FIELD(driver_name) },
	[K_SCRUB_PERIOD] = { "volume.scrub_period", KIND_DURATION,
			     FIELD(scrub_period_ms) },
	[K_JOURNAL] = { "journal", KIND_SECTION, 0 },
	[K_JOURNAL_PATH] = { "journal.path", KIND_PATH, FIELD(journal_path) },
	[K_JOURNAL_RETENTION] = { "journal.retention", KIND_DURATION,
				  FIELD(journal_retention_ms) },
	[K_JOURNAL_PIN_MAX] = { "journal.retention_pin_max", KIND_DURATION,
				FIELD(journal_retention_pin_max_ms) },
	[K_JOURNAL_REJOIN_WAIT] = { "journal.rejoin_wait", KIND_DURATION,
				    FIELD(journal_rejoin_wait_ms) },
	[K_VERSIONS] = { "versions", KIND_SECTION, 0 },
	[K_VERSIONS_KEEP] = { "versions.keep", KIND_DURATION,
			      FIELD(versions_keep_ms) },
	[K_VERSIONS_MAX_BYTES] = { "versions.max_bytes", KIND_CAPACITY, 0 },
	[K_API] = { "api", KIND_SECTION, 0 },
	[K_API_LISTEN] = { "api.listen", KIND_LISTEN, 0 },
	[K_API_TOKEN_FILE] = { "api.token_file", KIND_PATH,
			       FIELD(api_token_file) },
	[K_API_READ_TOKEN_FILE] = { "api.read_token_file", KIND_PATH,
				    FIELD(api_read_token_file) },
	[K_API_ALLOWED_HOSTS] = { "api.allowed_hosts", KIND_HOST_LIST, 0 },
	[K_PLUGIN] = { "plugin", KIND_SECTION, 0 },
	[K_PLUGIN_SOCKET] = { "plugin.socket", KIND_SOCKET,
			      FIELD(plugin_socket) },
	[K_PLUGIN_MOUNT_WAIT] = { "plugin.mount_wait", KIND_DURATION,
				  FIELD(mount_wait_ms) },
};

static const struct {
	size_t off;
	const char *value;
} default_strings[] = {
	{ FIELD(cluster_id), "krakenfs" },
	{ FIELD(listen_address), "0.0.0.0" },
	{ FIELD(tls_cert_file), "/etc/krakenfs/tls/node.pem" },
	{ FIELD(tls_key_file), "/etc/krakenfs/tls/node-key.pem" },
	{ FIELD(tls_ca_file), "/etc/krakenfs/tls/ca.pem" },
	{ FIELD(root_path), "/var/lib/krakenfs/volumes" },
	{ FIELD(driver_name), "krakenfs" },
	{ FIELD(journal_path), "/var/lib/krakenfs/journal.db" },
	{ FIELD(api_host), "127.0.0.1" },
	{ FIELD(api_token_file), "/etc/krakenfs/api-token" },
	{ FIELD(plugin_socket), "/run/docker/plugins/krakenfs.sock" },
};

/* Where a problem is: "FILE:LINE: KEY: ", each part optional. */
struct loc {
	const char *file;
	unsigned line;
	const char *key;
};

/* Strings taken from one list value, with the line of each (NULL: env). */
struct strlist {
	char **v;
	unsigned *lines;
	size_t n;
};

struct parse {
	const char *file;
	yaml_document_t *doc;
	struct config *cfg;
	struct config_diag *diag;
	unsigned problems;
	bool nomem;
	bool broken;            /* the file's values could not be read at all */
	bool node_env;          /* node_id came from NODE_ID */
	bool peers_env;         /* peers came from CLUSTER_NODES */
	bool seen[N_KEYS];
	bool set[N_KEYS];
	bool bad[N_KEYS];
	unsigned line[N_KEYS];
	unsigned *watch_lines;  /* per cfg->watch_paths entry */
	unsigned *peer_lines;   /* per cfg->peers entry, NULL when not a file */
};

/* ---- diagnostics ---- */

/*
 * The diag struct has no capacity field, so the buffer is always allocated
 * at the next power of two above its length; the capacity follows from len.
 */
static size_t diag_capacity(size_t len)
{
	size_t cap = 256;

	while (cap <= len)
		cap *= 2;
	return cap;
}

static void diag_vappend(struct parse *p, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void diag_vappend(struct parse *p, const char *fmt, va_list ap)
{
	struct config_diag *d = p->diag;
	va_list aq;
	size_t have = d->text ? diag_capacity(d->len) : 0;
	size_t need;
	char *text;
	int n;

	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0)
		return;
	need = d->len + (size_t)n + 1;
	if (need > have) {
		text = realloc(d->text, diag_capacity(need - 1));
		if (!text) {
			p->nomem = true;
			return;
		}
		d->text = text;
	}
	vsnprintf(d->text + d->len, (size_t)n + 1, fmt, ap);
	d->len += (size_t)n;
}

static void diag_append(struct parse *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void diag_append(struct parse *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_vappend(p, fmt, ap);
	va_end(ap);
}

static void problem(struct parse *p, struct loc at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void problem(struct parse *p, struct loc at, const char *fmt, ...)
{
	va_list ap;

	if (at.file && at.line)
		diag_append(p, "%s:%u: ", at.file, at.line);
	else if (at.file)
		diag_append(p, "%s: ", at.file);
	if (at.key)
		diag_append(p, "%s: ", at.key);
	va_start(ap, fmt);
	diag_vappend(p, fmt, ap);
	va_end(ap);
	diag_append(p, "\n");
	p->diag->count++;
	p->problems++;
}

static struct loc at_line(const struct parse *p, unsigned line,
			  const char *key)
{
	return (struct loc){ p->file, line, key };
}

static struct loc at_env(const char *name)
{
	return (struct loc){ NULL, 0, name };
}

/*
 * Writes S as a quoted string for a message, escaping control bytes so
 * that one problem stays one line, and cutting long values.
 */
static const char *quote(char *out, size_t size, const char *s, size_t len)
{
	size_t o = 0;

	out[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (o + 9 > size) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

static unsigned node_line(const yaml_node_t *node)
{
	return (unsigned)node->start_mark.line + 1;
}

static const char *describe(const yaml_node_t *node, char *buf, size_t size)
{
	switch (node->type) {
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SCALAR_NODE:
		if (node->data.scalar.length == 0)
			return "an empty value";
		return quote(buf, size, (const char *)node->data.scalar.value,
			     node->data.scalar.length);
	default:
		return "nothing";
	}
}

static void bad_value(struct parse *p, struct loc at, const char *expect,
		      const char *got, const char *why)
{
	bool detail = why && *why;

	problem(p, at, "expected %s, got %s%s%s%s", expect, got,
		detail ? " (" : "", detail ? why : "", detail ? ")" : "");
}

static void bad_node(struct parse *p, struct loc at, const char *expect,
		     const yaml_node_t *node, const char *why)
{
	char buf[QUOTE_MAX];

	bad_value(p, at, expect, describe(node, buf, sizeof(buf)), why);
}

static void bad_string(struct parse *p, struct loc at, const char *expect,
		       const char *s, const char *why)
{
	char buf[QUOTE_MAX];

	bad_value(p, at, expect, quote(buf, sizeof(buf), s, strlen(s)), why);
}

/* ---- value checks: each returns NULL when fine, else a reason ---- */

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

static const char *check_node_id(const char *s)
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

struct hostport {
	const char *host;       /* points into the parsed text */
	size_t host_len;
	uint16_t port;          /* 0 when the text names none */
};

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
static const char *parse_peer(const char *s, size_t *id_len,
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
static void store_string(struct parse *p, char **field, char *copy)
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
	store_string(p, field, copy);
	return NULL;
}

static const char *store_checked(struct parse *p, char **field, const char *s,
				 const char *why)
{
	if (!why)
		store_string(p, field, strdup(s));
	return why;
}

static const char *store_listen(struct parse *p, const char *s)
{
	struct hostport hp;
	const char *why = parse_hostport(s, true, &hp);

	if (why)
		return why;
	store_string(p, &p->cfg->api_host, strndup(hp.host, hp.host_len));
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
		return store_checked(p, field, s, check_node_id(s));
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
static const char *scalar_text(struct parse *p, struct loc at,
			       const char *expect, const yaml_node_t *node)
{
	const char *s = (const char *)node->data.scalar.value;

	if (node->type != YAML_SCALAR_NODE) {
		bad_node(p, at, expect, node, NULL);
		return NULL;
	}
	/* A double-quoted "\0" would silently cut every C string after it. */
	if (strlen(s) != node->data.scalar.length) {
		bad_node(p, at, expect, node, "contains a NUL byte");
		return NULL;
	}
	return s;
}

static bool is_null(const yaml_node_t *node)
{
	const char *s = (const char *)node->data.scalar.value;

	if (node->type != YAML_SCALAR_NODE ||
	    node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return !strcmp(s, "") || !strcmp(s, "~") || !strcmp(s, "null") ||
	       !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static void set_scalar(struct parse *p, enum key_id id, const yaml_node_t *node)
{
	const struct key_def *k = &keys[id];
	struct loc at = at_line(p, node_line(node), k->name);
	const char *s = scalar_text(p, at, expects[k->kind], node);
	const char *why;

	if (!s) {
		p->bad[id] = true;
		return;
	}
	why = store_scalar(p, k, s);
	if (why) {
		bad_node(p, at, expects[k->kind], node, why);
		p->bad[id] = true;
		return;
	}
	p->set[id] = true;
}

/* ---- lists ---- */

static void strlist_release(struct strlist *l)
{
	for (size_t i = 0; l->v && i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	free(l->lines);
	*l = (struct strlist){ 0 };
}

static bool strlist_alloc(struct parse *p, struct strlist *l, size_t cap,
			  bool with_lines)
{
	l->n = 0;
	l->v = calloc(cap ? cap : 1, sizeof(*l->v));
	l->lines = with_lines ? calloc(cap ? cap : 1, sizeof(*l->lines)) : NULL;
	if (!l->v || (with_lines && !l->lines)) {
		strlist_release(l);
		p->nomem = true;
		return false;
	}
	return true;
}

/* Takes the scalar items of SEQ; items that are not strings are reported. */
static bool collect(struct parse *p, enum key_id id, const yaml_node_t *seq,
		    struct strlist *out)
{
	const struct key_def *k = &keys[id];
	yaml_node_item_t *item;

	if (seq->type != YAML_SEQUENCE_NODE) {
		bad_node(p, at_line(p, node_line(seq), k->name),
			 expects[k->kind], seq, NULL);
		p->bad[id] = true;
		return false;
	}
	if (!strlist_alloc(p, out, (size_t)(seq->data.sequence.items.top -
					    seq->data.sequence.items.start),
			   true))
		return false;
	for (item = seq->data.sequence.items.start;
	     item < seq->data.sequence.items.top; item++) {
		yaml_node_t *node = yaml_document_get_node(p->doc, *item);
		struct loc at = at_line(p, node_line(node), k->name);
		const char *s = scalar_text(p, at, item_expects[k->kind], node);

		if (!s) {
			p->bad[id] = true;
			continue;
		}
		out->v[out->n] = strdup(s);
		if (!out->v[out->n]) {
			p->nomem = true;
			continue;
		}
		out->lines[out->n++] = node_line(node);
	}
	return true;
}

static struct loc item_loc(const struct parse *p, const struct strlist *l,
			   size_t i, enum key_id id, const char *env)
{
	if (!l->lines)
		return at_env(env);
	return at_line(p, l->lines[i], keys[id].name);
}

/*
 * Keeps the items that pass CHECK (compacting the list) and reports the
 * others; dup_path also strips trailing slashes from path items.
 */
static void filter(struct parse *p, enum key_id id, struct strlist *l,
		   const char *(*check)(const char *))
{
	size_t kept = 0;

	for (size_t i = 0; i < l->n; i++) {
		const char *why = check(l->v[i]);

		if (why) {
			bad_string(p, item_loc(p, l, i, id, NULL),
				   item_expects[keys[id].kind], l->v[i], why);
			p->bad[id] = true;
			free(l->v[i]);
			continue;
		}
		l->v[kept] = l->v[i];
		l->lines[kept++] = l->lines[i];
	}
	l->n = kept;
}

static const char *check_absolute(const char *s)
{
	return s[0] == '/' ? NULL : "";
}

static const char *check_pattern(const char *s)
{
	return s[0] ? NULL : "";
}

/*
 * An extra name the REST server accepts in Host.  The port is always
 * api.listen's, so an entry with one could never match: refused rather
 * than ignored.  A ':' is only allowed inside an IPv6 address.
 */
static const char *check_allowed_host(const char *s)
{
	size_t len = strlen(s);
	char v6[INET6_ADDRSTRLEN];
	unsigned char addr[sizeof(struct in6_addr)];

	if (len < 1 || len > CONFIG_ALLOWED_HOST_LEN)
		return "";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c == 0x7f)
			return "";
	}
	if (!strchr(s, ':'))
		return NULL;
	if (s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
	}
	if (len >= sizeof(v6))
		return "";
	memcpy(v6, s, len);
	v6[len] = '\0';
	return inet_pton(AF_INET6, v6, addr) == 1 ? NULL : "";
}

static void strip_slashes(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		size_t len = strlen(l->v[i]);

		while (len > 1 && l->v[i][len - 1] == '/')
			l->v[i][--len] = '\0';
	}
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static void free_peers(struct config_peer *peers, size_t n)
{
	for (size_t i = 0; peers && i < n; i++) {
		free(peers[i].id);
		free(peers[i].host);
	}
	free(peers);
}

static void set_watch_paths(struct parse *p, struct strlist *l)
{
	filter(p, K_WATCH_PATHS, l, check_absolute);
	strip_slashes(l);
	free_strv(p->cfg->watch_paths, p->cfg->n_watch_paths);
	free(p->watch_lines);
	p->cfg->watch_paths = l->v;
	p->cfg->n_watch_paths = l->n;
	p->watch_lines = l->lines;
	*l = (struct strlist){ 0 };
}

static void set_allowed_hosts(struct parse *p, struct strlist *l)
{
	char want[32], got[32];

	filter(p, K_API_ALLOWED_HOSTS, l, check_allowed_host);
	if (l->n > CONFIG_ALLOWED_HOSTS_MAX) {
		snprintf(want, sizeof(want), "at most %d host names",
			 CONFIG_ALLOWED_HOSTS_MAX);
		snprintf(got, sizeof(got), "%zu entries", l->n);
		bad_value(p, at_line(p, p->line[K_API_ALLOWED_HOSTS],
				     keys[K_API_ALLOWED_HOSTS].name),
			  want, got, NULL);
		p->bad[K_API_ALLOWED_HOSTS] = true;
		return;
	}
	free_strv(p->cfg->api_allowed_hosts, p->cfg->n_api_allowed_hosts);
	p->cfg->api_allowed_hosts = l->v;
	p->cfg->n_api_allowed_hosts = l->n;
	free(l->lines);
	*l = (struct strlist){ 0 };
}

static void set_patterns(struct parse *p, struct strlist *l)
{
	filter(p, K_EXCLUDE, l, check_pattern);
	free_strv(p->cfg->exclude_patterns, p->cfg->n_exclude_patterns);
	p->cfg->exclude_patterns = l->v;
	p->cfg->n_exclude_patterns = l->n;
	free(l->lines);
	*l = (struct strlist){ 0 };
}

/*
 * Turns "id:host[:port]" strings into cfg->peers, replacing what was
 * there; ENV names the variable when the list came from the environment.
 */
static void set_peers(struct parse *p, struct strlist *l, const char *env)
{
	struct config_peer *peers = calloc(l->n ? l->n : 1, sizeof(*peers));
	size_t n = 0;

	if (!peers) {
		p->nomem = true;
		return;
	}
	for (size_t i = 0; i < l->n; i++) {
		struct hostport hp;
		size_t id_len;
		const char *why = parse_peer(l->v[i], &id_len, &hp);

		if (why) {
			bad_string(p, item_loc(p, l, i, K_CLUSTER_NODES, env),
				   item_expects[KIND_PEER_LIST], l->v[i], why);
			p->bad[K_CLUSTER_NODES] = true;
			continue;
		}
		peers[n].id = strndup(l->v[i], id_len);
		peers[n].host = strndup(hp.host, hp.host_len);
		peers[n].port = hp.port;
		if (l->lines)
			l->lines[n] = l->lines[i];
		if (!peers[n].id || !peers[n].host)
			p->nomem = true;
		n++;
	}
	free_peers(p->cfg->peers, p->cfg->n_peers);
	free(p->peer_lines);
	p->cfg->peers = peers;
	p->cfg->n_peers = n;
	p->peer_lines = l->lines;
	l->lines = NULL;
}

static void set_list(struct parse *p, enum key_id id, const yaml_node_t *node)
{
	struct strlist l = { 0 };

	if (!collect(p, id, node, &l))
		return;
	switch (keys[id].kind) {
	case KIND_WATCH_LIST:
		set_watch_paths(p, &l);
		break;
	case KIND_PATTERN_LIST:
		set_patterns(p, &l);
		break;
	case KIND_HOST_LIST:
		set_allowed_hosts(p, &l);
		break;
	default:
		set_peers(p, &l, NULL);
		break;
	}
	p->set[id] = true;
	strlist_release(&l);
}

/* ---- the walk ---- */

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[KEY_FULL_MAX + 1];

	if (lb > KEY_FULL_MAX)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (tolower((unsigned char)a[i - 1]) !=
					      tolower((unsigned char)b[j - 1]));

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static const char *leaf(const char *name)
{
	const char *dot = strrchr(name, '.');

	return dot ? dot + 1 : name;
}

/*
 * The known key NAME was most likely meant to be: a near spelling, or
 * else the same last part in another section (sync.level -> log.level).
 */
static const char *suggest(const char *name)
{
	size_t len = strlen(name), best = SIZE_MAX;
	const char *hint = NULL;

	for (int i = 0; i < N_KEYS; i++) {
		size_t klen = strlen(keys[i].name);
		size_t limit = klen > 4 ? klen / 4 : 1;
		size_t d;

		/* Cheap bound first: a 1 MiB file may hold many bad keys. */
		if ((len > klen ? len - klen : klen - len) > limit)
			continue;
		d = edit_distance(name, keys[i].name);
		if (d <= limit && d < best) {
			best = d;
			hint = keys[i].name;
		}
	}
	for (int i = 0; !hint && i < N_KEYS; i++) {
		if (!strcasecmp(leaf(name), leaf(keys[i].name)))
			hint = keys[i].name;
	}
	return hint;
}

static bool plain_key(const char *key, size_t len)
{
	if (len == 0 || len > KEY_PART_MAX || strlen(key) != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!isgraph((unsigned char)key[i]))
			return false;
	}
	return true;
}

static int find_key(const char *name)
{
	for (int i = 0; i < N_KEYS; i++) {
		if (!strcmp(keys[i].name, name))
			return i;
	}
	return -1;
}

static void unknown_key(struct parse *p, const char *prefix, const char *key,
			size_t len, unsigned line, bool plain)
{
	char shown[KEY_FULL_MAX + QUOTE_MAX];
	char q[QUOTE_MAX];
	const char *hint;

	snprintf(shown, sizeof(shown), "%s%s%s", prefix, *prefix ? "." : "",
		 plain ? key : quote(q, sizeof(q), key, len));
	hint = plain ? suggest(shown) : NULL;
	if (hint && !strcmp(hint, shown))
		problem(p, at_line(p, line, shown),
			"unknown key (a dotted name must be written as nested mappings)");
	else if (hint)
		problem(p, at_line(p, line, shown),
			"unknown key, did you mean %s?", hint);
	else
		problem(p, at_line(p, line, shown), "unknown key");
}

static void walk_mapping(struct parse *p, const yaml_node_t *map,
			 const char *prefix);

static void walk_value(struct parse *p, enum key_id id, const yaml_node_t *node)
{
	switch (keys[id].kind) {
	case KIND_SECTION:
		if (node->type == YAML_MAPPING_NODE) {
			walk_mapping(p, node, keys[id].name);
			break;
		}
		bad_node(p, at_line(p, node_line(node), keys[id].name),
			 expects[KIND_SECTION], node, NULL);
		break;
	case KIND_WATCH_LIST:
	case KIND_PATTERN_LIST:
	case KIND_PEER_LIST:
	case KIND_HOST_LIST:
		set_list(p, id, node);
		break;
	default:
		set_scalar(p, id, node);
		break;
	}
}

static void walk_pair(struct parse *p, const char *prefix,
		      const yaml_node_t *key, const yaml_node_t *value)
{
	char name[KEY_FULL_MAX];
	const char *s = (const char *)key->data.scalar.value;
	size_t len = key->data.scalar.length;
	unsigned line = node_line(key);
	bool plain;
	int id = -1;

	if (key->type != YAML_SCALAR_NODE) {
		bad_node(p, at_line(p, line, *prefix ? prefix : NULL),
			 "a key name", key, NULL);
		return;
	}
	plain = plain_key(s, len);
	if (plain && !memchr(s, '.', len)) {
		snprintf(name, sizeof(name), "%s%s%s", prefix,
			 *prefix ? "." : "", s);
		id = find_key(name);
	}
	if (id < 0) {
		unknown_key(p, prefix, s, len, line, plain);
		return;
	}
	if (p->seen[id]) {
		problem(p, at_line(p, line, keys[id].name),
			"duplicate key (first at line %u)", p->line[id]);
		return;
	}
	p->seen[id] = true;
	p->line[id] = line;
	if (!is_null(value))
		walk_value(p, (enum key_id)id, value);
}

static void walk_mapping(struct parse *p, const yaml_node_t *map,
			 const char *prefix)
{
	yaml_node_pair_t *pair;

	for (pair = map->data.mapping.pairs.start;
	     pair < map->data.mapping.pairs.top; pair++)
		walk_pair(p, prefix, yaml_document_get_node(p->doc, pair->key),
			  yaml_document_get_node(p->doc, pair->value));
}

/* ---- the file ---- */

static unsigned line_at_offset(const char *buf, size_t len, size_t offset)
{
	unsigned line = 1;

	for (size_t i = 0; i < offset && i < len; i++)
		line += buf[i] == '\n';
	return line;
}

static void yaml_problem(struct parse *p, const yaml_parser_t *y,
			 const char *buf, size_t len)
{
	const char *what = y->problem ? y->problem : "unknown problem";
	unsigned line;

	if (y->error == YAML_MEMORY_ERROR) {
		p->nomem = true;
		return;
	}
	/* The reader (encoding) stage knows only a byte offset. */
	if (y->error == YAML_READER_ERROR)
		line = line_at_offset(buf, len, y->problem_offset);
	else
		line = (unsigned)y->problem_mark.line + 1;
	if (y->context)
		problem(p, at_line(p, line, NULL),
			"invalid yaml: %s (%s at line %u)", what, y->context,
			(unsigned)y->context_mark.line + 1);
	else
		problem(p, at_line(p, line, NULL), "invalid yaml: %s", what);
}

static void walk_root(struct parse *p, const yaml_node_t *root)
{
	if (is_null(root))
		return;
	if (root->type != YAML_MAPPING_NODE) {
		bad_node(p, at_line(p, node_line(root), NULL),
			 "a mapping of sections at the top level", root, NULL);
		p->broken = true;
		return;
	}
	walk_mapping(p, root, "");
}

static void check_single_document(struct parse *p, yaml_parser_t *y,
				  const char *buf, size_t len)
{
	yaml_document_t doc;

	if (!yaml_parser_load(y, &doc)) {
		yaml_problem(p, y, buf, len);
		return;
	}
	if (yaml_document_get_root_node(&doc))
		problem(p, at_line(p, (unsigned)doc.start_mark.line + 1, NULL),
			"expected one yaml document, got a second one");
	yaml_document_delete(&doc);
}

static bool nesting_event(const yaml_event_t *ev, unsigned *depth)
{
	switch (ev->type) {
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		return ++*depth <= DEPTH_MAX;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		--*depth;
		return true;
	default:
		return true;
	}
}

/*
 * libyaml's scanner does work in proportion to the nesting depth for every
 * token, so a megabyte of '[' takes minutes to compose.  This pass over
 * the events stops at the first collection nested too deep (or the first
 * syntax error) before any document is built.
 */
static bool check_syntax(struct parse *p, const char *buf, size_t len)
{
	yaml_parser_t y;
	yaml_event_t ev;
	unsigned depth = 0;
	bool ok = true, end = false;

	if (!yaml_parser_initialize(&y)) {
		p->nomem = true;
		return false;
	}
	yaml_parser_set_input_string(&y, (const unsigned char *)buf, len);
	while (ok && !end) {
		if (!yaml_parser_parse(&y, &ev)) {
			yaml_problem(p, &y, buf, len);
			ok = false;
			break;
		}
		end = ev.type == YAML_STREAM_END_EVENT;
		if (!nesting_event(&ev, &depth)) {
			problem(p, at_line(p, (unsigned)ev.start_mark.line + 1,
					   NULL),
				"expected at most %d levels of nesting, got more",
				DEPTH_MAX);
			ok = false;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&y);
	return ok;
}

static void parse_text(struct parse *p, const char *buf, size_t len)
{
	yaml_parser_t y;
	yaml_document_t doc;
	yaml_node_t *root;

	if (!check_syntax(p, buf, len)) {
		p->broken = true;
		return;
	}
	if (!yaml_parser_initialize(&y)) {
		p->nomem = true;
		return;
	}
	yaml_parser_set_input_string(&y, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&y, &doc)) {
		yaml_problem(p, &y, buf, len);
		p->broken = true;
		goto out;
	}
	root = yaml_document_get_root_node(&doc);
	p->doc = &doc;
	if (root)
		walk_root(p, root);
	p->doc = NULL;
	yaml_document_delete(&doc);
	if (root)
		check_single_document(p, &y, buf, len);
out:
	yaml_parser_delete(&y);
}

/* Reads at most CONFIG_FILE_MAX bytes; -EFBIG when there are more. */
static int read_capped(const char *path, char **out, size_t *out_len)
{
	char *buf = NULL;
	size_t len = 0;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	while (len <= CONFIG_FILE_MAX) {
		ssize_t n = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > CONFIG_FILE_MAX)
		ret = -EFBIG;
out:
	close(fd);
	if (ret) {
		free(buf);
		return ret;
	}
	*out = buf;
	*out_len = len;
	return 0;
}

/* Returns -errno only when the file cannot be read at all. */
static int load_file(struct parse *p, const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	int ret = read_capped(path, &buf, &len);

	if (ret == -EFBIG) {
		problem(p, at_line(p, 0, NULL), "file is larger than 1 MiB");
		p->broken = true;
		return 0;
	}
	if (ret == -ENOMEM) {
		p->nomem = true;
		return 0;
	}
	if (ret) {
		problem(p, at_line(p, 0, NULL), "cannot read: %s",
			strerror(-ret));
		return ret;
	}
	parse_text(p, buf, len);
	free(buf);
	return 0;
}

/* ---- environment, derived defaults, cross-checks ---- */

static void env_node_id(struct parse *p, const char *s)
{
	const char *why = check_node_id(s);

	if (why) {
		bad_string(p, at_env(ENV_NODE_ID), expects[KIND_NODE_ID], s,
			   why);
		p->bad[K_NODE_ID] = true;
		return;
	}
	store_string(p, &p->cfg->node_id, strdup(s));
	p->node_env = true;
}

static void env_cluster_nodes(struct parse *p, const char *s)
{
	struct strlist l = { 0 };
	size_t cap = 1;

	for (const char *c = s; *c; c++)
		cap += *c == ',';
	if (!strlist_alloc(p, &l, cap, false))
		return;
	for (const char *item = s; item; ) {
		const char *comma = strchr(item, ',');
		const char *end = comma ? comma : item + strlen(item);

		while (item < end && isspace((unsigned char)*item))
			item++;
		while (end > item && isspace((unsigned char)end[-1]))
			end--;
		l.v[l.n] = strndup(item, (size_t)(end - item));
		if (!l.v[l.n]) {
			p->nomem = true;
			goto out;
		}
		l.n++;
		item = comma ? comma + 1 : NULL;
	}
	set_peers(p, &l, ENV_CLUSTER_NODES);
	p->peers_env = true;
out:
	strlist_release(&l);
}

/* An empty variable counts as unset, as systemd and shells often pass it. */
static void apply_env(struct parse *p, const char *node_id,
		      const char *cluster_nodes)
{
	if (node_id && *node_id)
		env_node_id(p, node_id);
	if (cluster_nodes && *cluster_nodes)
		env_cluster_nodes(p, cluster_nodes);
}

/* The short host name, with characters a node id cannot hold as '-'. */
static char *hostname_node_id(void)
{
	char host[256];
	size_t len;

	if (gethostname(host, sizeof(host) - 1) != 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	len = strcspn(host, ".");
	if (len > CONFIG_NODE_ID_MAX)
		len = CONFIG_NODE_ID_MAX;
	host[len] = '\0';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)host[i];

		if (!isalnum(c) && c != '_' && c != '-')
			host[i] = '-';
	}
	return strdup(len ? host : "localhost");
}

static int defaults_base(struct config **out)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	int ret = -ENOMEM;

	*out = NULL;
	if (!cfg)
		return -ENOMEM;
	cfg->log_level = LOG_INFO;
	cfg->recursive = true;
	cfg->p2p_port = 6881;
	cfg->strategy = CONFIG_STRATEGY_TIMESTAMP;
	cfg->conflict_timeout_ms = 30000;
	cfg->max_clock_skew_ms = 30000;
	cfg->max_lamport_jump = CONFIG_LAMPORT_JUMP_DEFAULT;
	cfg->mount_wait_ms = 10000;
	cfg->journal_retention_ms = 30 * DAY_MS;
	cfg->journal_retention_pin_max_ms = 90 * DAY_MS;
	cfg->journal_rejoin_wait_ms = 10 * 60 * 1000;
	cfg->versions_keep_ms = 7 * DAY_MS;
	cfg->versions_max_percent = 10;
	cfg->scrub_period_ms = 7 * DAY_MS;
	cfg->api_port = 6882;
	for (size_t i = 0; i < sizeof(default_strings) /
			       sizeof(default_strings[0]); i++) {
		char **field = (char **)((char *)cfg + default_strings[i].off);

		*field = strdup(default_strings[i].value);
		if (!*field)
			goto out;
	}
	cfg->node_id = hostname_node_id();
	if (!cfg->node_id)
		goto out;
	*out = cfg;
	cfg = NULL;
	ret = 0;
out:
	config_free(cfg);
	return ret;
}

/* Defaults that follow other keys, filled in once those are final. */
static int derive_defaults(struct config *cfg)
{
	if (cfg->n_watch_paths == 0) {
		free(cfg->watch_paths);
		cfg->watch_paths = calloc(1, sizeof(*cfg->watch_paths));
		if (!cfg->watch_paths)
			return -ENOMEM;
		cfg->watch_paths[0] = strdup(cfg->root_path);
		if (!cfg->watch_paths[0])
			return -ENOMEM;
		cfg->n_watch_paths = 1;
	}
	if (cfg->n_peers == 0) {
		free(cfg->peers);
		cfg->peers = calloc(1, sizeof(*cfg->peers));
		if (!cfg->peers)
			return -ENOMEM;
		cfg->n_peers = 1;
		cfg->peers[0].id = strdup(cfg->node_id);
		cfg->peers[0].host = strdup("127.0.0.1");
		if (!cfg->peers[0].id || !cfg->peers[0].host)
			return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_peers; i++) {
		if (cfg->peers[i].port == 0)
			cfg->peers[i].port = cfg->p2p_port;
	}
	return 0;
}

static bool directly_under(const char *root, const char *path)
{
	size_t len = strlen(root);
	const char *name;

	if (!strcmp(root, path))
		return true;
	if (len == 1)
		name = path + 1;
	else if (!strncmp(path, root, len) && path[len] == '/')
		name = path + len + 1;
	else
		return false;
	return *name && !strchr(name, '/') && strcmp(name, ".") &&
	       strcmp(name, "..");
}

static void check_watch_paths(struct parse *p)
{
	const struct config *cfg = p->cfg;
	char expect[QUOTE_MAX + 64];
	char q[QUOTE_MAX];

	if (!p->set[K_WATCH_PATHS] || !p->watch_lines || p->bad[K_ROOT_PATH])
		return;
	snprintf(expect, sizeof(expect),
		 "volume.root_path (%s) or a directory directly under it",
		 quote(q, sizeof(q), cfg->root_path, strlen(cfg->root_path)));
	for (size_t i = 0; i < cfg->n_watch_paths; i++) {
		if (directly_under(cfg->root_path, cfg->watch_paths[i]))
			continue;
		bad_string(p, at_line(p, p->watch_lines[i],
				      keys[K_WATCH_PATHS].name),
			   expect, cfg->watch_paths[i], NULL);
	}
}

struct id_ref {
	const char *id;
	size_t index;
};

static int id_ref_cmp(const void *a, const void *b)
{
	const struct id_ref *x = a, *y = b;
	int c = strcmp(x->id, y->id);

	if (c)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

static void report_duplicate(struct parse *p, size_t i, size_t first)
{
	const char *id = p->cfg->peers[i].id;
	char q[QUOTE_MAX];

	quote(q, sizeof(q), id, strlen(id));
	if (p->peers_env)
		problem(p, at_env(ENV_CLUSTER_NODES),
			"duplicate node id %s", q);
	else
		problem(p, at_line(p, p->peer_lines[i],
				   keys[K_CLUSTER_NODES].name),
			"duplicate node id %s (first at line %u)", q,
			p->peer_lines[first]);
}

/* Sorted, so that a long list costs n log n; reported in list order. */
static void check_duplicate_peers(struct parse *p)
{
	size_t n = p->cfg->n_peers;
	struct id_ref *refs;
	size_t *first;

	if (n < 2 || (!p->peers_env && !p->peer_lines))
		return;
	refs = calloc(n, sizeof(*refs));
	first = calloc(n, sizeof(*first));
	if (!refs || !first) {
		p->nomem = true;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		refs[i] = (struct id_ref){ p->cfg->peers[i].id, i };
	qsort(refs, n, sizeof(*refs), id_ref_cmp);
	for (size_t i = 0, head = 0; i < n; i++) {
		if (strcmp(refs[i].id, refs[head].id))
			head = i;
		first[refs[i].index] = refs[head].index;
	}
	for (size_t i = 0; i < n; i++) {
		if (first[i] != i)
			report_duplicate(p, i, first[i]);
	}
out:
	free(refs);
	free(first);
}

static void check_self_listed(struct parse *p)
{
	const char *list = p->peers_env ? ENV_CLUSTER_NODES :
					  keys[K_CLUSTER_NODES].name;
	char expect[64];
	struct loc at;

	if (p->broken || p->bad[K_NODE_ID] || p->bad[K_CLUSTER_NODES] ||
	    config_self(p->cfg))
		return;
	snprintf(expect, sizeof(expect), "a node id listed in %s", list);
	if (p->node_env)
		at = at_env(ENV_NODE_ID);
	else
		at = at_line(p, p->line[K_NODE_ID], keys[K_NODE_ID].name);
	bad_string(p, at, expect, p->cfg->node_id,
		   p->node_env || p->set[K_NODE_ID] ? NULL :
		   "the host name; set sync.node_id or NODE_ID");
}

/* A Mount that waits longer than Docker waits for its plugin fails the
 * container instead of starting it late. */
static void check_mount_wait(struct parse *p)
{
	char got[32];

	if (p->bad[K_PLUGIN_MOUNT_WAIT] ||
	    p->cfg->mount_wait_ms <= CONFIG_MOUNT_WAIT_MAX_MS)
		return;
	snprintf(got, sizeof(got), "%llu ms",
		 (unsigned long long)p->cfg->mount_wait_ms);
	bad_value(p, at_line(p, p->line[K_PLUGIN_MOUNT_WAIT],
			     keys[K_PLUGIN_MOUNT_WAIT].name),
		  "a duration of at most 60s", got,
		  "Docker gives up on a plugin call after about a minute");
}

/* Writes MS in the largest unit that holds it exactly: "30d", "36h". */
static const char *format_duration(char *out, size_t size, uint64_t ms)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = { { "d", DAY_MS }, { "h", 3600000 }, { "m", 60000 },
		      { "s", 1000 }, { "ms", 1 } };
	size_t i = 0;

	if (ms == 0) {
		snprintf(out, size, "0");
		return out;
	}
	while (ms % units[i].ms)
		i++;
	snprintf(out, size, "%llu%s", (unsigned long long)(ms / units[i].ms),
		 units[i].unit);
	return out;
}

/*
 * A peer that stops answering holds compaction back for at most the pin
 * limit; below the retention it would lose history it has not seen yet
 * sooner than the retention promises.  Retention 0 never compacts, so the
 * limit does not matter then.
 */
static void check_retention(struct parse *p)
{
	const struct config *cfg = p->cfg;
	uint64_t retention = cfg->journal_retention_ms;
	uint64_t pin_max = cfg->journal_retention_pin_max_ms;
	char want[96], why[160], ret[32], got[32];

	if (p->bad[K_JOURNAL_RETENTION] || p->bad[K_JOURNAL_PIN_MAX] ||
	    retention == 0 || pin_max >= retention)
		return;
	format_duration(ret, sizeof(ret), retention);
	snprintf(want, sizeof(want),
		 "a duration of at least journal.retention (%s)", ret);
	if (pin_max == 0)
		snprintf(why, sizeof(why), "0 would let a peer that is down "
			 "for a moment lose its place");
	else if (!p->set[K_JOURNAL_PIN_MAX])
		snprintf(why, sizeof(why), "the default; set "
			 "journal.retention_pin_max to at least %s, or lower "
			 "journal.retention", ret);
	else
		snprintf(why, sizeof(why), "raise it to at least %s, or lower "
			 "journal.retention", ret);
	bad_value(p, at_line(p, p->line[K_JOURNAL_PIN_MAX],
			     keys[K_JOURNAL_PIN_MAX].name),
		  want, format_duration(got, sizeof(got), pin_max), why);
}

static void finish(struct parse *p)
{
	if (derive_defaults(p->cfg)) {
		p->nomem = true;
		return;
	}
	check_watch_paths(p);
	check_duplicate_peers(p);
	check_self_listed(p);
	check_mount_wait(p);
	check_retention(p);
}

/* ---- public ---- */

int config_defaults(struct config **out)
{
	int ret = defaults_base(out);

	if (ret == 0 && (ret = derive_defaults(*out)) != 0) {
		config_free(*out);
		*out = NULL;
	}
	return ret;
}

int config_load(const char *path, const char *env_node_id,
		const char *env_cluster_nodes, struct config **out,
		struct config_diag *diag)
{
	struct config_diag scratch = { 0 };
	struct parse p = { .file = path, .diag = diag ? diag : &scratch };
	int ret;

	*out = NULL;
	ret = defaults_base(&p.cfg);
	if (ret)
		goto out;
	if (path) {
		ret = load_file(&p, path);
		if (ret)
			goto out;
	}
	apply_env(&p, env_node_id, env_cluster_nodes);
	if (!p.nomem)
		finish(&p);
	if (p.nomem)
		ret = -ENOMEM;
	else if (p.problems)
		ret = KR_ECONFIG;
	if (ret == 0) {
		*out = p.cfg;
		p.cfg = NULL;
	}
out:
	config_free(p.cfg);
	free(p.watch_lines);
	free(p.peer_lines);
	config_diag_release(&scratch);
	return ret;
}

const struct config_peer *config_self(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_peers; i++) {
		if (!strcmp(cfg->peers[i].id, cfg->node_id))
			return &cfg->peers[i];
	}
	return NULL;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free_strv(cfg->watch_paths, cfg->n_watch_paths);
	free_strv(cfg->exclude_patterns, cfg->n_exclude_patterns);
	free_peers(cfg->peers, cfg->n_peers);
	free(cfg->node_id);
	free(cfg->cluster_id);
	free(cfg->listen_address);
	free(cfg->tls_cert_file);
	free(cfg->tls_key_file);
	free(cfg->tls_ca_file);
	free(cfg->root_path);
	free(cfg->driver_name);
	free(cfg->journal_path);
	free(cfg->api_host);
	free(cfg->api_token_file);
	free(cfg->api_read_token_file);
	free_strv(cfg->api_allowed_hosts, cfg->n_api_allowed_hosts);
	free(cfg->plugin_socket);
	free(cfg);
}

void config_diag_release(struct config_diag *diag)
{
	if (!diag)
		return;
	free(diag->text);
	*diag = (struct config_diag){ 0 };
}
