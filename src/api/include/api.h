/*
 * The agent's HTTP faces, served by libmicrohttpd on its own thread:
 *
 *   REST + metrics + dashboard on api.listen (TCP, default 127.0.0.1:6882)
 *     every request: a Host naming this server (rest.c)
 *     GET  /health                 {"status":"ok"}
 *     GET  /v1/status              node, version vector, uptime, peers
 *     GET  /v1/peers
 *     GET  /v1/volumes, /v1/volumes/{name}
 *     GET  /v1/journal?volume=&path=&origin=&since=&until=&op=&limit=&before=
 *     GET  /v1/versions?volume=&path=  a file's versions and which node
 *                                  keeps each (the peers are asked:
 *                                  the request waits, api_ask.c)
 *     GET  /v1/conflicts
 *     GET  /metrics                Prometheus text format
 *     POST /v1/admin/resync, /v1/admin/rescan, /v1/admin/reload,
 *          /v1/admin/compact, /v1/admin/scrub,
 *          /v1/admin/restore?volume=&path=&at= (in place: restore.c),
 *          /v1/admin/fetch?volume=&path=&at= (into the version store,
 *          for kraken-journal restore --to: rest_restore.c)
 *                                  Bearer token (api.token_file)
 *     GET  /                       the dashboard (one embedded page)
 *   Once api.read_token_file is set, every request but GET / and the
 *   admin calls needs a Bearer token, the read or the admin one; without
 *   it they need none.
 *
 *   Docker VolumeDriver on plugin.socket (unix socket)
 *     /Plugin.Activate, /VolumeDriver.{Create,Remove,Mount,Unmount,Path,
 *     Get,List,Capabilities}
 *
 * Threads.  The HTTP thread reads the journal through its own read-only
 * connection.  What only the event-loop thread knows (peers, latency
 * histograms, counters) reaches it as a snapshot the loop publishes about
 * once a second (api_publish, copied under a mutex).  Requests that must
 * act on the loop's state (admin resync/rescan) become commands the loop
 * collects from api_command_fd() with api_next_command().  Volume create
 * and remove act on the file system directly (mkdir, or a move aside under
 * ROOT/.krakenfs-removed); the watcher journals them like any other
 * change.  Mount references are kept in the journal database's mounts
 * table through the API's own connection.
 */
#ifndef KRAKEN_API_H
#define KRAKEN_API_H

#include "content.h"
#include "hist.h"
#include "journal.h"
#include "path.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct api;

#define API_PEERS_MAX 64
/* Docker bind-mounts a volume right after Mount answers; ten seconds
 * covers a slow container start with a wide margin. */
#define API_MOUNT_GRACE_MS 10000

struct api_peer {
	char id[65];
	char address[300];
	bool connected;
	int64_t last_seen_ns;       /* wall clock, 0: never */
	uint64_t lag_entries;       /* entries it lacks that we hold */
	uint64_t lag_bytes;         /* their content size */
	uint64_t behind_entries;    /* entries it holds that we lack */
	uint64_t bytes_in, bytes_out;
	uint64_t entries_in, entries_out;
	uint64_t entries_refused;   /* forged, hostile or out of bounds */
	bool clock_known;           /* its clock's offset was measured */
	bool clock_skewed;          /* off ours by over sync.max_clock_skew */
	int64_t clock_offset_ns;    /* its wall clock minus ours */
};

/* What the loop thread knows, published for the HTTP thread. */
struct api_snapshot {
	int64_t published_ns;       /* monotonic */
	uint64_t changes_recorded;  /* local changes since start */
	uint64_t changes_applied;   /* remote versions put on disk */
	uint64_t conflicts;         /* conflicts resolved since start */
	uint64_t jobs;              /* versions waiting to be applied */
	uint64_t jobs_stuck;        /* of those, failing again and again */
	bool rejoining;             /* learning the history before adopting
				     * the volumes (agent rejoin.h) */
	uint64_t jobs_bytes;
	uint64_t journal_bytes;     /* journal.db */
	uint64_t wal_bytes;         /* journal.db-wal */
	/* Retention (compact.c): 0 when compaction is off or never ran. */
	int64_t retention_ns;       /* journal.retention */
	int64_t compacted_before_ns;    /* history before this may be gone */
	int64_t last_compaction_ns;     /* wall time the last pass ended */
	bool compacting;            /* a pass is under way */
	uint64_t compacted_changes;     /* removed by passes since start */
	uint64_t compacted_tombstones;
	uint64_t compacted_contents;
	uint64_t compaction_pages_freed;
	uint64_t exchanges_served;  /* state exchanges sent since start */
	uint64_t exchanges_applied; /* and received */
	/* The scrub (replicate.h): counts since start. */
	int64_t scrub_period_ns;    /* volume.scrub_period; 0: when asked */
	uint64_t scrub_files, scrub_bytes;  /* checked */
	uint64_t scrub_damaged;     /* files found damaged */
	uint64_t scrub_repaired;    /* damaged files made again */
	uint64_t damaged_chunks;    /* reused chunks that did not check */
	uint64_t scrub_passes;
	int64_t scrub_last_pass_ns; /* wall clock; 0: none yet */
	bool scrubbing;
	struct api_peer peers[API_PEERS_MAX];
	size_t n_peers;
	struct hist commit_latency_us;   /* event to commit */
	struct hist apply_latency_us;    /* entry received to file in place */
};

enum api_command {
	API_CMD_NONE,
	API_CMD_RESCAN,
	API_CMD_RESYNC,
	API_CMD_RELOAD,             /* the config file validated; re-read it */
	API_CMD_COMPACT,            /* a compaction pass now */
	API_CMD_SCRUB,              /* a scrub pass now, at full pace */
	API_CMD_RESTORE,            /* restores wait: api_next_restore */
	API_CMD_ASK,                /* questions wait: api_next_ask */
};

/* A restore in place whose content this node does not keep: the loop
 * thread has it fetched from peers (replicate_restore); or, TO_STORE,
 * only fetched into the version store (replicate_fetch), for a restore
 * to a file (POST /v1/admin/fetch). */
struct api_restore {
	char volume[VOLUME_NAME_MAX + 1];
	char path[PATH_REL_MAX + 1];
	struct journal_ref ref;
	bool to_store;
};

/* GET /v1/versions: which peers keep versions this node does not hold.
 * The loop thread asks them (replicate_ask_kept) and hands the answers
 * back with api_ask_answered; the HTTP request waits meanwhile. */
#define API_ASK_MAX 256
struct api_ask {
	uint64_t id;
	char volume[VOLUME_NAME_MAX + 1];
	char path[PATH_REL_MAX + 1];
	uint32_t n;               /* 1..API_ASK_MAX */
	uint8_t hashes[API_ASK_MAX][CONTENT_HASH_LEN];
};

enum api_kept_status {
	API_KEPT_ANSWERED,        /* here[] says */
	API_KEPT_OFFLINE,         /* not connected */
	API_KEPT_SILENT,          /* asked; no answer in time */
	API_KEPT_OLD,             /* its agent cannot be asked */
};

struct api_kept {
	char id[65];
	enum api_kept_status status;
	uint8_t here[API_ASK_MAX];    /* 1: it has the i-th version asked */
};

/*
 * Checks the configuration a reload would apply, on the HTTP thread: 0,
 * or nonzero with *PROBLEMS (malloc'd, one line per problem, or NULL)
 * and the reload is refused with them.  A hook rather than a path
 * because reading the configuration is the agent's (src/agent/config),
 * which the API sits below.
 */
typedef int (*api_config_check_fn)(void *ctx, char **problems);

struct api_options {
	const char *node_id;
	const char *journal_path;    /* opened read-only, and for mounts */
	const char *root;            /* volume.root_path */
	const char *listen_host;     /* NULL: no REST server */
	uint16_t listen_port;
	const char *token_file;      /* admin token; missing: admin refused */
	const char *read_token_file; /* NULL: reads need no token */
	char *const *allowed_hosts;  /* more names accepted in Host */
	size_t n_allowed_hosts;
	api_config_check_fn check_config;  /* before a reload; NULL: none */
	void *check_config_ctx;
	const char *plugin_socket;   /* NULL: no Docker plugin */
	const char *driver_name;
	unsigned mount_wait_ms;      /* Mount waits this long to catch up */
	unsigned mount_grace_ms;     /* a mount reference is trusted this
				      * long without a matching mount;
				      * 0: API_MOUNT_GRACE_MS */
	bool journal_signed;         /* entries are signed (a TLS cluster) */
};

/*
 * Starts the servers.  0, or a negative code with *errmsg (malloc'd)
 * saying what failed (e.g. "cannot listen on 127.0.0.1:6882: address in
 * use").
 */
int api_new(const struct api_options *opt, struct api **out, char **errmsg);
/* Stops the servers and frees everything; NULL is ignored. */
void api_free(struct api *a);

/* Copies SNAP for the HTTP thread.  Loop thread. */
void api_publish(struct api *a, const struct api_snapshot *snap);

/* An eventfd readable while commands wait; the loop polls it. */
int api_command_fd(const struct api *a);
/* The next waiting command, API_CMD_NONE when there is none. */
enum api_command api_next_command(struct api *a);
/* The next waiting restore into *OUT; false when none waits. */
bool api_next_restore(struct api *a, struct api_restore *out);
/* The next waiting question into *OUT; false when none waits.  Each one
 * taken must be answered, once: with no peers when none can be asked. */
bool api_next_ask(struct api *a, struct api_ask *out);
/* The answers to question ID, N_PEERS of them (copied; PEERS NULL: the
 * peers could not be asked); the request that asked goes on.  Any
 * thread. */
void api_ask_answered(struct api *a, uint64_t id,
		      const struct api_kept *peers, size_t n_peers);

/* ---- additions by the REST half (api.c / rest.c) ---------------------- */

/* The TCP port the REST server listens on (the real one when the
 * configured port was 0, as tests use); 0 when there is no REST server. */
uint16_t api_rest_port(const struct api *a);

#endif
