-- KrakenFS journal, schema 7: retention, compaction and state exchange.
--
-- origins.floor          every change of the origin with seq <= floor is
--                        known here: held, or removed by compaction (here,
--                        or at the peer a state exchange came from).  What
--                        this node holds of an origin is max(floor, the
--                        largest seq held); past the floor, seqs are
--                        gapless.  floor_lamport: the largest Lamport value
--                        among the changes removed, so the clock never
--                        goes back.
-- peers                  the other configured nodes, and when each last
--                        reported its version vector (first listed, if it
--                        never did).
-- peer_acks              per peer and origin, the highest seq the peer said
--                        it holds: its acknowledgement.  Only changes every
--                        peer heard from within retention_pin_max has
--                        acknowledged are compacted (src/journal/compact.c).
-- exchange, exchange_bases
--                        heads received in a state exchange, staged until
--                        the sender's last frame; applied, then emptied, in
--                        one transaction (src/journal/exchange.c), with
-- exchange_vector, exchange_paths, exchange_drops
--                        the sender's vector, the paths to retarget and the
--                        heads to drop while applying: tables, not
--                        temporary ones, whose creation would make SQLite
--                        compile every statement of the connection again.
-- jobs_by_change         a version a job still has to write (a conflict
--                        copy is written at another path than its
--                        change's) is never compacted; with
-- heads_by_change        the foreign keys of a removed change are
--                        checked by index, not by a scan of each table.
-- meta 'compacted_before' wall time (ns) before which history may be
--                        gone, for the audit commands to say so.

ALTER TABLE origins ADD COLUMN floor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE origins ADD COLUMN floor_lamport INTEGER NOT NULL DEFAULT 0;

CREATE INDEX jobs_by_change ON jobs (change);
CREATE INDEX heads_by_change ON heads (change);

CREATE TABLE peers (
	node TEXT PRIMARY KEY,
	reported_ns INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE peer_acks (
	node TEXT NOT NULL REFERENCES peers(node) ON DELETE CASCADE,
	origin INTEGER NOT NULL REFERENCES origins(id),
	seq INTEGER NOT NULL,
	PRIMARY KEY (node, origin)
) WITHOUT ROWID;

CREATE TABLE exchange (
	id INTEGER PRIMARY KEY,
	origin TEXT NOT NULL,
	seq INTEGER NOT NULL,
	lamport INTEGER NOT NULL,
	wall_ns INTEGER NOT NULL,
	volume TEXT NOT NULL,
	path TEXT NOT NULL,
	op INTEGER NOT NULL,
	mode INTEGER NOT NULL,
	uid INTEGER NOT NULL,
	gid INTEGER NOT NULL,
	size INTEGER NOT NULL,
	mtime_ns INTEGER NOT NULL,
	hash BLOB,
	target TEXT,
	change INTEGER            -- the changes row, once applied
);
CREATE INDEX exchange_by_change ON exchange (change);

CREATE TABLE exchange_bases (
	entry INTEGER NOT NULL REFERENCES exchange(id) ON DELETE CASCADE,
	origin TEXT NOT NULL,
	seq INTEGER NOT NULL
);
CREATE INDEX exchange_bases_by_entry ON exchange_bases (entry);

CREATE TABLE exchange_vector (
	origin INTEGER PRIMARY KEY REFERENCES origins(id),
	seq INTEGER NOT NULL
);

CREATE TABLE exchange_paths (
	volume TEXT NOT NULL,
	path TEXT NOT NULL,
	PRIMARY KEY (volume, path)
) WITHOUT ROWID;

CREATE TABLE exchange_drops (
	volume TEXT NOT NULL,
	path TEXT NOT NULL,
	change INTEGER NOT NULL,
	PRIMARY KEY (volume, path, change)
) WITHOUT ROWID;
