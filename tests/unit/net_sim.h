/* The journal-level cluster of test_replica and test_compact. */
#ifndef KRAKEN_NET_SIM_H
#define KRAKEN_NET_SIM_H

#include "content.h"
#include "journal.h"

#include <stdint.h>
#include <sys/stat.h>

#define NODES 3
#define TEXTS 4
#define NET_SNAP_MAX (256 << 10)   /* net_snapshot's text */

extern const char *const net_texts[TEXTS];
extern struct content net_contents[TEXTS];

struct net {
	char dir[64];
	struct journal *j[NODES];
	char origin[NODES][JOURNAL_ORIGIN_MAX];
	unsigned seed;
	int exchanges;            /* state exchanges net_deliver fell back to */
};

/* Three journals "n0".."n2" in a new directory, each with volume "vol"
 * and the others as its configured peers. */
int net_open(struct net **out);
int net_close(struct net *n);
int64_t net_now_ns(void);

struct stat net_file_stat(int text, uint32_t uid);
void net_put(struct net *n, int node, const char *path, int text);
void net_mkdir(struct net *n, int node, const char *path);
/* What FROM holds and TO lacks, every origin; the count added. */
int net_deliver(struct net *n, int from, int to);
/* FROM's vector and heads to TO, the way the replicator sends them. */
void net_exchange(struct net *n, int from, int to);
/* NODE learns PEER's vector (its acknowledgement) at NOW_NS. */
void net_ack(struct net *n, int node, int peer, int64_t now_ns);
/* A whole compaction pass on NODE, retention 0 (ST may be NULL). */
void net_compact(struct net *n, int node, int64_t now_ns, int64_t pin_max_ns,
		 struct journal_compact_stats *st);
int net_text_of(const uint8_t *hash);
/* Every job "written" at once; the count. */
int net_apply_jobs(struct net *n, int node);
/* Delivers and applies until nothing moves. */
void net_settle(struct net *n);
/* "path=text/mode;" of every current path, sorted. */
void net_snapshot(struct net *n, int node, char *out, size_t cap);
void net_assert_converged(struct net *n);
void net_fail_diff(const char *a, const char *b, int na, int nb);

#endif
