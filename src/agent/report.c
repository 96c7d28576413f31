/* See report.h. */
#include "report.h"

#include "replicate.h"

#include <jansson.h>

static json_t *peer_json(const struct replicate_peer_status *p)
{
	return json_pack("{s:s,s:s,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
			 "s:I,s:o,s:b}",
			 "node_id", p->id, "address", p->address,
			 "connected", p->connected,
			 "last_seen_ns", (json_int_t)p->last_seen_ns,
			 "lag_entries", (json_int_t)p->lag_entries,
			 "lag_bytes", (json_int_t)p->lag_bytes,
			 "behind_entries", (json_int_t)p->behind_entries,
			 "entries_in", (json_int_t)p->entries_in,
			 "entries_out", (json_int_t)p->entries_out,
			 "entries_refused", (json_int_t)p->entries_refused,
			 "bytes_in", (json_int_t)p->bytes_in,
			 "bytes_out", (json_int_t)p->bytes_out,
			 "chunk_bytes_in", (json_int_t)p->chunk_bytes_in,
			 "clock_offset_ms", p->clock_known ?
			 json_integer((json_int_t)(p->clock_offset_ns / 1000000)) :
			 json_null(),
			 "clock_skewed", p->clock_skewed);
}

char *peer_report_text(const struct replicate_peer_status *st, size_t n,
		       uint64_t seq, int64_t written_ns)
{
	json_t *peers = json_array(), *doc;
	char *text;

	for (size_t i = 0; peers && i < n; i++)
		if (json_array_append_new(peers, peer_json(&st[i])) != 0) {
			json_decref(peers);
			peers = NULL;
		}
	doc = peers ? json_pack("{s:i,s:I,s:I,s:o}", "format",
				PEER_REPORT_FORMAT, "seq", (json_int_t)seq,
				"written_ns", (json_int_t)written_ns, "peers",
				peers) : NULL;
	text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	return text;
}
