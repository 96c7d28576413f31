#include "strmap.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a: short keys (paths), no adversary that controls hashing here
 * beyond local file names, and the map stays correct under collisions. */
static size_t strmap_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ull;
	}
	return (size_t)h;
}

static size_t strmap_find(const struct strmap *m, const char *key, size_t h)
{
	size_t mask = m->cap - 1;
	size_t i = h & mask;

	/* The mask needs a power of two, and the probe an empty slot to
	 * stop at (strmap_put grows at three quarters full). */
	assert(m->cap > 0 && (m->cap & mask) == 0 && m->count < m->cap);

	while (m->slots[i].key) {
		if (m->slots[i].hash == h && strcmp(m->slots[i].key, key) == 0)
			return i;
		i = (i + 1) & mask;
	}
	return i;
}

void *strmap_get(const struct strmap *m, const char *key)
{
	size_t i;

	if (m->count == 0)
		return NULL;
	i = strmap_find(m, key, strmap_hash(key));
	return m->slots[i].key ? m->slots[i].value : NULL;
}

static int strmap_grow(struct strmap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 16;
	struct strmap_slot *old = m->slots;
	size_t ocap = m->cap;
	struct strmap_slot *slots = calloc(ncap, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	m->slots = slots;
	m->cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		if (old[i].key)
			m->slots[strmap_find(m, old[i].key, old[i].hash)] = old[i];
	}
	free(old);
	return 0;
}

int strmap_put(struct strmap *m, const char *key, void *value, void **old)
{
	size_t h = strmap_hash(key);
	size_t i;

	if (old)
		*old = NULL;
	if ((m->count + 1) * 4 > m->cap * 3) {
		int err = strmap_grow(m);

		if (err)
			return err;
	}
	i = strmap_find(m, key, h);
	if (m->slots[i].key) {
		if (old)
			*old = m->slots[i].value;
		m->slots[i].value = value;
		return 0;
	}
	m->slots[i].key = strdup(key);
	if (!m->slots[i].key)
		return -ENOMEM;
	m->slots[i].value = value;
	m->slots[i].hash = h;
	m->count++;
	return 0;
}

void *strmap_del(struct strmap *m, const char *key)
{
	size_t mask, i, j;
	void *value;

	if (m->count == 0)
		return NULL;
	mask = m->cap - 1;
	i = strmap_find(m, key, strmap_hash(key));
	if (!m->slots[i].key)
		return NULL;
	value = m->slots[i].value;
	free(m->slots[i].key);
	m->slots[i].key = NULL;
	m->count--;
	/* Shift later members of the probe run back over the hole. */
	for (j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
		size_t home = m->slots[j].hash & mask;

		if ((j > i && (home <= i || home > j)) ||
		    (j < i && (home <= i && home > j))) {
			m->slots[i] = m->slots[j];
			m->slots[j].key = NULL;
			i = j;
		}
	}
	return value;
}

void strmap_clear(struct strmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->slots[i].key);
	free(m->slots);
	memset(m, 0, sizeof(*m));
}
