#!/usr/bin/env bash
# On XFS (blocks shared between copies), the versions an edit of a large
# file leaves behind cost what the edit changed, and are counted so.
# n1 edits 1 MiB at a time inside a 256 MiB file, EDITS times; n2, which
# makes each new version from a clone of the one before and keeps the one
# it replaces, keeps all of them, for about EDITS MiB of disk, and
# reports about that much (FIEMAP: the blocks they hold beyond the live
# file).  Counted by size, the store seemed to hold EDITS x 256 MiB, and
# the default cap (10% of the file system) pruned every version of the
# file at once.  The file system is 1 GiB, less than twice the two
# copies' size free: the clone each edit starts from must not wait for
# room a clone does not need, or every edit writes a whole new file and
# the kept versions fill the disk.
# Needs root, mkfs.xfs (xfsprogs) and loop devices: it fails when any is
# missing, it does not skip.
source "$(dirname "$0")/lib.sh"

PORT=18040
EDITS=${EDITS:-30}
NODES=n1:127.0.0.1,n2:127.0.0.2
xfs_mount 1G

for i in 1 2; do
  mkdir -p "$M/n$i/vx" "$T/n$i"
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" "$M/n$i" "$T/n$i/journal.db"
done
echo "secret-2" > "$T/n2.token"
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
A=$M/n1/vx/db.img B=$M/n2/vx/db.img
head -c $((256 << 20)) /dev/urandom > "$A"
wait_for 120 cmp -s "$A" "$B" || fail "the 256 MiB file did not reach n2"
sum0=$(sha256sum < "$A")
sleep 0.1
t0=$(date +%s.%N)
sleep 0.1
used0=$(df --output=used -B1 "$M" | tail -n 1)

api() { local p=$1; shift; curl -sf -H "Authorization: Bearer secret-2" "$@" "http://127.0.0.2:$((PORT + 1))$p"; }
# reported_near K: n2 reports about K MiB kept (K-1 to 3K), the newest
# version measured too.  Counted at its size until measured, one more
# version of this file adds 256 MiB.
reported_near() {
  local b
  b=$(api /v1/volumes/vx | jq .versions.bytes) || return 1
  [ "$b" -ge $((($1 - 1) << 20)) ] && [ "$b" -le $((3 * $1 << 20)) ]
}
# mib_is FILE K WANT: MiB number K of FILE is the file WANT.
mib_is() { dd if="$1" bs=1M skip="$2" count=1 status=none | cmp -s - "$3"; }
for k in $(seq 1 "$EDITS"); do
  head -c $((1 << 20)) /dev/urandom > "$T/edit"
  dd if="$T/edit" of="$A" bs=1M seek=$((k * 6 % 250)) conv=notrunc status=none
  wait_for 60 mib_is "$B" $((k * 6 % 250)) "$T/edit" || fail "edit $k did not reach n2"
  # Within seconds, not at the next prune (once a minute): checked
  # three times, so that a prune falling in the window cannot pass it.
  if [ $((k % 10)) = 0 ]; then
    wait_for 8 reported_near "$k" ||
      fail "8 s after edit $k n2 reports $(api /v1/volumes/vx | jq .versions.bytes) bytes kept, not about $k MiB"
  fi
done
wait_for 30 cmp -s "$A" "$B" || fail "n2 differs from n1 after $EDITS edits"
kept=$(sqlite3 -readonly "$T/n2/journal.db" "SELECT count(*) FROM versions WHERE path = 'db.img'")
[ "$kept" -ge $((EDITS - 1)) ] || fail "n2 keeps $kept versions of db.img after $EDITS edits"

# The prune that measures every row again runs once a minute; a reload
# runs one now.
api /v1/admin/reload -X POST > /dev/null || fail "reload n2"
all_measured() { [ "$(sqlite3 -readonly "$T/n2/journal.db" "SELECT count(*) FROM versions WHERE disk IS NULL")" = 0 ]; }
wait_for 30 all_measured || fail "n2 did not measure its kept versions after the reload"
bytes=$(api /v1/volumes/vx | jq .versions.bytes)
[ "$bytes" -ge $(((EDITS - 1) << 20)) ] && [ "$bytes" -le $((3 * EDITS << 20)) ] ||
  fail "n2 reports $bytes bytes kept for $kept versions of 1 MiB edits (expected about $EDITS MiB)"
used=$(( $(df --output=used -B1 "$M" | tail -n 1) - used0 ))
[ "$used" -le $((4 * EDITS << 20)) ] ||
  fail "keeping $kept versions used $used bytes of the file system, not about $EDITS MiB"
pass "$EDITS edits of 1 MiB in a 256 MiB file: $kept versions kept, reported $((bytes >> 20)) MiB, $((used >> 20)) MiB of disk used"

"$KJ" --db "$T/n2/journal.db" restore vx db.img --at "@$t0" --to "$T/restored.img" \
  > "$T/restore.out" 2>&1 || fail "restore of the first version: $(cat "$T/restore.out")"
[ "$(sha256sum < "$T/restored.img")" = "$sum0" ] || fail "the first version does not restore byte for byte"
pass "the version before the first edit restores byte for byte from n2's store"
