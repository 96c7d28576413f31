#!/usr/bin/env bash
# Before its HELLO is accepted a connection is a stranger's, and gets
# almost nothing: a HELLO that names no origin but the agent's own (its
# version vector only once the peer is known), a small frame cap (4 MiB
# HELLOs are cut off at the header), a 10 s deadline, a cap on how many
# may wait, and no way to push a connected node aside by claiming its
# name without TLS.  Out of descriptors, the agent pauses its listener
# instead of spinning, and through all of it replicates with its real
# peer.
source "$(dirname "$0")/lib.sh"

PORT=17959
FAKE=$BIN/kraken-fake-peer
pair_config "$PORT"
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
V1=$T/n1/volumes/vx V2=$T/n2/volumes/vx
replicates() { # NAME: a new file on n1 reaches n2
  echo "$1" > "$V1/$1.txt"
  wait_for 20 test -f "$V2/$1.txt" || fail "n2 no longer replicates with n1 ($1.txt did not arrive)"
}
replicates first
echo "from n2" > "$V2/n2.txt"
wait_for 20 test -f "$V1/n2.txt" || fail "n2.txt did not reach n1"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

got=$("$FAKE" 127.0.0.2 "$PORT" vector)
[ "$got" = "vector 1" ] || fail "n2 told a stranger about more than its own origin: $got"
pass "a stranger's connection learns only the agent's own origin"

# Counted from here: at start-up both nodes may dial at once, and one of
# the two connections then replaces the other, which is no impostor's.
replaced() { grep -c "replaced by a new connection" "$T/n2.log" || true; }
replaced_before=$(replaced)
got=$("$FAKE" 127.0.0.2 "$PORT" impostor n1)
[ "$got" = closed ] || fail "a HELLO claiming the connected n1 was kept: $got"
grep -q "node 'n1' is connected already" "$T/n2.log" || fail "the impostor is not logged"
[ "$(replaced)" = "$replaced_before" ] || fail "the impostor replaced n1's session"
replicates after-impostor
pass "a HELLO claiming a connected node's name (no TLS) does not push it aside"

rss0=$(rss_kb "$PID_n2")
got=$("$FAKE" 127.0.0.2 "$PORT" bighello 30)
[ "$got" = "closed 30 of 30" ] || fail "connections announcing 4 MiB HELLOs: $got"
rss1=$(rss_kb "$PID_n2")
[ $((rss1 - rss0)) -lt 16384 ] || fail "30 big HELLOs grew n2 from $rss0 to $rss1 KiB"
grep -q "exceeds the 16384 byte limit" "$T/n2.log" || fail "the oversized HELLOs are not logged"
pass "30 connections announcing 4 MiB HELLOs are cut off at the header (RSS $rss0 -> $rss1 KiB)"

"$FAKE" 127.0.0.2 "$PORT" idle 100 12 > "$T/idle.out" &
flood=$!
sleep 1
replicates during-idle
wait "$flood"
[ "$(cat "$T/idle.out")" = "closed 100 of 100" ] || fail "100 idle connections after 12 s: $(cat "$T/idle.out")"
grep -q "refusing a connection from .* before its HELLO: 64 connections wait for HELLO" "$T/n2.log" ||
  fail "the cap on waiting connections is not logged"
pass "idle connections are refused past the cap and closed after 10 s; replication goes on meanwhile"

# A low descriptor limit: strangers may take only the upper half, so the
# agent keeps what it needs to apply files.
# (Soft limits only: raising a hard limit again may be refused.)
soft=$(prlimit --pid "$PID_n2" --nofile --noheadings --output=SOFT)
nfd=$(ls "/proc/$PID_n2/fd" | wc -l)
prlimit --pid "$PID_n2" --nofile=$((2 * nfd + 16)): || fail "prlimit failed"
"$FAKE" 127.0.0.2 "$PORT" idle 60 6 > "$T/idle.out" &
flood=$!
sleep 1
replicates during-low-limit
wait "$flood"
grep -q "before its HELLO: half the descriptor limit is in use" "$T/n2.log" ||
  fail "strangers past half the descriptor limit are not refused"
pass "with $((2 * nfd + 16)) descriptors, strangers get at most half and files still replicate"

# Out of descriptors altogether (the limit at the lowest free number):
# accept fails, and the listener pauses instead of spinning.
lowest_free() { ls "/proc/$1/fd" | sort -n | awk '$1 != NR - 1 { print NR - 1; f = 1; exit } END { if (!f) print NR }'; }
prlimit --pid "$PID_n2" --nofile="$(lowest_free "$PID_n2")": || fail "prlimit failed"
"$FAKE" 127.0.0.2 "$PORT" idle 20 6 > /dev/null &
flood=$!
sleep 1
t0=$(cpu_ticks "$PID_n2")
sleep 3
t1=$(cpu_ticks "$PID_n2")
tck=$(getconf CLK_TCK)
[ $((t1 - t0)) -lt "$tck" ] || fail "n2 used $(((t1 - t0) * 100 / tck))% of a CPU over 3 s with no descriptor left"
grep -q "cannot accept a peer connection: Too many open files; pausing the listener" "$T/n2.log" ||
  fail "running out of descriptors is not logged"
wait "$flood"
prlimit --pid "$PID_n2" --nofile="$soft": || fail "prlimit could not restore the limit"
replicates after-emfile
[ "$(grep -c "pausing the listener" "$T/n2.log")" = 1 ] || fail "the pause is logged more than once"
pass "out of descriptors the listener pauses (n2 at $(((t1 - t0) * 100 / tck))% CPU), logged once; replication resumes once descriptors are back"
