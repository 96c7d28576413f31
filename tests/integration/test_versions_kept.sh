#!/usr/bin/env bash
# What a peer's change replaces or deletes is kept (versions.keep): n1
# writes v1, v2 and v3 of a file and deletes it; n2, which applied each
# change, still holds every one of the three contents, byte for byte,
# `kraken-journal versions` says so for each, and `kraken-journal
# restore --at` gives back the version of each moment, or says why not.
# Lowering versions.max_bytes prunes the oldest first; versions.keep
# prunes by age.
source "$(dirname "$0")/lib.sh"

PORT=17956
pair_config "$PORT"
echo "secret-2" > "$T/n2.token"
V1=$T/n1/volumes/vx V2=$T/n2/volumes/vx
content_is() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }
versions() { "$KJ" --db "$T/n2/journal.db" --json versions vx f.txt; }
# kept HASH: the store's file for HASH, as n2 keeps it.
kept() { cat "$T/n2/volumes/.krakenfs-versions/$1"; }

start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
t0=$(date +%s.%N)
sleep 0.1
for v in 1 2 3; do
  echo "version $v of f" > "$V1/f.txt"
  wait_for 30 content_is "$V2/f.txt" "version $v of f" || fail "v$v did not reach n2"
  eval "t$v=\$(date +%s.%N)"
  sleep 0.1
done
rm "$V1/f.txt"
wait_for 30 eval '[ ! -e "$V2/f.txt" ]' || fail "the delete did not reach n2"
t4=$(date +%s.%N)

versions > "$T/versions.json" || fail "kraken-journal versions: $(cat "$T/versions.json")"
jq -e 'length == 4 and ([.[] | select(.op == "put" and .content == "kept")] | length) == 3 and
       ([.[] | select(.op == "delete")] | length) == 1' "$T/versions.json" >/dev/null ||
  fail "n2 does not list three kept versions and a delete: $(cat "$T/versions.json")"
for v in 1 2 3; do
  h=$(jq -r --argjson i $((v - 1)) '[.[] | select(.op == "put")][$i].hash' "$T/versions.json")
  [ "$(kept "$h")" = "version $v of f" ] || fail "n2 keeps '$(kept "$h")' for v$v"
done
"$KJ" --db "$T/n2/journal.db" versions vx /f.txt > "$T/versions.txt" || fail "versions (text)"
[ "$(grep -c ' kept$' "$T/versions.txt")" = 3 ] || fail "the table does not say kept three times: $(cat "$T/versions.txt")"
pass "n2 keeps v1, v2 and v3 that n1's changes replaced and deleted, byte for byte"

api_get() { curl -sf -H "Authorization: Bearer secret-2" "http://127.0.0.2:$((PORT + 1))$1"; }
api_get /v1/volumes/vx | jq -e '.versions.count == 3 and .versions.bytes == 45 and
  (.versions.oldest | type) == "string"' >/dev/null ||
  fail "/v1/volumes/vx does not show the kept versions: $(api_get /v1/volumes/vx)"
api_get /metrics > "$T/metrics"
grep -q '^krakenfs_versions_bytes 45$' "$T/metrics" && grep -q '^krakenfs_versions_kept 3$' "$T/metrics" &&
  grep -q '^krakenfs_versions_oldest_seconds [1-9][0-9]*$' "$T/metrics" ||
  fail "metrics: $(grep versions "$T/metrics")"
pass "/v1/volumes/vx and /metrics show what is kept (3 versions, 45 bytes)"

# restore NODE TIME DEST: kraken-journal restore of vx/f.txt.
restore() { "$KJ" --db "$T/$1/journal.db" restore vx f.txt --at "@$2" --to "$3"; }
for v in 1 2 3; do
  eval "at=\$t$v"
  restore n2 "$at" "$T/f-v$v.txt" > "$T/restore.out" 2>&1 ||
    fail "restore at v$v's time: $(cat "$T/restore.out")"
  content_is "$T/f-v$v.txt" "version $v of f" || fail "restore at v$v's time gave '$(cat "$T/f-v$v.txt")'"
done
set +e
restore n2 "$t4" "$T/f-deleted.txt" > "$T/restore.out" 2>&1; rc=$?
set -e
[ "$rc" = 1 ] && grep -q "it was deleted at that time" "$T/restore.out" ||
  fail "restore after the delete: exit $rc, $(cat "$T/restore.out")"
set +e
restore n2 "$t0" "$T/f-before.txt" > "$T/restore.out" 2>&1; rc=$?
set -e
[ "$rc" = 1 ] && grep -q "it did not exist yet at that time" "$T/restore.out" ||
  fail "restore before the first version: exit $rc, $(cat "$T/restore.out")"
set +e
restore n2 "$t2" "$T/f-v2.txt" > "$T/restore.out" 2>&1; rc=$?
set -e
[ "$rc" = 2 ] && grep -q "the destination exists" "$T/restore.out" ||
  fail "restore over an existing file: exit $rc, $(cat "$T/restore.out")"
content_is "$T/f-v2.txt" "version 2 of f" || fail "a refused restore changed its destination"
# n1 wrote each version over the last itself: nothing was kept there.
set +e
restore n1 "$t1" "$T/f-n1.txt" > "$T/restore.out" 2>&1; rc=$?
set -e
[ "$rc" = 1 ] && grep -q "is not kept on this node" "$T/restore.out" ||
  fail "restore of v1 on n1: exit $rc, $(cat "$T/restore.out")"
pass "restore --at gives v1, v2 and v3 of their moments; says why for a delete, a time before, an existing file, and content not kept"

# In place, through the API: v2 becomes the file again, as a new version
# of n2's that reaches n1.
admin_restore() { # admin_restore QUERY -> body in $T/body, status echoed
  curl -s -o "$T/body" -w '%{http_code}' -X POST -H "Authorization: Bearer secret-2" \
    "http://127.0.0.2:$((PORT + 1))/v1/admin/restore?$1"
}
code=$(admin_restore "volume=vx&path=f.txt&at=@$t2")
[ "$code" = 200 ] || fail "POST /v1/admin/restore: HTTP $code $(cat "$T/body")"
jq -e '.version.origin | startswith("n1@")' "$T/body" >/dev/null || fail "restore answer: $(cat "$T/body")"
wait_for 30 content_is "$V2/f.txt" "version 2 of f" || fail "the restore did not put v2 back on n2"
wait_for 30 content_is "$V1/f.txt" "version 2 of f" || fail "the restored version did not reach n1"
"$KJ" --db "$T/n1/journal.db" --json versions vx f.txt |
  jq -e '.[-1].op == "put" and (.[-1].origin | startswith("n2@")) and .[-1].content == "live"' >/dev/null ||
  fail "n1 does not hold the restore as n2's newest version: $("$KJ" --db "$T/n1/journal.db" --json versions vx f.txt)"
code=$(admin_restore "volume=vx&path=f.txt&at=@$t0")
[ "$code" = 404 ] && grep -q "no version of it was made by then" "$T/body" || fail "restore before the first version: HTTP $code $(cat "$T/body")"
code=$(admin_restore "volume=vx&path=../etc/passwd&at=@$t2")
[ "$code" = 400 ] || fail "a hostile path: HTTP $code $(cat "$T/body")"
code=$(admin_restore "volume=vx&path=f.txt")
[ "$code" = 400 ] || fail "no time: HTTP $code $(cat "$T/body")"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.2:$((PORT + 1))/v1/admin/restore?volume=vx&path=f.txt&at=@$t2")
[ "$code" = 401 ] || fail "a restore without the token: HTTP $code"
pass "POST /v1/admin/restore puts v2 back in place as a new version that reaches n1; bad requests are refused"

# A whole volume as it was: a tree with directories, modes and a symlink,
# copied on n2 at a moment; then changed, partly deleted, on n1.
mkdir -p "$V1/d1/d2" "$V1/gone/deep"
echo "a file" > "$V1/d1/a.txt"; chmod 0600 "$V1/d1/a.txt"
echo "a script" > "$V1/d1/d2/run.sh"; chmod 0755 "$V1/d1/d2/run.sh"
echo "soon gone" > "$V1/gone/deep/x.txt"
ln -s d1/a.txt "$V1/link"
touch -d @1700000000 "$V1/d1/a.txt"
tree_on_n2() { [ -L "$V2/link" ] && content_is "$V2/gone/deep/x.txt" "soon gone" &&
  content_is "$V2/d1/d2/run.sh" "a script" && content_is "$V2/d1/a.txt" "a file" &&
  [ "$(stat -c %Y "$V2/d1/a.txt")" = 1700000000 ]; }
wait_for 30 tree_on_n2 || fail "the tree did not reach n2"
sleep 0.5
cp -a "$V2" "$T/snapshot"
t_tree=$(date +%s.%N)
sleep 0.2
echo "changed" > "$V1/d1/a.txt"
chmod 0700 "$V1/d1/d2/run.sh"
rm -r "$V1/gone"
rm "$V1/link"; ln -s d1/d2 "$V1/link"
echo "new later" > "$V1/later.txt"
wait_for 30 content_is "$V2/later.txt" "new later" || fail "the changes did not reach n2"
wait_for 30 eval '[ ! -e "$V2/gone" ] && content_is "$V2/d1/a.txt" changed' || fail "the changes did not all reach n2"
"$KJ" --db "$T/n2/journal.db" restore vx --at "@$t_tree" --to "$T/restored" > "$T/restore.out" 2>&1 ||
  fail "restore of the volume: $(cat "$T/restore.out")"
rm -f "$T/snapshot/f.txt" "$T/restored/f.txt"   # f.txt's own story is told above
same_tree "$T/snapshot" "$T/restored" ||
  fail "the restored volume differs from the copy taken then: $(diff <(cd "$T/snapshot" && find . -printf '%y %m %p %l\n' | sort) <(cd "$T/restored" && find . -printf '%y %m %p %l\n' | sort))"
[ "$(stat -c %Y "$T/restored/d1/a.txt")" = 1700000000 ] || fail "the restored a.txt lost its mtime"
grep -q "restored volume vx as it was at that time" "$T/restore.out" || fail "restore says: $(cat "$T/restore.out")"
pass "a whole volume restored as it was equals the copy taken then: directories, modes, symlink, mtimes, deleted files"

# A cap of 16 bytes keeps only what was kept last (each is 7 to 15).
newest=$(sqlite3 -readonly "$T/n2/journal.db" "SELECT max(kept_ns) FROM versions")
sed -i 's|^journal:|versions:\n  max_bytes: "16B"\njournal:|' "$T/n2.yaml"
curl -sf -X POST -H "Authorization: Bearer secret-2" \
  "http://127.0.0.2:$((PORT + 1))/v1/admin/reload" >/dev/null || fail "reload n2"
within_cap() { api_get /v1/volumes/vx | jq -e '.versions.bytes <= 16 and .versions.count >= 1' >/dev/null; }
wait_for 10 within_cap || fail "versions.max_bytes did not prune: $(api_get /v1/volumes/vx)"
[ "$(sqlite3 -readonly "$T/n2/journal.db" "SELECT max(kept_ns) FROM versions")" = "$newest" ] ||
  fail "pruning by size did not keep the newest"
versions | jq -e '[.[] | select(.content == "kept")] | length == 0' >/dev/null ||
  fail "f.txt's older versions survived the cap: $(versions)"
grep -q "pruned [0-9]* kept versions" "$T/n2.log" || fail "n2 does not log the pruning"
pass "versions.max_bytes prunes the oldest first and keeps the newest"

sed -i 's|^versions:|versions:\n  keep: "1s"|' "$T/n2.yaml"
sleep 1.1
curl -sf -X POST -H "Authorization: Bearer secret-2" \
  "http://127.0.0.2:$((PORT + 1))/v1/admin/reload" >/dev/null || fail "reload n2"
none_kept() { versions | jq -e '[.[] | select(.content == "kept")] | length == 0' >/dev/null; }
wait_for 10 none_kept || fail "versions.keep did not prune by age: $(versions)"
[ -z "$(ls "$T/n2/volumes/.krakenfs-versions")" ] || fail "pruned files are still in the store: $(ls "$T/n2/volumes/.krakenfs-versions")"
pass "versions.keep prunes by age, files and rows"
