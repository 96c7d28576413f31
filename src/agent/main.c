/*
 * krakenfs-agent: wires config, journal and watcher into one event loop.
 *
 * Thread model: this thread owns the loop, the journal's write connection
 * and the watcher.  Signals arrive through a signalfd, so a SIGTERM is an
 * ordinary event: the loop stops, what is pending is examined and
 * committed, and the process exits 0.
 *
 * Failure policy: a failed journal commit (disk full, I/O error) loses no
 * data on disk; the agent logs it and rescans after a pause, which records
 * again whatever the rolled-back batch held.
 *
 * One agent per journal and per volume root: before anything is opened
 * it locks JOURNAL.lock and ROOT/.krakenfs-agent.lock (pidlock.h), and a
 * second agent exits at once naming the pid that holds them.
 */
#include "api.h"
#include "config.h"
#include "err.h"
#include "hist.h"
#include "journal.h"
#include "log.h"
#include "loop.h"
#include "notify.h"
#include "path.h"
#include "pidlock.h"
#include "tempname.h"
#include "replicate.h"
#include "retention.h"
#include "keyring.h"
#include "tls.h"
#include "rejoin.h"
#include "ask.h"
#include "reload.h"
#include "report.h"
#include "watch.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define AGENT_RETRY_NS (5LL * 1000000000)

struct agent {
	struct config *cfg;
	const char *config_path;
	bool config_explicit;      /* --config given: the file must exist */
	bool level_forced;         /* --log-level given: reload keeps it */
	struct journal *journal;
	struct watch *watch;
	struct replicate *replicate;
	struct api *api;
	SSL_CTX *tls_server, *tls_client;
	struct keyring *keyring;  /* signs and checks journal chains */
	struct loop *loop;
	int sigfd;
	int64_t retry_at;          /* monotonic ns of the next rescan, or 0 */
	bool failing;
	struct hist commit_latency; /* microseconds, event to commit */
	int64_t status_at;          /* next peer-status write to the journal */
	uint64_t peer_report_seq;   /* the last one's (report.h) */
	int64_t watchdog_ns;        /* ping interval asked by systemd, or 0 */
	int64_t watchdog_at;
	int lock_fd[2];             /* the journal's and the root's locks */
	struct retention *retention;
	bool rejoining;             /* learning the history (rejoin.h) */
	struct rejoin rejoin;
};

static void agent_usage(FILE *out)
{
	fprintf(out,
		"usage: krakenfs-agent [--config FILE] [--log-level LEVEL]\n"
		"       krakenfs-agent --validate-config FILE\n"
		"       krakenfs-agent tls init|issue ...   (see tls --help)\n"
		"       krakenfs-agent --version | --help\n"
		"\n"
		"Runs the KrakenFS agent in the foreground: watches the volumes\n"
		"under volume.root_path and commits every change to the journal.\n"
		"\n"
		"  -c, --config FILE          configuration (default %s;\n"
		"                             when absent, built-in defaults)\n"
		"      --validate-config FILE check FILE, print every problem,\n"
		"                             exit 1 if there is any\n"
		"  -l, --log-level LEVEL      error, warn, info or debug\n"
		"                             (overrides log.level)\n"
		"  -V, --version              print the version\n"
		"  -h, --help                 this text\n"
		"\n"
		"Environment: NODE_ID and CLUSTER_NODES (id:host[:port],...)\n"
		"override sync.node_id and sync.cluster_nodes.\n"
		"\n"
		"Signals: SIGTERM/SIGINT commit and stop; SIGHUP re-reads the\n"
		"config (as POST /v1/admin/reload does) and applies the cluster's\n"
		"nodes, bandwidth limits, conflict strategy, journal retention and\n"
		"log level; other\n"
		"keys are named in the log as needing a restart.  Under systemd\n"
		"(Type=notify) it reports READY=1, RELOADING=1, STOPPING=1 and\n"
		"answers the watchdog (WatchdogSec=).\n",
		CONFIG_DEFAULT_PATH);
}

static int agent_load_config(const char *path, bool explicit,
			     struct config **out)
{
	struct config_diag diag = { 0 };
	int err;

	if (!explicit && access(path, F_OK) != 0) {
		log_info("agent", "no %s; using built-in defaults", path);
		path = NULL;
	}
	err = config_load(path, getenv("NODE_ID"), getenv("CLUSTER_NODES"),
			  out, &diag);
	if (diag.text)
		fputs(diag.text, stderr);
	config_diag_release(&diag);
	return err;
}

/*
 * The API's check before it queues a reload (api_options.check_config):
 * the same load the reload will do, its problems handed over as text.
 * The path and whether it was given are fixed at start, so reading them
 * from the HTTP thread is safe.
 */
static int agent_check_config(void *ctx, char **problems)
{
	const struct agent *a = ctx;
	struct config_diag diag = { 0 };
	struct config *cfg = NULL;
	const char *path = a->config_path;
	int err;

	if (!a->config_explicit && access(path, F_OK) != 0)
		path = NULL;
	err = config_load(path, getenv("NODE_ID"), getenv("CLUSTER_NODES"),
			  &cfg, &diag);
	config_free(cfg);
	*problems = diag.text;
	diag.text = NULL;
	config_diag_release(&diag);
	return err;
}

static int agent_validate(const char *path)
{
	struct config *cfg = NULL;
	int err = agent_load_config(path, true, &cfg);

	if (err == 0)
		printf("%s: ok (node %s, %zu cluster nodes)\n", path,
		       cfg->node_id, cfg->n_peers);
	config_free(cfg);
	return err ? 1 : 0;
}

static int agent_store_excludes(struct agent *a)
{
	const struct config *cfg = a->cfg;
	size_t len = 1;
	char *text;
	int err;

	for (size_t i = 0; i < cfg->n_exclude_patterns; i++)
		len += strlen(cfg->exclude_patterns[i]) + 1;
	text = calloc(1, len);
	if (!text)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_exclude_patterns; i++) {
		strcat(text, cfg->exclude_patterns[i]);
		strcat(text, "\n");
	}
	err = journal_meta_set(a->journal, "exclude_patterns", text);
	free(text);
	return err;
}

/* Beside the volumes, hidden like every name the agent keeps there. */
#define AGENT_ROOT_LOCK ".krakenfs-agent.lock"

static int agent_lock_one(const char *path, const char *what,
			  const char *name, int *fd)
{
	pid_t holder;
	int err = pidlock_acquire(path, fd, &holder);

	if (err == -EBUSY)
		log_error("agent", "%s %s is in use by another krakenfs-agent "
			  "(pid %ld): stop that one first, or give this one "
			  "its own journal.path and volume.root_path", what,
			  name, (long)holder);
	else if (err)
		log_error("agent", "cannot lock %s %s (%s): %s", what, name,
			  path, kr_strerror(err));
	return err;
}

/*
 * One agent per journal and per volume root: a second one would record
 * every change twice and take every peer connection over from the first.
 * Checked before anything is opened, so the first is not disturbed.
 */
static int agent_lock(struct agent *a)
{
	const struct config *cfg = a->cfg;
	char path[PATH_MAX];
	int err;

	if (snprintf(path, sizeof(path), "%s.lock", cfg->journal_path) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	err = agent_lock_one(path, "the journal", cfg->journal_path,
			     &a->lock_fd[0]);
	if (err)
		return err;
	err = path_mkdirs(cfg->root_path, 0755);
	if (err) {
		log_error("agent", "cannot create volume.root_path %s: %s",
			  cfg->root_path, kr_strerror(err));
		return err;
	}
	if (snprintf(path, sizeof(path), "%s/%s", cfg->root_path,
		     AGENT_ROOT_LOCK) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	err = agent_lock_one(path, "the volume root", cfg->root_path,
			     &a->lock_fd[1]);
	if (!err && (err = tempname_init(cfg->root_path)) != 0)
		log_error("agent", "cannot read or make %s/.krakenfs-temp-tag "
			  "(the tag of this node's temp file names): %s; if it "
			  "is damaged, remove it", cfg->root_path,
			  kr_strerror(err));
	return err;
}

static int agent_open_journal(struct agent *a)
{
	const struct config *cfg = a->cfg;
	char *dir = strdup(cfg->journal_path);
	char *errmsg = NULL;
	int err = dir ? path_mkdirs(dirname(dir), 0755) : -ENOMEM;

	free(dir);
	if (err) {
		log_error("agent", "cannot create the directory of journal.path "
			  "%s: %s", cfg->journal_path, kr_strerror(err));
		return err;
	}
	err = agent_lock(a);
	if (err)
		return err;
	err = journal_open(cfg->journal_path, cfg->node_id,
			   JOURNAL_BACKGROUND_CHECKPOINT, &a->journal,
			   &errmsg);
	if (err) {
		log_error("agent", "%s", errmsg ? errmsg : kr_strerror(err));
		free(errmsg);
		return err;
	}
	/* kraken-journal verify reads these to check the right tree. */
	err = journal_meta_set(a->journal, "volume_root", cfg->root_path);
	if (!err)
		err = agent_store_excludes(a);
	if (!err)
		err = journal_flush(a->journal);
	return err;
}

/* A large file is about to be hashed: peers may start on their part. */
static void agent_on_changing(void *arg, const char *volume, const char *path,
			      const uint8_t base[CONTENT_HASH_LEN],
			      uint64_t size)
{
	struct agent *a = arg;

	if (a->replicate)
		replicate_changing(a->replicate, volume, path, base, size);
}

/* A small file was read for its hash: its bytes go to peers from here. */
static void agent_on_small(void *arg, const struct content *c,
			   const void *data)
{
	struct agent *a = arg;

	if (a->replicate)
		replicate_offer(a->replicate, c, data);
}

/* watch_paths name the root (every volume) or single volumes under it. */
static int agent_start_watch(struct agent *a)
{
	const struct config *cfg = a->cfg;
	struct watch_options opt = {
		.root = cfg->root_path,
		.exclude = cfg->exclude_patterns,
		.n_exclude = cfg->n_exclude_patterns,
		.changing = agent_on_changing,
		.changing_arg = a,
		.small = agent_on_small,
		.small_arg = a,
	};
	char **vols = calloc(cfg->n_watch_paths + 1, sizeof(*vols));
	int err;

	if (!vols)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_watch_paths; i++) {
		if (strcmp(cfg->watch_paths[i], cfg->root_path) == 0) {
			opt.volumes = NULL;
			opt.n_volumes = 0;
			break;
		}
		vols[opt.n_volumes++] = (char *)path_basename(cfg->watch_paths[i]);
		opt.volumes = vols;
	}
	err = watch_new(a->journal, &opt, &a->watch);
	free(vols);
	return err;
}

/* The replicator's view of the other nodes in CFG.  Caller frees *OUT;
 * the strings stay CFG's. */
static int agent_peer_list(const struct config *cfg,
			   struct replicate_peer_config **out, size_t *n)
{
	const struct config_peer *self = config_self(cfg);

	*n = 0;
	*out = calloc(cfg->n_peers + 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_peers; i++) {
		if (&cfg->peers[i] == self)
			continue;
		(*out)[(*n)++] = (struct replicate_peer_config){
			cfg->peers[i].id, cfg->peers[i].host, cfg->peers[i].port };
	}
	return 0;
}

/* Compaction from CFG's journal keys, with CFG's nodes as the peers
 * whose acknowledgements it waits for. */
/* Kept versions live beside the volumes (JOURNAL_VERSIONS_DIR). */
static int agent_versions(struct agent *a, const struct config *cfg)
{
	char dir[PATH_MAX];

	if (snprintf(dir, sizeof(dir), "%s/" JOURNAL_VERSIONS_DIR,
		     cfg->root_path) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	return retention_versions(a->retention, dir, cfg->root_path,
				  cfg->versions_keep_ms, cfg->versions_max_bytes,
				  cfg->versions_max_percent);
}

static int agent_retention(struct agent *a, const struct config *cfg)
{
	const char **ids = calloc(cfg->n_peers + 1, sizeof(*ids));
	int err;

	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_peers; i++)
		ids[i] = cfg->peers[i].id;
	err = retention_configure(a->retention, cfg->journal_retention_ms,
				  cfg->journal_retention_pin_max_ms, ids,
				  cfg->n_peers);
	free(ids);
	return err ? err : agent_versions(a, cfg);
}

/* Moves what a reload applies from NEXT into the running config, so that
 * a->cfg always says what is in effect; NEXT then holds the old values. */
static void agent_reload_swap(struct config *cur, struct config *next)
{
	struct config_peer *peers = cur->peers;
	size_t n_peers = cur->n_peers;

	cur->peers = next->peers;
	cur->n_peers = next->n_peers;
	next->peers = peers;
	next->n_peers = n_peers;
	cur->log_level = next->log_level;
	cur->bandwidth_enable = next->bandwidth_enable;
	cur->egress_bits_per_sec = next->egress_bits_per_sec;
	cur->ingress_bits_per_sec = next->ingress_bits_per_sec;
	cur->strategy = next->strategy;
	cur->max_lamport_jump = next->max_lamport_jump;
	cur->conflict_timeout_ms = next->conflict_timeout_ms;
	cur->journal_retention_ms = next->journal_retention_ms;
	cur->journal_retention_pin_max_ms = next->journal_retention_pin_max_ms;
	cur->scrub_period_ms = next->scrub_period_ms;
	cur->versions_keep_ms = next->versions_keep_ms;
	cur->versions_max_bytes = next->versions_max_bytes;
	cur->versions_max_percent = next->versions_max_percent;
}

/*
 * SIGHUP and POST /v1/admin/reload.  Applies the cluster's node list
 * (peers added, removed or moved), bandwidth limits, the conflict
 * strategy, the Lamport jump bound, the journal's retention, the scrub's
 * period, the limits of kept versions and the log level; other keys are
 * reported as needing a restart.  A file with errors changes nothing.
 */
static int agent_reload(struct agent *a)
{
	struct replicate_peer_config *peers = NULL;
	struct config *next = NULL;
	size_t n = 0;
	int err;

	notify_send("RELOADING=1");
	err = agent_load_config(a->config_path, a->config_explicit, &next);
	if (err) {
		log_error("agent", "reload: %s has errors (above); nothing "
			  "was changed", a->config_path);
		goto out;
	}
	reload_warn_restart(a->cfg, next);
	if (getenv("CLUSTER_NODES") && *getenv("CLUSTER_NODES"))
		log_warn("agent", "reload: CLUSTER_NODES in the agent's "
			 "environment overrides sync.cluster_nodes of %s",
			 a->config_path);
	err = agent_peer_list(next, &peers, &n);
	if (!err)
		err = replicate_set_peers(a->replicate, peers, n);
	if (err) {
		log_error("agent", "reload: %s", kr_strerror(err));
		goto out;
	}
	agent_reload_swap(a->cfg, next);
	if (agent_retention(a, a->cfg))
		log_warn("agent", "reload: could not record the peers that "
			 "compaction waits for");
	replicate_set_bandwidth(a->replicate,
		a->cfg->bandwidth_enable ? a->cfg->egress_bits_per_sec : 0,
		a->cfg->bandwidth_enable ? a->cfg->ingress_bits_per_sec : 0);
	replicate_scrub_period(a->replicate, a->cfg->scrub_period_ms);
	journal_set_strategy(a->journal,
			     a->cfg->strategy == CONFIG_STRATEGY_LAMPORT ?
			     JOURNAL_LAMPORT : JOURNAL_TIMESTAMP);
	journal_set_lamport_jump(a->journal, a->cfg->max_lamport_jump);
	if (!a->level_forced)
		log_set_level((enum log_level)a->cfg->log_level);
	log_info("agent", "reload: %zu peers", n);
	a->status_at = 0;          /* show the new peer list at once */
out:
	free(peers);
	config_free(next);
	notify_send("READY=1");
	return err;
}

static void agent_on_signal(void *arg, uint32_t events)
{
	struct agent *a = arg;
	struct signalfd_siginfo si;

	(void)events;
	while (read(a->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			log_info("agent", "SIGHUP: reloading %s",
				 a->config_path);
			agent_reload(a);
			continue;
		}
		log_info("agent", "%s: committing and stopping",
			 strsignal((int)si.ssi_signo));
		notify_send("STOPPING=1");
		loop_stop(a->loop);
	}
}

static void agent_on_inotify(void *arg, uint32_t events)
{
	struct agent *a = arg;
	int err = watch_dispatch(a->watch);

	(void)events;
	if (err)
		log_error("agent", "reading inotify events: %s",
			  kr_strerror(err));
}

static int64_t agent_deadline(void *arg)
{
	struct agent *a = arg;
	int64_t d = watch_next_deadline(a->watch);
	int64_t rd = a->replicate ? replicate_next_deadline(a->replicate) : -1;

	if (rd >= 0 && (d < 0 || rd < d))
		d = rd;
	if (a->retry_at && (d < 0 || a->retry_at < d))
		d = a->retry_at;
	if (a->replicate && (d < 0 || a->status_at < d))
		d = a->status_at;
	if (a->watchdog_at && (d < 0 || a->watchdog_at < d))
		d = a->watchdog_at;
	if (a->rejoining && (d < 0 || a->rejoin.next < d))
		d = a->rejoin.next;
	if (a->retention) {
		int64_t cd = retention_deadline(a->retention);

		if (cd >= 0 && (d < 0 || cd < d))
			d = cd;
	}
	return d;
}

static void agent_fail(struct agent *a, const char *what, int err)
{
	if (!a->failing)
		log_error("agent", "%s failed: %s; nothing on disk is lost, "
			  "rescanning in %lld s", what, kr_strerror(err),
			  AGENT_RETRY_NS / 1000000000);
	a->failing = true;
	a->retry_at = loop_now_ns() + AGENT_RETRY_NS;
}

/* Once per loop turn: examine what is due, then one commit for all of it. */
static int agent_turn(struct agent *a, bool flush)
{
	bool committed;
	int err;

	if (a->retry_at && !a->rejoining) {
		if (!flush && loop_now_ns() < a->retry_at)
			return 0;
		a->retry_at = 0;
		watch_request_scan(a->watch);
	}
	/* Until it has rejoined, nothing here is recorded (rejoin.h). */
	err = a->rejoining ? 0 : watch_process(a->watch, flush);
	if (err) {
		journal_flush(a->journal);
		agent_fail(a, "recording changes", err);
		return err;
	}
	if (a->replicate && !flush)
		replicate_tick(a->replicate);
	committed = journal_pending(a->journal) > 0;
	err = journal_flush(a->journal);
	if (err) {
		agent_fail(a, "committing the journal", err);
		return err;
	}
	if (a->failing)
		log_info("agent", "journal writes work again");
	a->failing = false;
	watch_committed(a->watch, &a->commit_latency);
	/* New entries, local or pulled: announce them, look for jobs. */
	if (committed && a->replicate)
		replicate_kick(a->replicate);
	return 0;
}

/*
 * Peer health goes into the journal's meta table once a second, so that
 * kraken-journal, which only reads the journal, can show it.  One line
 * per peer, tab-separated: id, connected, last seen (ns), lag entries,
 * lag bytes, entries behind, entries in, entries out, bytes in, bytes
 * out, chunk bytes in, clock measured (0/1), clock offset (ns), clock
 * skewed (0/1), address.
 */
/* The peer report (report.h), once a second. */
static void agent_store_peer_status(struct agent *a)
{
	struct replicate_peer_status st[64];
	size_t n = replicate_peers(a->replicate, st, 64);
	char *text = peer_report_text(st, n < 64 ? n : 64,
				      ++a->peer_report_seq, loop_wall_ns());

	if (text)
		journal_meta_set(a->journal, PEER_REPORT_KEY, text);
	free(text);
}

static void agent_publish_retention(struct agent *a, struct api_snapshot *snap)
{
	struct retention_stats rs;

	if (!a->retention)
		return;
	retention_stats(a->retention, &rs);
	snap->retention_ns = (int64_t)a->cfg->journal_retention_ms * 1000000;
	snap->compacted_before_ns = rs.compacted_before_ns;
	snap->last_compaction_ns = rs.last_pass_ns;
	snap->compacting = rs.running;
	snap->compacted_changes = rs.changes;
	snap->compacted_tombstones = rs.tombstones;
	snap->compacted_contents = rs.contents;
	snap->compaction_pages_freed = rs.pages_freed;
	replicate_exchanges(a->replicate, &snap->exchanges_served,
			    &snap->exchanges_applied);
}

static void agent_publish_scrub(struct agent *a, struct api_snapshot *snap)
{
	struct replicate_scrub_stats st;

	replicate_scrub_stats(a->replicate, &st);
	snap->scrub_period_ns = (int64_t)a->cfg->scrub_period_ms * 1000000;
	snap->scrub_files = st.files;
	snap->scrub_bytes = st.bytes;
	snap->scrub_damaged = st.damaged;
	snap->scrub_repaired = st.repaired;
	snap->damaged_chunks = st.damaged_chunks;
	snap->scrub_passes = st.passes;
	snap->scrub_last_pass_ns = st.last_pass_ns;
	snap->scrubbing = st.running;
}

/* What the API threads serve about this loop's state, once a second. */
static void agent_publish(struct agent *a)
{
	struct replicate_peer_status st[API_PEERS_MAX];
	struct api_snapshot *snap = calloc(1, sizeof(*snap));
	struct watch_stats ws;
	size_t n;

	if (!snap)
		return;
	watch_stats(a->watch, &ws);
	snap->published_ns = loop_now_ns();
	snap->changes_recorded = ws.recorded;
	snap->changes_applied = replicate_applied(a->replicate);
	snap->jobs = replicate_backlog(a->replicate, &snap->jobs_stuck);
	snap->rejoining = a->rejoining;
	agent_publish_scrub(a, snap);
	journal_sizes(a->journal, &snap->journal_bytes, &snap->wal_bytes);
	agent_publish_retention(a, snap);
	snap->commit_latency_us = a->commit_latency;
	snap->apply_latency_us = *replicate_apply_latency(a->replicate);
	n = replicate_peers(a->replicate, st, API_PEERS_MAX);
	for (size_t i = 0; i < n && i < API_PEERS_MAX; i++) {
		struct api_peer *p = &snap->peers[snap->n_peers++];

		_Static_assert(sizeof(p->id) == sizeof(st[i].id) &&
			       sizeof(p->address) == sizeof(st[i].address),
			       "peer status layouts differ");
		memcpy(p->id, st[i].id, sizeof(p->id));
		memcpy(p->address, st[i].address, sizeof(p->address));
		p->connected = st[i].connected;
		p->last_seen_ns = st[i].last_seen_ns;
		p->lag_entries = st[i].lag_entries;
		p->lag_bytes = st[i].lag_bytes;
		p->behind_entries = st[i].behind_entries;
		p->bytes_in = st[i].bytes_in;
		p->bytes_out = st[i].bytes_out;
		p->entries_in = st[i].entries_in;
		p->entries_out = st[i].entries_out;
		p->entries_refused = st[i].entries_refused;
		p->clock_known = st[i].clock_known;
		p->clock_skewed = st[i].clock_skewed;
		p->clock_offset_ns = st[i].clock_offset_ns;
	}
	api_publish(a->api, snap);
	free(snap);
}

static int agent_initial_scan(struct agent *a);

/* While rejoining (rejoin.h): the peers looked at when due. */
static void agent_rejoin_tick(struct agent *a, int64_t now)
{
	enum rejoin_step step = rejoin_tick(&a->rejoin, now);

	if (step == REJOIN_TIMED_OUT && agent_initial_scan(a) == 0)
		step = REJOIN_PUBLISHED;
	if (step == REJOIN_ADOPTED || step == REJOIN_PUBLISHED) {
		watch_committed(a->watch, &a->commit_latency);
		rejoin_end(&a->rejoin, step);
		a->rejoining = false;
	}
}

static void agent_hook(void *arg)
{
	struct agent *a = arg;
	int64_t now = loop_now_ns();

	if (a->watchdog_at && now >= a->watchdog_at) {
		notify_send("WATCHDOG=1");
		a->watchdog_at = now + a->watchdog_ns;
	}
	if (a->replicate && now >= a->status_at) {
		agent_store_peer_status(a);
		if (a->api)
			agent_publish(a);
		a->status_at = now + 1000000000;
	}
	if (a->rejoining && now >= a->rejoin.next)
		agent_rejoin_tick(a, now);
	agent_turn(a, false);
	if (a->retention && !a->failing)
		retention_tick(a->retention, now);
}

static const char *const agent_cmd_names[] = {
	[API_CMD_RESCAN] = "rescan", [API_CMD_RESYNC] = "resync",
	[API_CMD_RELOAD] = "reload", [API_CMD_SCRUB] = "scrub",
	[API_CMD_COMPACT] = "compaction", [API_CMD_RESTORE] = "restore",
	[API_CMD_ASK] = "asking peers for versions",
};

static void agent_on_api_command(void *arg, uint32_t events)
{
	struct agent *a = arg;
	struct api_restore *q = NULL;
	enum api_command cmd;

	(void)events;
	while ((cmd = api_next_command(a->api)) != API_CMD_NONE) {
		if (cmd == API_CMD_ASK) {   /* a read: not worth a log line */
			agent_asks_serve(a->api, a->replicate);
			continue;
		}
		/* Every command the API can queue has its name here. */
		assert((size_t)cmd < sizeof(agent_cmd_names) /
		       sizeof(agent_cmd_names[0]) && agent_cmd_names[cmd]);
		log_info("agent", "%s requested through the API%s",
			 agent_cmd_names[cmd], cmd == API_CMD_RESCAN &&
			 a->rejoining ? ": the volumes are scanned once the "
			 "node has rejoined the cluster's history" : "");
		if (cmd == API_CMD_RESCAN && !a->rejoining)
			watch_request_scan(a->watch);
		else if (cmd == API_CMD_RESYNC && a->replicate)
			replicate_resync(a->replicate);
		else if (cmd == API_CMD_RELOAD && a->replicate)
			agent_reload(a);
		else if (cmd == API_CMD_SCRUB && a->replicate)
			replicate_scrub_request(a->replicate);
		else if (cmd == API_CMD_COMPACT && a->retention)
			retention_request(a->retention);
		/* Content this node does not keep: fetched from peers. */
		while (cmd == API_CMD_RESTORE && a->replicate &&
		       (q || (q = malloc(sizeof(*q)))) &&
		       api_next_restore(a->api, q))
			(q->to_store ? replicate_fetch :
			 replicate_restore)(a->replicate, q->volume, q->path,
					    &q->ref);
	}
	free(q);
}

static int agent_start_api(struct agent *a)
{
	const struct config *cfg = a->cfg;
	struct api_options opt = {
		.node_id = cfg->node_id,
		.journal_path = cfg->journal_path,
		.root = cfg->root_path,
		.listen_host = cfg->api_host,
		.listen_port = cfg->api_port,
		.token_file = cfg->api_token_file,
		.read_token_file = cfg->api_read_token_file,
		.journal_signed = cfg->tls_enable,
		.allowed_hosts = cfg->api_allowed_hosts,
		.n_allowed_hosts = cfg->n_api_allowed_hosts,
		.check_config = agent_check_config,
		.check_config_ctx = a,
		.plugin_socket = cfg->plugin_socket,
		.driver_name = cfg->driver_name,
		/* 0 means "do not wait": the API reads 0 as its default. */
		.mount_wait_ms = cfg->mount_wait_ms ?
				 (unsigned)cfg->mount_wait_ms : 1,
	};
	char *errmsg = NULL;
	int err = api_new(&opt, &a->api, &errmsg);

	if (err) {
		log_error("agent", "%s", errmsg ? errmsg : kr_strerror(err));
		free(errmsg);
		return err;
	}
	agent_publish(a);
	err = loop_add_fd(a->loop, api_command_fd(a->api), EPOLLIN,
			  agent_on_api_command, a);
	if (!err)
		log_info("agent", "API on %s:%u, Docker plugin on %s",
			 cfg->api_host, cfg->api_port, cfg->plugin_socket);
	if (!err && !cfg->api_read_token_file)
		log_info("agent", "API reads (status, journal, metrics) are "
			 "open to any client of %s:%u; set api.read_token_file "
			 "to require a token", cfg->api_host, cfg->api_port);
	return err;
}

static int agent_setup_loop(struct agent *a)
{
	sigset_t set;
	int err;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
		return -errno;
	a->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (a->sigfd < 0)
		return -errno;
	err = loop_new(&a->loop);
	if (!err)
		err = loop_add_fd(a->loop, a->sigfd, EPOLLIN, agent_on_signal,
				  a);
	if (!err)
		err = loop_add_fd(a->loop, watch_fd(a->watch), EPOLLIN,
				  agent_on_inotify, a);
	if (!err)
		err = loop_add_hook(a->loop, agent_deadline, agent_hook, a);
	return err;
}

static int agent_initial_scan(struct agent *a)
{
	struct watch_stats st;
	int64_t t0 = loop_now_ns();
	int err = watch_scan(a->watch);

	if (!err)
		err = journal_flush(a->journal);
	if (err) {
		log_error("agent", "start-up scan of %s failed: %s",
			  a->cfg->root_path, kr_strerror(err));
		return err;
	}
	watch_committed(a->watch, NULL);
	watch_stats(a->watch, &st);
	log_info("agent", "start-up scan: %llu changes recorded in %lld ms",
		 (unsigned long long)st.recorded,
		 (long long)((loop_now_ns() - t0) / 1000000));
	return 0;
}

static void agent_report_latency(const char *what, const char *of,
				 const struct hist *h)
{
	if (h->count)
		log_info("agent", "%s latency over %llu %s: p50 %llu us, p99 "
			 "%llu us, max %llu us", what,
			 (unsigned long long)h->count, of,
			 (unsigned long long)hist_quantile(h, 0.50),
			 (unsigned long long)hist_quantile(h, 0.99),
			 (unsigned long long)h->max);
}

static void agent_report(struct agent *a)
{
	struct watch_stats st;
	const struct hist *h = &a->commit_latency;

	watch_stats(a->watch, &st);
	log_info("agent", "recorded %llu changes from %llu events (%llu "
		 "overflows, %llu scans, %llu skipped)",
		 (unsigned long long)st.recorded, (unsigned long long)st.events,
		 (unsigned long long)st.overflows, (unsigned long long)st.scans,
		 (unsigned long long)st.skipped);
	agent_report_latency("event-to-commit", "changes", h);
	if (a->replicate)
		agent_report_latency("arrival-to-disk", "remote versions",
				     replicate_apply_latency(a->replicate));
}

static void agent_on_diverged(void *arg, const char *volume, const char *path)
{
	struct agent *a = arg;

	watch_touch(a->watch, volume, path);
}

static int agent_tls(struct agent *a)
{
	const struct config *cfg = a->cfg;
	char *errmsg = NULL;

	if (!cfg->tls_enable) {
		if (cfg->n_peers > 1)
			log_warn("agent", "sync.tls.enable is false: peers are "
				 "not authenticated, traffic is not encrypted, "
				 "and journal entries are chained but not "
				 "signed, so any peer can forge another node's "
				 "changes; see 'krakenfs-agent tls --help'");
		return keyring_new(NULL, &a->keyring, NULL);
	}
	a->tls_server = tls_context_new(cfg->tls_cert_file, cfg->tls_key_file,
					cfg->tls_ca_file, true, &errmsg);
	if (a->tls_server)
		a->tls_client = tls_context_new(cfg->tls_cert_file,
						cfg->tls_key_file,
						cfg->tls_ca_file, false,
						&errmsg);
	if (a->tls_client &&
	    keyring_new(cfg->tls_ca_file, &a->keyring, &errmsg) == 0 &&
	    keyring_set_own(a->keyring, cfg->tls_cert_file, cfg->tls_key_file,
			    &errmsg) == 0)
		return 0;
	log_error("agent", "sync.tls: %s", errmsg ? errmsg : "failed");
	free(errmsg);
	return -EACCES;
}

static int agent_start_replicate(struct agent *a)
{
	const struct config *cfg = a->cfg;
	const struct config_peer *self = config_self(cfg);
	struct replicate_options opt = {
		.node_id = cfg->node_id,
		.cluster_id = cfg->cluster_id,
		.listen_address = cfg->listen_address,
		.port = self ? self->port : cfg->p2p_port,
		.root = cfg->root_path,
		.diverged = agent_on_diverged,
		.diverged_arg = a,
		.max_clock_skew_ns = (int64_t)cfg->max_clock_skew_ms * 1000000,
		.versions = retention_store(a->retention),
		.egress_bits_per_sec = cfg->bandwidth_enable ?
				       cfg->egress_bits_per_sec : 0,
		.ingress_bits_per_sec = cfg->bandwidth_enable ?
					cfg->ingress_bits_per_sec : 0,
	};
	struct replicate_peer_config *peers = NULL;
	int err = agent_peer_list(cfg, &peers, &opt.n_peers);

	if (!err)
		err = agent_tls(a);
	opt.peers = peers;
	opt.tls_server = a->tls_server;
	opt.tls_client = a->tls_client;
	opt.keyring = a->keyring;
	journal_set_strategy(a->journal, cfg->strategy == CONFIG_STRATEGY_LAMPORT ?
			     JOURNAL_LAMPORT : JOURNAL_TIMESTAMP);
	journal_set_lamport_jump(a->journal, cfg->max_lamport_jump);
	if (!err)
		err = replicate_new(a->journal, a->loop, &opt, &a->replicate);
	if (!err)
		replicate_scrub_period(a->replicate, cfg->scrub_period_ms);
	if (err == -EADDRINUSE || err == -EADDRNOTAVAIL || err == -EACCES)
		log_error("agent", "cannot listen on %s:%u for peers: %s",
			  cfg->listen_address, opt.port, kr_strerror(err));
	else if (err)
		log_error("agent", "starting replication: %s", kr_strerror(err));
	free(peers);
	return err;
}

/*
 * Tells systemd (Type=notify) that the journal is open and the plugin
 * socket listens, so docker.service, ordered after us, finds the driver.
 * The watchdog is pinged from the loop's hook, at half the interval:
 * a loop that stops turning stops the pings and gets the agent restarted.
 */
static void agent_notify_ready(struct agent *a)
{
	char status[200];
	int err;

	snprintf(status, sizeof(status), "READY=1\nSTATUS=node %s, %zu peers",
		 a->cfg->node_id, a->cfg->n_peers ? a->cfg->n_peers - 1 : 0);
	err = notify_send(status);
	if (err)
		log_warn("agent", "cannot notify the service manager "
			 "(NOTIFY_SOCKET): %s", kr_strerror(err));
	a->watchdog_ns = notify_watchdog_ns() / 2;
	a->watchdog_at = a->watchdog_ns ? loop_now_ns() + a->watchdog_ns : 0;
	if (a->watchdog_ns)
		log_info("agent", "systemd watchdog: pinging every %lld ms",
			 (long long)(a->watchdog_ns / 1000000));
}

/* Other nodes in CFG's cluster. */
static size_t agent_others(const struct config *cfg)
{
	return cfg->n_peers - (config_self(cfg) != NULL);
}

static int agent_run(struct agent *a)
{
	struct journal_info info;
	int err = agent_open_journal(a);

	if (!err)
		err = retention_new(a->journal, &a->retention);
	if (!err)
		err = agent_retention(a, a->cfg);
	if (!err)
		err = agent_start_watch(a);
	if (!err)
		err = agent_setup_loop(a);
	if (!err)
		a->rejoining = rejoin_needed(a->journal, a->cfg->root_path,
					     agent_others(a->cfg),
					     a->cfg->journal_rejoin_wait_ms);
	if (!err && !a->rejoining)
		err = agent_initial_scan(a);
	if (!err)
		err = agent_start_replicate(a);
	if (!err && a->rejoining) {
		a->rejoin = (struct rejoin){ .journal = a->journal,
			.watch = a->watch, .replicate = a->replicate,
			.wait_ms = a->cfg->journal_rejoin_wait_ms };
		rejoin_begin(&a->rejoin, loop_now_ns());
	}
	if (!err)
		err = agent_start_api(a);
	if (err)
		return err;
	if (journal_info(a->journal, &info) == 0)
		log_info("agent", "node %s (origin %s) %s %s, journal %s",
			 a->cfg->node_id, info.origin, a->rejoining ?
			 "up; once rejoined, watching" : "watching",
			 a->cfg->root_path, a->cfg->journal_path);
	agent_notify_ready(a);
	err = loop_run(a->loop);
	if (!err)
		err = agent_turn(a, true);
	agent_report(a);
	return err;
}

static void agent_release(struct agent *a)
{
	api_free(a->api);
	replicate_free(a->replicate);
	tls_context_free(a->tls_server);
	tls_context_free(a->tls_client);
	keyring_free(a->keyring);
	watch_free(a->watch);
	loop_free(a->loop);
	retention_free(a->retention);
	journal_close(a->journal);
	pidlock_release(a->lock_fd[0]);
	pidlock_release(a->lock_fd[1]);
	if (a->sigfd >= 0)
		close(a->sigfd);
	config_free(a->cfg);
}

static void agent_tls_usage(FILE *out)
{
	fprintf(out,
		"usage: krakenfs-agent tls init DIR [--force]\n"
		"       krakenfs-agent tls issue DIR NODE_ID [--force]\n"
		"\n"
		"Cluster credentials for sync.tls: 'init' makes a small CA in DIR\n"
		"(ca.pem, ca-key.pem) once, on the first node; copy DIR to each\n"
		"other node and run 'issue' there with its node id, which writes\n"
		"node.pem and node-key.pem (mode 0600) signed by that CA.\n");
}

static int agent_tls_command(int argc, char **argv)
{
	bool force = argc > 0 && strcmp(argv[argc - 1], "--force") == 0;
	char *errmsg = NULL, *next;
	int err;

	argc -= force;
	if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
		agent_tls_usage(stdout);
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "init") == 0)
		err = tls_ca_init(argv[1], force, &errmsg);
	else if (argc == 3 && strcmp(argv[0], "issue") == 0)
		err = tls_issue(argv[1], argv[2], force, &errmsg);
	else {
		agent_tls_usage(stderr);
		return 2;
	}
	if (err) {
		fprintf(stderr, "krakenfs-agent tls: %s\n",
			errmsg ? errmsg : kr_strerror(err));
		free(errmsg);
		return 1;
	}
	next = tls_instructions(argv[1], argc == 3 ? argv[2] : NULL);
	if (next)
		fputs(next, stdout);
	free(next);
	return 0;
}

/* Each running transfer holds descriptors, as do peers and API clients:
 * the soft limit (1,024 outside systemd) goes up to the hard one. */
static void agent_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_debug("agent", "cannot raise the descriptor limit: "
				  "%s", strerror(errno));
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "validate-config", required_argument, NULL, 'v' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *config_path = CONFIG_DEFAULT_PATH;
	const char *level_arg = NULL;
	bool explicit = false;
	struct agent a = { .sigfd = -1, .lock_fd = { -1, -1 } };
	enum log_level level;
	int c, err;

	if (argc >= 2 && strcmp(argv[1], "tls") == 0)
		return agent_tls_command(argc - 2, argv + 2);
	while ((c = getopt_long(argc, argv, "c:l:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config_path = optarg; explicit = true; break;
		case 'v': return agent_validate(optarg);
		case 'l': level_arg = optarg; break;
		case 'V': printf("krakenfs-agent %s\n", KRAKENFS_VERSION); return 0;
		case 'h': agent_usage(stdout); return 0;
		default: agent_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "krakenfs-agent: unexpected argument '%s'\n",
			argv[optind]);
		agent_usage(stderr);
		return 2;
	}
	if (level_arg && log_level_parse(level_arg, &level) != 0) {
		fprintf(stderr, "krakenfs-agent: --log-level: expected error, "
			"warn, info or debug, got '%s'\n", level_arg);
		return 2;
	}
	log_detect_journal();
	a.config_path = config_path;
	a.config_explicit = explicit;
	a.level_forced = level_arg != NULL;
	if (agent_load_config(config_path, explicit, &a.cfg) != 0)
		return 1;
	log_set_level(level_arg ? level : (enum log_level)a.cfg->log_level);
	agent_raise_nofile();
	err = agent_run(&a);
	agent_release(&a);
	return err ? 1 : 0;
}
