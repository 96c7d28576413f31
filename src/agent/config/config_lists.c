/*
 * List values (filesystem.watch_paths, exclude_patterns,
 * sync.cluster_nodes, api.allowed_hosts): items are collected with their
 * lines, bad items are reported and dropped, and what is left replaces
 * the default whole.
 */
#include "config_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_strlist_release(struct strlist *l)
{
	for (size_t i = 0; l->v && i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	free(l->lines);
	*l = (struct strlist){ 0 };
}

bool config_strlist_alloc(struct parse *p, struct strlist *l, size_t cap,
			  bool with_lines)
{
	l->n = 0;
	l->v = calloc(cap ? cap : 1, sizeof(*l->v));
	l->lines = with_lines ? calloc(cap ? cap : 1, sizeof(*l->lines)) : NULL;
	if (!l->v || (with_lines && !l->lines)) {
		config_strlist_release(l);
		p->nomem = true;
		return false;
	}
	return true;
}

/* Takes the scalar items of SEQ; items that are not strings are reported. */
static bool collect(struct parse *p, enum key_id id, const yaml_node_t *seq,
		    struct strlist *out)
{
	const struct key_def *k = &config_keys[id];
	yaml_node_item_t *item;

	if (seq->type != YAML_SEQUENCE_NODE) {
		config_bad_node(p, config_at_line(p, config_node_line(seq),
					       k->name),
				config_expects[k->kind], seq, NULL);
		p->bad[id] = true;
		return false;
	}
	if (!config_strlist_alloc(p, out,
				  (size_t)(seq->data.sequence.items.top -
					   seq->data.sequence.items.start),
				  true))
		return false;
	for (item = seq->data.sequence.items.start;
	     item < seq->data.sequence.items.top; item++) {
		yaml_node_t *node = yaml_document_get_node(p->doc, *item);
		struct loc at = config_at_line(p, config_node_line(node),
					       k->name);
		const char *s = config_scalar_text(p, at,
						   config_item_expects[k->kind],
						   node);

		if (!s) {
			p->bad[id] = true;
			continue;
		}
		out->v[out->n] = strdup(s);
		if (!out->v[out->n]) {
			p->nomem = true;
			continue;
		}
		out->lines[out->n++] = config_node_line(node);
	}
	return true;
}

static struct loc item_loc(const struct parse *p, const struct strlist *l,
			   size_t i, enum key_id id, const char *env)
{
	if (!l->lines)
		return config_at_env(env);
	return config_at_line(p, l->lines[i], config_keys[id].name);
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
			config_bad_string(p, item_loc(p, l, i, id, NULL),
				config_item_expects[config_keys[id].kind],
				l->v[i], why);
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

void config_free_strv(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

void config_free_peers(struct config_peer *peers, size_t n)
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
	config_free_strv(p->cfg->watch_paths, p->cfg->n_watch_paths);
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
		config_bad_value(p,
			config_at_line(p, p->line[K_API_ALLOWED_HOSTS],
				       config_keys[K_API_ALLOWED_HOSTS].name),
			want, got, NULL);
		p->bad[K_API_ALLOWED_HOSTS] = true;
		return;
	}
	config_free_strv(p->cfg->api_allowed_hosts,
			 p->cfg->n_api_allowed_hosts);
	p->cfg->api_allowed_hosts = l->v;
	p->cfg->n_api_allowed_hosts = l->n;
	free(l->lines);
	*l = (struct strlist){ 0 };
}

static void set_patterns(struct parse *p, struct strlist *l)
{
	filter(p, K_EXCLUDE, l, check_pattern);
	config_free_strv(p->cfg->exclude_patterns, p->cfg->n_exclude_patterns);
	p->cfg->exclude_patterns = l->v;
	p->cfg->n_exclude_patterns = l->n;
	free(l->lines);
	*l = (struct strlist){ 0 };
}

/*
 * Turns "id:host[:port]" strings into cfg->peers, replacing what was
 * there; ENV names the variable when the list came from the environment.
 */
void config_set_peers(struct parse *p, struct strlist *l, const char *env)
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
		const char *why = config_parse_peer(l->v[i], &id_len, &hp);

		if (why) {
			config_bad_string(p,
				item_loc(p, l, i, K_CLUSTER_NODES, env),
				config_item_expects[KIND_PEER_LIST], l->v[i],
				why);
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
	config_free_peers(p->cfg->peers, p->cfg->n_peers);
	free(p->peer_lines);
	p->cfg->peers = peers;
	p->cfg->n_peers = n;
	p->peer_lines = l->lines;
	l->lines = NULL;
}

void config_set_list(struct parse *p, enum key_id id, const yaml_node_t *node)
{
	struct strlist l = { 0 };

	if (!collect(p, id, node, &l))
		return;
	switch (config_keys[id].kind) {
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
		config_set_peers(p, &l, NULL);
		break;
	}
	p->set[id] = true;
	config_strlist_release(&l);
}
