/*
 * Transfers: one file version being made from chunks, for one job.
 *
 * A job whose content the disk lacks becomes a transfer (apply.c).  Its
 * life, one state at a time (transfer_set_state checks each move):
 *
 *            +--> PRECOPY --+
 *            |              v
 *   LIST ----+-----------> FETCH ----> READY <---> SYNCING ----> DONE
 *     |                      |           |            |
 *     +----------------------+-----------+------------+--------> FAILED
 *
 *   LIST     the chunk list is taken from a pushed small file (push.h),
 *            the journal, or asked of a peer (GET_CHUNKLIST, paged) and
 *            checked against the content hash (fetch.c).  A peer's list
 *            goes into the journal while the file is flushed, not on the
 *            way to its first chunk;
 *   PRECOPY  the list is known, and the temp file is the copy of the
 *            replaced version being made ahead (precopy.c); it waits;
 *   FETCH    a hidden temp file beside the target (".krakenfs-tmp-*",
 *            which the watcher ignores) is filled: chunks this node holds
 *            in any file are copied (reuse.c), the rest are asked of
 *            peers holding the version (GET_CHUNKS, pipelined, a window
 *            per peer, every chunk verified on arrival).  Missing chunks
 *            next to the ones kept from the version being replaced are
 *            asked for as deltas from its bytes (plan.h, GET_DELTA);
 *            large chunks are verified and written by the writer thread
 *            (writer.h).  Writeback starts every few MiB, and what came
 *            from peers is flushed every 64 MiB on the syncer thread, so
 *            the flush before the rename finds little left;
 *   READY    all chunks in: mode, owner and times are set.  The file is
 *            not hashed again: every chunk was verified against its hash
 *            before it was written, at the offset the verified list
 *            gives, so the file is the content by construction.  A ready
 *            file whose path still waits for a conflict copy stays here;
 *   SYNCING  in the batch being flushed (commit.c): one flush for the
 *            batch on the syncer thread, then each file is renamed into
 *            place (only if the path still holds what the journal says,
 *            so unsynced local data is never overwritten) and the journal
 *            marks the job done;
 *   DONE     freed at the end of the commit;
 *   FAILED   reaped (its job counted as failed, retried later) once the
 *            writer thread holds nothing of it.
 * A crash at any point leaves the job in the journal and at worst a temp
 * file, which the next attempt replaces.
 *
 * Each chunk of a transfer in FETCH has a state too (transfer_chunk_set
 * checks each move and keeps the count of missing chunks and the
 * "wanted" filter):
 *
 *   MISSING --> ASKED --> WRITING --> HERE
 *      |  ^       |          |         ^
 *      |  +-------+----------+         |      (refused, lost, corrupt)
 *      |                               |
 *      +--> FROM_BASE --> CHECKING ----+      (copied from the base,
 *      |        |             |                read back and hashed)
 *      |        +-------------+--> MISSING
 *      +------------------------------> HERE  (copied from a local file,
 *                                              or verified here)
 *
 * Files: transfer.c (the set, its steps and the peers asked), reuse.c
 * (chunks this node already holds: other files, the base), fetch.c
 * (what peers send, the writer thread), commit.c (the flush and the
 * renames).  The set is struct replicate's `xfer`; only these files
 * touch its fields.
 */
#ifndef KRAKEN_TRANSFER_H
#define KRAKEN_TRANSFER_H

#include "journal.h"
#include "plan.h"
#include "push.h"
#include "strmap.h"
#include "tempname.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct peer;
struct replicate;
struct syncer;
struct writer;
struct wire_chunklist;
struct wire_chunk;
struct wire_delta;

#define TRANSFER_WRITEBACK_BYTES (8u << 20)
/* Files over this size: their lists and temp files are what a transfer
 * costs, and a few at full speed beat many crawling. */
#define TRANSFER_LARGE_SIZE (1u << 20)
#define TRANSFER_LARGE_MAX 512

enum transfer_state {
	TRANSFER_LIST,
	TRANSFER_PRECOPY,
	TRANSFER_FETCH,
	TRANSFER_READY,
	TRANSFER_SYNCING,
	TRANSFER_DONE,
	TRANSFER_FAILED,
};

/* Where each chunk of a transfer stands.  The order counts: below HERE a
 * chunk arriving from a peer is taken. */
enum chunk_state {
	CHUNK_MISSING,
	CHUNK_ASKED,              /* of a peer */
	CHUNK_HERE,               /* written and verified */
	CHUNK_FROM_BASE,          /* to be copied from the base */
	CHUNK_WRITING,            /* with the writer thread */
	CHUNK_CHECKING,           /* copied from the base, being verified */
};

struct transfer {
	struct replicate *r;
	enum transfer_state state;
	int error;                /* FAILED: why, a negative code */
	struct journal_job job;
	struct content list;      /* chunk list, once known */
	struct content base;      /* the replaced version's list, while the
				   * new one is asked as runs of it */
	struct peer *list_from;   /* asked for the list */
	size_t list_got;
	int dirfd;                /* O_PATH parent of the target */
	const char *name;         /* last component of job.path */
	char tmp[TEMPNAME_MAX];
	int fd;                   /* the temp file */
	uint8_t *got;             /* per chunk, enum chunk_state */
	unsigned writing;         /* writer targets naming this transfer */
	uint32_t *by_hash;        /* chunk indexes sorted by chunk hash */
	size_t missing;           /* chunks not HERE */
	uint64_t unflushed;       /* bytes written since writeback started */
	uint64_t undurable;       /* bytes written since a flush started */
	bool list_looked_up;      /* the journal was asked for the list */
	bool list_unstored;       /* from a peer, not in the journal yet */
	bool awaited;             /* counted in the set's awaited filter */
	bool meta_set;            /* the writer set mode, owner, mtime */
	bool precopied;           /* the temp file began as the base */
	int64_t started_ns;
	int64_t fetch_ns;         /* list known, temp file being filled */
	int64_t ready_ns;         /* every chunk in */
	int64_t flush_ns;         /* its flush started */
	size_t next_ask;          /* first chunk not yet asked */
	size_t check_next;        /* first chunk not yet sent to be checked */
	size_t damaged;           /* base chunks that did not check */
	struct plan_delta *deltas;  /* sorted by chunk index */
	size_t n_deltas;
	int base_fd;              /* the base on disk, while deltas are asked */
	uint64_t refused;         /* bit i: peers[i] said "not here" */
	struct transfer *next;
};

/* Peers beyond this slot are never marked as having refused. */
#define TRANSFER_REFUSED_SLOTS 64

/* Every transfer of a replicator, and what serves them. */
struct transfer_set {
	struct transfer *head;
	unsigned n, max, n_large;
	struct strmap inflight;   /* "volume/path" -> struct transfer */
	uint32_t *wanted, *awaited;   /* counting filters (transfer.c) */
	struct push_store pushed;     /* fetch.c */
	struct writer *writer;        /* fetch.c: made on first use */
	uint64_t damaged_chunks;      /* reuse.c: base chunks that did not
				       * check */
	bool freed;                   /* a transfer ended: the applier may
				       * start another (apply.c clears) */
	struct {                      /* commit.c */
		struct syncer *syncer;    /* made on first use */
		bool running;
		int64_t ended_ns;         /* the last flush ended */
		int64_t at;               /* a gathered batch is due; 0: none */
	} commit;
};

/* ---- for the rest of the replicator -------------------------------------- */

/* How many transfers may run at once, from the descriptor limit. */
unsigned transfer_max(void);
/* Makes JOB (its strings now the transfer's) a transfer.  0 or
 * negative. */
int transfer_new(struct replicate *r, struct journal_job *job);
/* A transfer for VOLUME/PATH is under way. */
bool transfer_busy(struct replicate *r, const char *volume, const char *path);
/* Whether a job may start a transfer of SIZE bytes now. */
bool transfer_room(const struct replicate *r, uint64_t size);
/* Steps every transfer, commits the ready, reaps the failed. */
void transfer_tick(struct replicate *r);
void transfer_peer_gone(struct replicate *r, struct peer *p);
/* P leaves the cluster and is about to be freed. */
void transfer_peer_removed(struct replicate *r, struct peer *p);
/* Peer slots were renumbered. */
void transfer_peers_renumbered(struct replicate *r);
/* Waits for a running flush, stops the writer and syncer threads. */
void transfer_stop(struct replicate *r);
void transfer_free_all(struct replicate *r);

/* fetch.c: frames from peers. */
void fetch_on_chunklist(struct replicate *r, struct peer *p,
			const struct wire_chunklist *cl);
void fetch_on_chunk(struct replicate *r, struct peer *p,
		    const struct wire_chunk *c);
void fetch_on_not_here(struct replicate *r, struct peer *p,
		       const uint8_t *hash);
void fetch_on_delta(struct replicate *r, struct peer *p,
		    const struct wire_delta *d);

/* commit.c: when a gathered batch is due (0: none). */
int64_t commit_deadline(const struct replicate *r);

/* ---- between the transfer files ------------------------------------------ */

/* T moves to state TO (asserted to be a move the diagram allows). */
void transfer_set_state(struct transfer *t, enum transfer_state to);
/* T cannot go on: reaped, and its job counted as failed for ERR. */
void transfer_fail(struct transfer *t, int err);
/* T is in a state that takes chunks. */
bool transfer_fetching(const struct transfer *t);
/* Chunk I of T moves to state TO (asserted); keeps T's missing count and
 * the wanted filter. */
void transfer_chunk_set(struct transfer *t, size_t i, enum chunk_state to);
/* Chunks FIRST.. FIRST + N - 1 of T are written and verified. */
void transfer_mark(struct transfer *t, size_t first, size_t n);
/* Writes verified DATA as chunk I of T. */
void transfer_put_chunk(struct transfer *t, size_t i, const uint8_t *data);
/* Every chunk is in: T is READY once its metadata is set. */
void transfer_finish(struct transfer *t);
void transfer_step(struct replicate *r, struct transfer *t);
/* The list is known: T gets its per-chunk state, fills its temp file
 * from what is here and asks peers for the rest. */
void transfer_start_fetch(struct replicate *r, struct transfer *t);
/* Asks a peer for the next missing chunks of T; the peer, or NULL. */
struct peer *transfer_ask_chunks(struct replicate *r, struct transfer *t);
/* Unlinks T from the set and frees it. */
void transfer_drop(struct replicate *r, struct transfer *t);
/* Chunks of T named HASH: [*first, *first + *n) of t->by_hash. */
void transfer_chunks_named(const struct transfer *t, const uint8_t *hash,
			   size_t *first, size_t *n);
/* LEN chunk bytes asked of P are answered (or refused). */
void transfer_peer_answered(struct peer *p, uint32_t len);
/* P refused T or a chunk of it: not asked again for T; the chunks still
 * missing are asked again from the start. */
void transfer_refused_by(struct transfer *t, const struct peer *p);
/* The list is known: per-chunk state, the index by hash, the filters
 * told.  0, or -ENOMEM (T failed). */
int transfer_prepare(struct replicate *r, struct transfer *t);
/* Whether filter F (the set's wanted or awaited) may hold HASH. */
bool transfer_filter_maybe(const uint32_t *f, const uint8_t *hash);
/* Reads the base's bytes for W into BUF (W's chunk length). */
bool transfer_base_read(const struct transfer *t, const struct plan_delta *w,
			uint8_t *buf);

/* reuse.c: after transfer_start_fetch's bookkeeping, the temp file opened
 * (-EINPROGRESS: PRECOPY), local chunks copied, peers asked. */
void reuse_fill(struct replicate *r, struct transfer *t);
/* Hands chunks copied from the base to be checked. */
void reuse_check_base(struct replicate *r, struct transfer *t);
/* Chunks I.. I + N - 1 were checked together with RESULT. */
void reuse_checked(struct replicate *r, struct transfer *t, size_t i,
		   size_t n, int result);

/* fetch.c */
/* T's content, when it was pushed: its one-chunk list, and the chunk
 * written to the temp file. */
bool fetch_push_claim(struct replicate *r, struct transfer *t);
/* The writer thread, started on first use.  0 or negative. */
int fetch_writer(struct replicate *r);
/* Joins the writer thread (before the transfers it writes for go). */
void fetch_stop(struct replicate *r);
/* Counts LEN bytes from peers into T's temp file; starts a flush of
 * what it holds every so often (commit.c). */
void commit_sync_ahead(struct transfer *t, uint32_t len);
/* Commits what is ready (commit.c). */
void commit_ready(struct replicate *r);
void commit_stop(struct replicate *r);

#endif
