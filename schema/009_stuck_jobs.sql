-- KrakenFS journal, schema 9: jobs that keep failing say why, and wait.
--
-- jobs.failures       failed attempts at this version in a row (a started
--                     transfer is an attempt, not a failure); back to 0
--                     when the job is retargeted to another version.
-- jobs.reason         the last failure, in words for the user.
-- jobs.failing_since  wall time (ns) of the first failure in the row.
-- jobs.retry_ns       wall time before which the applier leaves the job
--                     alone: failures back off, so a job that cannot
--                     succeed costs a look every few minutes.
-- jobs_stuck          jobs with JOURNAL_JOB_STUCK (5) failures or more:
--                     listed by kraken-journal status, /v1/status and the
--                     dashboard; no Docker mount waits for them.
-- jobs_retry          when the next failing job is due, when none is.

ALTER TABLE jobs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN reason TEXT;
ALTER TABLE jobs ADD COLUMN failing_since INTEGER;
ALTER TABLE jobs ADD COLUMN retry_ns INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_stuck ON jobs (failing_since) WHERE failures >= 5;
CREATE INDEX jobs_retry ON jobs (retry_ns) WHERE retry_ns > 0;
