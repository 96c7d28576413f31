#!/usr/bin/env bash
# A directory deleted on one node while a file is made inside it on the
# other: nothing written is lost, the directory comes back holding the
# new file only, both nodes converge and no job is retried forever.
source "$(dirname "$0")/lib.sh"

PORT=17931
NODES=n1:127.0.0.1,n2:127.0.0.2
for i in 1 2; do
  mkdir -p "$T/n$i/volumes/vx"
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$T/n$i/volumes" "$T/n$i/journal.db"
done
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
mkdir -p "$T/n1/volumes/vx/d/sub"
echo a > "$T/n1/volumes/vx/d/a.txt"
echo b > "$T/n1/volumes/vx/d/sub/b.txt"
wait_for 30 test -f "$T/n2/volumes/vx/d/sub/b.txt" || fail "the tree did not reach n2"

# Partition by stopping n2: n1 deletes the tree, n2's disk gets a file in it.
stop_agent n2
rm -rf "$T/n1/volumes/vx/d"
deleted() { "$KJ" --db "$T/n1/journal.db" --json log --volume vx --op delete | jq -s -e 'any(.[]; .path == "d")' >/dev/null; }
wait_for 30 deleted || fail "n1 did not record the delete"
mkdir -p "$T/n2/volumes/vx/d/sub"
echo precious > "$T/n2/volumes/vx/d/new.txt"
start_agent n2 "$T/n2.yaml"

content_is() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }
wait_for 30 content_is "$T/n1/volumes/vx/d/new.txt" precious || fail "new.txt never reached n1"
wait_for 30 same_tree "$T/n1/volumes" "$T/n2/volumes" || fail "n1 and n2 differ"
for n in n1 n2; do
  [ ! -e "$T/$n/volumes/vx/d/a.txt" ] && [ ! -e "$T/$n/volumes/vx/d/sub/b.txt" ] ||
    fail "a file the delete removed came back on $n"
done
sleep 2
for n in n1 n2; do
  jobs=$("$KJ" --db "$T/$n/journal.db" --json status | jq -r .jobs)
  [ "$jobs" = 0 ] || fail "$n still has $jobs jobs"
  ! grep -q "will retry" "$T/$n.log" || fail "$n retried a job: $(grep 'will retry' "$T/$n.log" | head -1)"
done
pass "a directory deleted on n1 while n2 made a file in it: the file is kept everywhere, the rest stays deleted"
