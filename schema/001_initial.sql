-- KrakenFS journal, schema 1.
--
-- changes   every change this node knows, its own and those pulled from
--           peers; (origin, seq) is its identity everywhere, id only here.
--           mode carries the file type bits (S_IFREG, S_IFDIR, S_IFLNK), so
--           every row describes a whole version; op says what changed.
-- bases     the version(s) a change replaced on its origin: the history
--           graph that conflicts are decided from.
-- contents  one row per distinct file content, with its chunk list in
--           content_chunks; identical content is stored once.
-- current   what is on this node's disk per path: the change it holds
--           (a delete keeps its tombstone so later versions link to it)
--           and the stat fields that let a scan skip unchanged files.
-- meta      node identity (node_id, epoch, origin), volume root.

CREATE TABLE meta (
	key TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE origins (
	id INTEGER PRIMARY KEY,
	node TEXT NOT NULL,
	epoch TEXT NOT NULL,
	UNIQUE (node, epoch)
);

CREATE TABLE changes (
	id INTEGER PRIMARY KEY,
	origin INTEGER NOT NULL REFERENCES origins(id),
	seq INTEGER NOT NULL CHECK (seq > 0),
	lamport INTEGER NOT NULL,
	wall_ns INTEGER NOT NULL,
	volume TEXT NOT NULL,
	path TEXT NOT NULL,
	op INTEGER NOT NULL CHECK (op BETWEEN 1 AND 7),
	mode INTEGER NOT NULL,
	uid INTEGER NOT NULL,
	gid INTEGER NOT NULL,
	size INTEGER NOT NULL,
	mtime_ns INTEGER NOT NULL,
	hash BLOB CHECK (hash IS NULL OR length(hash) = 32),
	target TEXT,
	UNIQUE (origin, seq)
);
CREATE INDEX changes_by_path ON changes (volume, path);
CREATE INDEX changes_by_time ON changes (wall_ns);

CREATE TABLE bases (
	change INTEGER NOT NULL REFERENCES changes(id),
	origin INTEGER NOT NULL REFERENCES origins(id),
	seq INTEGER NOT NULL,
	PRIMARY KEY (change, origin, seq)
) WITHOUT ROWID;

CREATE TABLE contents (
	hash BLOB PRIMARY KEY,
	size INTEGER NOT NULL,
	n_chunks INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE content_chunks (
	content BLOB NOT NULL REFERENCES contents(hash),
	idx INTEGER NOT NULL,
	chunk BLOB NOT NULL,
	offset INTEGER NOT NULL,
	len INTEGER NOT NULL,
	PRIMARY KEY (content, idx)
) WITHOUT ROWID;
CREATE INDEX content_chunks_by_chunk ON content_chunks (chunk);

CREATE TABLE current (
	volume TEXT NOT NULL,
	path TEXT NOT NULL,
	change INTEGER NOT NULL REFERENCES changes(id),
	ino INTEGER NOT NULL DEFAULT 0,
	ctime_ns INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (volume, path)
) WITHOUT ROWID;
