#!/usr/bin/env bash
# Bit rot: bytes changed on n2's disk under an unchanged inode, size,
# mtime and ctime (a byte flipped in the loop-mounted image behind its
# volume root, with the filesystem unmounted).
#   1. n1 then edits 4 KiB of the file: n2 builds the new version from
#      its rotten copy, but checks every reused byte, fetches what does
#      not match, and ends identical to n1.
#   2. A file nobody edits: the scrub (POST /v1/admin/scrub) finds it
#      damaged and repairs it from n1, recording no new version.
if [ -z "${KRAKEN_TEST_MOUNT_NS:-}" ]; then
  exec env KRAKEN_TEST_MOUNT_NS=1 unshare --mount --propagation private -- \
    bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"
command -v mkfs.ext4 >/dev/null || fail "mkfs.ext4 missing: run tools/install-deps.sh (e2fsprogs)"

PORT=17943
NODES=n1:127.0.0.1,n2:127.0.0.2
IMG=$T/n2.img
truncate -s 128M "$IMG"
mkfs.ext4 -q -F "$IMG"
mkdir -p "$T/n1/volumes/vx" "$T/n2/volumes"
mount -o loop "$IMG" "$T/n2/volumes"
# Agents go first: a mount they hold open cannot be unmounted.
unmount_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  umount "$T/n2/volumes" 2>/dev/null || true
  cleanup
}
trap unmount_cleanup EXIT
mkdir -p "$T/n2/volumes/vx"
for i in 1 2; do
  # Scrub passes only when asked, so that the test decides when.
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$T/n$i/volumes" "$T/n$i/journal.db"
  sed -i '/^volume:$/a\  scrub_period: "0"' "$T/n$i.yaml"
  head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$T/n$i.token"
done
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
V1=$T/n1/volumes/vx V2=$T/n2/volumes/vx

# make_file NAME MIB MARKER: random bytes with MARKER at 1 MiB, on n1
make_file() {
  head -c "$(($2 << 20))" /dev/urandom > "$T/$1"
  printf '%s' "$3" | dd of="$T/$1" bs=1 seek=$((1 << 20)) conv=notrunc status=none
  cp "$T/$1" "$V1/$1"
}
sha() { sha256sum < "$1" | cut -d' ' -f1; }
same_file() { [ -f "$V2/$1" ] && [ "$(sha "$V1/$1")" = "$(sha "$V2/$1")" ]; }
make_file big.bin 8 KRAKEN-ROT-MARKER-A-7f3e9d
make_file quiet.bin 3 KRAKEN-ROT-MARKER-B-41c2a8
wait_for 60 same_file big.bin || fail "big.bin did not reach n2"
wait_for 60 same_file quiet.bin || fail "quiet.bin did not reach n2"

# rot MARKER: with n2 stopped and its disk unmounted, one byte of MARKER
# in the image changes; the inode is not touched.
rot() {
  local off
  umount "$T/n2/volumes"
  off=$(grep -obUa -m1 "$1" "$IMG" | head -1 | cut -d: -f1)
  [ -n "$off" ] || fail "marker $1 not found in n2's image"
  printf 'X' | dd of="$IMG" bs=1 seek="$off" conv=notrunc status=none
  mount -o loop "$IMG" "$T/n2/volumes"
}
stop_agent n2
rot KRAKEN-ROT-MARKER-A-7f3e9d
rot KRAKEN-ROT-MARKER-B-41c2a8
same_file big.bin && fail "the rot did not change big.bin on n2"
same_file quiet.bin && fail "the rot did not change quiet.bin on n2"
start_agent n2r "$T/n2.yaml"

# 1. An edit elsewhere in the rotten file.
dd if=/dev/urandom of="$V1/big.bin" bs=4096 seek=$((6 * 256)) count=1 conv=notrunc status=none
wait_for 60 same_file big.bin || fail "n2 built the edit on its rotten copy: its big.bin differs from n1's"
grep -q "vx/big.bin: bytes of its previous version on this disk do not match their hash" "$T/n2r.log" ||
  fail "n2 does not say its copy was damaged"
pass "an edit applied over a rotten copy: the damaged bytes are fetched, not built in"

# 2. The scrub finds the untouched rotten file and repairs it.
API=http://127.0.0.2:$((PORT + 1))
curl -sf -X POST -H "Authorization: Bearer $(cat "$T/n2.token")" "$API/v1/admin/scrub" >/dev/null ||
  fail "POST /v1/admin/scrub refused"
wait_for 60 same_file quiet.bin || fail "the scrub did not repair quiet.bin on n2"
grep -q "scrub: vx/quiet.bin does not match its recorded hash at byte" "$T/n2r.log" ||
  fail "n2 does not log what the scrub found"
grep -q "repaired vx/quiet.bin" "$T/n2r.log" || fail "n2 does not log the repair"
scrubbed() { curl -sf "$API/v1/status" | jq -e '.scrub.damaged == 1 and .scrub.repaired == 1 and .scrub.passes >= 1'; }
wait_for 10 scrubbed || fail "/v1/status does not count the damage and the repair: $(curl -sf "$API/v1/status" | jq -c .scrub)"
# Read whole first: grep -q stops at the match, and under pipefail the
# writer's SIGPIPE would fail the pipe.
metrics=$(curl -sf "$API/metrics")
grep -qx "krakenfs_repaired_total 1" <<<"$metrics" || fail "/metrics does not count the repair: $(grep repaired <<<"$metrics")"
"$KJ" --db "$T/n2/journal.db" verify >/dev/null || fail "kraken-journal verify finds problems on n2 after the repair"
origin=$("$KJ" --db "$T/n2/journal.db" --json status | jq -r .origin)
own=$("$KJ" --db "$T/n2/journal.db" --json log --origin "$origin" --path quiet.bin) ||
  fail "kraken-journal log on n2"
[ -z "$own" ] || fail "the repair was recorded as a new version of quiet.bin: $own"
pass "the scrub finds a rotten file and repairs it from a peer, as the same version"
