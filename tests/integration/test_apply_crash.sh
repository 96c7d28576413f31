#!/usr/bin/env bash
# kill -9 between putting a peer's version in place and committing that
# to the journal (a file renamed in, a symlink replaced, a file
# unlinked).  After the restart the node's disk holds a version its
# journal has not marked as applied: the start-up scan must take it as
# that version, not record it as a change of this node's.  Recorded, the
# audit history said n2 wrote files it never touched, and the phantom
# change (based on what n2 held before) was concurrent with everything
# n1 wrote since: it could beat n1's newer version and push it into a
# conflict copy.
source "$(dirname "$0")/lib.sh"

PORT=18010
pair_config "$PORT"
V1=$T/n1/volumes/vx V2=$T/n2/volumes/vx
SHIM=$BIN/kraken-crash-at.so
[ -f "$SHIM" ] || fail "$SHIM is missing: build the tree first"
content_is() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }
link_is() { [ "$(readlink "$1" 2>/dev/null)" = "$2" ]; }
gone() { [ ! -e "$1" ] && [ ! -L "$1" ]; }

# n2_changes PATH: the changes made on n2 to vx/PATH, one per line.
n2_changes() {
  "$KJ" --db "$T/n2/journal.db" --json log --volume vx --path "$1" --origin n2 |
    jq -r 'select(.path == "'"$1"'") | "\(.op) \(.path)"'
}

# crash_applying NAME: starts n2 with the shim armed for NAME and waits
# for the kill -9 that follows its first rename or unlink of NAME.
# (The subshell says how the agent ended, without bash's "Killed".)
crash_applying() {
  local pid rc
  rm -f "$T/crash.rc"
  ( rc=0
    LD_PRELOAD=$SHIM KRAKEN_CRASH_AT=$1 \
      ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
      "$AGENT" --config "$T/n2.yaml" >> "$T/n2-crash.log" 2>&1 || rc=$?
    echo "$rc" > "$T/crash.rc" ) 2>/dev/null &
  pid=$!
  PIDS+=("$pid")
  wait_for 60 test -s "$T/crash.rc" || fail "n2 was not killed applying $1"
  wait "$pid" || true
  rc=$(cat "$T/crash.rc")
  [ "$rc" -eq 137 ] || fail "n2 applying $1 exited $rc, not by SIGKILL"
}

start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
echo v1 > "$V1/f.txt"
ln -s a "$V1/l"
echo doomed > "$V1/g.txt"
wait_for 30 content_is "$V2/g.txt" doomed || fail "n2 did not get the first files"
wait_for 30 link_is "$V2/l" a || fail "n2 did not get the symlink"
stop_agent n2

# A file: n1's v2 renamed into place on n2, then kill -9.
echo v2 > "$V1/f.txt"
ln -sfn b "$V1/l"
rm "$V1/g.txt"
crash_applying f.txt
content_is "$V2/f.txt" v2 || fail "the kill came before n2 renamed v2 in: the test proves nothing"
start_agent n2b "$T/n2.yaml"
wait_for 30 link_is "$V2/l" b || fail "n2 did not get the new symlink target after the crash"
wait_for 30 gone "$V2/g.txt" || fail "n2 did not apply the delete after the crash"
sleep 1      # what a scan would record is in the journal by now
got=$(n2_changes f.txt)
[ -z "$got" ] || fail "n2's journal says n2 changed f.txt, which it only applied: $got"
echo v3 > "$V1/f.txt"
wait_for 30 content_is "$V2/f.txt" v3 || fail "n1's next version did not reach n2"
ls "$V1" "$V2" | grep -q conflict && fail "a conflict copy appeared: $(ls "$V1" "$V2")"
pass "kill -9 after renaming a peer's file in: taken as applied, no change of n2's, no conflict"
stop_agent n2b

# A symlink, then a delete: the same, each on its own crash.
ln -sfn c "$V1/l"
crash_applying l
link_is "$V2/l" c || fail "the kill came before n2 replaced the symlink: the test proves nothing"
echo doomed-again > "$V1/h.txt"
start_agent n2c "$T/n2.yaml"
wait_for 30 content_is "$V2/h.txt" doomed-again || fail "n2 did not catch up after the symlink crash"
stop_agent n2c
rm "$V1/h.txt"
crash_applying h.txt
gone "$V2/h.txt" || fail "the kill came before n2 unlinked h.txt: the test proves nothing"
start_agent n2d "$T/n2.yaml"
echo after > "$V1/after.txt"
wait_for 30 content_is "$V2/after.txt" after || fail "n2 did not catch up after the delete crash"
sleep 1
for p in l h.txt; do
  got=$(n2_changes "$p")
  [ -z "$got" ] || fail "n2's journal says n2 changed $p, which it only applied: $got"
done
wait_for 30 same_tree "$V1" "$V2" || fail "n1 and n2 differ after the crashes"
pass "kill -9 after replacing a symlink or unlinking a file: taken as applied, trees agree"
