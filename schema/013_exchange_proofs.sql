-- KrakenFS journal, schema 13: heads received in a state exchange come
-- with proofs, and keep them (src/journal/exchange_proof.c).
--
-- exchange.prev, exchange.digest
--                    of a staged head that came with a proof (the chain
--                    hash before it, checked up to a signature of its
--                    origin): stored with the change when the exchange
--                    is applied.  NULL for a head taken without one (the
--                    sending node's own, from before its chain began).
-- exchange_skips, exchange_seals
--                    the rest of the staged proofs: digests of changes
--                    after a head in its segment, and the signatures
--                    that end them or prove the sender's vector.  When
--                    the exchange is applied they join chain_skips and
--                    signatures, so that this node can prove those heads
--                    and that vector in turn.

ALTER TABLE exchange ADD COLUMN prev BLOB;
ALTER TABLE exchange ADD COLUMN digest BLOB;

CREATE TABLE exchange_skips (
	origin INTEGER NOT NULL,
	seq INTEGER NOT NULL,
	digest BLOB NOT NULL CHECK (length(digest) = 32),
	PRIMARY KEY (origin, seq)
) WITHOUT ROWID;

CREATE TABLE exchange_seals (
	origin INTEGER NOT NULL,
	seq INTEGER NOT NULL,
	chain BLOB NOT NULL CHECK (length(chain) = 32),
	key BLOB CHECK (key IS NULL OR length(key) = 32),
	sig BLOB,
	PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
