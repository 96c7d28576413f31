/*
 * The one rule for a node id, wherever one is read: the config
 * (sync.node_id, NODE_ID), the journal (origins), the wire (HELLO,
 * origins of entries) and TLS certificates (the CN that proves it).
 * 1 to NODE_ID_MAX bytes of [A-Za-z0-9._-], and neither "." nor "..":
 * ids end up in file names (conflict copies, "name.conflict-NODE-N").
 */
#ifndef KRAKEN_NODEID_H
#define KRAKEN_NODEID_H

#include <stdbool.h>
#include <stddef.h>

#define NODE_ID_MAX 64

/* Whether the LEN bytes at S are a node id. */
bool node_id_ok(const char *s, size_t len);

#endif
