-- KrakenFS journal, schema 11: repairing a file the disk damaged.
--
-- jobs.repair   1: the path holds this very version as far as its
--               metadata goes, but the scrub found bytes that do not
--               match its hash (bit rot).  The applier makes the version
--               again, reusing the chunks that still check and fetching
--               the rest from peers; retargeting to another version
--               clears it.

ALTER TABLE jobs ADD COLUMN repair INTEGER NOT NULL DEFAULT 0;
