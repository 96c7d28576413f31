#!/usr/bin/env bash
# On a filesystem that shares extents between files (XFS with reflink, as
# mkfs.xfs makes it by default), the copy of the old version that an edit
# of a large file starts from is a clone: nothing is read or written for
# it, and the new version written over it leaves the old one intact.
# Needs root, mkfs.xfs (xfsprogs) and loop devices: it fails when any is
# missing, it does not skip.
source "$(dirname "$0")/lib.sh"

PORT=18060
NODES=n1:127.0.0.1,n2:127.0.0.2
xfs_mount 1G

for i in 1 2; do
  mkdir -p "$M/n$i/web"
  LOG_LEVEL=debug cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$M/n$i" "$T/n$i/journal.db"
done
mkdir -p "$T/n1" "$T/n2"
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"

A=$M/n1/web/db.img B=$M/n2/web/db.img
same() { cmp -s "$A" "$B"; }
head -c $((128 << 20)) /dev/urandom > "$A"
wait_for 120 same || fail "the 128 MiB file did not reach n2"
pass "a 128 MiB file on XFS replicated"

# A reader that opened the old version keeps reading it whole: the
# clone's new chunks were copied on write, never written into it.
cp "$B" "$T/old-on-n2"
exec 3<"$B"
head -c $((1 << 20)) /dev/urandom |
  dd of="$A" bs=1M seek=64 conv=notrunc status=none
wait_for 120 same || fail "the edit did not reach n2"
grep -q "web/db.img: the copy made ahead is a clone" "$T/n2.log" ||
  fail "n2 did not clone the old version for the edit: $(grep db.img "$T/n2.log" | tail -5)"
grep -q "web/db.img: starting from the copy made ahead" "$T/n2.log" ||
  fail "n2's transfer did not start from the clone"
cmp -s - "$T/old-on-n2" <&3 || fail "the old version, still open on n2, changed under its reader"
exec 3<&-
pass "the edit started from a clone; the old version stayed intact for its reader"

head -c $((1 << 20)) /dev/urandom |
  dd of="$A" bs=1M seek=10 conv=notrunc status=none
wait_for 120 same || fail "the second edit did not reach n2"
[ "$(grep -c "web/db.img: the copy made ahead is a clone" "$T/n2.log")" -ge 2 ] ||
  fail "the second edit did not start from a clone"
"$KJ" --db "$T/n2/journal.db" verify >/dev/null || fail "kraken-journal verify fails on n2"
pass "a second edit cloned the version the first one made; journal verifies"
