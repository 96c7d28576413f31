/*
 * Checks that involve several keys, run once the file, the environment
 * and the derived defaults are all in, since YAML does not order keys:
 * watch paths against volume.root_path, duplicate node ids, this node in
 * the cluster list, plugin.mount_wait, the pin limit against retention.
 * A key already reported bad is skipped so that one mistake gives one line.
 */
#include "config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		 config_quote(q, sizeof(q), cfg->root_path,
			      strlen(cfg->root_path)));
	for (size_t i = 0; i < cfg->n_watch_paths; i++) {
		if (directly_under(cfg->root_path, cfg->watch_paths[i]))
			continue;
		config_bad_string(p, config_at_line(p, p->watch_lines[i],
					config_keys[K_WATCH_PATHS].name),
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

	config_quote(q, sizeof(q), id, strlen(id));
	if (p->peers_env)
		config_problem(p, config_at_env(ENV_CLUSTER_NODES),
			"duplicate node id %s", q);
	else
		config_problem(p, config_at_line(p, p->peer_lines[i],
				config_keys[K_CLUSTER_NODES].name),
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
					  config_keys[K_CLUSTER_NODES].name;
	char expect[64];
	struct loc at;

	if (p->broken || p->bad[K_NODE_ID] || p->bad[K_CLUSTER_NODES] ||
	    config_self(p->cfg))
		return;
	snprintf(expect, sizeof(expect), "a node id listed in %s", list);
	if (p->node_env)
		at = config_at_env(ENV_NODE_ID);
	else
		at = config_at_line(p, p->line[K_NODE_ID],
				    config_keys[K_NODE_ID].name);
	config_bad_string(p, at, expect, p->cfg->node_id,
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
	config_bad_value(p, config_at_line(p, p->line[K_PLUGIN_MOUNT_WAIT],
				config_keys[K_PLUGIN_MOUNT_WAIT].name),
			 "a duration of at most 60s", got,
			 "Docker gives up on a plugin call after about a "
			 "minute");
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
	config_bad_value(p, config_at_line(p, p->line[K_JOURNAL_PIN_MAX],
				config_keys[K_JOURNAL_PIN_MAX].name),
			 want, format_duration(got, sizeof(got), pin_max), why);
}

void config_check(struct parse *p)
{
	check_watch_paths(p);
	check_duplicate_peers(p);
	check_self_listed(p);
	check_mount_wait(p);
	check_retention(p);
}
