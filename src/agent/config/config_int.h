/*
 * Shared by the configuration's files only, never by its users (they see
 * config.h): the key table, the state of one load, and the functions the
 * files call across.  Where each part lives:
 *
 *   config.c         config_load and the rest of config.h: defaults, the
 *                    NODE_ID / CLUSTER_NODES overrides, the load's order
 *   config_keys.c    every known key, its kind and where it is stored
 *   config_yaml.c    reading the file: syntax, the walk over its keys
 *   config_values.c  checking and storing one scalar value
 *   config_lists.c   list values (watch paths, patterns, peers, hosts)
 *   config_check.c   checks across keys, once every value is known
 *   config_diag.c    the "FILE:LINE: KEY: message" lines
 */
#ifndef KRAKEN_CONFIG_INT_H
#define KRAKEN_CONFIG_INT_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>
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
	N_KIND
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

struct key_def {
	const char *name;
	enum kind kind;
	size_t off;             /* where a scalar kind stores its value */
};

/* Indexed by enum key_id; names are dotted ("sync.p2p_port"). */
extern const struct key_def config_keys[N_KEYS];
/* What a value of each kind must look like, and an item of each list
 * kind, as said in messages. */
extern const char *const config_expects[N_KIND];
extern const char *const config_item_expects[N_KIND];

struct hostport {
	const char *host;       /* points into the parsed text */
	size_t host_len;
	uint16_t port;          /* 0 when the text names none */
};

/* config_diag.c */
void config_problem(struct parse *p, struct loc at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
struct loc config_at_line(const struct parse *p, unsigned line,
			  const char *key);
struct loc config_at_env(const char *name);
const char *config_quote(char *out, size_t size, const char *s, size_t len);
unsigned config_node_line(const yaml_node_t *node);
void config_bad_value(struct parse *p, struct loc at, const char *expect,
		      const char *got, const char *why);
void config_bad_node(struct parse *p, struct loc at, const char *expect,
		     const yaml_node_t *node, const char *why);
void config_bad_string(struct parse *p, struct loc at, const char *expect,
		       const char *s, const char *why);

/* config_values.c */
const char *config_check_node_id(const char *s);
const char *config_parse_peer(const char *s, size_t *id_len,
			      struct hostport *hp);
void config_store_string(struct parse *p, char **field, char *copy);
const char *config_scalar_text(struct parse *p, struct loc at,
			       const char *expect, const yaml_node_t *node);
bool config_is_null(const yaml_node_t *node);
void config_set_scalar(struct parse *p, enum key_id id,
		       const yaml_node_t *node);

/* config_lists.c */
void config_strlist_release(struct strlist *l);
bool config_strlist_alloc(struct parse *p, struct strlist *l, size_t cap,
			  bool with_lines);
void config_free_strv(char **v, size_t n);
void config_free_peers(struct config_peer *peers, size_t n);
void config_set_peers(struct parse *p, struct strlist *l, const char *env);
void config_set_list(struct parse *p, enum key_id id,
		     const yaml_node_t *node);

/* config_yaml.c: reads PATH into P; -errno when it cannot be read. */
int config_load_file(struct parse *p, const char *path);

/* config_check.c: the checks across keys, after defaults are derived. */
void config_check(struct parse *p);

#endif
