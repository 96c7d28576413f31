#!/usr/bin/env bash
# Local benchmarks of one node (no peers):
#   - inotify event to committed journal change, p50 / p99, at 1 and at
#     1,000 file writes per second
#   - start-up scan of 100,000 unchanged files
#   - content hashing (chunking + SHA-256) against `openssl speed`
# Prints a table with the targets beside the figures.  Needs root only for
# installing packages; uses a temporary directory it removes at exit.
#
#   tools/bench/local.sh [--files N] [--slow-writes N]
set -euo pipefail
cd "$(dirname "$0")/../.."

files=100000
slow=20
while [ $# -gt 0 ]; do
  case $1 in
    --files) files=$2; shift 2 ;;
    --slow-writes) slow=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "local.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done

[ "$(id -u)" -ne 0 ] || tools/install-deps.sh >/dev/null
tools/build.sh build >/dev/null
BIN=$PWD/build/bin
T=$(mktemp -d /tmp/kraken-bench-XXXXXX)
agent_pid=
cleanup() {
  [ -n "$agent_pid" ] && kill -9 "$agent_pid" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
source tools/bench/lib.sh

config() { bench_config "$1" 18871; }

start() { # NAME
  "$BIN/krakenfs-agent" --config "$T/$1/config.yaml" >>"$T/$1/agent.log" 2>&1 &
  agent_pid=$!
  for _ in $(seq 1 6000); do
    [ "$(grep -c "start-up scan" "$T/$1/agent.log" 2>/dev/null)" -ge "${2:-1}" ] && return 0
    sleep 0.01
  done
  echo "agent did not start; see log:" >&2; cat "$T/$1/agent.log" >&2; exit 1
}

stop() {
  kill -TERM "$agent_pid"; wait "$agent_pid"; agent_pid=
}

# latency NAME COUNT RATE: prints "p50 p99" in microseconds.
latency() {
  config "$1"
  start "$1"
  "$BIN/kraken-bench-writer" "$T/$1/volumes/bench" "$2" "$3" 4096
  sleep 0.5
  stop
  sed -n 's/.*event-to-commit latency over \([0-9]*\) changes: p50 \([0-9]*\) us, p99 \([0-9]*\) us.*/\1 \2 \3/p' \
    "$T/$1/agent.log" | tail -1
}

echo "measuring event-to-commit at 1 write/s ($slow writes)..." >&2
read -r n1 p50_1 p99_1 < <(latency slow "$slow" 1)
echo "measuring event-to-commit at 1000 writes/s (5000 writes)..." >&2
read -r n2 p50_2 p99_2 < <(latency fast 5000 1000)

echo "creating $files files for the scan benchmark..." >&2
config scan
for d in $(seq 0 99); do mkdir -p "$T/scan/volumes/bench/d$d"; done
per=$(( (files + 99) / 100 ))
for d in $(seq 0 99); do
  "$BIN/kraken-bench-writer" "$T/scan/volumes/bench/d$d" "$per" 0 64
done
total=$(( per * 100 ))
start scan 1
stop
echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
start scan 2
scan_ms=$(sed -n 's/.*start-up scan: \([0-9]*\) changes recorded in \([0-9]*\) ms.*/\1 \2/p' \
  "$T/scan/agent.log" | tail -1)
stop
scan_changes=${scan_ms% *}
scan_ms=${scan_ms#* }
# Warm cache as well: the common case for a restart.
start scan 3
warm_ms=$(sed -n 's/.*start-up scan: [0-9]* changes recorded in \([0-9]*\) ms.*/\1/p' \
  "$T/scan/agent.log" | tail -1)
stop

echo "measuring hashing..." >&2
hash_mbs=$("$BIN/kraken-hashbench" --size 1024 | sed -n 's/^best: \([0-9.]*\) MB\/s.*/\1/p')
ossl_kbs=$(openssl speed -elapsed -seconds 3 -bytes 65536 -evp sha256 2>/dev/null |
  awk '/^sha256/ {print $2}' | tr -d k)
ossl_mbs=$(awk -v k="$ossl_kbs" 'BEGIN { printf "%.0f", k * 1000 / 1e6 }')
ratio=$(awk -v a="$hash_mbs" -v b="$ossl_mbs" 'BEGIN { printf "%.0f", 100 * a / b }')

printf '\n%-52s %14s %14s\n' "KrakenFS local benchmark" "measured" "target"
printf '%-52s %14s %14s\n' "event to commit, 1 write/s, p50 ($n1 changes)" "${p50_1} us" "< 1000 us"
printf '%-52s %14s %14s\n' "event to commit, 1 write/s, p99" "${p99_1} us" "< 10000 us"
printf '%-52s %14s %14s\n' "event to commit, 1000 writes/s, p50 ($n2 changes)" "${p50_2} us" "< 1000 us"
printf '%-52s %14s %14s\n' "event to commit, 1000 writes/s, p99" "${p99_2} us" "< 10000 us"
printf '%-52s %14s %14s\n' "start-up scan, $total unchanged files, cold cache" "${scan_ms} ms" "< 2000 ms"
printf '%-52s %14s %14s\n' "start-up scan, $total unchanged files, warm cache" "${warm_ms} ms" "< 2000 ms"
printf '%-52s %14s %14s\n' "  changes recorded by that scan" "$scan_changes" "0"
printf '%-52s %14s %14s\n' "hashing (CDC + SHA-256), MB/s" "$hash_mbs" ">= 90% openssl"
printf '%-52s %14s %14s\n' "openssl speed -evp sha256 (64 KiB blocks), MB/s" "$ossl_mbs" ""
printf '%-52s %14s %14s\n' "hashing / openssl" "${ratio}%" ">= 90%"
