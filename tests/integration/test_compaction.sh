#!/usr/bin/env bash
# Retention with real agents: three nodes keeping two seconds of history.
#
#  1. A node that is down while files are deleted elsewhere holds those
#     tombstones back: the others compact around them, the files stay
#     deleted when it returns, and once it has acknowledged them they go.
#  2. A node down longer than journal.retention_pin_max no longer holds
#     anything back; when it returns it catches up by state exchange, and
#     the changes it made on its own while down reach everyone.
#  3. Compaction while files are being written and replicated changes
#     nothing in the trees; the journal stays consistent and shrinks
#     back; kraken-journal says where history was compacted.
source "$(dirname "$0")/lib.sh"

PORT=17923
ALL=n1:127.0.0.1,n2:127.0.0.2,n3:127.0.0.3
for i in 1 2 3; do
  mkdir -p "$T/n$i/volumes/vol"
  echo "secret-$i" > "$T/n$i.token"
done
config() { # config NODE PIN_MAX
  local i=${1#n} node=$1
  cluster_config "$T/$node.yaml" "$node" "127.0.0.$i" "$PORT" "$ALL" \
    "$T/$node/volumes" "$T/$node/journal.db"
  sed -i "s|^journal:|journal:\n  retention: \"2s\"\n  retention_pin_max: \"$2\"|" \
    "$T/$node.yaml"
}
api() { # api NODE METHOD PATH -> body on stdout, status in $T/code
  local i=${1#n}
  curl -s -o "$T/body" -w '%{http_code}' -X "$2" \
    -H "Authorization: Bearer secret-$i" "http://127.0.0.$i:$((PORT + 1))$3" > "$T/code" || true
  cat "$T/body"
}
# rows NODE SQL: a number from the node's journal, read beside the agent.
rows() { sqlite3 -readonly "$T/$1/journal.db" "$2"; }
changes_of() { rows "$1" "SELECT count(*) FROM changes WHERE volume = 'vol' AND path = '$2'"; }
forgotten() { [ "$(changes_of "$1" "$2")" = 0 ]; }
passes() { grep -c "compacted history older than" "$T/$1.log" || true; }
more_passes() { [ "$(passes "$1")" -gt "$2" ]; }
# compacted NODE: asks for a pass and waits until one more has ended.
compacted() {
  local before
  before=$(passes "$1")
  api "$1" POST /v1/admin/compact > /dev/null
  [ "$(cat "$T/code")" = 202 ] || fail "POST /v1/admin/compact on $1: HTTP $(cat "$T/code")"
  wait_for 30 more_passes "$1" "$before" || fail "no compaction pass ended on $1"
}
content_is() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }
removed() { api "$1" GET /v1/status | jq -r ".retention.removed.$2"; }
# removed_at_least NODE WHAT N: /v1/status counts N or more.  The loop
# publishes its counts once a second, so a pass that just ended may show
# a moment later.
removed_at_least() { [ "$(removed "$1" "$2")" -ge "$3" ]; }

for i in 1 2 3; do config n$i 1h; done
for i in 1 2 3; do start_agent n$i "$T/n$i.yaml"; done

# ---- 1: tombstones wait for the node that lacks them --------------------
for f in a b c; do echo "file $f" > "$T/n1/volumes/vol/$f.txt"; done
wait_for 30 test -f "$T/n3/volumes/vol/c.txt" || fail "initial files did not reach n3"
wait_for 30 test -f "$T/n2/volumes/vol/c.txt" || fail "initial files did not reach n2"
sleep 3   # every node acknowledges them (ACK every second while changing)
stop_agent n3
rm "$T/n1/volumes/vol/a.txt" "$T/n1/volumes/vol/b.txt"
echo "edited" > "$T/n1/volumes/vol/c.txt"
wait_for 30 test ! -e "$T/n2/volumes/vol/a.txt" || fail "delete did not reach n2"
sleep 3   # older than the retention
compacted n1; compacted n2
for n in n1 n2; do
  [ "$(changes_of $n a.txt)" -ge 1 ] || fail "$n compacted a.txt's tombstone while n3 lacks it"
  [ "$(rows $n "SELECT op FROM changes WHERE volume = 'vol' AND path = 'a.txt' ORDER BY id DESC LIMIT 1")" = 4 ] ||
    fail "$n: a.txt's last change is not its delete"
done
pass "n1 and n2 keep the tombstones n3 has not seen"

start_agent n3 "$T/n3.yaml"
wait_for 30 test ! -e "$T/n3/volumes/vol/a.txt" || fail "a.txt not deleted on n3"
wait_for 30 content_is "$T/n3/volumes/vol/c.txt" edited || fail "c.txt's edit did not reach n3"
[ ! -e "$T/n3/volumes/vol/b.txt" ] || fail "b.txt not deleted on n3"
grep -q "state exchange" "$T/n3.log" && fail "n3 needed a state exchange within the pin"
sleep 3   # n3 acknowledges
compacted n1
[ "$(changes_of n1 a.txt)" = 0 ] || fail "n1 kept a.txt's tombstone after everyone acknowledged it"
[ "$(changes_of n1 c.txt)" = 1 ] || fail "n1 kept $(changes_of n1 c.txt) versions of c.txt, not just the current one"
wait_for 5 removed_at_least n1 tombstones 2 || fail "/v1/status does not count the tombstones removed"
for n in n1 n2 n3; do
  [ ! -e "$T/$n/volumes/vol/a.txt" ] && [ ! -e "$T/$n/volumes/vol/b.txt" ] ||
    fail "a deleted file came back on $n"
done
"$KJ" --db "$T/n1/journal.db" history vol c.txt > "$T/history.txt" 2>&1 || true
grep -q "history before .* compacted" "$T/history.txt" ||
  fail "kraken-journal history does not say history was compacted: $(cat "$T/history.txt")"
pass "the files stay deleted on n3, then the tombstones go; kraken-journal says so"

# ---- 2: down past the pin: state exchange -----------------------------------
for i in 1 2 3; do config n$i 4s; done
for i in 1 2; do api n$i POST /v1/admin/reload > /dev/null; done
echo "to be deleted" > "$T/n1/volumes/vol/f.txt"
wait_for 30 test -f "$T/n3/volumes/vol/f.txt" || fail "f.txt did not reach n3"
stop_agent n3
# While n3 is away: versions it will never see (superseded, or a file
# made and deleted), a deleted file it holds, and new files.
echo "first while n3 was away" > "$T/n1/volumes/vol/c.txt"
sleep 0.2
echo "while n3 was away" > "$T/n1/volumes/vol/c.txt"
rm "$T/n1/volumes/vol/f.txt"
echo "short-lived" > "$T/n2/volumes/vol/g.txt"
sleep 0.2
rm "$T/n2/volumes/vol/g.txt"
echo "new on n2" > "$T/n2/volumes/vol/d.txt"
# n3, stopped, is changed on its own disk: a new file and a file nobody
# else touches; the start-up scan records them as n3's changes.
echo "n3 alone" > "$T/n3/volumes/vol/e.txt"
wait_for 30 test -f "$T/n1/volumes/vol/d.txt" || fail "d.txt did not reach n1"
# Past the pin n3 holds nothing back: what it never saw is compacted.
for n in n1 n2; do
  wait_for 60 forgotten $n g.txt || fail "$n kept g.txt's history though n3 is past the pin"
  wait_for 60 forgotten $n f.txt || fail "$n kept f.txt's tombstone though n3 is past the pin"
done
start_agent n3 "$T/n3.yaml"
wait_for 60 grep -q "caught up with n[12] by state exchange" "$T/n3.log" ||
  fail "n3 did not catch up by state exchange"
wait_for 30 test -f "$T/n3/volumes/vol/d.txt" || fail "d.txt did not reach n3"
wait_for 30 content_is "$T/n3/volumes/vol/c.txt" "while n3 was away" || fail "c.txt on n3: $(cat "$T/n3/volumes/vol/c.txt")"
wait_for 30 test -f "$T/n1/volumes/vol/e.txt" || fail "n3's own change did not reach n1"
wait_for 30 same_tree "$T/n1/volumes" "$T/n3/volumes" || fail "n1 and n3 differ after the exchange"
wait_for 30 same_tree "$T/n1/volumes" "$T/n2/volumes" || fail "n1 and n2 differ after the exchange"
for n in n1 n2 n3; do
  for gone in a.txt f.txt g.txt; do
    [ ! -e "$T/$n/volumes/vol/$gone" ] || fail "$gone exists on $n after the exchange"
  done
done
for n in n1 n2; do
  ! grep -q "sending entries to" "$T/$n.log" ||
    fail "$n: $(grep "sending entries to" "$T/$n.log" | head -1)"
done
pass "n3, away past the pin, catches up by state exchange; its own change reaches everyone"

# ---- 3: compaction during replication -------------------------------------
sleep 6
compacted n2
(
  for r in $(seq 1 40); do
    for f in $(seq 1 25); do echo "round $r" > "$T/n1/volumes/vol/w$f.txt"; done
    rm -f "$T/n1/volumes/vol/w$((r % 25 + 1)).txt"
    sleep 0.1
  done
) &
writer=$!
for k in 1 2 3; do compacted n2; compacted n3; sleep 0.5; done
wait "$writer"
wait_for 60 same_tree "$T/n1/volumes" "$T/n2/volumes" || fail "n1 and n2 differ after writing while compacting"
wait_for 60 same_tree "$T/n1/volumes" "$T/n3/volumes" || fail "n1 and n3 differ after writing while compacting"
sleep 3
for n in n1 n2 n3; do compacted $n; done
for n in n1 n2 n3; do
  "$KJ" --db "$T/$n/journal.db" verify > "$T/verify.txt" 2>&1 ||
    fail "kraken-journal verify on $n: $(cat "$T/verify.txt")"
  wait_for 5 removed_at_least "$n" changes 1 || fail "$n removed no superseded versions"
done
[ "$(rows n1 "SELECT count(*) FROM changes WHERE volume = 'vol' AND path LIKE 'w%'")" -le 60 ] ||
  fail "n1 still holds $(rows n1 "SELECT count(*) FROM changes WHERE volume = 'vol' AND path LIKE 'w%'") changes of the 1,000 writes"
pass "compaction during replication: identical trees, consistent journals, old versions gone"
