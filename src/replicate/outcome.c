/* What became of a job (outcome.h). */
#include "outcome.h"
#include "replicate_int.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <errno.h>

#define ARRIVAL(r, i) \
	((r)->outcome.arrivals[((r)->outcome.arrivals_head + (i)) % \
			       ARRIVALS_MAX])

void outcome_note_arrival(struct replicate *r, int64_t last_id)
{
	size_t n = r->outcome.arrivals_n, newest;

	if (n) {
		newest = (r->outcome.arrivals_head + n - 1) % ARRIVALS_MAX;
		if (r->outcome.arrivals[newest].last_id >= last_id)
			return;         /* nothing new was added */
	}
	if (n == ARRIVALS_MAX) {
		r->outcome.arrivals_head = (r->outcome.arrivals_head + 1) %
					   ARRIVALS_MAX;
		n--;
	}
	newest = (r->outcome.arrivals_head + n) % ARRIVALS_MAX;
	r->outcome.arrivals[newest].last_id = last_id;
	r->outcome.arrivals[newest].ns = loop_now_ns();
	r->outcome.arrivals_n = n + 1;
}

/* Binary search of the ring for the batch that brought CHANGE; no sample
 * when that is unknown (before the ring, or before this start, which the
 * first record marks with ns 0). */
static void outcome_sample(struct replicate *r, int64_t change)
{
	size_t lo = 0, hi = r->outcome.arrivals_n;

	if (!hi || ARRIVAL(r, hi - 1).last_id < change)
		return;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ARRIVAL(r, mid).last_id < change)
			lo = mid + 1;
		else
			hi = mid;
	}
	if ((lo == 0 && r->outcome.arrivals_n == ARRIVALS_MAX) ||
	    ARRIVAL(r, lo).ns == 0)
		return;
	hist_record(&r->outcome.latency_us,
		    (uint64_t)(loop_now_ns() - ARRIVAL(r, lo).ns) / 1000);
}

int outcome_done(struct replicate *r, const struct journal_job *job,
		 const struct stat *st)
{
	int err = journal_job_done(r->journal, job, st);

	if (!err) {
		r->outcome.applied++;
		outcome_sample(r, job->change);
	}
	if (!err && job->repair) {
		r->outcome.repaired++;
		log_info("replicate", "repaired %s/%s: its damaged bytes came "
			 "from a peer", job->volume, job->path);
	}
	if (!err && job->failures >= JOURNAL_JOB_STUCK)
		log_info("replicate", "applied %s/%s, stuck before (%u failed "
			 "attempts)", job->volume, job->path, job->failures);
	return err;
}

/* Words for why JOB failed with ERR, as kraken-journal status shows it. */
static const char *job_reason(const struct journal_job *job, int err)
{
	switch (err) {
	case KR_EHOSTILE:
		return "the path leaves the volume or crosses a symlink";
	case -EBUSY:
		return "the path changed on this node and the change is not "
		       "recorded yet";
	case -EAGAIN:
		return job->op == JOURNAL_DELETE ?
		       "the directory is not empty" :
		       "waiting for the conflict copy of the version on disk";
	case -EEXIST:
		return "something of another type is in the way";
	case -ENOTDIR:
		return "a parent of the path is not a directory";
	case -ENOENT:
		return "a parent directory of the path is missing";
	}
	return kr_strerror(err);
}

/* The job stays and is retried less and less often, in case the cause
 * goes away. */
void outcome_failed(struct replicate *r, const struct journal_job *job,
		    int err)
{
	const char *why = job_reason(job, err);

	if (err == KR_EHOSTILE && job->failures == 0)
		log_warn("replicate", "not applying %s/%s: %s", job->volume,
			 job->path, why);
	else if (job->failures + 1 == JOURNAL_JOB_STUCK)
		log_warn("replicate", "applying %s/%s is stuck: %s (%u "
			 "attempts); retried every few minutes (at once "
			 "after POST /v1/admin/resync) until it works or a "
			 "newer version replaces it; 'kraken-journal status' "
			 "lists stuck jobs",
			 job->volume, job->path, why, JOURNAL_JOB_STUCK);
	journal_job_fail(r->journal, job, why);
}

void outcome_init(struct replicate *r, int64_t last_id)
{
	r->outcome.arrivals[0].last_id = last_id;
	r->outcome.arrivals[0].ns = 0;
	r->outcome.arrivals_n = 1;
}

int64_t outcome_last_arrival_ns(const struct replicate *r)
{
	return r->outcome.arrivals_n ?
	       ARRIVAL(r, r->outcome.arrivals_n - 1).ns : 0;
}
