-- KrakenFS journal, schema 5: no statement whose cost grows with history.
--
-- changes_by_volume  one volume's audit log, newest first: an index on
--                    volume is ordered by id within it, so a page of the
--                    log reads only the rows it returns.
-- merges             every change that names more than one base (a
--                    resolution, or an edit that replaced identical
--                    heads), which conflict listings start from; kept
--                    by a trigger on bases.
-- counts             the row counts that kraken-journal status and
--                    /v1/status show, kept by triggers instead of
--                    counted on every request.  paths: current, not
--                    deleted, volume roots aside; volumes: roots of
--                    volumes not removed.  A change row never changes
--                    once written, so its mode and op can be looked up
--                    when current moves on.
--
-- No partial index: a statement comparing the index's column with a
-- parameter is compiled again at every new binding (its plan depends on
-- whether the value satisfies the index's WHERE), which made every lookup
-- of a path parse its SQL anew.  journal_foreach_volume steps from one
-- volume's root to the next instead.

CREATE INDEX changes_by_volume ON changes (volume);

CREATE TABLE merges (
	change INTEGER PRIMARY KEY REFERENCES changes(id)
);
INSERT INTO merges (change)
	SELECT change FROM bases GROUP BY change HAVING count(*) > 1;
CREATE TRIGGER merges_add AFTER INSERT ON bases
WHEN (SELECT count(*) FROM bases WHERE change = NEW.change) > 1
BEGIN
	INSERT OR IGNORE INTO merges (change) VALUES (NEW.change);
END;

CREATE TABLE counts (
	name TEXT PRIMARY KEY,
	n INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counts (name, n) VALUES
	('changes', (SELECT count(*) FROM changes)),
	('contents', (SELECT count(*) FROM contents)),
	('chunks', (SELECT count(*) FROM content_chunks)),
	('paths', (SELECT count(*) FROM current cur JOIN changes c
		ON c.id = cur.change WHERE cur.path != '' AND c.mode != 0)),
	('volumes', (SELECT count(*) FROM current cur JOIN changes c
		ON c.id = cur.change WHERE cur.path = '' AND c.op != 7));

CREATE TRIGGER counts_changes_add AFTER INSERT ON changes BEGIN
	UPDATE counts SET n = n + 1 WHERE name = 'changes';
END;
CREATE TRIGGER counts_changes_del AFTER DELETE ON changes BEGIN
	UPDATE counts SET n = n - 1 WHERE name = 'changes';
END;
CREATE TRIGGER counts_contents_add AFTER INSERT ON contents BEGIN
	UPDATE counts SET n = n + 1 WHERE name = 'contents';
END;
CREATE TRIGGER counts_contents_del AFTER DELETE ON contents BEGIN
	UPDATE counts SET n = n - 1 WHERE name = 'contents';
END;
CREATE TRIGGER counts_chunks_add AFTER INSERT ON content_chunks BEGIN
	UPDATE counts SET n = n + 1 WHERE name = 'chunks';
END;
CREATE TRIGGER counts_chunks_del AFTER DELETE ON content_chunks BEGIN
	UPDATE counts SET n = n - 1 WHERE name = 'chunks';
END;

-- A path is never renamed in place: OLD.path = NEW.path, so one counter
-- moves, by the liveness of the new change minus the old one's.
CREATE TRIGGER counts_current_add AFTER INSERT ON current BEGIN
	UPDATE counts SET n = n + (CASE WHEN NEW.path = '' THEN
		(SELECT op FROM changes WHERE id = NEW.change) != 7 ELSE
		(SELECT mode FROM changes WHERE id = NEW.change) != 0 END)
		WHERE name = (CASE WHEN NEW.path = '' THEN 'volumes'
			      ELSE 'paths' END);
END;
CREATE TRIGGER counts_current_del AFTER DELETE ON current BEGIN
	UPDATE counts SET n = n - (CASE WHEN OLD.path = '' THEN
		(SELECT op FROM changes WHERE id = OLD.change) != 7 ELSE
		(SELECT mode FROM changes WHERE id = OLD.change) != 0 END)
		WHERE name = (CASE WHEN OLD.path = '' THEN 'volumes'
			      ELSE 'paths' END);
END;
CREATE TRIGGER counts_current_move AFTER UPDATE OF change ON current
WHEN OLD.change != NEW.change BEGIN
	UPDATE counts SET n = n + (CASE WHEN NEW.path = '' THEN
		((SELECT op FROM changes WHERE id = NEW.change) != 7) -
		((SELECT op FROM changes WHERE id = OLD.change) != 7) ELSE
		((SELECT mode FROM changes WHERE id = NEW.change) != 0) -
		((SELECT mode FROM changes WHERE id = OLD.change) != 0) END)
		WHERE name = (CASE WHEN NEW.path = '' THEN 'volumes'
			      ELSE 'paths' END);
END;
