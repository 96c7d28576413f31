#!/usr/bin/env bash
# The journal over a long life, on one node (no peers), with the real agent:
#   - journal bytes per small change, and the WAL's peak while 100,000
#     small changes are recorded as fast as they come
#   - journal bytes added by a 1 MiB edit of a 1 GiB file
#   - time to record: creating 20,000 files, deleting them (rm -rf),
#     creating them again, for several rounds (the history grows each time)
#   - event to commit, p50 / p99, at 1,000 writes/s, on a fresh journal and
#     on one with HISTORY changes of history made beforehand (mkdir/rm -rf
#     of 50,000 paths by another node, written straight into the journal)
#   - a soak: 500 changes/s (the same 2,500 files rewritten, and deleted
#     every 20 s) for SOAK seconds with journal.retention "1m": journal,
#     WAL and agent RSS once the first compactions are done and at the end
#   - the version store, two agents (tools/bench/versions.sh): bytes per
#     edit of small files and of a 1 GiB file, restore times
# Prints a table with the targets beside the figures.
#
#   tools/bench/journal.sh [--bin DIR] [--history N] [--rounds N]
#                          [--small N] [--skip-large] [--soak S]
#                          [--skip-versions]
#
#   --bin DIR      the build to measure (default build/bin, built first);
#                  run once with an older build for a before/after pair
#   --history N    changes of history for the second latency row [1000000]
#   --rounds N     create/delete rounds of 20,000 files [3]
#   --small N      small changes for the WAL row [100000]
#   --skip-large   leave out the 1 GiB file (needs 2 GiB of disk)
#   --soak S       length of the soak in seconds [600]; 0 leaves it out;
#                  --soak-only runs nothing else.  A build without
#                  journal.retention soaks without it (the "before" run)
#   --skip-versions  leave out the version store's rows
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=
history=1000000
rounds=3
small=100000
large=1
soak=600
only_soak=0
versions=1
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --history) history=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --small) small=$2; shift 2 ;;
    --skip-large) large=0; shift ;;
    --soak) soak=$2; shift 2 ;;
    --soak-only) only_soak=1; shift ;;
    --skip-versions) versions=0; shift ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "journal.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$history$rounds$small$soak" in *[!0-9]*) echo "journal.sh: numbers only" >&2; exit 2 ;; esac

source tools/bench/lib.sh
bench_prepare "$bin"
T=$(mktemp -d /tmp/kraken-bench-journal-XXXXXX)
agent_pid=
sampler_pid=
cleanup() {
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
  [ -n "$agent_pid" ] && kill -9 "$agent_pid" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT

say() { echo "journal.sh: $*" >&2; }

config() { bench_config "$1" 18881; }

start() { # NAME
  local before
  before=$(grep -c "start-up scan" "$T/$1/agent.log" 2>/dev/null || true)
  "$BIN/krakenfs-agent" --config "$T/$1/config.yaml" >>"$T/$1/agent.log" 2>&1 &
  agent_pid=$!
  for _ in $(seq 1 60000); do
    [ "$(grep -c "start-up scan" "$T/$1/agent.log" 2>/dev/null)" -gt "${before:-0}" ] && return 0
    kill -0 "$agent_pid" 2>/dev/null || break
    sleep 0.01
  done
  say "the agent did not start; its log:"; cat "$T/$1/agent.log" >&2; exit 1
}

stop() {
  kill -TERM "$agent_pid"; wait "$agent_pid" || true; agent_pid=
}

changes() { # NAME: changes in the journal
  "$BIN/kraken-journal" --db "$T/$1/journal.db" --json status 2>/dev/null | jq -r .changes
}

size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }

# wait_changes NAME COUNT LIMIT_S [T0]: until the journal holds COUNT
# changes; prints the seconds since T0 (default: now) or ">LIMIT".
wait_changes() {
  local t0=${4:-$(date +%s.%N)} now n
  while :; do
    n=$(changes "$1")
    [ -n "$n" ] && [ "$n" -ge "$2" ] && break
    now=$(date +%s.%N)
    if awk -v a="$t0" -v b="$now" -v l="$3" 'BEGIN { exit !(b - a > l) }'; then
      echo ">$3"; return 0
    fi
    sleep 0.05
  done
  now=$(date +%s.%N)
  awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.2f", b - a }'
}

latency_line() { # NAME: "p50 p99" of the agent's last report
  sed -n 's/.*event-to-commit latency over [0-9]* changes: p50 \([0-9]*\) us, p99 \([0-9]*\) us.*/\1 \2/p' \
    "$T/$1/agent.log" | tail -1
}

if [ "$only_soak" -eq 0 ]; then

# ---- 1. small changes: bytes per change, WAL peak ------------------------

say "recording $small small changes as fast as they come..."
config small
start small
base=$(changes small)
( peak=0
  while :; do
    w=$(size_of "$T/small/journal.db-wal")
    [ "$w" -gt "$peak" ] && { peak=$w; echo "$peak" > "$T/wal-peak"; }
    sleep 0.05
  done ) &
sampler_pid=$!
t0=$(date +%s.%N)
per_dir=1000
for ((d = 0; d * per_dir < small; d++)); do
  mkdir -p "$T/small/volumes/bench/d$d"
  "$WRITER" "$T/small/volumes/bench/d$d" "$per_dir" 0 64 >/dev/null
done
small_dirs=$d
small_s=$(wait_changes small $((base + small + small_dirs)) 1200 "$t0")
sleep 0.5
kill "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=
wal_peak=$(cat "$T/wal-peak" 2>/dev/null || echo 0)
stop
n_small=$(changes small)
db_small=$(size_of "$T/small/journal.db")
bytes_per_change=$((db_small / n_small))

# ---- 2. a 1 MiB edit of a 1 GiB file --------------------------------------

edit_bytes=skipped
if [ "$large" -eq 1 ]; then
  say "a 1 GiB file, then a 1 MiB edit in its middle..."
  config large
  start large
  base=$(changes large)
  head -c $((1 << 30)) /dev/urandom > "$T/large/volumes/bench/big.tmp-write"
  mv "$T/large/volumes/bench/big.tmp-write" "$T/large/volumes/bench/big"
  wait_changes large $((base + 1)) 600 >/dev/null
  stop
  before=$(size_of "$T/large/journal.db")
  start large
  base=$(changes large)
  head -c $((1 << 20)) /dev/urandom |
    dd of="$T/large/volumes/bench/big" bs=1M seek=512 conv=notrunc status=none
  wait_changes large $((base + 1)) 600 >/dev/null
  sleep 1
  stop
  edit_bytes=$(( $(size_of "$T/large/journal.db") - before ))
fi

# ---- 3. create, delete, re-create 20,000 files ----------------------------

say "$rounds rounds of creating 20,000 files and deleting them..."
config tree
start tree
declare -a create_s delete_s
for ((r = 0; r < rounds; r++)); do
  base=$(changes tree)
  t0=$(date +%s.%N)
  mkdir -p "$T/tree/volumes/bench/t"
  writers=()
  for d in $(seq 0 19); do
    mkdir -p "$T/tree/volumes/bench/t/d$d"
    "$WRITER" "$T/tree/volumes/bench/t/d$d" 1000 0 64 >/dev/null &
    writers+=($!)
  done
  wait "${writers[@]}"
  create_s[r]=$(wait_changes tree $((base + 20021)) 900 "$t0")
  base=$(changes tree)
  t0=$(date +%s.%N)
  rm -rf "$T/tree/volumes/bench/t"
  delete_s[r]=$(wait_changes tree $((base + 20021)) 900 "$t0")
  say "  round $((r + 1)): create ${create_s[r]} s, delete ${delete_s[r]} s"
done
stop

# ---- 4. event to commit with and without history --------------------------

say "event to commit on a fresh journal..."
config fresh
start fresh
"$WRITER" "$T/fresh/volumes/bench" 5000 1000 4096 >/dev/null
sleep 0.5
stop
read -r p50_0 p99_0 < <(latency_line fresh)

say "writing $history changes of history into a journal..."
config old
start old
stop
# Another node's mkdir / rm -rf of 50,000 paths, over and over, ending
# deleted: the rows without content that re-creating a path once walked.
paths=50000
[ "$history" -ge $((2 * paths)) ] || paths=$((history / 2))
sqlite3 "$T/old/journal.db" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
PRAGMA foreign_keys = OFF;
BEGIN;
INSERT INTO origins (node, epoch) VALUES ('hist', 'ffffffffffffffff');
CREATE TEMP TABLE o AS SELECT id FROM origins WHERE node = 'hist';
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $history)
INSERT INTO changes (origin, seq, lamport, wall_ns, volume, path, op, mode,
                     uid, gid, size, mtime_ns, hash)
SELECT (SELECT id FROM o), i, i, 1600000000000000000 + i * 1000000, 'bench',
       'old/p' || (((i - 1) / 2) % $paths),
       CASE WHEN i % 2 = 1 THEN 2 ELSE 4 END,
       CASE WHEN i % 2 = 1 THEN 16877 ELSE 0 END, 0, 0, 0, 0, NULL
FROM n;
INSERT INTO bases (change, origin, seq)
SELECT c.id, c.origin, CASE WHEN c.seq % 2 = 0 THEN c.seq - 1
                            ELSE c.seq - 2 * $paths + 1 END
FROM changes c WHERE c.origin = (SELECT id FROM o)
  AND (c.seq % 2 = 0 OR c.seq > 2 * $paths);
INSERT INTO current (volume, path, change)
SELECT volume, path, id FROM changes WHERE origin = (SELECT id FROM o)
  AND seq > $history - 2 * $paths AND op = 4;
INSERT INTO heads (volume, path, change)
SELECT volume, path, change FROM current WHERE path LIKE 'old/%';
COMMIT;
SQL
hist_n=$(changes old)
start old
say "event to commit with $hist_n changes of history..."
"$WRITER" "$T/old/volumes/bench" 5000 1000 4096 >/dev/null
sleep 0.5
# And the case that history made slow: re-creating deleted paths.
base=$(changes old)
t0=$(date +%s.%N)
mkdir -p "$T/old/volumes/bench/old"
for d in $(seq 0 9); do mkdir "$T/old/volumes/bench/old/p$d"; done
recreate_s=$(wait_changes old $((base + 11)) 600 "$t0")
stop
read -r p50_h p99_h < <(latency_line old)

fi

# ---- 5. soak ----------------------------------------------------------------

rss_of() { awk '/^VmRSS/ { print $2 * 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }
soak_sample() { # -> "journal wal rss"
  echo "$(size_of "$T/soak/journal.db") $(size_of "$T/soak/journal.db-wal") $(rss_of "$agent_pid")"
}

soak_run() {
  local t_end i=0 warm=150 wal_peak=0 w
  say "soak: 500 changes/s for $soak s with journal.retention 1m..."
  config soak
  sed -i 's|^journal:|journal:\n  retention: "1m"|' "$T/soak/config.yaml"
  if ! "$BIN/krakenfs-agent" --validate-config "$T/soak/config.yaml" >/dev/null 2>&1; then
    say "  this build has no journal.retention: soaking without it"
    config soak
    soak_retention="none (build without it)"
  fi
  start soak
  mkdir -p "$T/soak/volumes/bench/s"
  [ "$soak" -ge $((warm + 60)) ] || warm=$((soak / 2))
  soak_warm=$warm
  t_end=$((SECONDS + soak))
  soak_first=
  while [ "$SECONDS" -lt "$t_end" ]; do
    "$WRITER" "$T/soak/volumes/bench/s" 2500 500 64 >/dev/null
    i=$((i + 1))
    if [ $((i % 4)) -eq 0 ]; then
      rm -rf "$T/soak/volumes/bench/s"; mkdir -p "$T/soak/volumes/bench/s"
    fi
    w=$(size_of "$T/soak/journal.db-wal")
    [ "$w" -gt "$wal_peak" ] && wal_peak=$w
    if [ -z "$soak_first" ] && [ "$SECONDS" -ge $((t_end - soak + warm)) ]; then
      soak_first=$(soak_sample)
    fi
  done
  soak_last=$(soak_sample)
  soak_wal_peak=$wal_peak
  soak_changes=$(changes soak)
  stop
}

soak_retention="1m"
soak_first=
soak_last=
[ "$soak" -gt 0 ] && soak_run

# ---- the table ----------------------------------------------------------

row() { printf '%-58s %16s %16s\n' "$@"; }
echo
row "KrakenFS journal benchmark ($BIN)" "measured" "target"
if [ "$only_soak" -eq 0 ]; then
  row "journal bytes per small change ($n_small changes)" "$bytes_per_change" ""
  row "WAL peak during $small small changes" "$((wal_peak / 1048576)) MiB" "<= 64 MiB"
  row "  recording them took" "${small_s} s" ""
  row "journal bytes added by a 1 MiB edit of a 1 GiB file" "$edit_bytes" "< 65536"
  for ((r = 0; r < rounds; r++)); do
    row "round $((r + 1)): record creating 20,000 files" "${create_s[r]} s" "<= 1.5x round 1"
    row "round $((r + 1)): record deleting them (rm -rf)" "${delete_s[r]} s" "<= 1.5x round 1"
  done
  row "event to commit p50 / p99, fresh journal" "$p50_0 / $p99_0 us" "p50 < 300 us"
  row "event to commit p50 / p99, $hist_n changes of history" "$p50_h / $p99_h us" "flat"
  row "record re-creating 10 deleted directories, same history" "${recreate_s} s" "flat"
fi
if [ -n "$soak_last" ]; then
  mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
  read -r j0 w0 r0 <<< "$soak_first"
  read -r j1 w1 r1 <<< "$soak_last"
  row "soak, $soak s at 500 changes/s, retention $soak_retention:" "" ""
  row "  journal after the first $soak_warm s / at the end" "$(mib "$j0") / $(mib "$j1")" "flat"
  row "  WAL after the first $soak_warm s / at the end / peak" "$(mib "$w0") / $(mib "$w1") / $(mib "$soak_wal_peak")" "flat, <= 64 MiB"
  row "  agent RSS after the first $soak_warm s / at the end" "$(mib "$r0") / $(mib "$r1")" "flat"
  row "  changes held at the end" "$soak_changes" ""
fi
if [ "$versions" -eq 1 ] && [ "$only_soak" -eq 0 ]; then
  cleanup
  trap - EXIT
  if [ "$large" -eq 1 ]; then
    tools/bench/versions.sh --bin "$BIN"
  else
    tools/bench/versions.sh --bin "$BIN" --skip-large
  fi
fi
