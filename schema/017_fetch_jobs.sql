-- KrakenFS journal, schema 17: fetching a version into the version store.
--
-- jobs.fetch   1: the job's version is fetched from peers into this
--              node's version store (src/journal/versions.c), not put
--              in the volume: a restore to a file (kraken-journal restore
--              --to) of content only peers keep.  Its path is a name of
--              its own (".krakenfs-fetch-" and the content hash in hex)
--              in the volume's root, beside which the temporary file is
--              made; nothing is ever written at that name.  The version's
--              own path is its change's.

ALTER TABLE jobs ADD COLUMN fetch INTEGER NOT NULL DEFAULT 0;
