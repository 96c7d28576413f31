#!/usr/bin/env bash
# A job that cannot succeed (its directory is a read-only mount on the
# receiver) is not retried every second forever: it is reported as stuck
# with its reason (log, kraken-journal status, /v1/status, /metrics),
# retried less and less often, and no Docker mount waits for it, of its
# own volume or another.  Once the cause is gone, a resync applies it.
if [ -z "${KRAKEN_TEST_MOUNT_NS:-}" ]; then
  # The read-only bind mount stays inside this test.
  exec env KRAKEN_TEST_MOUNT_NS=1 unshare --mount --propagation private -- \
    bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"

PORT=17935
NODES=n1:127.0.0.1,n2:127.0.0.2
for i in 1 2; do
  mkdir -p "$T/n$i/volumes/vx" "$T/n$i/volumes/other"
  # Mounts would wait a long time for an unfinished job: long enough
  # that a mount held up by the stuck job shows in the log.
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$T/n$i/volumes" "$T/n$i/journal.db" "  mount_wait: \"20s\""
  head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$T/n$i.token"
done
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
mkdir -p "$T/n1/volumes/vx/ro"
echo a > "$T/n1/volumes/vx/ro/a.txt"
wait_for 30 test -f "$T/n2/volumes/vx/ro/a.txt" || fail "vx/ro/a.txt did not reach n2"

# n2's copy of the directory becomes read-only: what n1 writes into it
# cannot be applied there.
RO=$T/n2/volumes/vx/ro
trap 'umount "$RO" 2>/dev/null || true; cleanup' EXIT
mount --bind "$RO" "$RO"
mount -o remount,ro,bind "$RO"
echo b > "$T/n1/volumes/vx/ro/b.txt"

API=http://127.0.0.2:$((PORT + 1))
status() { curl -sf "$API/v1/status"; }
stuck_reported() {
  status | jq -e '.jobs_stuck == 1 and (.stuck_jobs[0] | .volume == "vx" and
    .path == "ro/b.txt" and (.reason | test("Read-only")) and .failures >= 5)'
}
wait_for 40 stuck_reported || fail "n2 does not report the stuck job: $(status | jq -c '{jobs, jobs_stuck, stuck_jobs}')"
grep -q "applying vx/ro/b.txt is stuck: Read-only file system" "$T/n2.log" ||
  fail "n2's log does not say the job is stuck"
# /metrics and /v1/status's count come from the loop's snapshot, published
# once a second.
stuck_metric() { local m; m=$(curl -sf "$API/metrics") && grep -qx "krakenfs_jobs_stuck 1" <<<"$m"; }
wait_for 5 stuck_metric || fail "/metrics does not count the stuck job: $(curl -sf "$API/metrics" | grep jobs)"
"$KJ" --db "$T/n2/journal.db" status | grep -q "vx/ro/b.txt: Read-only file system" ||
  fail "kraken-journal status does not list the stuck job: $("$KJ" --db "$T/n2/journal.db" status)"
"$KJ" --db "$T/n2/journal.db" --json status |
  jq -e '.jobs_stuck == 1 and .stuck_jobs[0].path == "ro/b.txt"' >/dev/null ||
  fail "kraken-journal status --json does not list the stuck job"
pass "a job that cannot be applied is reported as stuck, with its reason"

# Backing off: a stuck job is not tried every second.
before=$(status | jq '.stuck_jobs[0].failures')
sleep 6
after=$(status | jq '.stuck_jobs[0].failures')
[ $((after - before)) -le 3 ] || fail "the stuck job was tried $((after - before)) times in 6 s"
pass "a stuck job is retried less and less often ($before, then $after failures 6 s later)"

# Docker mounts wait for nothing stuck: neither the job's own volume nor
# another one.
mount_volume() {  # mount_volume NAME: VolumeDriver.Mount on n2's socket
  curl -sf --max-time 60 --unix-socket "$T/n2.sock" -X POST \
    -d "{\"Name\":\"$1\",\"ID\":\"c-$1\"}" http://plugin/VolumeDriver.Mount
}
for v in other vx; do
  out=$(mount_volume "$v") || fail "Mount of $v failed"
  echo "$out" | jq -e --arg d "$T/n2/volumes/$v" '.Mountpoint == $d and (.Err // "") == ""' >/dev/null ||
    fail "Mount of $v answered $out"
  ! grep -q "mounting $v before catching up" "$T/n2.log" ||
    fail "Mount of $v waited for the stuck job: $(grep "mounting $v" "$T/n2.log")"
done
pass "Docker mounts of the stuck job's volume and of another do not wait for it"

# The cause goes away; a resync retries at once, and the job is done.
umount "$RO"
curl -sf -X POST -H "Authorization: Bearer $(cat "$T/n2.token")" "$API/v1/admin/resync" >/dev/null ||
  fail "resync refused"
content_is() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }
wait_for 30 content_is "$T/n2/volumes/vx/ro/b.txt" b || fail "b.txt was not applied once the mount was gone"
wait_for 10 sh -c "curl -sf '$API/v1/status' | jq -e '.jobs == 0 and .jobs_stuck == 0'" ||
  fail "the job is still listed: $(status | jq -c '{jobs, jobs_stuck}')"
grep -q "applied vx/ro/b.txt, stuck before" "$T/n2.log" || fail "n2 does not say the stuck job was applied"
wait_for 30 same_tree "$T/n1/volumes" "$T/n2/volumes" || fail "n1 and n2 differ"
pass "once the cause is gone, a resync applies the stuck job"
