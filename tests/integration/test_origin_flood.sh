#!/usr/bin/env bash
# Origins are not free: a journal holding 90,000 origins, made
# up by a hostile peer long ago, once kept two idle agents at full CPU,
# and a small file took seconds to replicate, because every pump and
# every lag report walked every origin in SQL.  The version vector now
# lives in memory and a pump walks only the origins changed since it last
# ran, so an idle pair stays idle and a file costs what it did before.
#
# The bounds below are resource bounds with a wide margin (the old code
# spent ~100% of a CPU idle, ~0.2 s per commit per peer), not latencies.
source "$(dirname "$0")/lib.sh"

PORT=17990
ORIGINS=90000
pair_config "$PORT"
V1=$T/n1/volumes/vx V2=$T/n2/volumes/vx
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
echo first > "$V1/first.txt"
wait_for 30 test -f "$V2/first.txt" || fail "the first file did not reach n2"
stop_agent n1
stop_agent n2

# The same made-up origins on both nodes, each held up to seq 5 (its
# floor): nothing needs sending, yet each is in every vector.
for i in 1 2; do
  sqlite3 "$T/n$i/journal.db" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL
    SELECT i + 1 FROM n WHERE i < $ORIGINS) INSERT INTO origins (node, epoch,
    floor) SELECT 'ghost', printf('%016x', i), 5 FROM n" ||
    fail "could not add origins to n$i's journal"
done
held=$(sqlite3 -readonly "$T/n1/journal.db" "SELECT count(*) FROM origins WHERE floor > 0")
[ "$held" -ge "$ORIGINS" ] || fail "n1 holds $held origins, not $ORIGINS"

# Restarts log to files of their own: start_agent waits for a line of
# this start.
start_agent n1r "$T/n1.yaml"
start_agent n2r "$T/n2.yaml"
wait_for 60 grep -q "peer n2 connected" "$T/n1r.log" || fail "n1 and n2 did not connect"
wait_for 60 grep -q "peer n1 connected" "$T/n2r.log" || fail "n2 and n1 did not connect"
# The first HELLOs and ACKs carry every origin once; let them pass.
sleep 3

# cpu PID: user + system time of the whole process so far, in ticks.
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
secs() { awk -v t="$1" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }'; }
# below TICKS SECONDS: TICKS of CPU is less than SECONDS.
below() { awk -v t="$1" -v hz="$HZ" -v s="$2" 'BEGIN { exit !(t / hz < s) }'; }

# ---- a: an idle pair stays idle ----------------------------------------
a1=$(cpu "$PID_n1r") b1=$(cpu "$PID_n2r")
sleep 10
a2=$(cpu "$PID_n1r") b2=$(cpu "$PID_n2r")
echo "idle 10 s with $ORIGINS origins: n1 $(secs $((a2 - a1))) s CPU, n2 $(secs $((b2 - b1))) s CPU"
below $((a2 - a1)) 2 || fail "idle n1 spent $(secs $((a2 - a1))) s of CPU in 10 s"
below $((b2 - b1)) 2 || fail "idle n2 spent $(secs $((b2 - b1))) s of CPU in 10 s"
pass "an idle pair holding $ORIGINS origins stays idle"

# ---- b: small files replicate at the usual cost ------------------------
arrived() {
  local i
  for i in $(seq 1 30); do
    [ "$(cat "$V2/f$i.txt" 2>/dev/null)" = "file $i" ] || return 1
  done
}
start=$SECONDS
for i in $(seq 1 30); do
  echo "file $i" > "$V1/f$i.txt"
  sleep 0.1
done
wait_for 120 arrived || fail "the 30 files did not all reach n2 within 120 s"
took=$((SECONDS - start))
a3=$(cpu "$PID_n1r") b3=$(cpu "$PID_n2r")
echo "30 files, one by one, in ${took} s: n1 $(secs $((a3 - a2))) s CPU, n2 $(secs $((b3 - b2))) s CPU"
below $((a3 - a2)) 3 || fail "n1 spent $(secs $((a3 - a2))) s of CPU sending 30 small files"
below $((b3 - b2)) 3 || fail "n2 spent $(secs $((b3 - b2))) s of CPU taking 30 small files"
pass "30 small files replicate without walking every origin"

# A clean stop, with every origin in memory freed (the sanitizer build
# checks for leaks at exit).
stop_agent n1r
stop_agent n2r
pass "both agents stop cleanly"
