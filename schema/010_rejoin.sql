-- KrakenFS journal, schema 10: a node joins the cluster's history once.
--
-- meta 'joined'  set once the node's volumes and the journal agree: a
--                fresh journal over volumes that hold files first learns
--                the cluster's history from peers and adopts what the
--                disk holds (src/journal/adopt.c); until then the agent
--                publishes nothing of its own.  Journals from before
--                this schema that hold changes have joined already.

INSERT OR IGNORE INTO meta (key, value)
	SELECT 'joined', 'before schema 10' WHERE EXISTS (SELECT 1 FROM changes);
