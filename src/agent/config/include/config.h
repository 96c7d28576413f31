/*
 * Agent configuration: the YAML file (/etc/krakenfs/config.yaml by default)
 * plus the NODE_ID and CLUSTER_NODES environment overrides.
 *
 * Schema (every key optional; defaults in brackets):
 *
 *   log.level                          error|warn|info|debug        [info]
 *   filesystem.watch_paths             list of dirs: volume.root_path or
 *                                      a volume directly under it
 *                                                          [[volume.root_path]]
 *   filesystem.exclude_patterns        list of fnmatch(3) patterns matched
 *                                      against the path relative to its
 *                                      volume and against the base name  [[]]
 *   filesystem.recursive               must be true (volumes replicate
 *                                      as whole trees)                  [true]
 *   sync.node_id                       [a-zA-Z0-9._-]{1,64}       [hostname]
 *   sync.cluster_nodes                 list of "id:host[:port]"   [[node_id]]
 *   sync.p2p_port                      1..65535                         [6881]
 *   sync.listen_address                IP address to bind            [0.0.0.0]
 *   sync.cluster_id                    string naming the cluster   [krakenfs]
 *   sync.max_clock_skew                duration: a peer whose clock is
 *                                      off ours by more is warned about
 *                                      ("0": never)                 [30s]
 *   sync.max_lamport_jump              integer 0..2^62: an entry whose
 *                                      Lamport value is more than this
 *                                      above the largest this node has
 *                                      seen is refused (0: no bound)
 *                                                          [1000000000]
 *   sync.bandwidth.enable              bool                            [false]
 *   sync.bandwidth.egress_bits_per_sec   integer >= 0, 0 = no limit      [0]
 *   sync.bandwidth.ingress_bits_per_sec  integer >= 0, 0 = no limit      [0]
 *   sync.conflict_resolution.strategy  timestamp|lamport          [timestamp]
 *   sync.conflict_resolution.timeout   duration ("30s", "500ms", "2m") [30s]
 *   sync.tls.enable                    bool                            [false]
 *   sync.tls.cert_file / key_file / ca_file   paths  [/etc/krakenfs/tls/...]
 *   volume.root_path                   absolute dir [/var/lib/krakenfs/volumes]
 *   volume.driver_name                 [a-z0-9._-]+                 [krakenfs]
 *   journal.path                       absolute path
 *                                         [/var/lib/krakenfs/journal.db]
 *   journal.retention                  duration: history older than this,
 *                                      acknowledged by every peer, may be
 *                                      compacted; "0" keeps all          [30d]
 *   journal.retention_pin_max          duration: a peer silent longer than
 *                                      this no longer holds compaction
 *                                      back; >= journal.retention, and
 *                                      "0" only when retention is "0"    [90d]
 *   versions.keep                      duration: content of replaced and
 *                                      deleted files stays restorable
 *                                      this long; "0" keeps none      [7d]
 *   versions.max_bytes                 size ("20GiB") or share of the
 *                                      volume file system ("10%") the
 *                                      kept content may take; the oldest
 *                                      goes first                      [10%]
 *   api.listen                         host:port            [127.0.0.1:6882]
 *   api.token_file                     absolute path
 *                                         [/etc/krakenfs/api-token]
 *   api.read_token_file                absolute path; when set, every
 *                                      read needs this token or the
 *                                      admin one            [none: open]
 *   api.allowed_hosts                  list of at most 32 host names
 *                                      (1-255 bytes, no spaces, controls
 *                                      or port) also accepted in Host  [[]]
 *   plugin.socket                      absolute path
 *                                  [/run/docker/plugins/krakenfs.sock]
 *
 * Every problem is reported as one line "FILE:LINE: KEY: what is wrong"
 * (LINE omitted when the value came from the environment or a default), and
 * all problems of a file are reported, not just the first.
 */
#ifndef KRAKEN_CONFIG_H
#define KRAKEN_CONFIG_H

#include "nodeid.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_DEFAULT_PATH "/etc/krakenfs/config.yaml"
#define CONFIG_NODE_ID_MAX NODE_ID_MAX
#define CONFIG_ALLOWED_HOSTS_MAX 32
#define CONFIG_ALLOWED_HOST_LEN 255
/* sync.max_lamport_jump: a node's clock runs ahead of another's by at most
 * the changes made while they did not talk, so 1e9 is generous; the
 * largest allowed is JOURNAL_LAMPORT_MAX (2^62). */
#define CONFIG_LAMPORT_JUMP_DEFAULT UINT64_C(1000000000)
#define CONFIG_LAMPORT_JUMP_MAX (UINT64_C(1) << 62)

enum config_strategy { CONFIG_STRATEGY_TIMESTAMP, CONFIG_STRATEGY_LAMPORT };

struct config_peer {
	char *id;
	char *host;
	uint16_t port;            /* sync.p2p_port when the entry names none */
};

struct config {
	int log_level;            /* enum log_level */

	char **watch_paths;
	size_t n_watch_paths;
	char **exclude_patterns;
	size_t n_exclude_patterns;
	bool recursive;

	char *node_id;
	char *cluster_id;
	struct config_peer *peers; /* every cluster node, this one included */
	size_t n_peers;
	uint16_t p2p_port;
	char *listen_address;
	bool bandwidth_enable;
	uint64_t egress_bits_per_sec;
	uint64_t ingress_bits_per_sec;
	enum config_strategy strategy;
	uint64_t conflict_timeout_ms;
	uint64_t max_clock_skew_ms;
	uint64_t max_lamport_jump;  /* 0: no bound; see journal_set_lamport_jump */
	bool tls_enable;
	char *tls_cert_file;
	char *tls_key_file;
	char *tls_ca_file;

	char *root_path;
	char *driver_name;
	uint64_t scrub_period_ms; /* every file re-read this often; 0: only
				   * when asked (POST /v1/admin/scrub) */
	char *journal_path;
	uint64_t journal_retention_ms;  /* 0: never compact, keep all history */
	uint64_t journal_retention_pin_max_ms; /* >= retention unless it is 0 */
	/* A fresh journal over volumes holding files waits this long for a
	 * peer to learn the history from before adopting them; 0: never. */
	uint64_t journal_rejoin_wait_ms;
	/* Content of replaced and deleted files stays restorable this long
	 * (0: none is kept), within versions_max_bytes, or when that is 0,
	 * versions_max_percent of the volume file system. */
	uint64_t versions_keep_ms;
	uint64_t versions_max_bytes;
	unsigned versions_max_percent;
	char *api_host;
	uint16_t api_port;
	char *api_token_file;
	char *api_read_token_file;  /* NULL: reads need no token */
	char **api_allowed_hosts;
	size_t n_api_allowed_hosts;
	char *plugin_socket;
	uint64_t mount_wait_ms;   /* Mount waits this long to catch up */
};

#define CONFIG_MOUNT_WAIT_MAX_MS 60000

/*
 * Diagnostics sink: config functions append one line per problem.  The
 * caller owns it; config_diag_release() frees the text.
 */
struct config_diag {
	char *text;               /* NUL-terminated lines, or NULL when empty */
	size_t len;
	unsigned count;
};

/*
 * Loads PATH (NULL means "defaults only, no file"), then applies the
 * NODE_ID / CLUSTER_NODES overrides when non-NULL (an empty string counts
 * as unset), then validates the result.  On success *out is a new config
 * owned by the caller (free with config_free()) and 0 is returned.  On
 * any problem returns KR_ECONFIG (or -errno when the file cannot be read)
 * with every problem in *diag, and *out is NULL.
 */
int config_load(const char *path, const char *env_node_id,
		const char *env_cluster_nodes, struct config **out,
		struct config_diag *diag);

/* Defaults only, before validation; used by config_load and tests. */
int config_defaults(struct config **out);

/* Parses "500ms", "30s", "2m", "1h", "30d", "0"; returns 0 or -EINVAL
 * (also when the value does not fit in 64 bits of milliseconds). */
int config_parse_duration_ms(const char *text, uint64_t *out_ms);

/* Finds this node's entry in cfg->peers, or NULL. */
const struct config_peer *config_self(const struct config *cfg);

void config_free(struct config *cfg);
void config_diag_release(struct config_diag *diag);

#endif
