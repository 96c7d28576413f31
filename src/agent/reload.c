/*
 * What a reload cannot change: the config keys a running agent took at
 * start and keeps until it restarts (the node's identity, addresses,
 * certificates, paths, the API's listener, what is watched).  A reload
 * that changes one goes on with the rest and names each such key.
 */
#include "reload.h"

#include "log.h"

#include <stddef.h>
#include <string.h>

static bool str_differs(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

static bool strv_differs(char *const *a, size_t na, char *const *b,
			 size_t nb)
{
	if (na != nb)
		return true;
	for (size_t i = 0; i < na; i++)
		if (str_differs(a[i], b[i]))
			return true;
	return false;
}

void reload_warn_restart(const struct config *cur, const struct config *next)
{
	static const struct { const char *key; size_t off; } fixed[] = {
		{ "sync.node_id", offsetof(struct config, node_id) },
		{ "sync.cluster_id", offsetof(struct config, cluster_id) },
		{ "sync.listen_address",
		  offsetof(struct config, listen_address) },
		{ "sync.tls.cert_file", offsetof(struct config, tls_cert_file) },
		{ "sync.tls.key_file", offsetof(struct config, tls_key_file) },
		{ "sync.tls.ca_file", offsetof(struct config, tls_ca_file) },
		{ "volume.root_path", offsetof(struct config, root_path) },
		{ "volume.driver_name", offsetof(struct config, driver_name) },
		{ "journal.path", offsetof(struct config, journal_path) },
		{ "api.listen", offsetof(struct config, api_host) },
		{ "api.token_file", offsetof(struct config, api_token_file) },
		{ "api.read_token_file",
		  offsetof(struct config, api_read_token_file) },
		{ "plugin.socket", offsetof(struct config, plugin_socket) },
	};
	const struct config_peer *s1 = config_self(cur), *s2 = config_self(next);
	const char *changed[sizeof(fixed) / sizeof(fixed[0]) + 6];
	size_t n = 0;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (str_differs(*(char *const *)((const char *)cur +
						       fixed[i].off),
				      *(char *const *)((const char *)next +
						       fixed[i].off)))
			changed[n++] = fixed[i].key;
	if (cur->api_port != next->api_port)
		changed[n++] = "api.listen";
	if (cur->tls_enable != next->tls_enable)
		changed[n++] = "sync.tls.enable";
	if ((s1 ? s1->port : cur->p2p_port) != (s2 ? s2->port : next->p2p_port))
		changed[n++] = "sync.p2p_port";
	if (strv_differs(cur->watch_paths, cur->n_watch_paths,
			       next->watch_paths, next->n_watch_paths))
		changed[n++] = "filesystem.watch_paths";
	if (strv_differs(cur->exclude_patterns, cur->n_exclude_patterns,
			       next->exclude_patterns,
			       next->n_exclude_patterns))
		changed[n++] = "filesystem.exclude_patterns";
	if (strv_differs(cur->api_allowed_hosts, cur->n_api_allowed_hosts,
			       next->api_allowed_hosts,
			       next->n_api_allowed_hosts))
		changed[n++] = "api.allowed_hosts";
	for (size_t i = 0; i < n; i++)
		log_warn("agent", "reload: %s changed; it takes effect when "
			 "the agent restarts", changed[i]);
}
