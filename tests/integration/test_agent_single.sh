#!/usr/bin/env bash
# One agent per journal and per volume root.  A second agent started with
# the same config (as a second systemd unit or a forgotten shell would)
# exits non-zero at once, naming the journal and the pid that holds it,
# and the first goes on undisturbed: its peer connection is not taken
# over and it keeps replicating.  A second agent on another journal but
# the same volume root is refused the same way.  An agent killed with
# SIGKILL leaves no stale lock: the next one starts.
source "$(dirname "$0")/lib.sh"

PORT=$((20000 + RANDOM % 20000))
NODES=a:127.0.0.1,b:127.0.0.2
for n in a b; do mkdir -p "$T/$n/volumes"; done
cluster_config "$T/a.yaml" a 127.0.0.1 "$PORT" "$NODES" "$T/a/volumes" "$T/a/journal.db"
cluster_config "$T/b.yaml" b 127.0.0.2 "$PORT" "$NODES" "$T/b/volumes" "$T/b/journal.db"
start_agent a "$T/a.yaml"
start_agent b "$T/b.yaml"
wait_for 30 grep -q "peer b connected" "$T/a.log" || fail "a and b did not connect"

# 1. The same config again.
lines_a=$(wc -l < "$T/a.log")
rc=0
timeout 10 "$AGENT" --config "$T/a.yaml" > "$T/second.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "the second agent did not exit at once with an error (rc $rc): $(cat "$T/second.log")"
grep -q "the journal $T/a/journal.db is in use by another krakenfs-agent (pid $PID_a)" "$T/second.log" ||
  fail "the refusal does not name the journal and pid $PID_a: $(cat "$T/second.log")"
kill -0 "$PID_a" || fail "the first agent died"
sleep 1
tail -n +"$((lines_a + 1))" "$T/a.log" | grep -E "replaced|disconnected|error" &&
  fail "the first agent was disturbed by the second"
mkdir -p "$T/a/volumes/v1" && echo "after the refusal" > "$T/a/volumes/v1/f.txt"
wait_for 30 test -f "$T/b/volumes/v1/f.txt" || fail "the first agent stopped replicating"
pass "a second agent on the same journal exits $rc at once naming it and pid $PID_a; the first replicates on"

# 2. Another journal, the same volume root.
cluster_config "$T/a2.yaml" a 127.0.0.1 "$PORT" "$NODES" "$T/a/volumes" "$T/a2-journal.db"
rc=0
timeout 10 "$AGENT" --config "$T/a2.yaml" > "$T/third.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "an agent on the same volume root was not refused (rc $rc)"
grep -q "the volume root $T/a/volumes is in use by another krakenfs-agent (pid $PID_a)" "$T/third.log" ||
  fail "the refusal does not name the volume root and pid: $(cat "$T/third.log")"
[ ! -e "$T/a2-journal.db" ] || fail "the refused agent created a journal"
pass "a second agent on the same volume root is refused"

# 3. SIGKILL leaves no stale lock.
kill -9 "$PID_a"
wait "$PID_a" 2>/dev/null || true
start_agent a "$T/a.yaml"
wait_for 30 sh -c "grep -c 'peer b connected' '$T/a.log' | grep -q 2" || fail "the restarted agent did not reconnect"
pass "after kill -9 the next agent starts: no stale lock"
