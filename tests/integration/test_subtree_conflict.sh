#!/usr/bin/env bash
# Subtree conflicts (src/replicate/apply.c, "Subtrees"), each made by a
# partition and healed: nothing written is lost, both nodes converge and
# no job is left stuck.
#   1. a directory deleted on one node while a file is made inside it on
#      the other: the directory comes back holding the new file only;
#   2. a file on one node where the other made a directory: the directory
#      wins, the file is kept as its conflict copy;
#   3. a directory renamed on one node while a file in it is edited and
#      another made on the other: the renamed tree holds what it held,
#      the old name comes back holding the edit and the new file.
source "$(dirname "$0")/lib.sh"

PORT=17931
pair_config "$PORT"
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
  ! grep -q "is stuck" "$T/$n.log" || fail "$n has a stuck job: $(grep "is stuck" "$T/$n.log" | head -1)"
done
pass "a directory deleted on n1 while n2 made a file in it: the file is kept everywhere, the rest stays deleted"

# A partition, without a firewall: n2 runs alone (n2-alone.yaml) and
# records what is changed on its disk.
recorded_on() {  # recorded_on NODE PATH OP: the journal holds such a change
  "$KJ" --db "$T/$1/journal.db" --json log --volume vx --op "$3" |
    jq -s -e --arg p "$2" 'any(.[]; .path == $p)' >/dev/null
}
no_stuck_jobs() {
  local n jobs
  for n in n1 n2; do
    jobs=$("$KJ" --db "$T/$n/journal.db" --json status | jq -r .jobs)
    [ "$jobs" = 0 ] || fail "$n still has $jobs jobs: $("$KJ" --db "$T/$n/journal.db" status | tail -5)"
    ! grep -q "is stuck" "$T/$n.log" || fail "$n has a stuck job: $(grep "is stuck" "$T/$n.log" | head -1)"
  done
}

# 2. A directory on n2, then (later, so newer by every clock) a file at
# the same path on n1.
stop_agent n2
start_agent n2 "$T/n2-alone.yaml"
mkdir "$T/n2/volumes/vx/x"
echo inside > "$T/n2/volumes/vx/x/f.txt"
wait_for 30 recorded_on n2 x/f.txt put || fail "n2 alone did not record x/f.txt"
stop_agent n2
echo file > "$T/n1/volumes/vx/x"
wait_for 30 recorded_on n1 x put || fail "n1 did not record the file x"
start_agent n2 "$T/n2.yaml"
dir_won() {  # dir_won NODE
  local v=$T/$1/volumes/vx
  [ -d "$v/x" ] && content_is "$v/x/f.txt" inside &&
    [ "$(cat "$v"/x.conflict-* 2>/dev/null)" = file ]
}
wait_for 30 dir_won n1 || fail "n1: x is not the directory with the file kept beside it: $(ls -la "$T/n1/volumes/vx")"
wait_for 30 dir_won n2 || fail "n2: x is not the directory with the file kept beside it: $(ls -la "$T/n2/volumes/vx")"
wait_for 30 same_tree "$T/n1/volumes" "$T/n2/volumes" || fail "n1 and n2 differ after the file/directory conflict"
sleep 2
no_stuck_jobs
pass "a file and a directory made at one path: the directory wins everywhere, the file is its conflict copy"

# 3. A directory renamed on n1 while, on n2, a file in it is edited and
# another made.
mkdir "$T/n1/volumes/vx/r"
echo old > "$T/n1/volumes/vx/r/a.txt"
echo b > "$T/n1/volumes/vx/r/b.txt"
wait_for 30 content_is "$T/n2/volumes/vx/r/b.txt" b || fail "r/ did not reach n2"
stop_agent n2
start_agent n2 "$T/n2-alone.yaml"
echo edited > "$T/n2/volumes/vx/r/a.txt"
echo new > "$T/n2/volumes/vx/r/new.txt"
wait_for 30 recorded_on n2 r/new.txt put || fail "n2 alone did not record r/new.txt"
stop_agent n2
mv "$T/n1/volumes/vx/r" "$T/n1/volumes/vx/r2"
wait_for 30 recorded_on n1 r2/b.txt put || fail "n1 did not record the rename"
start_agent n2 "$T/n2.yaml"
renamed_ok() {  # renamed_ok NODE
  local v=$T/$1/volumes/vx
  content_is "$v/r2/a.txt" old && content_is "$v/r2/b.txt" b &&
    content_is "$v/r/a.txt" edited && content_is "$v/r/new.txt" new &&
    [ ! -e "$v/r/b.txt" ]
}
for n in n1 n2; do
  wait_for 30 renamed_ok $n || fail "$n: after the rename: $(cd "$T/$n/volumes/vx" && find r r2 2>&1 | sort | tr '\n' ' ')"
done
wait_for 30 same_tree "$T/n1/volumes" "$T/n2/volumes" || fail "n1 and n2 differ after the rename"
sleep 2
no_stuck_jobs
pass "a directory renamed while files in it change: the renamed tree as it was, the edits at the old name"
