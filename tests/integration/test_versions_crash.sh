#!/usr/bin/env bash
# The version store survives kill -9: while n2 keeps what n1's changes
# replace (a stream of versions of one file), and while it prunes.  After
# each crash and restart every row has its file, every file its row,
# every kept version restores byte for byte, and replication goes on.
source "$(dirname "$0")/lib.sh"

PORT=17994
pair_config "$PORT"
echo "secret-2" > "$T/n2.token"
V1=$T/n1/volumes/vx V2=$T/n2/volumes/vx
STORE=$T/n2/volumes/.krakenfs-versions
content_is() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }
body() { printf 'version %s of f, with some padding to make it larger %0200d\n' "$1" 0; }

# consistent: the store's files and the journal's rows name the same
# contents, each file of the size its row says.
consistent() {
  local rows files
  rows=$(sqlite3 -readonly "$T/n2/journal.db" "SELECT lower(hex(hash)) || ' ' || size FROM versions ORDER BY 1")
  files=$(cd "$STORE" && for f in *; do [ -e "$f" ] && echo "$f $(stat -c %s "$f")"; done | sort)
  [ "$rows" = "$files" ] || { echo "rows:"; echo "$rows"; echo "files:"; echo "$files"; return 1; }
}
# restores_ok: every kept version of f.txt restores to what n1 wrote.
restores_ok() {
  local n=0 at v out
  while read -r ns; do
    at=$((ns / 1000000000)).$(printf '%09d' $((ns % 1000000000)))
    out=$T/restore-$ns.txt; rm -f "$out"
    "$KJ" --db "$T/n2/journal.db" restore vx f.txt --at "@$at" --to "$out" > /dev/null || return 1
    v=$(sed -n 's/^version \([0-9]*\) of f.*/\1/p' "$out")
    [ -n "$v" ] && [ "$(cat "$out")" = "$(body "$v")" ] || { echo "restore at $at: $(head -c 80 "$out")"; return 1; }
    n=$((n + 1))
  done < <(sqlite3 -readonly "$T/n2/journal.db" "SELECT DISTINCT c.wall_ns FROM changes c
           JOIN versions v ON v.hash = c.hash WHERE c.volume = 'vx' AND c.path = 'f.txt'")
  echo "$n versions restored"
}

# crash PID: kill -9, and wait until it is gone (its journal lock with it).
crash() {
  kill -9 "$1"
  wait "$1" 2>/dev/null || true
  while kill -0 "$1" 2>/dev/null; do sleep 0.05; done
}

start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
# kill -9 while n2 keeps the versions n1 writes.
(
  for i in $(seq 1 300); do body "$i" > "$V1/f.txt.tmp"; mv "$V1/f.txt.tmp" "$V1/f.txt"; sleep 0.01; done
) &
writer=$!
kept_some() { [ "$(sqlite3 -readonly "$T/n2/journal.db" "SELECT count(*) FROM versions" 2>/dev/null || echo 0)" -ge 30 ]; }
wait_for 60 kept_some || fail "n2 kept nothing while n1 wrote"
crash "$PID_n2"
wait "$writer"
start_agent n2b "$T/n2.yaml"
wait_for 60 content_is "$V2/f.txt" "$(body 300)" || fail "n2 did not catch up after kill -9"
sleep 1
consistent || fail "the store and the journal disagree after kill -9 during keeping"
got=$(restores_ok) || fail "a kept version does not restore after kill -9: $got"
pass "kill -9 while keeping: store and journal agree, $got byte for byte, n2 caught up"

# kill -9 while pruning down to 1 KiB.
sed -i 's|^journal:|versions:\n  max_bytes: "1KiB"\njournal:|' "$T/n2.yaml"
curl -sf -X POST -H "Authorization: Bearer secret-2" \
  "http://127.0.0.2:$((PORT + 1))/v1/admin/reload" >/dev/null || fail "reload n2"
crash "$PID_n2b"
start_agent n2c "$T/n2.yaml"
pruned() { [ "$(sqlite3 -readonly "$T/n2/journal.db" "SELECT coalesce(sum(size), 0) FROM versions")" -le 1024 ]; }
wait_for 30 pruned || fail "n2 did not prune to 1 KiB after the crash"
consistent || fail "the store and the journal disagree after kill -9 during pruning"
got=$(restores_ok) || fail "a kept version does not restore after kill -9 during pruning: $got"
body 301 > "$V1/f.txt"
wait_for 30 content_is "$V2/f.txt" "$(body 301)" || fail "replication stopped after the crashes"
pass "kill -9 while pruning: store and journal agree, $got, replication goes on"
