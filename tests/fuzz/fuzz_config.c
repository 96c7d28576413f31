/*
 * libFuzzer target for the configuration loader, config_load(): the input
 * is the file, read through the loader's own path (a memfd under
 * /proc/self/fd, so no disk is touched).  An input whose first line is
 *   #env:NODE_ID;CLUSTER_NODES
 * also passes those two overrides; the line is a YAML comment, so the
 * file stays what the input says.
 *
 * Checked beyond "no crash, no leak":
 *  - the answer is 0 or KR_ECONFIG (a readable file is never -errno);
 *  - 0 comes with a config and no diagnostics, KR_ECONFIG with no
 *    config and one line per problem, each starting with the file's
 *    name or an override's, so input bytes never forge a line of their
 *    own;
 *  - loading is a function of the input: twice, same answer, same text;
 *  - an accepted config keeps the promises of config.h that the agent
 *    relies on without checking again: this node is listed, ports are
 *    set, paths are absolute, watch paths lie under the root, the mount
 *    wait and the retention pin are within their bounds.
 */
#include "fuzz.h"

#include "config.h"
#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_ENV_TAG "#env:"

struct fuzz_env {
	char *node_id;            /* NULL: no override */
	char *cluster_nodes;
};

/* The memfd that holds the file; made once, rewritten for each input. */
static int fuzz_file(char *path, size_t cap)
{
	static int fd = -1;

	if (fd < 0)
		fd = memfd_create("fuzz-config", MFD_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	snprintf(path, cap, "/proc/self/fd/%d", fd);
	return fd;
}

static void fuzz_write(int fd, const uint8_t *data, size_t size)
{
	FUZZ_CHECK(ftruncate(fd, 0) == 0);
	FUZZ_CHECK(pwrite(fd, data, size, 0) == (ssize_t)size);
}

/* The overrides of a "#env:" first line; the caller frees them. */
static void fuzz_env(const uint8_t *data, size_t size, struct fuzz_env *env)
{
	size_t tag = strlen(FUZZ_ENV_TAG), end = tag;
	char *line, *sep;

	*env = (struct fuzz_env){ 0 };
	if (size < tag || memcmp(data, FUZZ_ENV_TAG, tag) != 0)
		return;
	while (end < size && data[end] != '\n')
		end++;
	line = strndup((const char *)data + tag, end - tag);
	FUZZ_CHECK(line != NULL);
	sep = strchr(line, ';');
	if (sep) {
		*sep = '\0';
		env->cluster_nodes = strdup(sep + 1);
		FUZZ_CHECK(env->cluster_nodes != NULL);
	}
	env->node_id = line;
}

static bool fuzz_line_ok(const char *line, const char *path)
{
	static const char *const starts[] = { "NODE_ID: ", "CLUSTER_NODES: " };
	size_t n = strlen(path);

	if (strncmp(line, path, n) == 0 && line[n] == ':')
		return true;
	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
		if (strncmp(line, starts[i], strlen(starts[i])) == 0)
			return true;
	return false;
}

static void fuzz_diag(const struct config_diag *d, const char *path)
{
	unsigned lines = 0;

	FUZZ_CHECK(d->count > 0 && d->text != NULL);
	FUZZ_CHECK(strlen(d->text) == d->len && d->text[d->len - 1] == '\n');
	for (const char *l = d->text; *l; l = strchr(l, '\n') + 1) {
		FUZZ_CHECK(fuzz_line_ok(l, path));
		lines++;
	}
	FUZZ_CHECK(lines == d->count);
}

static bool fuzz_under(const char *root, const char *path)
{
	size_t n = strlen(root);

	return strncmp(path, root, n) == 0 &&
	       (path[n] == '\0' || path[n] == '/' || n == 1);
}

static void fuzz_peers(const struct config *c)
{
	FUZZ_CHECK(c->n_peers >= 1 && config_self(c) != NULL);
	for (size_t i = 0; i < c->n_peers; i++) {
		FUZZ_CHECK(c->peers[i].port != 0 && c->peers[i].host[0]);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(c->peers[i].id, c->peers[j].id) != 0);
	}
}

static void fuzz_accepted(const struct config *c)
{
	size_t id_len = strlen(c->node_id);

	FUZZ_CHECK(id_len >= 1 && id_len <= CONFIG_NODE_ID_MAX);
	fuzz_peers(c);
	FUZZ_CHECK(c->p2p_port != 0 && c->api_port != 0 && c->recursive);
	FUZZ_CHECK(c->root_path[0] == '/' && c->journal_path[0] == '/' &&
		   c->api_token_file[0] == '/' && c->plugin_socket[0] == '/');
	FUZZ_CHECK(c->n_watch_paths >= 1);
	for (size_t i = 0; i < c->n_watch_paths; i++)
		FUZZ_CHECK(fuzz_under(c->root_path, c->watch_paths[i]));
	FUZZ_CHECK(c->mount_wait_ms <= CONFIG_MOUNT_WAIT_MAX_MS);
	FUZZ_CHECK(c->journal_retention_ms == 0 ||
		   c->journal_retention_pin_max_ms >= c->journal_retention_ms);
}

/* One load; its answer and diagnostics (the caller releases them). */
static int fuzz_load(const char *path, const struct fuzz_env *env,
		     struct config_diag *d)
{
	struct config *c = NULL;
	int err;

	*d = (struct config_diag){ 0 };
	err = config_load(path, env->node_id, env->cluster_nodes, &c, d);
	FUZZ_CHECK(err == 0 || err == KR_ECONFIG);
	if (err == 0) {
		FUZZ_CHECK(c != NULL && d->count == 0 && d->text == NULL);
		fuzz_accepted(c);
	} else {
		FUZZ_CHECK(c == NULL);
		fuzz_diag(d, path);
	}
	config_free(c);
	return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd = fuzz_file(path, sizeof(path));
	struct config_diag first, again;
	struct fuzz_env env;
	int err;

	fuzz_write(fd, data, size);
	fuzz_env(data, size, &env);
	err = fuzz_load(path, &env, &first);
	FUZZ_CHECK(fuzz_load(path, &env, &again) == err);
	FUZZ_CHECK(first.len == again.len &&
		   (first.len == 0 ||
		    memcmp(first.text, again.text, first.len) == 0));
	config_diag_release(&first);
	config_diag_release(&again);
	free(env.node_id);
	free(env.cluster_nodes);
	return 0;
}
