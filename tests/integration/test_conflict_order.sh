#!/usr/bin/env bash
# The order in which a conflict's versions reach the disk, where a node
# holds a losing version that exists nowhere else:
#   1. the loser's conflict copy is made before the winner replaces its
#      bytes (the loser here is large, so its copy takes longer than the
#      winner's small file takes to arrive);
#   2. a version still on its way when a concurrent local change is
#      recorded at its path is not renamed over that change.
# Both end with the winner at the path and the loser as a copy, on both
# nodes.
source "$(dirname "$0")/lib.sh"

PORT=17947
pair_config "$PORT"
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2-alone.yaml"

recorded_on() {  # recorded_on NODE PATH: the journal holds a put there
  "$KJ" --db "$T/$1/journal.db" --json log --volume vx --op put |
    jq -s -e --arg p "$2" 'any(.[]; .path == $p)' >/dev/null
}
# n2's version first, then n1's: newer by every clock, so n1's wins.
head -c $((48 << 20)) /dev/urandom > "$T/n2/volumes/vx/f.bin"
want=$(sha256sum < "$T/n2/volumes/vx/f.bin" | cut -d' ' -f1)
wait_for 60 recorded_on n2 f.bin || fail "n2 did not record its f.bin"
stop_agent n2
sleep 0.1
echo "n1's newer version" > "$T/n1/volumes/vx/f.bin"
wait_for 30 recorded_on n1 f.bin || fail "n1 did not record its f.bin"
start_agent n2r "$T/n2.yaml"

settled() {  # settled NODE: f.bin is n1's, the copy holds n2's bytes
  local v=$T/$1/volumes/vx copy
  [ "$(cat "$v/f.bin" 2>/dev/null)" = "n1's newer version" ] || return 1
  copy=$(ls "$v" | grep '^f\.conflict-n2-.*\.bin$') || return 1
  [ "$(sha256sum < "$v/$copy" | cut -d' ' -f1)" = "$want" ]
}
wait_for 60 settled n2 || fail "n2 lost its own version: $(ls -la "$T/n2/volumes/vx")"
wait_for 60 settled n1 || fail "n1 has no copy of n2's version: $(ls -la "$T/n1/volumes/vx")"
wait_for 30 same_tree "$T/n1/volumes" "$T/n2/volumes" || fail "n1 and n2 differ"
for n in n1 n2r; do
  ! grep -q "is stuck" "$T/$n.log" || fail "$n has a stuck job: $(grep "is stuck" "$T/$n.log" | head -1)"
done
pass "the losing version's copy is made before the winner replaces it, on both nodes"

# A version still on its way (n1's egress is slowed down) when a
# concurrent local change is recorded at its path on n2: the transfer is
# no longer wanted there and must not replace the local change.
stop_agent n1
sed -i '/^sync:/a\  bandwidth:\n    enable: true\n    egress_bits_per_sec: 40000000' "$T/n1.yaml"
start_agent n1r "$T/n1.yaml"
head -c $((40 << 20)) /dev/urandom > "$T/n1/volumes/vx/g.bin"
want_g=$(sha256sum < "$T/n1/volumes/vx/g.bin" | cut -d' ' -f1)
receiving() { ls -a "$T/n2/volumes/vx" | grep -q '^\.krakenfs-tmp-'; }
wait_for 30 receiving || fail "n2 never started receiving g.bin"
echo "n2's own g" > "$T/n2/volumes/vx/g.bin"
local_won() {  # local_won NODE: g.bin is n2's, the copy holds n1's bytes
  local v=$T/$1/volumes/vx copy
  [ "$(cat "$v/g.bin" 2>/dev/null)" = "n2's own g" ] || return 1
  copy=$(ls "$v" | grep '^g\.conflict-n1-.*\.bin$') || return 1
  [ "$(sha256sum < "$v/$copy" | cut -d' ' -f1)" = "$want_g" ]
}
wait_for 90 local_won n2 || fail "n2's local change was replaced by the version on its way: $(ls -la "$T/n2/volumes/vx")"
wait_for 60 local_won n1 || fail "n1 does not hold n2's change with its own as a copy: $(ls -la "$T/n1/volumes/vx")"
wait_for 30 same_tree "$T/n1/volumes" "$T/n2/volumes" || fail "n1 and n2 differ"
pass "a transfer overtaken by a local change at its path is dropped, not renamed over it"
