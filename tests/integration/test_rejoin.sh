#!/usr/bin/env bash
# A node whose journal is lost rejoins without harm: it learns the
# cluster's history from a peer before publishing anything, then adopts
# its disk.  Files the cluster changed or deleted meanwhile get the
# cluster's version (no conflict copy, nothing deleted comes back), files
# as the cluster has them are taken as they are (no new change), and
# what changed only here is kept: as a new file, or as a conflict copy
# where the cluster holds another version.  With no peer to ask it
# waits, and after journal.rejoin_wait publishes its files as new.
source "$(dirname "$0")/lib.sh"

PORT=17939
pair_config "$PORT"
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
V1=$T/n1/volumes/vx V2=$T/n2/volumes/vx
echo original > "$V1/edited.txt"
echo doomed > "$V1/deleted.txt"
echo same > "$V1/same.txt"
mkdir -p "$V1/gone/deeper"
echo x > "$V1/gone/deeper/x.txt"
ln -s same.txt "$V1/link"
for i in $(seq 1 50); do echo "file $i" > "$V1/f$i.txt"; done
wait_for 30 same_tree "$T/n1/volumes" "$T/n2/volumes" || fail "the first files did not reach n2"

# n2 goes down; the cluster moves on without it.
stop_agent n2
echo "newer, from n1" > "$V1/edited.txt"
rm "$V1/deleted.txt"
rm -r "$V1/gone"
echo fresh > "$V1/new.txt"
recorded() { "$KJ" --db "$T/n1/journal.db" --json log --volume vx | jq -s -e 'any(.[]; .path == "new.txt")'; }
wait_for 30 recorded || fail "n1 did not record its changes"

# Meanwhile on n2's disk: one file made, one changed to content known
# nowhere; then its journal is damaged, and n2 does what its log says.
echo "only on n2" > "$V2/local-only.txt"
echo "mine" > "$V2/same.txt"
# Temp files of transfers cut short when n2 stopped (named with n2's
# tag): worthless, removed by the rejoin's walk as by any start-up scan.
tag=$(cat "$T/n2/volumes/.krakenfs-temp-tag")
echo half > "$V2/.krakenfs-tmp-$tag-00000000000000aa"
echo half > "$V2/gone/deeper/.krakenfs-tmp-$tag-00000000000000bb"
rm -f "$T/n2/journal.db-wal" "$T/n2/journal.db-shm"
head -c 8192 /dev/urandom | dd of="$T/n2/journal.db" conv=notrunc status=none
"$AGENT" --config "$T/n2.yaml" >"$T/n2-damaged.log" 2>&1 && fail "n2 started on a damaged journal"
grep -q "is damaged .*move it aside, with its -wal and -shm files, and start again" "$T/n2-damaged.log" ||
  fail "n2 does not say what to do with its damaged journal: $(cat "$T/n2-damaged.log")"
mv "$T/n2/journal.db" "$T/n2/journal.db.damaged"

# With n1 down too, n2 waits and publishes nothing.  (Restarts log to
# files of their own: start_agent waits for a line of this start.)
stop_agent n1
start_agent n2r "$T/n2.yaml"
sleep 2
own=$("$KJ" --db "$T/n2/journal.db" --json status | jq .seq)
[ "$own" = 0 ] || fail "n2 published $own changes before learning the history"
[ "$(cat "$V2/edited.txt")" = original ] || fail "n2 changed its disk before learning the history"
grep -q "learning the cluster's history from a peer" "$T/n2r.log" || fail "n2 does not say it waits for the history"
curl -sf "http://127.0.0.2:$((PORT + 1))/v1/status" | jq -e '.rejoining == true' >/dev/null ||
  fail "/v1/status does not say n2 is rejoining"
pass "a node whose journal is lost publishes nothing while no peer can tell it the history"

start_agent n1r "$T/n1.yaml"
wait_for 60 grep -q "rejoined the cluster's history" "$T/n2r.log" || fail "n2 did not rejoin"
content_is() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }
converged() {
  for v in "$V1" "$V2"; do
    content_is "$v/edited.txt" "newer, from n1" && [ ! -e "$v/deleted.txt" ] && [ ! -e "$v/gone" ] &&
      content_is "$v/new.txt" fresh && content_is "$v/local-only.txt" "only on n2" &&
      content_is "$v/same.txt" same && content_is "$v"/same.conflict-n2-*.txt mine || return 1
  done
  same_tree "$T/n1/volumes" "$T/n2/volumes"
}
wait_for 60 converged || fail "n1 and n2 did not converge on the cluster's history: n1: $(ls "$V1" | tr '\n' ' ') n2: $(ls "$V2" | tr '\n' ' ')"
ls "$V1" | grep -v -x 'same.conflict-n2-.*\.txt' | grep -q conflict && fail "a conflict copy of a file the cluster had changed: $(ls "$V1" | grep conflict)"
rejoined() { curl -sf "http://127.0.0.2:$((PORT + 1))/v1/status" | jq -e '.rejoining == false'; }
wait_for 5 rejoined || fail "/v1/status still says n2 is rejoining"
pass "the newer edit and the delete win, unchanged files stay, what changed only on n2 is kept"
left=$(find "$V2" -name '.krakenfs-tmp-*')
[ -z "$left" ] || fail "temp files of an earlier run left on the rejoined n2: $left"
pass "temp files left on the rejoining node's disk are removed"

# n2's new origin published only what was its own: the new file and the
# copy.
origin=$("$KJ" --db "$T/n2/journal.db" --json status | jq -r .origin)
paths=$("$KJ" --db "$T/n2/journal.db" --json log --origin "$origin" | jq -r '.path' | sort -u | tr '\n' ' ')
case "$paths" in
  "local-only.txt same.conflict-n2-"*".txt ") ;;
  *) fail "n2 recorded more than its own changes: $paths" ;;
esac
pass "the rejoining node recorded only its own changes ($paths)"

# No peer at all: after journal.rejoin_wait the files are published.
mkdir -p "$T/n3/volumes/vy"
echo alone > "$T/n3/volumes/vy/a.txt"
cluster_config "$T/n3.yaml" n3 127.0.0.3 $((PORT + 20)) n3:127.0.0.3,n9:127.0.0.9 \
  "$T/n3/volumes" "$T/n3/journal.db"
sed -i '/^journal:$/a\  rejoin_wait: "2s"' "$T/n3.yaml"
start_agent n3 "$T/n3.yaml"
published() { "$KJ" --db "$T/n3/journal.db" --json log --volume vy | jq -s -e 'any(.[]; .path == "a.txt")'; }
wait_for 30 published || fail "n3, with no peer, never published its files"
grep -q "no peer answered within journal.rejoin_wait" "$T/n3.log" || fail "n3 does not say why it published"
pass "with no peer, the files are published after journal.rejoin_wait"

# Two nodes lose their journals while the one holding the history is
# down: they learn nothing from each other (each says it is rejoining)
# and wait for it; then both take its newer version.
MNODES=m1:127.0.0.4,m2:127.0.0.5,m3:127.0.0.6
for i in 1 2 3; do
  mkdir -p "$T/m$i/volumes/vz"
  cluster_config "$T/m$i.yaml" "m$i" "127.0.0.$((i + 3))" $((PORT + 30)) "$MNODES" \
    "$T/m$i/volumes" "$T/m$i/journal.db"
  start_agent "m$i" "$T/m$i.yaml"
done
echo v1 > "$T/m1/volumes/vz/x.txt"
for i in 2 3; do
  wait_for 30 content_is "$T/m$i/volumes/vz/x.txt" v1 || fail "x.txt did not reach m$i"
done
stop_agent m2
stop_agent m3
echo v2 > "$T/m1/volumes/vz/x.txt"
m1_has_v2() { "$KJ" --db "$T/m1/journal.db" --json log --volume vz --path x.txt | jq -s -e 'length >= 2'; }
wait_for 30 m1_has_v2 || fail "m1 did not record v2"
stop_agent m1
for i in 2 3; do
  rm -f "$T/m$i/journal.db" "$T/m$i/journal.db-wal" "$T/m$i/journal.db-shm"
  start_agent "m${i}r" "$T/m$i.yaml"
done
sleep 3
for i in 2 3; do
  ! grep -q "rejoined the cluster's history" "$T/m${i}r.log" ||
    fail "m$i adopted its disk against a peer that was rejoining too"
done
start_agent m1r "$T/m1.yaml"
for i in 2 3; do
  wait_for 60 content_is "$T/m$i/volumes/vz/x.txt" v2 || fail "m$i did not take m1's newer version"
done
ls "$T"/m*/volumes/vz | grep -q conflict && fail "conflict copies of a stale file: $(ls "$T"/m*/volumes/vz)"
pass "nodes that lost their journals wait for one that holds the history, not for each other"

# A file whose only copy left is on a node that lost its journal: that
# node adopts it and serves it.  p2 writes data.bin; p1 gets it; p2 loses
# its journal and rejoins from p1; p1 goes down; p3, new and empty,
# fetches data.bin from p2, the only node up.
PNODES=p1:127.0.0.7,p2:127.0.0.8,p3:127.0.0.9
for i in 1 2 3; do
  mkdir -p "$T/p$i/volumes/vp"
  cluster_config "$T/p$i.yaml" "p$i" "127.0.0.$((i + 6))" $((PORT + 40)) "$PNODES" \
    "$T/p$i/volumes" "$T/p$i/journal.db"
done
start_agent p1 "$T/p1.yaml"
start_agent p2 "$T/p2.yaml"
head -c 300000 /dev/urandom > "$T/p2/volumes/vp/data.bin"
want=$(sha256sum < "$T/p2/volumes/vp/data.bin")
same_data() { [ "$(sha256sum < "$1/volumes/vp/data.bin" 2>/dev/null)" = "$want" ]; }
wait_for 30 same_data "$T/p1" || fail "data.bin did not reach p1"
stop_agent p2
rm -f "$T/p2/journal.db" "$T/p2/journal.db-wal" "$T/p2/journal.db-shm"
start_agent p2r "$T/p2.yaml"
wait_for 60 grep -q "rejoined the cluster's history" "$T/p2r.log" || fail "p2 did not rejoin"
stop_agent p1
start_agent p3 "$T/p3.yaml"
wait_for 60 same_data "$T/p3" ||
  fail "p3 did not get data.bin from p2, which adopted it: $(grep -i 'stuck\|holds its content' "$T/p3.log" | tail -2)"
pass "a file adopted by a rejoining node is served by it to a new node"
