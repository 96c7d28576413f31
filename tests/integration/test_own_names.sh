#!/usr/bin/env bash
# The agent removes only temp files it made: their names carry a tag kept
# in ROOT/.krakenfs-temp-tag.  A user's file that looks like one
# (.krakenfs-tmp-*, .krakenfs-anything) is an ordinary file: replicated,
# and still there after restarts.  Untagged temp names of agents before
# the tag are removed once, by the first start over a root.
source "$(dirname "$0")/lib.sh"

PORT=17963
pair_config "$PORT"
V1=$T/n1/volumes/vx V2=$T/n2/volumes/vx
# An older agent's leftover, in a root this version has never started on.
mkdir -p "$V1"
echo stale > "$V1/.krakenfs-tmp-00000000000000aa"
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
[ ! -e "$V1/.krakenfs-tmp-00000000000000aa" ] || fail "an older agent's temp file survived the first start"
tag=$(cat "$T/n1/volumes/.krakenfs-temp-tag")
[[ "$tag" =~ ^[0-9a-f]{16}$ ]] || fail "the tag file holds '$tag'"
pass "the first start makes the tag ($tag) and removes an older agent's untagged temp file"

mkdir -p "$V1/sub"
echo "mine 1" > "$V1/.krakenfs-tmp-0123456789abcdef"
echo "mine 2" > "$V1/.krakenfs-notes"
echo "mine 3" > "$V1/sub/.krakenfs-tmp-$(printf '%016x' 7)-0000000000000001"
echo "sync" > "$V1/sync.txt"
all_there() {
  local v
  for v in "$V1" "$V2"; do
    [ "$(cat "$v/.krakenfs-tmp-0123456789abcdef" 2>/dev/null)" = "mine 1" ] &&
      [ "$(cat "$v/.krakenfs-notes" 2>/dev/null)" = "mine 2" ] &&
      [ "$(cat "$v/sub/.krakenfs-tmp-$(printf '%016x' 7)-0000000000000001" 2>/dev/null)" = "mine 3" ] &&
      [ -f "$v/sync.txt" ] || return 1
  done
}
wait_for 30 all_there || fail "the user's .krakenfs-* files did not replicate: n2 has $(ls -A "$V2" | tr '\n' ' ')"
pass "files named like the agent's are replicated like any other"

# The agent's own leftover (its tag) goes at the next start; the user's
# files stay, on both nodes.
stop_agent n1
stop_agent n2
echo half > "$V1/.krakenfs-tmp-$tag-00000000000000bb"
echo stale > "$V1/.krakenfs-tmp-00000000000000cc"
start_agent n1r "$T/n1.yaml"
start_agent n2r "$T/n2.yaml"
[ ! -e "$V1/.krakenfs-tmp-$tag-00000000000000bb" ] || fail "the agent's own temp file survived the restart"
[ "$(cat "$V1/.krakenfs-tmp-00000000000000cc")" = stale ] || fail "an untagged name was removed after the first start"
wait_for 30 all_there || fail "a user's .krakenfs-* file is gone after a restart: n1 has $(ls -A "$V1" | tr '\n' ' ')"
wait_for 30 test -f "$V2/.krakenfs-tmp-00000000000000cc" || fail "the untagged file made while stopped did not replicate"
pass "after restarts the user's files are there on both nodes; only the agent's tagged leftover went"
