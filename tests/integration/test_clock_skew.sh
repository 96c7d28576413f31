#!/usr/bin/env bash
# Each peer's clock offset is measured from its answers to pings and
# shown (/v1/peers, metrics); one beyond sync.max_clock_skew (30 s) is a
# warning in the log.  n2 runs with its wall clock two minutes ahead
# (libfaketime; monotonic time stays real, as on a host whose clock is
# wrong), n1 and n3 are right: n2 sees that most of the cluster disagrees
# with its clock and stamps its changes with the cluster's time, so it
# does not win every concurrent write.
source "$(dirname "$0")/lib.sh"

PORT=17967
FAKETIME_LIB=""
for f in /usr/lib/*/faketime/libfaketimeMT.so.1; do [ ! -e "$f" ] || { FAKETIME_LIB=$f; break; }; done
[ -n "$FAKETIME_LIB" ] || fail "libfaketime is needed (tools/install-deps.sh installs faketime)"
for i in 1 2 3; do
  mkdir -p "$T/n$i/volumes/vx"
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" \
    n1:127.0.0.1,n2:127.0.0.2,n3:127.0.0.3 "$T/n$i/volumes" "$T/n$i/journal.db"
done
start_agent n1 "$T/n1.yaml"
start_agent n3 "$T/n3.yaml"
# Under the ASan pass the preloaded library comes before ASan's runtime,
# which ASan refuses unless told that this is intended.
ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}verify_asan_link_order=0" \
  LD_PRELOAD=$FAKETIME_LIB FAKETIME="+2m" FAKETIME_DONT_FAKE_MONOTONIC=1 DONT_FAKE_MONOTONIC=1 \
  NO_FAKE_STAT=1 start_agent n2 "$T/n2.yaml"

offset_ms() { # offset_ms ON PEER: ON's measure of PEER's clock
  curl -sf "http://$1:$((PORT + 1))/v1/peers" |
    jq -r --arg p "$2" '(.peers? // .)[] | select(.node_id == $p) | .clock_offset_ms'
}
near() { # near ON PEER MS: within 5 s of MS
  local v; v=$(offset_ms "$1" "$2")
  [ "$v" != null ] && [ -n "$v" ] && [ $((v - $3)) -lt 5000 ] && [ $(($3 - v)) -lt 5000 ]
}
wait_for 20 near 127.0.0.1 n2 120000 || fail "n1 measures n2's clock at $(offset_ms 127.0.0.1 n2) ms, not about +120000"
wait_for 20 near 127.0.0.2 n1 -120000 || fail "n2 measures n1's clock at $(offset_ms 127.0.0.2 n1) ms, not about -120000"
pass "each side measures the other's clock: n2 $(offset_ms 127.0.0.1 n2) ms, n1 $(offset_ms 127.0.0.2 n1) ms"

wait_for 10 grep -q "the clock of peer n2 is 1[12][0-9]\.[0-9] s ahead of ours, more than sync.max_clock_skew (30 s)" "$T/n1.log" ||
  fail "n1 does not warn about n2's clock: $(grep -i clock "$T/n1.log" | tail -2)"
[ "$(grep -c "the clock of peer n2" "$T/n1.log")" = 1 ] || fail "the warning is repeated"
metrics=$(curl -sf "http://127.0.0.1:$((PORT + 1))/metrics")
grep -qx 'krakenfs_peer_clock_skewed{peer="n2"} 1' <<<"$metrics" || fail "krakenfs_peer_clock_skewed does not say n2 is skewed"
grep -q '^krakenfs_peer_clock_offset_seconds{peer="n2"} 1[12][0-9]\.' <<<"$metrics" ||
  fail "krakenfs_peer_clock_offset_seconds: $(grep clock_offset <<<"$metrics")"
curl -sf "http://127.0.0.1:$((PORT + 1))/v1/peers" | jq -e '(.peers? // .)[] | select(.node_id == "n2") | .clock_skewed == true' >/dev/null ||
  fail "/v1/peers does not flag n2 as skewed"
pass "a clock two minutes ahead is warned about once, flagged in /v1/peers and the metrics"

# kraken-journal status shows it too, from the journal alone.
shown() { "$KJ" --db "$T/n1/journal.db" status | grep -E "^  n2 .* \+1[12][0-9]\.[0-9] s \(skewed\)$"; }
wait_for 10 shown || fail "kraken-journal status does not show n2's clock: $("$KJ" --db "$T/n1/journal.db" status | grep -A2 '^peers')"
"$KJ" --db "$T/n1/journal.db" --json status | jq -e '.peers[] | select(.node_id == "n2") | .clock_skewed == true and .clock_offset_ms > 100000' >/dev/null ||
  fail "kraken-journal status --json does not show n2's clock"
pass "kraken-journal status shows the offset and the skew"

# n2's clock is the odd one out: it says so, and stamps what it records
# with the cluster's time; n1, whose clock most of the cluster shares,
# stamps with its own.
wait_for 20 grep -q "our clock is 1[12][0-9]\.[0-9] s ahead of most of the cluster" "$T/n2.log" ||
  fail "n2 does not see that its clock is ahead of the cluster: $(grep -i clock "$T/n2.log" | tail -2)"
! grep -q "our clock is" "$T/n1.log" || fail "n1 takes its right clock for the wrong one"
echo from-n2 > "$T/n2/volumes/vx/stamped.txt"
wait_for 10 test -f "$T/n1/volumes/vx/stamped.txt" || fail "n2's file did not reach n1"
stamp=$("$KJ" --db "$T/n1/journal.db" --json log --volume vx --path stamped.txt --limit 1 | jq -r .time)
skew=$(( $(date -d "$stamp" +%s) - $(date +%s) ))
[ "$skew" -gt -10 ] && [ "$skew" -lt 10 ] ||
  fail "n2 stamped its change $skew s from the real time ($stamp), not the cluster's time"
pass "n2, two minutes ahead of n1 and n3, stamps its changes with the cluster's time ($skew s off)"
