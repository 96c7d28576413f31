/*
 * See retention.h.  States: idle (next_pass_at set, or never when off),
 * in a pass (next_step_at set, the pass's progress in `pass`).  A step
 * that finds the journal busy serving a state exchange (-EBUSY) is tried
 * again a second later; any other error ends the pass, logged.
 */
#include "retention.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL
#define RETENTION_STEP_MS 25
#define RETENTION_GAP_NS (500 * NS_PER_MS)        /* between steps */
#define RETENTION_GAP_ASKED_NS (50 * NS_PER_MS)   /* when asked for */
#define RETENTION_BUSY_NS NS_PER_S
#define RETENTION_EVERY_MIN_NS NS_PER_S
#define RETENTION_EVERY_MAX_NS (3600 * NS_PER_S)
#define VERSIONS_PRUNE_NS (60 * NS_PER_S)
/* New versions are measured this soon: until then the store's size, in
 * /v1/volumes and the metrics, counts each at its full size, 1 GiB for
 * a 1 MiB edit of a 1 GiB file. */
#define VERSIONS_MEASURE_NS (2 * NS_PER_S)

struct retention {
	struct journal *journal;
	int64_t retention_ns, pin_max_ns;
	int64_t every_ns;         /* between passes */
	int64_t next_pass_at;     /* monotonic; 0: off */
	int64_t next_step_at;     /* monotonic; 0: no pass under way */
	bool asked;
	struct journal_compact_stats pass;
	struct retention_stats total;
	struct journal_versions *versions;
	char *versions_root;
	int64_t versions_keep_ns;
	uint64_t versions_max_bytes;
	unsigned versions_max_percent;
	int64_t versions_prune_at;  /* monotonic */
	int64_t versions_measure_at;
};

int retention_new(struct journal *j, struct retention **out)
{
	struct retention *r = calloc(1, sizeof(*r));

	*out = r;
	if (!r)
		return -ENOMEM;
	r->journal = j;
	return journal_compacted_before(j, &r->total.compacted_before_ns);
}

void retention_free(struct retention *r)
{
	if (!r)
		return;
	journal_versions_close(r->versions);
	free(r->versions_root);
	free(r);
}

int retention_versions(struct retention *r, const char *dir, const char *root,
		       uint64_t keep_ms, uint64_t max_bytes,
		       unsigned max_percent)
{
	const uint64_t cap_ms = (uint64_t)INT64_MAX / NS_PER_MS / 2;
	char *copy = strdup(root);
	int err;

	if (!copy)
		return -ENOMEM;
	free(r->versions_root);
	r->versions_root = copy;
	r->versions_keep_ns = (int64_t)(keep_ms > cap_ms ? cap_ms : keep_ms) *
			      NS_PER_MS;
	r->versions_max_bytes = max_bytes;
	r->versions_max_percent = max_percent;
	if (keep_ms && !r->versions) {
		err = journal_versions_open(r->journal, dir, true,
					    &r->versions);
		if (err)
			log_error("journal", "cannot keep versions in %s: %s; "
				  "what peers replace here is not kept until "
				  "it can be made (then restart)", dir,
				  kr_strerror(err));
	}
	r->versions_prune_at = loop_now_ns();
	return 0;
}

struct journal_versions *retention_store(const struct retention *r)
{
	return r->versions;
}

/* The cap on kept bytes now: absolute, or a share of the volumes' file
 * system (it may grow or shrink). */
static uint64_t versions_cap(const struct retention *r)
{
	struct statvfs fs;

	if (r->versions_max_bytes || !r->versions_max_percent)
		return r->versions_max_bytes;
	if (statvfs(r->versions_root, &fs) != 0)
		return UINT64_MAX;
	return (uint64_t)fs.f_blocks * fs.f_frsize / 100 *
	       r->versions_max_percent;
}

static void versions_prune(struct retention *r, int64_t now)
{
	uint64_t removed = 0;
	int err;

	if (r->versions && now >= r->versions_measure_at) {
		r->versions_measure_at = now + VERSIONS_MEASURE_NS;
		err = journal_versions_measure_fresh(r->versions);
		/* Committed at once only when something was measured: a
		 * commit every 2 s would cut the agent's batches. */
		if (err > 0)
			err = journal_flush(r->journal);
		if (err < 0)
			log_warn("journal", "measuring new kept versions: %s",
				 kr_strerror(err));
	}
	if (!r->versions || now < r->versions_prune_at)
		return;
	r->versions_prune_at = now + VERSIONS_PRUNE_NS;
	err = journal_versions_prune(r->versions, r->versions_keep_ns,
				     versions_cap(r), loop_wall_ns(), &removed);
	if (!err)
		err = journal_flush(r->journal);
	if (err)
		log_warn("journal", "pruning kept versions: %s",
			 kr_strerror(err));
	else if (removed)
		log_info("journal", "pruned %llu kept versions (older than "
			 "versions.keep, or past versions.max_bytes)",
			 (unsigned long long)removed);
}

int retention_configure(struct retention *r, uint64_t retention_ms,
			uint64_t pin_max_ms, const char *const *peers,
			size_t n)
{
	/* Nanoseconds in an int64_t reach 292 years; more is forever. */
	const uint64_t cap_ms = (uint64_t)INT64_MAX / NS_PER_MS / 2;

	if (retention_ms > cap_ms)
		retention_ms = 0;
	if (pin_max_ms > cap_ms)
		pin_max_ms = cap_ms;
	r->retention_ns = (int64_t)retention_ms * NS_PER_MS;
	r->pin_max_ns = (int64_t)pin_max_ms * NS_PER_MS;
	r->every_ns = r->retention_ns / 8;
	if (r->every_ns < RETENTION_EVERY_MIN_NS)
		r->every_ns = RETENTION_EVERY_MIN_NS;
	if (r->every_ns > RETENTION_EVERY_MAX_NS)
		r->every_ns = RETENTION_EVERY_MAX_NS;
	if (r->retention_ns == 0) {
		r->next_pass_at = 0;
		r->next_step_at = 0;
	} else if (!r->next_pass_at && !r->next_step_at) {
		r->next_pass_at = loop_now_ns() + r->every_ns;
	}
	return journal_peers_set(r->journal, peers, n, loop_wall_ns());
}

void retention_request(struct retention *r)
{
	if (r->retention_ns == 0) {
		log_warn("journal", "compaction asked for, but it is off "
			 "(journal.retention: 0)");
		return;
	}
	r->asked = true;
	if (!r->next_step_at)
		r->next_pass_at = loop_now_ns();
}

int64_t retention_deadline(const struct retention *r)
{
	int64_t d = r->next_step_at ? r->next_step_at :
		    r->next_pass_at ? r->next_pass_at : -1;

	if (r->versions && (d < 0 || r->versions_prune_at < d))
		d = r->versions_prune_at;
	return d;
}

static void pass_end(struct retention *r, int err)
{
	struct journal_compact_stats *p = &r->pass;
	bool asked = r->asked;

	r->next_step_at = 0;
	r->next_pass_at = loop_now_ns() + r->every_ns;
	r->asked = false;
	r->total.running = false;
	if (err) {
		log_error("journal", "compaction stopped: %s; trying again in "
			  "%lld s", kr_strerror(err),
			  (long long)(r->every_ns / NS_PER_S));
		return;
	}
	r->total.passes++;
	r->total.last_pass_ns = loop_wall_ns();
	journal_compacted_before(r->journal, &r->total.compacted_before_ns);
	if (p->changes || p->tombstones || p->pages_freed || asked)
		log_info("journal", "compacted history older than %lld s: "
			 "%llu superseded versions, %llu deletes, %llu chunk "
			 "lists removed, %llu free pages given back, in %lld ms",
			 (long long)(r->retention_ns / NS_PER_S),
			 (unsigned long long)p->changes,
			 (unsigned long long)p->tombstones,
			 (unsigned long long)p->contents,
			 (unsigned long long)p->pages_freed,
			 (long long)(p->elapsed_ns / NS_PER_MS));
	if (p->retired)
		log_info("journal", "retired %llu old epochs: every peer holds "
			 "them whole, nothing of them is left here, and they "
			 "leave the version vector",
			 (unsigned long long)p->retired);
}

void retention_tick(struct retention *r, int64_t now)
{
	struct journal_retention policy;
	struct journal_compact_stats before;
	int more;

	versions_prune(r, now);
	if (r->next_step_at ? now < r->next_step_at :
	    (!r->next_pass_at || now < r->next_pass_at))
		return;
	if (!r->next_step_at) {
		memset(&r->pass, 0, sizeof(r->pass));
		r->total.running = true;
	}
	policy = (struct journal_retention){ r->retention_ns, r->pin_max_ns,
					     loop_wall_ns() };
	before = r->pass;
	more = journal_compact_step(r->journal, &policy, RETENTION_STEP_MS,
				    &r->pass);
	r->total.changes += r->pass.changes - before.changes;
	r->total.tombstones += r->pass.tombstones - before.tombstones;
	r->total.contents += r->pass.contents - before.contents;
	r->total.pages_freed += r->pass.pages_freed - before.pages_freed;
	if (more == -EBUSY) {
		r->next_step_at = now + RETENTION_BUSY_NS;
		return;
	}
	if (more <= 0) {
		pass_end(r, more);
		return;
	}
	r->next_step_at = now + (r->asked ? RETENTION_GAP_ASKED_NS :
				 RETENTION_GAP_NS);
}

void retention_stats(const struct retention *r, struct retention_stats *out)
{
	*out = r->total;
}
