#!/usr/bin/env bash
# The version store (versions.keep), with two real agents on 127.0.0.1
# and 127.0.0.2: n1 writes, n2 applies and keeps what each change
# replaces.
#   - store bytes per edit of a small file (FILES files of 4 KiB, each
#     rewritten once)
#   - store bytes per 1 MiB edit inside a 1 GiB file on XFS (a loop
#     image: blocks shared between versions), EDITS edits
#   - restore time of one version of that 1 GiB file (kraken-journal
#     restore --to)
#   - restore time of a whole volume of 10,000 files as it was before
#     they were rewritten (kraken-journal restore VOLUME --to DIR)
# Prints a table with the targets beside the figures.  journal.sh runs
# it as its last part; the replication rows' cost of keeping versions is
# tools/bench/replicate.sh, before/after.
#
#   tools/bench/versions.sh [--bin DIR] [--edits N] [--files N] [--skip-large]
#
#   --bin DIR      the build to measure (default build/bin, built first)
#   --edits N      1 MiB edits of the 1 GiB file [100]
#   --files N      small files rewritten [10000]
#   --skip-large   leave out the 1 GiB file (needs root, mkfs.xfs, 8 GiB)
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=
edits=100
files=10000
large=1
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --edits) edits=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --skip-large) large=0; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "versions.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$edits$files" in *[!0-9]*) echo "versions.sh: numbers only" >&2; exit 2 ;; esac

source tools/bench/lib.sh
bench_prepare "$bin"
T=$(mktemp -d /tmp/kraken-bench-versions-XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  mountpoint -q "$T/xfs" 2>/dev/null && umount "$T/xfs"
  rm -rf "$T"
}
trap cleanup EXIT

say() { echo "versions.sh: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# pair ROOT_PARENT PORT: configs for n1 and n2 with volumes under
# ROOT_PARENT/nN and journals in $T/nN.
pair() {
  local i
  for i in 1 2; do
    mkdir -p "$1/n$i/vx" "$T/n$i"
    echo "secret" > "$T/n$i/token"
    cat > "$T/n$i/config.yaml" <<YAML
log:
  level: info
sync:
  node_id: n$i
  listen_address: "127.0.0.$i"
  p2p_port: $2
  cluster_nodes: ["n1:127.0.0.1:$2", "n2:127.0.0.2:$2"]
volume:
  root_path: "$1/n$i"
journal:
  path: "$T/n$i/journal.db"
versions:
  max_bytes: "100%"
api:
  listen: "127.0.0.$i:$(($2 + 1))"
  token_file: "$T/n$i/token"
plugin:
  socket: "$T/n$i/krakenfs.sock"
YAML
  done
}

start() { # N
  "$BIN/krakenfs-agent" --config "$T/n$1/config.yaml" >>"$T/n$1/agent.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 6000); do
    grep -q "watching" "$T/n$1/agent.log" && return 0
    sleep 0.01
  done
  say "agent n$1 did not start:"; cat "$T/n$1/agent.log" >&2; exit 1
}

stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
}

api2() { curl -sf -H "Authorization: Bearer secret" "http://127.0.0.2:$(($1 + 1))$2"; }
# measured PORT: a prune now (a reload runs one), and every kept version
# measured by it (a fresh one counts its size until then).
all_measured() {
  [ "$(sqlite3 -readonly "$T/n2/journal.db" "SELECT count(*) FROM versions WHERE disk IS NULL")" = 0 ]
}
measured() {
  api2 "$1" /v1/admin/reload -X POST >/dev/null || true
  wait_until 60 all_measured || say "versions still unmeasured after 60 s"
}
kept_count() { sqlite3 -readonly "$T/n2/journal.db" "SELECT count(*) FROM versions" 2>/dev/null || echo 0; }

# wait_until LIMIT_S COMMAND...: false when it did not come true in time.
wait_until() {
  local limit=$1 t0; t0=$(now); shift
  until "$@" >/dev/null 2>&1; do
    if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
      return 1
    fi
    sleep 0.05
  done
}

# ---- small files: store bytes per edit, whole-volume restore -------------

say "writing $files files of 4 KiB on n1, then rewriting each once..."
pair "$T" 18950
start 1
start 2
mkdir -p "$T/n1/vx/small"
"$WRITER" "$T/n1/vx/small" "$files" 0 4096 >/dev/null
held() { [ "$(find "$T/n2/vx/small" -type f | wc -l)" -ge "$files" ]; }
wait_until 600 held || { say "the files did not reach n2"; exit 1; }
sleep 1
t_before=$(now)
sleep 1
for f in "$T/n1/vx/small"/*; do printf 'rewritten\n' >> "$f"; done
all_kept() { [ "$(kept_count)" -ge "$files" ]; }
wait_until 600 all_kept || say "n2 keeps $(kept_count) of $files versions"
measured 18950
small_bytes=$(api2 18950 /v1/volumes/vx | jq .versions.bytes)
small_kept=$(kept_count)
small_per=$((small_bytes / (small_kept > 0 ? small_kept : 1)))
stop_all
say "restoring the whole volume as it was before the rewrite..."
t0=$(now)
"$BIN/kraken-journal" --db "$T/n2/journal.db" restore vx --at "@$t_before" --to "$T/restored-vx" \
  >"$T/restore-vol.out" 2>&1 || say "volume restore: $(tail -3 "$T/restore-vol.out")"
restore_vol_s=$(since "$t0")
restored_files=$(find "$T/restored-vx" -type f 2>/dev/null | wc -l)

# ---- a 1 GiB file on XFS: store bytes per 1 MiB edit, one-file restore ----

large_per=- large_kept=0 restore_one_s=- used_per=-
if [ "$large" -eq 1 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v mkfs.xfs >/dev/null; then
    say "the 1 GiB rows need root and mkfs.xfs (xfsprogs); use --skip-large"; exit 1
  fi
  truncate -s 8G "$T/xfs.img"
  mkfs.xfs -q -m reflink=1 "$T/xfs.img"
  mkdir -p "$T/xfs"
  mount -o loop "$T/xfs.img" "$T/xfs"
  rm -rf "$T/n1" "$T/n2"
  pair "$T/xfs" 18960
  start 1
  start 2
  A=$T/xfs/n1/vx/big.img B=$T/xfs/n2/vx/big.img
  say "a 1 GiB file on XFS, then $edits edits of 1 MiB..."
  head -c $((1 << 30)) /dev/urandom > "$A"
  wait_until 600 cmp -s "$A" "$B" || { say "the 1 GiB file did not reach n2"; exit 1; }
  sum0=$(sha256sum < "$A")
  sleep 0.2
  t_large=$(now)
  sleep 0.2
  used0=$(df --output=used -B1 "$T/xfs" | tail -n 1)
  mib_is() { dd if="$1" bs=1M skip="$2" count=1 status=none | cmp -s - "$3"; }
  for ((k = 1; k <= edits; k++)); do
    head -c $((1 << 20)) /dev/urandom > "$T/edit"
    dd if="$T/edit" of="$A" bs=1M seek=$(((k * 9) % 1000)) conv=notrunc status=none
    wait_until 120 mib_is "$B" $(((k * 9) % 1000)) "$T/edit" || say "edit $k did not reach n2"
  done
  measured 18960
  large_bytes=$(api2 18960 /v1/volumes/vx | jq .versions.bytes)
  large_kept=$(kept_count)
  large_per=$((large_bytes / (large_kept > 0 ? large_kept : 1)))
  used_per=$((($(df --output=used -B1 "$T/xfs" | tail -n 1) - used0) / edits))
  stop_all
  say "restoring the version before the first edit..."
  t0=$(now)
  "$BIN/kraken-journal" --db "$T/n2/journal.db" restore vx big.img --at "@$t_large" \
    --to "$T/restored.img" >"$T/restore-one.out" 2>&1 || say "restore: $(cat "$T/restore-one.out")"
  restore_one_s=$(since "$t0")
  [ "$(sha256sum < "$T/restored.img")" = "$sum0" ] || restore_one_s="$restore_one_s (WRONG BYTES)"
fi

# ---- the table ----------------------------------------------------------

row() { printf '%-58s %18s %16s\n' "$@"; }
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
echo
row "KrakenFS version store benchmark ($BIN)" "measured" "target"
row "store bytes per edit of a 4 KiB file ($small_kept kept)" "$(kib "$small_per")" "~4 KiB"
row "restore a volume of $files files as it was" "${restore_vol_s} s ($restored_files)" ""
if [ "$large" -eq 1 ]; then
  row "store bytes per 1 MiB edit of a 1 GiB file, XFS ($large_kept kept)" "$(mib "$large_per")" "~1 MiB"
  row "  file system space used per edit (df)" "$(mib "$used_per")" "~1 MiB"
  row "restore one version of the 1 GiB file" "${restore_one_s} s" ""
fi
