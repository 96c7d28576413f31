/*
 * Reading the file: capped in size, checked for syntax and for a single
 * document with bounded nesting, then composed by libyaml and walked
 * once, each dotted key looked up in config_keys (an unknown one gets a
 * "did you mean" from the known keys).  The only file that drives the
 * libyaml parser.
 */
#include "config_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

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
		size_t klen = strlen(config_keys[i].name);
		size_t limit = klen > 4 ? klen / 4 : 1;
		size_t d;

		/* Cheap bound first: a 1 MiB file may hold many bad keys. */
		if ((len > klen ? len - klen : klen - len) > limit)
			continue;
		d = edit_distance(name, config_keys[i].name);
		if (d <= limit && d < best) {
			best = d;
			hint = config_keys[i].name;
		}
	}
	for (int i = 0; !hint && i < N_KEYS; i++) {
		if (!strcasecmp(leaf(name), leaf(config_keys[i].name)))
			hint = config_keys[i].name;
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
		if (!strcmp(config_keys[i].name, name))
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
		 plain ? key : config_quote(q, sizeof(q), key, len));
	hint = plain ? suggest(shown) : NULL;
	if (hint && !strcmp(hint, shown))
		config_problem(p, config_at_line(p, line, shown),
			"unknown key (a dotted name must be written as "
			"nested mappings)");
	else if (hint)
		config_problem(p, config_at_line(p, line, shown),
			"unknown key, did you mean %s?", hint);
	else
		config_problem(p, config_at_line(p, line, shown),
			       "unknown key");
}

static void walk_mapping(struct parse *p, const yaml_node_t *map,
			 const char *prefix);

static void walk_value(struct parse *p, enum key_id id, const yaml_node_t *node)
{
	switch (config_keys[id].kind) {
	case KIND_SECTION:
		if (node->type == YAML_MAPPING_NODE) {
			walk_mapping(p, node, config_keys[id].name);
			break;
		}
		config_bad_node(p, config_at_line(p, config_node_line(node),
					       config_keys[id].name),
				config_expects[KIND_SECTION], node, NULL);
		break;
	case KIND_WATCH_LIST:
	case KIND_PATTERN_LIST:
	case KIND_PEER_LIST:
	case KIND_HOST_LIST:
		config_set_list(p, id, node);
		break;
	default:
		config_set_scalar(p, id, node);
		break;
	}
}

static void walk_pair(struct parse *p, const char *prefix,
		      const yaml_node_t *key, const yaml_node_t *value)
{
	char name[KEY_FULL_MAX];
	const char *s = (const char *)key->data.scalar.value;
	size_t len = key->data.scalar.length;
	unsigned line = config_node_line(key);
	bool plain;
	int id = -1;

	if (key->type != YAML_SCALAR_NODE) {
		config_bad_node(p,
				config_at_line(p, line,
					       *prefix ? prefix : NULL),
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
		config_problem(p, config_at_line(p, line, config_keys[id].name),
			"duplicate key (first at line %u)", p->line[id]);
		return;
	}
	p->seen[id] = true;
	p->line[id] = line;
	if (!config_is_null(value))
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
		config_problem(p, config_at_line(p, line, NULL),
			"invalid yaml: %s (%s at line %u)", what, y->context,
			(unsigned)y->context_mark.line + 1);
	else
		config_problem(p, config_at_line(p, line, NULL),
			       "invalid yaml: %s", what);
}

static void walk_root(struct parse *p, const yaml_node_t *root)
{
	if (config_is_null(root))
		return;
	if (root->type != YAML_MAPPING_NODE) {
		config_bad_node(p, config_at_line(p, config_node_line(root),
					       NULL),
				"a mapping of sections at the top level", root,
				NULL);
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
		config_problem(p,
			config_at_line(p, (unsigned)doc.start_mark.line + 1,
				       NULL),
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
			config_problem(p,
				config_at_line(p,
					(unsigned)ev.start_mark.line + 1,
					NULL),
				"expected at most %d levels of nesting, "
				"got more", DEPTH_MAX);
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
int config_load_file(struct parse *p, const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	int ret = read_capped(path, &buf, &len);

	if (ret == -EFBIG) {
		config_problem(p, config_at_line(p, 0, NULL),
			       "file is larger than 1 MiB");
		p->broken = true;
		return 0;
	}
	if (ret == -ENOMEM) {
		p->nomem = true;
		return 0;
	}
	if (ret) {
		config_problem(p, config_at_line(p, 0, NULL), "cannot read: %s",
			strerror(-ret));
		return ret;
	}
	parse_text(p, buf, len);
	free(buf);
	return 0;
}
