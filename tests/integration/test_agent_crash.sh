#!/usr/bin/env bash
# kill -9 in the middle of a burst of writes: after a restart the journal
# is consistent (gapless seqs, no half batch) and holds every file on disk.
source "$(dirname "$0")/lib.sh"

ROOT=$T/volumes
DB=$T/journal.db
CFG=$T/config.yaml
mkdir -p "$ROOT/burst"
write_config "$CFG" vm1 "$ROOT" "$DB"
start_agent a "$CFG"

(
  for i in $(seq 1 10000); do
    printf 'file %d\n' "$i" > "$ROOT/burst/f$i"
  done
) &
writer=$!
# Kill once the agent has committed part of the burst.
wait_for 20 sh -c "[ \$(\"$KJ\" --db \"$DB\" --json status | jq .paths) -gt 200 ]" ||
  fail "agent did not start recording the burst"
kill -9 "$PID_a"
wait "$PID_a" 2>/dev/null || true
wait "$writer"
before=$("$KJ" --db "$DB" --json status | jq .paths)
[ "$before" -lt 10000 ] || fail "agent recorded everything before the kill; the test proves nothing"

start_agent b "$CFG"
wait_for 120 sh -c "[ \$(\"$KJ\" --db \"$DB\" --json status | jq .paths) -eq 10000 ]" ||
  fail "after restart the journal holds $("$KJ" --db "$DB" --json status | jq .paths) of 10000 files"
"$KJ" --db "$DB" verify > "$T/verify.out" || fail "verify after crash: $(cat "$T/verify.out")"
stop_agent b
# Each file has exactly one put: nothing recorded twice by the rescan.
puts=$("$KJ" --db "$DB" --json log --volume burst --op put | wc -l)
[ "$puts" -eq 10000 ] || fail "$puts puts for 10000 files"
pass "killed at $before of 10000 files; restart converged with one put per file"
