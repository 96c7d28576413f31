#!/usr/bin/env bash
# A journal made by an older release (schema 4, the last before the
# journal-lifecycle work) is upgraded in place when the agent starts:
# its history stays readable, the counts status shows are right from the
# first answer, it is rewritten once so that compaction can shrink it,
# and the agent records on top of it.
source "$(dirname "$0")/lib.sh"

ROOT=$T/volumes
DB=$T/journal.db
CFG=$T/config.yaml
SCHEMA=$(cd "$(dirname "$0")/../../schema" && pwd)
mkdir -p "$ROOT"
write_config "$CFG" node-a "$ROOT" "$DB"

# Schema 1-4 as those releases made it, with this node's identity and
# another node's history: a volume, a file written, edited, deleted, and
# the volume removed.
{
  for f in "$SCHEMA"/00[1-4]_*.sql; do cat "$f"; echo; done
  cat <<'SQL'
INSERT INTO meta VALUES ('node_id', 'node-a'), ('epoch', '00000000000000aa'),
  ('created_ns', '1700000000000000000');
INSERT INTO origins (id, node, epoch) VALUES (1, 'node-a', '00000000000000aa'),
  (2, 'vm2', '00000000000000bb');
INSERT INTO changes (id, origin, seq, lamport, wall_ns, volume, path, op, mode,
  uid, gid, size, mtime_ns, hash) VALUES
  (1, 2, 1, 1, 1700000000000000000, 'data', '', 6, 16877, 0, 0, 0, 0, NULL),
  (2, 2, 2, 2, 1700000001000000000, 'data', 'a', 1, 33188, 0, 0, 1, 0, zeroblob(32)),
  (3, 2, 3, 3, 1700000002000000000, 'data', 'a', 1, 33188, 0, 0, 1, 0, randomblob(32)),
  (4, 2, 4, 4, 1700000003000000000, 'data', 'a', 4, 0, 0, 0, 0, 0, NULL),
  (5, 2, 5, 5, 1700000004000000000, 'data', '', 7, 0, 0, 0, 0, 0, NULL);
INSERT INTO bases (change, origin, seq) VALUES (3, 2, 2), (4, 2, 3), (5, 2, 1);
INSERT INTO current (volume, path, change) VALUES ('data', '', 5), ('data', 'a', 4);
INSERT INTO heads (volume, path, change) VALUES ('data', '', 5), ('data', 'a', 4);
PRAGMA user_version = 4;
SQL
} | sqlite3 "$DB" || fail "could not make a schema-4 journal"
[ "$(sqlite3 "$DB" 'PRAGMA user_version')" = 4 ] || fail "the old journal is not schema 4"
[ "$(sqlite3 "$DB" 'PRAGMA auto_vacuum')" = 0 ] || fail "the old journal already gives pages back"

start_agent a "$CFG"
latest=$(ls "$SCHEMA"/*.sql | wc -l)
st=$("$KJ" --db "$DB" --json status) || fail "kraken-journal status failed"
jq -e --argjson v "$latest" '.schema_version == $v and .changes == 5 and .paths == 0 and .volumes == 0' \
  <<<"$st" >/dev/null || fail "after the upgrade: $st"
"$KJ" --db "$DB" history data a | grep -c 'vm2@00000000000000bb' | grep -qx 3 ||
  fail "the old history of data/a is not readable: $("$KJ" --db "$DB" history data a)"
# Rewritten once so that compaction can give freed pages back.
[ "$(sqlite3 "$DB" 'PRAGMA auto_vacuum')" = 2 ] ||
  fail "the upgraded journal keeps freed pages (auto_vacuum $(sqlite3 "$DB" 'PRAGMA auto_vacuum'))"
grep -q "rewriting .* once so that compaction can shrink it" "$T/a.log" ||
  fail "the one-time rewrite was not logged"
pass "a schema-4 journal was upgraded to schema $latest in place, history and counts intact"

# A volume and a file: at least their two changes (the volume root's
# mtime may be recorded too, depending on when the watcher looks).
mkdir "$ROOT/web"
echo hello > "$ROOT/web/index.html"
wait_for 10 sh -c "'$KJ' --db '$DB' --json status | jq -e '.paths == 1 and .volumes == 1 and .changes >= 7' >/dev/null" ||
  fail "the agent did not record on top of the upgraded journal: $("$KJ" --db "$DB" --json status)"
"$KJ" --db "$DB" --json log --volume web | jq -s -e 'any(.[]; .path == "index.html" and .op == "put")' >/dev/null ||
  fail "web/index.html is not in the log: $("$KJ" --db "$DB" log --volume web)"
stop_agent a
pass "the agent records on the upgraded journal"
