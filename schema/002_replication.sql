-- KrakenFS journal, schema 2: what replication needs.
--
-- heads     per path, the versions no other known version descends from.
--           One head is the normal case; several are concurrent versions
--           (a conflict unless their content and metadata are identical).
-- jobs      versions this node must make true on disk: the winning head
--           at its path, or a losing head at its conflict-copy path.
--           Rows are the intent; the applier removes one only after the
--           file is renamed into place, so a crash resumes the work.

CREATE TABLE heads (
	volume TEXT NOT NULL,
	path TEXT NOT NULL,
	change INTEGER NOT NULL REFERENCES changes(id),
	PRIMARY KEY (volume, path, change)
) WITHOUT ROWID;
INSERT INTO heads (volume, path, change) SELECT volume, path, change FROM current;

CREATE TABLE jobs (
	volume TEXT NOT NULL,
	path TEXT NOT NULL,
	change INTEGER NOT NULL REFERENCES changes(id),
	copy_of TEXT,
	attempts INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (volume, path)
) WITHOUT ROWID;

-- Finding a version's descendants, a content's files, a change's path.
CREATE INDEX bases_by_ref ON bases (origin, seq);
CREATE INDEX changes_by_hash ON changes (hash);
CREATE INDEX current_by_change ON current (change);
