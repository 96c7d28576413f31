/*
 * The peer report: what the agent knows of each peer, stored once a
 * second in the journal's meta table (key "peer_report") for tools that
 * read the journal without the agent's API (kraken-journal status).
 *
 *   {"format": 1, "seq": N, "written_ns": WALL,
 *    "peers": [{"node_id", "address", "connected", "last_seen_ns",
 *               "lag_entries", "lag_bytes", "behind_entries",
 *               "entries_in", "entries_out", "entries_refused",
 *               "bytes_in", "bytes_out", "chunk_bytes_in",
 *               "clock_offset_ms" (null until measured), "clock_skewed"}]}
 *
 * seq grows by one per report from the agent's start (a restart starts
 * again at 1, with a later written_ns): a reader that saw seq N and waits
 * for another knows the next one describes a later moment.  A reader
 * takes format 1 only and says so for others.
 */
#ifndef KRAKEN_AGENT_REPORT_H
#define KRAKEN_AGENT_REPORT_H

#include <stddef.h>
#include <stdint.h>

#define PEER_REPORT_KEY "peer_report"
#define PEER_REPORT_FORMAT 1

struct replicate_peer_status;

/* The report of the N peers ST as text (malloc'd), or NULL when out of
 * memory. */
char *peer_report_text(const struct replicate_peer_status *st, size_t n,
		       uint64_t seq, int64_t written_ns);

#endif
