/*
 * A string-keyed hash map (open addressing, linear probing, backward-shift
 * deletion so no tombstones accumulate).  Keys are copied and owned by the
 * map; values are borrowed pointers the caller manages.  Single-threaded.
 */
#ifndef KRAKEN_STRMAP_H
#define KRAKEN_STRMAP_H

#include <stddef.h>

struct strmap_slot {
	char *key;                /* NULL: empty */
	void *value;
	size_t hash;
};

struct strmap {
	struct strmap_slot *slots;
	size_t cap;               /* power of two, or 0 */
	size_t count;
};

/* A zeroed struct strmap is an empty map. */
void *strmap_get(const struct strmap *m, const char *key);
/* Inserts or replaces; *old (when non-NULL) gets the replaced value.
 * 0 or -ENOMEM. */
int strmap_put(struct strmap *m, const char *key, void *value, void **old);
/* Removes KEY and returns its value, or NULL. */
void *strmap_del(struct strmap *m, const char *key);
/* Frees the keys and slots; values are the caller's. */
void strmap_clear(struct strmap *m);

/* Iteration: for (size_t i = 0; i < m.cap; i++) if (m.slots[i].key) ... */

#endif
