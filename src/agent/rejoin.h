/*
 * Rejoining the cluster's history before publishing anything.  A node
 * whose journal is new while its volumes hold files (the journal was lost
 * or removed, or files were put there before the first start) would
 * otherwise record every file as a brand-new version, newer than every
 * edit and delete its peers made meanwhile, and the stale files would win
 * everywhere.  Instead (the agent's states):
 *
 *   joined   meta 'joined' is set, or there is nothing to adopt (no other
 *            node configured, journal.rejoin_wait 0, or no volume holds
 *            anything): the usual start-up scan.
 *   waiting  the watcher watches nothing yet and replication runs held
 *            (replicate_hold): entries are pulled, nothing is written,
 *            and HELLOs say the node is rejoining, so that another node
 *            rejoining does not take its empty history for the cluster's.
 *            Ends when a peer that is not rejoining is connected and no
 *            such peer holds an entry this node lacks -> adopt; or when journal.rejoin_wait
 *            passes with no peer -> the usual scan publishes the files as
 *            new versions (the first node of a new cluster), said in the
 *            log.
 *   adopt    watch_adopt (each file judged against the history, see
 *            journal adopt.c), replication released, 'joined' set.
 *
 * A crash while waiting leaves 'joined' unset, so the next start waits
 * again; a journal from before schema 10 that holds changes has joined.
 */
#ifndef KRAKEN_REJOIN_H
#define KRAKEN_REJOIN_H

#include "journal.h"
#include "replicate.h"
#include "watch.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A node waiting to rejoin; the pointers are the agent's. */
struct rejoin {
	struct journal *journal;
	struct watch *watch;
	struct replicate *replicate;
	uint64_t wait_ms;         /* journal.rejoin_wait */
	int64_t until;            /* monotonic: then publish without peers */
	int64_t next;             /* next look at the peers */
	int64_t said;             /* last "still waiting" line */
};

enum rejoin_step {
	REJOIN_WAITING,
	REJOIN_ADOPTED,           /* the volumes adopted and committed */
	REJOIN_TIMED_OUT,         /* no peer: the caller scans as usual */
	REJOIN_PUBLISHED,         /* ... and has */
};

/* Whether J must learn the history before its volumes under ROOT are
 * scanned, with N_OTHERS other nodes configured and WAIT_MS allowed.
 * When not, the journal is marked as joined (in the open batch). */
bool rejoin_needed(struct journal *j, const char *root, size_t n_others,
		   uint64_t wait_ms);
/* Whether the peers in ST say the history is learned: one that is not
 * rejoining itself is connected, and no such one holds an entry this
 * node lacks. */
bool rejoin_learned(const struct replicate_peer_status *st, size_t n);
/* Marks J as joined, saying HOW (in the open batch). */
int rejoin_mark(struct journal *j, const char *how);

/* Starts waiting at NOW: replication held, said in the log. */
void rejoin_begin(struct rejoin *rj, int64_t now);
/* A look at the peers (when rj->next is due): the history learned, the
 * volumes are adopted; or the wait is over. */
enum rejoin_step rejoin_tick(struct rejoin *rj, int64_t now);
/* Rejoined by STEP (ADOPTED or PUBLISHED): marked in the journal,
 * replication released. */
void rejoin_end(struct rejoin *rj, enum rejoin_step step);

#endif
