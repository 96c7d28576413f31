-- KrakenFS journal, schema 8: conflict-copy jobs found by what they copy.
--
-- jobs_by_copy  the copy jobs of a contested path: when its heads change
--               (a later version of a losing side arrives), a copy job
--               for a version that is no longer a head is dropped before
--               it is written, so a partition's intermediate versions
--               stay history and only each side's last version becomes
--               a file.

CREATE INDEX jobs_by_copy ON jobs (volume, copy_of);
