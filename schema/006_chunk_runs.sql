-- KrakenFS journal, schema 6: chunk lists stored as runs of other lists.
--
-- content_runs  chunks [idx, idx + n) of CONTENT's list are the rows
--               [holder_idx, holder_idx + n) of HOLDER in content_chunks,
--               each at its offset there plus SHIFT.  A content with runs
--               has rows only for the chunks no run covers (the ones it
--               brought); a run always points at rows, never at another
--               run.  src/journal/chunks.c has the rules.
-- contents.runs how many runs a content has; 0: its whole list is rows.
--               n_chunks stays the length of the whole list.
--
-- Lists stored before stay whole: they are read as before.

ALTER TABLE contents ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;

CREATE TABLE content_runs (
	content BLOB NOT NULL REFERENCES contents(hash),
	idx INTEGER NOT NULL,
	holder BLOB NOT NULL REFERENCES contents(hash),
	holder_idx INTEGER NOT NULL,
	n INTEGER NOT NULL CHECK (n > 0),
	shift INTEGER NOT NULL,
	PRIMARY KEY (content, idx)
) WITHOUT ROWID;
CREATE INDEX content_runs_by_holder ON content_runs (holder, holder_idx);
