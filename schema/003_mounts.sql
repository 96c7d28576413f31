-- KrakenFS journal, schema 3: Docker mount references.
--
-- mounts    one row per (volume, mount id) Docker has mounted on this node
--           and not unmounted.  Unmount can be lost (a killed dockerd), so
--           the driver reconciles these rows with the containers it is
--           asked about; nothing here is replicated.

CREATE TABLE mounts (
	volume TEXT NOT NULL,
	id TEXT NOT NULL,
	created_ns INTEGER NOT NULL,
	PRIMARY KEY (volume, id)
) WITHOUT ROWID;
