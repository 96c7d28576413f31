-- KrakenFS journal, schema 14: old epochs are retired (src/journal/compact.c).
--
-- origins.retired    1 once the origin is an old epoch of its node (a
--                    newer epoch of the same node holds a later change),
--                    nothing of it is held any more but its floor, and
--                    every configured peer acknowledged it up to that
--                    floor.  A retired origin is left out of the version
--                    vector (HELLO, VECTOR, ACK, state exchanges, status)
--                    and of every walk; its floor still marks what is
--                    held, so a late copy of one of its changes is
--                    recognised and dropped.  A change of it that does
--                    arrive (above the floor) brings it back.

ALTER TABLE origins ADD COLUMN retired INTEGER NOT NULL DEFAULT 0;
