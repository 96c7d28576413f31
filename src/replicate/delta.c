/* Chunk deltas (see delta.h). */
#include "delta.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/evp.h>

uint32_t delta_blocks(uint32_t len)
{
	return (uint32_t)(((uint64_t)len + DELTA_BLOCK - 1) / DELTA_BLOCK);
}

uint32_t delta_map_len(uint32_t len)
{
	return (delta_blocks(len) + 7) / 8;
}

static uint32_t block_len(uint32_t len, uint32_t i)
{
	uint32_t off = i * DELTA_BLOCK;

	return len - off < DELTA_BLOCK ? len - off : DELTA_BLOCK;
}

static bool map_bit(const uint8_t *map, uint32_t i)
{
	return (map[i / 8] >> (i % 8)) & 1;
}

int delta_digests(const uint8_t *data, uint32_t len,
		  uint8_t (*out)[DELTA_DIGEST])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	const EVP_MD *md = EVP_sha256();
	uint8_t full[EVP_MAX_MD_SIZE];
	uint32_t n = delta_blocks(len);
	int err = ctx ? 0 : -ENOMEM;

	for (uint32_t i = 0; !err && i < n; i++) {
		if (EVP_DigestInit_ex(ctx, md, NULL) != 1 ||
		    EVP_DigestUpdate(ctx, data + (size_t)i * DELTA_BLOCK,
				     block_len(len, i)) != 1 ||
		    EVP_DigestFinal_ex(ctx, full, NULL) != 1)
			err = -ENOMEM;
		else
			memcpy(out[i], full, DELTA_DIGEST);
	}
	EVP_MD_CTX_free(ctx);
	return err;
}

int delta_make(const uint8_t *data, uint32_t len,
	       const uint8_t (*theirs)[DELTA_DIGEST], uint8_t *map,
	       uint8_t *lit, uint32_t *lit_len)
{
	uint8_t ours[DELTA_BLOCKS_MAX][DELTA_DIGEST];
	uint32_t n = delta_blocks(len), at = 0;
	int err;

	if (n > DELTA_BLOCKS_MAX)
		return -EINVAL;
	err = delta_digests(data, len, ours);
	if (err)
		return err;
	memset(map, 0, delta_map_len(len));
	for (uint32_t i = 0; i < n; i++) {
		uint32_t bl = block_len(len, i);

		if (memcmp(ours[i], theirs[i], DELTA_DIGEST) == 0) {
			map[i / 8] |= (uint8_t)(1u << (i % 8));
			continue;
		}
		memcpy(lit + at, data + (size_t)i * DELTA_BLOCK, bl);
		at += bl;
	}
	*lit_len = at;
	return 0;
}

int64_t delta_literal_len(uint32_t len, const uint8_t *map)
{
	uint32_t n = delta_blocks(len), m = delta_map_len(len);
	int64_t total = 0;

	for (uint32_t i = n; i < m * 8; i++)
		if (map_bit(map, i))
			return -1;
	for (uint32_t i = 0; i < n; i++)
		if (!map_bit(map, i))
			total += block_len(len, i);
	return total;
}

void delta_apply(uint8_t *out, uint32_t len, const uint8_t *map,
		 const uint8_t *lit)
{
	uint32_t n = delta_blocks(len);

	for (uint32_t i = 0; i < n; i++) {
		uint32_t bl = block_len(len, i);

		if (map_bit(map, i))
			continue;
		memcpy(out + (size_t)i * DELTA_BLOCK, lit, bl);
		lit += bl;
	}
}
