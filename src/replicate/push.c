/* Pushed small contents (push.h). */
#include "push.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

static void push_forget(struct push_store *ps, const char *key)
{
	struct pushed *p = strmap_del(&ps->pushed, key);

	if (p)
		ps->bytes -= p->len;
	free(p);
}

/* Room for a push of LEN bytes: slots of claimed pushes at the head are
 * reclaimed, then an oldest push nobody claimed in time.  False when
 * full. */
static bool push_room(struct push_store *ps, uint32_t len, int64_t now)
{
	while (ps->n) {
		char *key = ps->keys[ps->head];
		struct pushed *p = strmap_get(&ps->pushed, key);

		if (p && ps->n < PUSH_KEEP_MAX &&
		    ps->bytes + len <= PUSH_KEEP_BYTES)
			return true;
		if (p && now - p->kept_ns < PUSH_KEEP_NS)
			return false;
		push_forget(ps, key);
		ps->head = (ps->head + 1) % PUSH_KEEP_MAX;
		ps->n--;
	}
	return true;
}

static struct pushed *push_make(const uint8_t *hash, const void *data,
				uint32_t len, int64_t now)
{
	struct pushed *p = malloc(sizeof(*p) + len);

	if (!p)
		return NULL;
	memcpy(p->chunk, hash, CONTENT_HASH_LEN);
	p->len = len;
	p->refs = 1;
	p->kept_ns = now;
	memcpy(p->data, data, len);
	return p;
}

void push_keep(struct push_store *ps, const uint8_t *hash, const void *data,
	       uint32_t len, int64_t now, uint8_t content[CONTENT_HASH_LEN])
{
	char key[CONTENT_HEX_LEN];
	struct pushed *p;
	unsigned n = 0;
	void *old = NULL;

	memset(content, 0, CONTENT_HASH_LEN);
	if (len > PUSH_MAX_SIZE ||
	    EVP_Digest(hash, CONTENT_HASH_LEN, content, &n, EVP_sha256(),
		       NULL) != 1)
		return;
	content_hex(content, key);
	p = strmap_get(&ps->pushed, key);
	if (p) {
		p->refs++;
		return;
	}
	if (!ps->keys && !(ps->keys = calloc(PUSH_KEEP_MAX, sizeof(*ps->keys))))
		return;
	if (!push_room(ps, len, now) || !(p = push_make(hash, data, len, now)))
		return;
	if (strmap_put(&ps->pushed, key, p, &old) != 0) {
		free(p);
		return;
	}
	ps->bytes += p->len;
	memcpy(ps->keys[(ps->head + ps->n) % PUSH_KEEP_MAX], key,
	       CONTENT_HEX_LEN);
	ps->n++;
}

const struct pushed *push_find(const struct push_store *ps,
			       const uint8_t content[CONTENT_HASH_LEN],
			       uint64_t size)
{
	char key[CONTENT_HEX_LEN];
	const struct pushed *p;

	if (!ps->pushed.count || size > PUSH_MAX_SIZE)
		return NULL;
	content_hex(content, key);
	p = strmap_get(&ps->pushed, key);
	return p && p->len == size ? p : NULL;
}

void push_claimed(struct push_store *ps,
		  const uint8_t content[CONTENT_HASH_LEN])
{
	char key[CONTENT_HEX_LEN];
	struct pushed *p;

	content_hex(content, key);
	p = strmap_get(&ps->pushed, key);
	if (p && --p->refs == 0)
		push_forget(ps, key);
}

bool push_any(const struct push_store *ps)
{
	return ps->pushed.count > 0;
}

void push_free(struct push_store *ps)
{
	for (size_t i = 0; i < ps->pushed.cap; i++)
		if (ps->pushed.slots[i].key)
			free(ps->pushed.slots[i].value);
	strmap_clear(&ps->pushed);
	ps->head = ps->n = 0;
	ps->bytes = 0;
	free(ps->keys);
	ps->keys = NULL;
}
