/*
 * Diagnostics: each problem becomes one "FILE:LINE: KEY: message" line
 * appended to the caller's config_diag, with the offending value quoted
 * and cut so that a binary file cannot flood the log.
 */
#include "config_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void config_problem(struct parse *p, struct loc at, const char *fmt, ...)
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

struct loc config_at_line(const struct parse *p, unsigned line,
			  const char *key)
{
	return (struct loc){ p->file, line, key };
}

struct loc config_at_env(const char *name)
{
	return (struct loc){ NULL, 0, name };
}

/*
 * Writes S as a quoted string for a message, escaping control bytes so
 * that one problem stays one line, and cutting long values.
 */
const char *config_quote(char *out, size_t size, const char *s, size_t len)
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

unsigned config_node_line(const yaml_node_t *node)
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
		return config_quote(buf, size,
				    (const char *)node->data.scalar.value,
				    node->data.scalar.length);
	default:
		return "nothing";
	}
}

void config_bad_value(struct parse *p, struct loc at, const char *expect,
		      const char *got, const char *why)
{
	bool detail = why && *why;

	config_problem(p, at, "expected %s, got %s%s%s%s", expect, got,
		       detail ? " (" : "", detail ? why : "",
		       detail ? ")" : "");
}

void config_bad_node(struct parse *p, struct loc at, const char *expect,
		     const yaml_node_t *node, const char *why)
{
	char buf[QUOTE_MAX];

	config_bad_value(p, at, expect, describe(node, buf, sizeof(buf)), why);
}

void config_bad_string(struct parse *p, struct loc at, const char *expect,
		       const char *s, const char *why)
{
	char buf[QUOTE_MAX];

	config_bad_value(p, at, expect,
			 config_quote(buf, sizeof(buf), s, strlen(s)), why);
}
