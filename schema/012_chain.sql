-- KrakenFS journal, schema 12: every origin's changes form a hash chain,
-- signed by the origin (src/journal/chain.c says how and why).
--
-- changes.prev, changes.digest
--                    digest: SHA-256 of the change's canonical encoding;
--                    prev: the chain hash of the origin's previous
--                    change.  A change's chain hash is SHA-256(prev ||
--                    digest).  Both NULL for a change recorded before this
--                    schema, or learned unchained (from an older peer, or
--                    in a state exchange): such a change is reported as
--                    unchained by `kraken-journal verify --chain`.
-- origins.chain, origins.chain_seq
--                    the chain hash of the origin's change CHAIN_SEQ, the
--                    newest this node checked or made: the next change of
--                    the origin must name it as its prev.  NULL when not
--                    known (the next one is taken on its signature).
-- signatures         where a signed segment of an origin ends: the chain
--                    hash there and the origin's signature over it (key
--                    and sig NULL in a plaintext cluster).  A change is
--                    tied to the first signature at or after its seq.
-- chain_skips        the digest of a compacted change that a held change
--                    before it in the same segment needs to reach its
--                    signature.
-- keys               certificates of signing keys (DER), by the SHA-256 of
--                    their public key; relayed to peers with the entries
--                    they signed.

ALTER TABLE changes ADD COLUMN prev BLOB;
ALTER TABLE changes ADD COLUMN digest BLOB;
ALTER TABLE origins ADD COLUMN chain BLOB;
ALTER TABLE origins ADD COLUMN chain_seq INTEGER NOT NULL DEFAULT 0;

CREATE TABLE signatures (
	origin INTEGER NOT NULL REFERENCES origins(id),
	seq INTEGER NOT NULL,
	chain BLOB NOT NULL CHECK (length(chain) = 32),
	key BLOB CHECK (key IS NULL OR length(key) = 32),
	sig BLOB,
	PRIMARY KEY (origin, seq)
) WITHOUT ROWID;

CREATE TABLE chain_skips (
	origin INTEGER NOT NULL REFERENCES origins(id),
	seq INTEGER NOT NULL,
	digest BLOB NOT NULL CHECK (length(digest) = 32),
	PRIMARY KEY (origin, seq)
) WITHOUT ROWID;

CREATE TABLE keys (
	id BLOB PRIMARY KEY CHECK (length(id) = 32),
	node TEXT NOT NULL,
	cert BLOB NOT NULL
) WITHOUT ROWID;
