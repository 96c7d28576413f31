-- KrakenFS journal, schema 15: content of replaced and deleted files is
-- kept (src/journal/versions.c).
--
-- versions           one row per content kept in the store: the file a
--                    peer's change replaced or deleted here, linked into
--                    the store directory under the hex of HASH before it
--                    went.  KEPT_NS: when it was last replaced (pruning
--                    by versions.keep goes by it, oldest first).  VOLUME
--                    and PATH: where it was last, for the operator.

CREATE TABLE versions (
	hash BLOB PRIMARY KEY CHECK (length(hash) = 32),
	size INTEGER NOT NULL,
	kept_ns INTEGER NOT NULL,
	volume TEXT NOT NULL,
	path TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX versions_by_age ON versions (kept_ns);
