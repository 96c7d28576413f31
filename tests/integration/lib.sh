# Helpers for integration tests: each test sources this, gets a private
# temporary directory that is removed on exit (kept with
# KRAKEN_TEST_KEEP=1), and agents it starts are killed on exit even when
# the test fails.
set -euo pipefail

BIN=${1:?usage: $0 BIN_DIR}
BIN=$(cd "$BIN" && pwd)
AGENT=$BIN/krakenfs-agent
KJ=$BIN/kraken-journal
T=$(mktemp -d /tmp/kraken-it-XXXXXX)
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KRAKEN_TEST_KEEP:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in "$T"/*.log; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
  done
  exit 1
}

pass() { echo "ok: $*"; }

# wait_for SECONDS COMMAND...: polls until COMMAND succeeds.
wait_for() {
  local limit=$1; shift
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

# write_config FILE NODE ROOT JOURNAL [extra yaml lines...]
write_config() {
  local file=$1 node=$2 root=$3 journal=$4; shift 4
  {
    echo "log:"
    echo "  level: info"
    echo "filesystem:"
    echo "  exclude_patterns: [\"*.tmp\"]"
    echo "sync:"
    echo "  node_id: \"$node\""
    # A port of its own, so single-node tests can run side by side.
    echo "  listen_address: \"127.0.0.1\""
    echo "  p2p_port: $((20000 + RANDOM % 20000))"
    echo "volume:"
    echo "  root_path: \"$root\""
    echo "journal:"
    echo "  path: \"$journal\""
    # Every agent of a test run gets its own API port and plugin socket.
    echo "api:"
    echo "  listen: \"127.0.0.1:$((20000 + RANDOM % 20000))\""
    echo "  token_file: \"$T/$node.token\""
    echo "plugin:"
    echo "  socket: \"$T/$node.sock\""
    for line in "$@"; do echo "$line"; done
  } > "$file"
}

# start_agent NAME CONFIG: runs the agent in the background, logging to
# $T/NAME.log, and waits until it has started completely.
start_agent() {
  local name=$1 cfg=$2
  "$AGENT" --config "$cfg" >>"$T/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  eval "PID_$name=$pid"
  # The last start-up line: journal, scan, peers and API are all up.
  wait_for 60 grep -q "watching" "$T/$name.log" ||
    fail "agent $name did not start"
  kill -0 "$pid" 2>/dev/null || fail "agent $name exited during start-up"
}

# stop_agent NAME: SIGTERM and wait; fails unless it exits 0.
stop_agent() {
  local name=$1 pid rc=0
  eval "pid=\$PID_$name"
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || fail "agent $name exited $rc after SIGTERM"
}

# hash_of_small_file FILE: the journal's hash of a one-chunk file,
# SHA-256 over the SHA-256 of its bytes.
hash_of_small_file() {
  openssl dgst -sha256 -binary < "$1" | openssl dgst -sha256 -hex |
    awk '{print $NF}'
}

# cluster_config FILE NODE IP PORT NODES ROOT JOURNAL [extra yaml lines...]
# NODES is "a:127.0.0.1,b:127.0.0.2"; every node listens on its own IP.
# LOG_LEVEL (default info) is the agents' log level.
cluster_config() {
  local file=$1 node=$2 ip=$3 port=$4 nodes=$5 root=$6 journal=$7; shift 7
  {
    echo "log:"
    echo "  level: ${LOG_LEVEL:-info}"
    echo "sync:"
    echo "  node_id: \"$node\""
    echo "  listen_address: \"$ip\""
    echo "  p2p_port: $port"
    echo "  cluster_nodes:"
    local item
    for item in ${nodes//,/ }; do echo "    - \"$item:$port\""; done
    echo "volume:"
    echo "  root_path: \"$root\""
    echo "journal:"
    echo "  path: \"$journal\""
    echo "api:"
    echo "  listen: \"$ip:$((port + 1))\""
    echo "  token_file: \"$T/$node.token\""
    echo "plugin:"
    echo "  socket: \"$T/$node.sock\""
    for line in "$@"; do echo "$line"; done
  } > "$file"
}

# tls_node_config NODE IP PORT API_PORT NODES...: $T/NODE.yaml, a member
# of a TLS cluster with its certificate in $T/NODE/tls (tls issue), its
# volumes in $T/NODE/volumes; NODES are "id:ip:port" items.
tls_node_config() {
  local node=$1 ip=$2 port=$3 api=$4 item; shift 4
  {
    echo "log:"
    echo "  level: info"
    echo "sync:"
    echo "  node_id: \"$node\""
    echo "  listen_address: \"$ip\""
    echo "  p2p_port: $port"
    echo "  cluster_nodes:"
    for item in "$@"; do echo "    - \"$item\""; done
    echo "  tls:"
    echo "    enable: true"
    echo "    cert_file: \"$T/$node/tls/node.pem\""
    echo "    key_file: \"$T/$node/tls/node-key.pem\""
    echo "    ca_file: \"$T/$node/tls/ca.pem\""
    echo "volume:"
    echo "  root_path: \"$T/$node/volumes\""
    echo "journal:"
    echo "  path: \"$T/$node/journal.db\""
    echo "api:"
    echo "  listen: \"$ip:$api\""
    echo "  token_file: \"$T/$node.token\""
    echo "plugin:"
    echo "  socket: \"$T/$node.sock\""
  } > "$T/$node.yaml"
}

# tls_members NODE...: a cluster CA in $T/ca, and for each NODE its
# certificate in $T/NODE/tls (with the CA) and an empty $T/NODE/volumes.
tls_members() {
  local n
  "$AGENT" tls init "$T/ca" >/dev/null || fail "tls init"
  for n in "$@"; do
    mkdir -p "$T/$n/tls" "$T/$n/volumes"
    cp "$T/ca/ca.pem" "$T/ca/ca-key.pem" "$T/$n/tls/"
    "$AGENT" tls issue "$T/$n/tls" "$n" >/dev/null || fail "tls issue $n"
  done
}

# holds_all_of FROM TO: TO's journal holds every change FROM has committed
# of its own (and FROM has committed one).
holds_all_of() {
  local s o s2
  s=$("$KJ" --db "$T/$1/journal.db" --json status) || return 1
  o=$(jq -r .origin <<<"$s")
  s=$(jq -r .seq <<<"$s")
  s2=$("$KJ" --db "$T/$2/journal.db" --json status |
       jq -r --arg o "$o" '.version_vector[$o] // 0') || return 1
  [ "$s" -gt 0 ] && [ "$s2" = "$s" ]
}

# settled FROM TO: holds_all_of, and still so a second later (a change
# FROM was about to sign has gone out too).
settled() {
  wait_for 20 holds_all_of "$1" "$2" || fail "$2 does not hold all of $1's changes"
  sleep 1
  wait_for 20 holds_all_of "$1" "$2" || fail "$2 does not hold all of $1's changes"
}

# pair_config PORT: n1.yaml and n2.yaml, a cluster of n1 on 127.0.0.1 and
# n2 on 127.0.0.2, each with a volume "vx" in its root; and n2-alone.yaml,
# n2 as a cluster of one on ports n1 does not dial: a partition without a
# firewall, where n2 still records what changes on its disk.
pair_config() {
  local port=$1 i
  for i in 1 2; do
    mkdir -p "$T/n$i/volumes/vx"
    cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$port" \
      n1:127.0.0.1,n2:127.0.0.2 "$T/n$i/volumes" "$T/n$i/journal.db"
  done
  cluster_config "$T/n2-alone.yaml" n2 127.0.0.2 $((port + 10)) n2:127.0.0.2 \
    "$T/n2/volumes" "$T/n2/journal.db"
}

# dump_dom URL OUT: the page at URL as headless Chromium renders it (its
# scripts run for up to 5 s of virtual time), into OUT; the browser's
# console in $T/chromium.log.
dump_dom() {
  local profile
  profile=$(mktemp -d "$T/chromium-XXXXXX")
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --enable-logging=stderr --v=0 \
    --virtual-time-budget=5000 --dump-dom "$1" > "$2" 2> "$T/chromium.log" ||
    fail "chromium failed: $(tail -5 "$T/chromium.log")"
}

# same_tree A B: the two volume roots hold the same names, types, modes,
# link targets and bytes (the agent's hidden .krakenfs-* names aside).
same_tree() {
  diff <(cd "$1" && find . -name '.krakenfs-*' -prune -o -printf '%y %m %p %l\n' | sort) \
       <(cd "$2" && find . -name '.krakenfs-*' -prune -o -printf '%y %m %p %l\n' | sort) >/dev/null &&
  diff -r --no-dereference -x '.krakenfs-*' "$1" "$2" >/dev/null
}

# report_seq DB: the sequence number of the last peer report the agent of
# DB wrote (src/agent/report.h), 0 when none.
report_seq() { "$KJ" --db "$1" --json status | jq -r '.peer_report_seq // 0'; }
report_newer() { [ "$(report_seq "$1")" -gt "$2" ]; }

# next_report DB...: waits until the agent of each DB has written a peer
# report after this moment, so that what peer_stat reads then describes
# what happened before the call (the report comes once a second).
next_report() {
  local db seq
  for db in "$@"; do
    seq=$(report_seq "$db")
    wait_for 30 report_newer "$db" "$seq" ||
      fail "the agent of $db wrote no peer report for 30 s (still at $seq)"
  done
}

# peer_stat DB PEER FIELD: a number from kraken-journal's peer report.
peer_stat() {
  "$KJ" --db "$1" --json status | jq -r --arg p "$2" --arg f "$3" \
    '.peers[] | select(.node_id == $p) | .[$f]'
}

# xfs_mount SIZE: a fresh XFS (reflink, blocks shared between copies) in
# a loop image of SIZE (sparse) mounted on $M = $T/xfs, unmounted on exit
# after the agents are killed.  Fails, never skips, without root,
# mkfs.xfs or loop devices.
xfs_mount() {
  [ "$(id -u)" -eq 0 ] || fail "needs root to mount an XFS image"
  command -v mkfs.xfs >/dev/null || fail "mkfs.xfs missing: run tools/install-deps.sh (xfsprogs)"
  M=$T/xfs
  truncate -s "$1" "$T/xfs.img"
  mkfs.xfs -q -m reflink=1 "$T/xfs.img" || fail "mkfs.xfs -m reflink=1 failed"
  mkdir -p "$M"
  mount -o loop "$T/xfs.img" "$M" || fail "cannot loop-mount an XFS image (are loop devices available?)"
  trap xfs_unmount_then_cleanup EXIT
}

xfs_unmount_then_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  umount "$M" 2>/dev/null || umount -l "$M" 2>/dev/null || true
  cleanup
}
