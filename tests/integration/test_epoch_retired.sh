#!/usr/bin/env bash
# An old epoch is retired once every peer has caught up on it.  n2 loses
# its journal and rejoins under a new epoch; its old origin used to stay
# in every version vector for good (every HELLO, VECTOR and state
# exchange).  Once its last version is replaced, compacted away and
# acknowledged by every peer, each node drops it from its vector and
# says so; the nodes still replicate both ways, and a reconnect after it
# needs no state exchange.
source "$(dirname "$0")/lib.sh"

PORT=17948
pair_config "$PORT"
# n2 starts without the volume: it learns it from n1, so its first
# epoch records nothing but the file below (a volume root is kept for
# good, and would keep that epoch with it).
rmdir "$T/n2/volumes/vx"
for i in 1 2; do
  sed -i 's|^journal:|journal:\n  retention: "2s"|' "$T/n$i.yaml"
  echo "secret-$i" > "$T/n$i.token"
done
V1=$T/n1/volumes/vx V2=$T/n2/volumes/vx
content_is() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }
origin_of() { "$KJ" --db "$T/$1/journal.db" --json status | jq -r .origin; }
# names NODE ORIGIN: NODE's version vector names ORIGIN.
names() { "$KJ" --db "$T/$1/journal.db" --json status |
  jq -e --arg o "$2" '.version_vector | has($o)' >/dev/null; }
compact() { # compact NODE
  curl -sf -o /dev/null -X POST -H "Authorization: Bearer secret-${1#n}" \
    "http://127.0.0.${1#n}:$((PORT + 1))/v1/admin/compact"
}

start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
wait_for 30 test -d "$V2" || fail "the volume did not reach n2"
echo "from n2's first journal" > "$V2/b.txt"
wait_for 30 content_is "$V1/b.txt" "from n2's first journal" || fail "b.txt did not reach n1"
old=$(origin_of n2)

# n2 loses its journal and rejoins under a new epoch.
stop_agent n2
rm -f "$T/n2/journal.db" "$T/n2/journal.db-wal" "$T/n2/journal.db-shm"
start_agent n2r "$T/n2.yaml"
wait_for 60 grep -q "rejoined the cluster's history" "$T/n2r.log" || fail "n2 did not rejoin"
new=$(origin_of n2)
[ "$new" != "$old" ] || fail "n2 kept its epoch ($new) after losing its journal"
names n1 "$old" || fail "n1 does not name n2's old epoch $old"
wait_for 30 names n2 "$old" || fail "n2 did not learn its old epoch's changes"

# The old epoch's last version is replaced; the new epoch writes.
echo "replaced on n1" > "$V1/b.txt"
echo "from n2's second journal" > "$V2/c.txt"
wait_for 30 content_is "$V2/b.txt" "replaced on n1" || fail "b.txt's new version did not reach n2"
wait_for 30 content_is "$V1/c.txt" "from n2's second journal" || fail "c.txt did not reach n1"
sleep 3      # past journal.retention, and the acknowledgements are in
retired() { grep -q "retired 1 old epochs" "$1"; }
for n in n1 n2; do
  log=$T/$n.log
  [ $n = n2 ] && log=$T/n2r.log
  for try in 1 2 3 4 5; do
    compact $n || fail "POST /v1/admin/compact on $n"
    wait_for 5 retired "$log" && break
  done
  retired "$log" || fail "$n did not retire $old: $(grep -i 'compacted\|retired' "$log" | tail -3)"
  ! names $n "$old" || fail "$n still names the retired epoch $old"
  names $n "$new" || fail "$n does not name n2's current epoch $new"
done
pass "n2's old epoch $old is retired on both nodes and leaves their vectors"

echo "after the retirement, n1" > "$V1/d.txt"
echo "after the retirement, n2" > "$V2/e.txt"
wait_for 30 content_is "$V2/d.txt" "after the retirement, n1" || fail "d.txt did not reach n2"
wait_for 30 content_is "$V1/e.txt" "after the retirement, n2" || fail "e.txt did not reach n1"
stop_agent n1
start_agent n1r "$T/n1.yaml"
echo "after a reconnect" > "$V2/f.txt"
wait_for 30 content_is "$V1/f.txt" "after a reconnect" || fail "f.txt did not reach n1 after its restart"
wait_for 30 same_tree "$T/n1/volumes" "$T/n2/volumes" || fail "n1 and n2 differ"
! grep -q "state exchange\|current state" "$T/n1r.log" "$T/n2r.log" ||
  fail "a state exchange followed the retirement: $(grep -h 'state exchange\|current state' "$T/n1r.log" "$T/n2r.log")"
for n in n1 n2; do
  ! names $n "$old" || fail "$n names the retired epoch again"
done
pass "both nodes replicate both ways after it, and a restart needs no state exchange"
