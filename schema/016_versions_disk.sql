-- KrakenFS journal, schema 16: what a kept version costs on disk
-- (src/journal/versions.c).
--
-- versions.disk      the row's part of what its path's kept versions hold
--                    on disk that the live file does not (the union of
--                    their physical extents, FIEMAP, minus the live
--                    file's; each row the part it adds to the older
--                    rows), at most its size (src/journal/versions_cost.c).
--                    On a file system that shares blocks between copies
--                    (XFS, btrfs), a version an edit made from the one
--                    before costs about what the edit changed.  NULL
--                    until measured (before each prune): counted as its
--                    size.  versions.max_bytes and the reported usage
--                    count it.
-- versions_by_path   a path's rows, measured together.

ALTER TABLE versions ADD COLUMN disk INTEGER;
CREATE INDEX versions_by_path ON versions (volume, path);
