/*
 * Configuration loading.
 *
 * The file is read whole, capped at CONFIG_FILE_MAX so that a wrong path
 * (a disk image, /dev/zero) cannot exhaust memory, and composed into a
 * libyaml document.  One walk visits every mapping pair once: the dotted
 * key is looked up in config_keys[], whose kind says how the value is
 * checked and stored.  Checks that involve several keys (watch paths against
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
 *
 * This file holds the order of a load (defaults, file, environment,
 * derived defaults, cross-checks) and the rest of config.h; config_int.h
 * says which file has each step.  The library, kconfig, is the agent's:
 * only the agent and kraken-journal --config link it and libyaml.
 */
#include "config_int.h"

#include "err.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static void env_node_id(struct parse *p, const char *s)
{
	const char *why = config_check_node_id(s);

	if (why) {
		config_bad_string(p, config_at_env(ENV_NODE_ID),
				  config_expects[KIND_NODE_ID], s, why);
		p->bad[K_NODE_ID] = true;
		return;
	}
	config_store_string(p, &p->cfg->node_id, strdup(s));
	p->node_env = true;
}

static void env_cluster_nodes(struct parse *p, const char *s)
{
	struct strlist l = { 0 };
	size_t cap = 1;

	for (const char *c = s; *c; c++)
		cap += *c == ',';
	if (!config_strlist_alloc(p, &l, cap, false))
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
	config_set_peers(p, &l, ENV_CLUSTER_NODES);
	p->peers_env = true;
out:
	config_strlist_release(&l);
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

static void finish(struct parse *p)
{
	if (derive_defaults(p->cfg)) {
		p->nomem = true;
		return;
	}
	config_check(p);
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
		ret = config_load_file(&p, path);
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
	config_free_strv(cfg->watch_paths, cfg->n_watch_paths);
	config_free_strv(cfg->exclude_patterns, cfg->n_exclude_patterns);
	config_free_peers(cfg->peers, cfg->n_peers);
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
	config_free_strv(cfg->api_allowed_hosts, cfg->n_api_allowed_hosts);
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
