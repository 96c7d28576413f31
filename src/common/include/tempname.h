/* Names of the agent's temp files inside volumes (tempname.c says why
 * they carry a per-root tag). */
#ifndef KRAKEN_TEMPNAME_H
#define KRAKEN_TEMPNAME_H

#include <stdbool.h>
#include <stddef.h>

/* Longest name tempname_make() writes, with its NUL. */
#define TEMPNAME_MAX 48

/* Loads ROOT's tag, or makes it on the first start over ROOT.  0 or a
 * negative errno (-EINVAL: the tag file holds no tag). */
int tempname_init(const char *root);
/* The 16 hex digits of the tag. */
const char *tempname_tag(void);
/* A fresh temp file name into OUT (TEMPNAME_MAX bytes). */
void tempname_make(char *out, size_t cap);
/* Whether NAME is one of this root's temp names. */
bool tempname_ours(const char *name);
/* Whether NAME is a temp file a crash left: ours, or, on the first start
 * that made the tag, an older agent's untagged one. */
bool tempname_stale(const char *name);

#endif
