-- KrakenFS journal, schema 4: the job queue in the applier's order.
--
-- jobs.ord  where a job stands among jobs of the same attempt count:
--           parents before children (the path's length in bytes), and
--           deletes after everything else, deepest first (2^20 minus
--           the length).  Kept in the row and indexed so that taking
--           the next jobs reads a few rows in index order instead of
--           sorting the whole queue, which for a tree of 100,000 files
--           would cost tens of milliseconds every time.

ALTER TABLE jobs ADD COLUMN ord INTEGER NOT NULL DEFAULT 0;

UPDATE jobs SET ord = (
	SELECT CASE WHEN c.op IN (4, 7)
		THEN 1048576 - length(CAST(jobs.path AS BLOB))
		ELSE length(CAST(jobs.path AS BLOB)) END
	FROM changes c WHERE c.id = jobs.change);

CREATE INDEX jobs_order ON jobs (attempts, ord);
