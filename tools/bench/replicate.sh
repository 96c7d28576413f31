#!/usr/bin/env bash
# Replication benchmark: KrakenFS against Syncthing, side by side in one run
# on this machine, two nodes each on loopback (A on 127.0.0.1, B on
# 127.0.0.2).  The two systems run one after the other, never at once, on
# the same generated data.  Measured for each:
#   1. one 4 KiB file, write on A to identical on B: p50 / p99 over 50 files
#   2. 10,000 files of 4 KiB: first write to all identical on B
#   3. one 1 GiB file of random data: MB/s from the end of the write, next
#      to what this disk allows (dd of the same file with fsync)
#   4. 1 MiB overwritten in the middle of that file: time, bytes on the wire
#   5. catch-up: B stopped, 1,000 small changes on A, B started: time
#   6. CPU seconds (user+sys) and peak RSS (VmHWM) of every node
# Prints progress to stderr and a table with the ratio KrakenFS/Syncthing.
# Installs syncthing with apt-get when missing (as root); without it the
# Syncthing column is "n/a".  As root the measurement runs in a private
# network namespace holding only a loopback interface, so nothing can reach
# another host and the loopback byte counters see only this benchmark.
#
#   tools/bench/replicate.sh [--quick] [--timeout S] [--no-syncthing] [--plain] [--pin] [--keep]
#     --quick         1,000 small files and a 128 MiB file instead of 10,000 / 1 GiB
#     --timeout S     cap on every wait (default 300); a step past it fails the run
#     --no-syncthing  measure KrakenFS only
#     --plain         KrakenFS without TLS (default: mutual TLS, as Syncthing)
#     --pin           node A's processes on CPU 0, node B's on CPU 1, like two
#                     single-core hosts (both systems; the writing is not pinned)
#     --keep          leave the work directory (data, configs, logs) in place
#   KRAKEN_LOG_LEVEL=debug sets the agents' log level (default info).
set -euo pipefail
export LC_ALL=C   # EPOCHREALTIME and printf must use '.' as the decimal mark
SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$SCRIPT")/../.."
ROOT=$PWD

usage() { sed -n '2,26p' "$SCRIPT" | sed 's/^# \{0,1\}//'; }

quick=0
cap=300
with_syncthing=1
tls=1
keep=0
pin=0
args=("$@")
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --timeout) cap=${2:?--timeout needs seconds}; shift 2 ;;
    --no-syncthing) with_syncthing=0; shift ;;
    --plain) tls=0; shift ;;
    --keep) keep=1; shift ;;
    --pin) pin=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "replicate.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[[ $cap =~ ^[0-9]+$ ]] && [ "$cap" -gt 0 ] || { echo "replicate.sh: --timeout wants a positive number of seconds" >&2; exit 2; }

LAT_FILES=50
CATCH_FILES=1000          # files present before B goes down
if [ "$quick" = 1 ]; then MANY=1000 BIG_MIB=128; else MANY=10000 BIG_MIB=1024; fi
SMALL=4096

say() { printf '[%4ds] %s\n' "$SECONDS" "$*" >&2; }
die() { echo "replicate.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Stage 1, in the host's network namespace: packages and the build.  The
# measurement itself (stage 2) may run where there is no network at all.

prepare_host() {
  if [ "$(id -u)" -eq 0 ]; then
    tools/install-deps.sh >/dev/null
  fi
  for tool in jq cmp diff find split; do
    command -v "$tool" >/dev/null || die "'$tool' is missing (run tools/install-deps.sh as root)"
  done
  BENCH_ST_NA=
  if [ "$with_syncthing" = 0 ]; then
    BENCH_ST_NA="skipped (--no-syncthing)"
  elif ! command -v syncthing >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
      BENCH_ST_NA="syncthing is not installed and installing it needs root"
    else
      say "installing syncthing with apt-get"
      # A fresh machine may have no package lists yet: update once, retry.
      if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends syncthing >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends syncthing >&2 ||
          BENCH_ST_NA="'apt-get install syncthing' failed (see its output above)"
      fi
      command -v syncthing >/dev/null || : "${BENCH_ST_NA:=syncthing is still missing after apt-get install}"
    fi
  fi
  say "building KrakenFS"
  tools/build.sh build >/dev/null || die "tools/build.sh build failed"
  export BENCH_ST_NA
}

# Re-run this script in a new network namespace whose only interface is
# loopback: no packet can leave the machine, ports cannot clash with other
# tests running here, and /proc/net/dev's lo counters count only our nodes.
enter_netns() {
  BENCH_NETNS=0
  if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null && command -v ip >/dev/null &&
     unshare --net true 2>/dev/null; then
    export BENCH_STAGE=2 BENCH_NETNS=1
    exec unshare --net -- bash "$SCRIPT" "${args[@]}"
  fi
  say "warning: no private network namespace (needs root, unshare and ip);" \
      "using the host's loopback, and loopback byte counts are left out"
  export BENCH_STAGE=2 BENCH_NETNS
}

if [ "$pin" = 1 ] && { [ "$(nproc)" -lt 2 ] || ! command -v taskset >/dev/null; }; then
  die "--pin needs two CPUs and taskset (util-linux)"
fi
if [ "${BENCH_STAGE:-1}" = 1 ]; then
  prepare_host
  enter_netns
fi
if [ "${BENCH_NETNS:-0}" = 1 ]; then
  ip link set lo up || die "cannot bring up loopback in the private network namespace"
fi

# ---------------------------------------------------------------------------
# Stage 2: the measurement.

BIN=$ROOT/build/bin
AGENT=$BIN/krakenfs-agent
KJ=$BIN/kraken-journal
WAITER=$BIN/kraken-bench-wait
[ -x "$AGENT" ] && [ -x "$KJ" ] && [ -x "$WAITER" ] || die "$AGENT, $KJ or $WAITER is missing; run tools/build.sh build"
T=$(mktemp -d "${TMPDIR:-/tmp}/kraken-repl-XXXXXX")
CLK_TCK=$(getconf CLK_TCK)

declare -A PID=()      # "kraken_a" -> pid of a running node
declare -A CPU=()      # "kraken_a" -> clock ticks used by all its lifetimes
declare -A HWM=()      # "kraken_a" -> largest VmHWM (kB, summed over its processes)
declare -A RES=()      # "lat_p50,kraken" -> printed value
LAT_DATA=()            # contents of the latency files

cleanup() {
  local key p i alive pids=()
  # Once here, finish: a second Ctrl-C must not leave nodes or files behind.
  trap - EXIT
  trap '' INT TERM
  # The nodes we started and their children (Syncthing's worker process),
  # listed before any of them exits and the children are re-parented.
  for key in "${!PID[@]}"; do
    pids+=("${PID[$key]}")
    for p in $(pgrep -P "${PID[$key]}" || true); do pids+=("$p"); done
  done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # Give them a moment to exit cleanly, then make sure.
  for i in $(seq 1 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$keep" = 1 ]; then say "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# now_us VAR: wall time in microseconds, without forking.
now_us() { printf -v "$1" '%s' "${EPOCHREALTIME/./}"; }

# A descriptor that never becomes readable: 'read -t' on it is a sleep
# without forking, fine-grained enough for 1 ms polling.
exec {SLEEP_FD}<> <(:)
nap() { read -r -t "$1" -u "$SLEEP_FD" _ || true; }

# fail MESSAGE: report which step failed, with the nodes' logs and what was
# measured so far, and exit non-zero (cleanup runs from the EXIT trap).
fail() {
  echo >&2
  echo "replicate.sh: FAILED: $*" >&2
  local f
  while IFS= read -r f; do
    echo "--- last lines of ${f#"$T"/}" >&2; tail -n 25 "$f" >&2
  done < <(find "$T" -name '*.log' ! -name 'generate.log' | sort)
  print_table >&2 || true
  exit 1
}

# proc_sample KEY: add the node's CPU time and peak RSS so far to its
# totals; called just before a node is stopped, so restarts add up.  A node
# is its process and that process's children: 'syncthing serve' runs as a
# monitor process plus the worker it starts, even with --no-restart.  Peak
# RSS is the sum of each process's VmHWM.
proc_sample() {
  local key=$1 p stat rest ut st hwm ticks=0 kb=0
  for p in "${PID[$1]}" $(pgrep -P "${PID[$1]}" || true); do
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    rest=${stat##*) }                 # fields after "(comm)", from field 3
    read -r _ _ _ _ _ _ _ _ _ _ _ ut st _ <<<"$rest"
    ticks=$(( ticks + ut + st ))
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    kb=$(( kb + ${hwm:-0} ))
  done
  CPU[$key]=$(( ${CPU[$key]:-0} + ticks ))
  if [ "$kb" -gt "${HWM[$key]:-0}" ]; then HWM[$key]=$kb; fi
  return 0
}

# Directories compared between A and B skip each tool's own bookkeeping
# (kraken-bench-wait skips every name starting with '.').
EXCLUDES=(-x '.krakenfs-*' -x '.syncthing.*' -x '.stfolder' -x '.stversions' -x '.stignore')
count_files() { find "$1" -type f ! -name '.*' 2>/dev/null | wc -l; }

# wait_dir A B WHAT: waits until directory B is identical to A.  Sets
# WAIT_US to the start of the poll that found it so.  The polling is done
# by kraken-bench-wait, which forks nothing: stat/find/diff in a shell
# loop took about a tenth of this machine's CPU from the systems measured.
wait_dir() {
  local a=$1 b=$2 what=$3
  WAIT_US=$("$WAITER" dir "$a" "$b" "$cap") ||
    fail "$what: $b not identical to $a after ${cap}s ($(count_files "$b") of $(count_files "$a") files; $(diff -r -q "${EXCLUDES[@]}" "$a" "$b" 2>&1 | head -3 | tr '\n' ';'))"
}

# wait_file A B WHAT [OLD_SIG]: waits until file B is identical to A.  Both
# tools put a finished, verified file in place with a rename, so B's
# signature (inode, size, ctime) changes exactly when a new version lands;
# the bytes are compared once per new signature, and if the signature is
# unchanged after the compare the file was identical from the moment it
# was seen: WAIT_US is that moment, so the ~1 s a compare of 1 GiB takes
# is not counted.  OLD_SIG (from file_sig) is the version to wait past.
wait_file() {
  local a=$1 b=$2 what=$3 last=${4:-}
  WAIT_US=$("$WAITER" file "$a" "$b" "$cap" $last) ||
    fail "$what: $b not identical to $a after ${cap}s"
}
file_sig() { "$WAITER" sig "$1"; }

# wait_until SECONDS WHAT COMMAND...: polls COMMAND, fails the run on timeout.
wait_until() {
  local limit=$1 what=$2 start=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $((SECONDS - start)) -lt "$limit" ] || fail "$what (waited ${limit}s)"
    nap 0.1
  done
}

lo_rx_bytes() { awk -F'[: ]+' '$2 == "lo" {print $3}' /proc/net/dev; }

# ---------------------------------------------------------------------------
# KrakenFS nodes.  Each system provides: NAME_setup, NAME_start NODE,
# NAME_stop NODE, NAME_wire (app bytes seen by B), NAME_local_changes (A's
# count of recorded changes), and sets RA / RB, the replicated directories.

KR_PORT=18881
kraken_setup() {
  local n ip
  if [ "${BENCH_NETNS:-0}" != 1 ]; then
    # Shared loopback: pick a port nobody listens on.
    while ss -Hltn "sport = :$KR_PORT" 2>/dev/null | grep -q .; do KR_PORT=$((KR_PORT + 1)); done
  fi
  mkdir -p "$T/kraken"
  if [ "$tls" = 1 ]; then
    "$AGENT" tls init "$T/kraken/ca" >/dev/null || fail "krakenfs-agent tls init"
  fi
  for n in a b; do
    ip=127.0.0.1; [ "$n" = b ] && ip=127.0.0.2
    mkdir -p "$T/kraken/$n/volumes"
    {
      echo "log:"
      echo "  level: ${KRAKEN_LOG_LEVEL:-info}"
      echo "sync:"
      echo "  node_id: \"$n\""
      echo "  listen_address: \"$ip\""
      echo "  p2p_port: $KR_PORT"
      echo "  cluster_nodes:"
      echo "    - \"a:127.0.0.1:$KR_PORT\""
      echo "    - \"b:127.0.0.2:$KR_PORT\""
      if [ "$tls" = 1 ]; then
        # Each node gets its own copy of the CA and a certificate for its id.
        cp -r "$T/kraken/ca" "$T/kraken/$n/tls"
        "$AGENT" tls issue "$T/kraken/$n/tls" "$n" >/dev/null || fail "krakenfs-agent tls issue $n"
        echo "  tls:"
        echo "    enable: true"
        echo "    cert_file: \"$T/kraken/$n/tls/node.pem\""
        echo "    key_file: \"$T/kraken/$n/tls/node-key.pem\""
        echo "    ca_file: \"$T/kraken/$n/tls/ca.pem\""
      fi
      echo "volume:"
      echo "  root_path: \"$T/kraken/$n/volumes\""
      echo "journal:"
      echo "  path: \"$T/kraken/$n/journal.db\""
      # Nothing machine-wide: each node has its own API port, token file
      # and Docker plugin socket, so neither node nor any other agent on
      # this machine gets in the way.
      echo "api:"
      echo "  listen: \"$ip:$((KR_PORT + 1))\""
      echo "  token_file: \"$T/kraken/$n/api-token\""
      echo "plugin:"
      echo "  socket: \"$T/kraken/$n/plugin.sock\""
    } > "$T/kraken/$n/config.yaml"
    "$AGENT" --validate-config "$T/kraken/$n/config.yaml" >/dev/null 2>&1 ||
      fail "config for KrakenFS node $n rejected: $("$AGENT" --validate-config "$T/kraken/$n/config.yaml" 2>&1 | head -3)"
  done
  RA=$T/kraken/a/volumes/bench
  RB=$T/kraken/b/volumes/bench
}

kraken_status() { "$KJ" --db "$T/kraken/$1/journal.db" --json status 2>/dev/null; }
# kraken_peer NODE PEER FIELD: one field of NODE's report about PEER.
kraken_peer() {
  kraken_status "$1" | jq -r --arg p "$2" --arg f "$3" '.peers[] | select(.node_id == $p) | .[$f]'
}
kraken_connected() {
  [ "$(kraken_peer a b connected)" = true ] && [ "$(kraken_peer b a connected)" = true ]
}

# kraken_start NODE: starts the agent and waits for its last start-up line
# ("... watching ROOT, journal ..."), logged once the start-up scan is done
# and the peer port, API and plugin socket are open.  The caller times
# catch-up from before this call, so the scan counts.
# on_cpu_of NODE COMMAND... &: becomes COMMAND (exec, so that $! is its
# pid), on NODE's CPU with --pin.  Only ever run in the background.
on_cpu_of() {
  local n=$1; shift
  if [ "$pin" = 1 ]; then
    exec taskset -c "$( [ "$n" = a ] && echo 0 || echo 1 )" "$@"
  fi
  exec "$@"
}

kraken_start() {
  local n=$1 log=$T/kraken/$1/agent.log before
  before=$(grep -c " watching " "$log" 2>/dev/null || true)
  on_cpu_of "$n" "$AGENT" --config "$T/kraken/$n/config.yaml" >>"$log" 2>&1 &
  PID[kraken_$n]=$!
  local start=$SECONDS
  until [ "$(grep -c " watching " "$log" 2>/dev/null || true)" -gt "${before:-0}" ]; do
    kill -0 "${PID[kraken_$n]}" 2>/dev/null || fail "KrakenFS agent $n exited at start-up"
    [ $((SECONDS - start)) -lt "$cap" ] || fail "KrakenFS agent $n did not finish starting"
    nap 0.01
  done
  nap 0.05
  kill -0 "${PID[kraken_$n]}" 2>/dev/null || fail "KrakenFS agent $n exited at start-up"
}

kraken_stop() {
  local key=kraken_$1 rc=0
  proc_sample "$key"
  kill -TERM "${PID[$key]}"
  wait "${PID[$key]}" || rc=$?
  unset "PID[$key]"
  [ "$rc" -eq 0 ] || fail "KrakenFS agent $1 exited $rc after SIGTERM"
}

kraken_wait_ready() { wait_until "$cap" "KrakenFS nodes did not connect" kraken_connected; }

# Application bytes B exchanged with A, both directions, every framed
# message counted (chunks included), as the agent reports once a second.
kraken_wire() {
  local in out
  read -r in out < <(kraken_status b | jq -r '.peers[] | select(.node_id == "a") | "\(.bytes_in) \(.bytes_out)"')
  echo $(( in + out ))
}
kraken_chunk_in() { kraken_peer b a chunk_bytes_in; }
kraken_local_changes() { kraken_status a | jq -r .seq; }
kraken_settle_counters() { sleep 1.5; }   # the peer report is rewritten every second

# ---------------------------------------------------------------------------
# Syncthing nodes: generated keys, our own config.xml, the REST API over
# bash's /dev/tcp (no HTTP client needed).

ST_GUI_A=18384 ST_GUI_B=18385 ST_SYNC_A=22001 ST_SYNC_B=22002
declare -A ST_ID=() ST_GUI=()

# st_api NODE METHOD PATH: prints the response body; fails unless HTTP 200.
st_api() {
  local port=${ST_GUI[$1]} resp status
  resp=$( { exec 3<>"/dev/tcp/127.0.0.1/$port" &&
            printf '%s %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nX-API-Key: %s\r\nContent-Length: 0\r\n\r\n' \
              "$2" "$3" "$port" "$ST_KEY" >&3 && cat <&3; } 2>/dev/null) || return 1
  status=${resp%%$'\r\n'*}
  [[ $status == *" 200 "* ]] || return 1
  printf '%s\n' "${resp#*$'\r\n\r\n'}"
}

syncthing_setup() {
  local n
  ST_KEY=bench-$RANDOM$RANDOM$RANDOM
  if [ "${BENCH_NETNS:-0}" != 1 ]; then
    local p
    for p in ST_GUI_A ST_GUI_B ST_SYNC_A ST_SYNC_B; do
      while ss -Hltn "sport = :${!p}" 2>/dev/null | grep -q .; do printf -v "$p" '%s' $(( ${!p} + 10 )); done
    done
  fi
  ST_GUI[a]=$ST_GUI_A ST_GUI[b]=$ST_GUI_B
  for n in a b; do
    mkdir -p "$T/syncthing/$n/folder/.stfolder"
    syncthing generate --home="$T/syncthing/$n/home" --no-default-folder >"$T/syncthing/$n/generate.log" 2>&1 ||
      fail "syncthing generate for node $n: $(tail -3 "$T/syncthing/$n/generate.log")"
    ST_ID[$n]=$(syncthing serve --home="$T/syncthing/$n/home" --device-id 2>/dev/null) ||
      fail "syncthing --device-id for node $n"
  done
  for n in a b; do
    syncthing_config "$n" > "$T/syncthing/$n/home/config.xml"
  done
  RA=$T/syncthing/a/folder
  RB=$T/syncthing/b/folder
}

# syncthing_device NODE: a <device> element with the node's static address.
syncthing_device() {
  local n=$1 addr
  if [ "$n" = a ]; then addr=tcp://127.0.0.1:$ST_SYNC_A; else addr=tcp://127.0.0.2:$ST_SYNC_B; fi
  cat <<XML
    <device id="${ST_ID[$n]}" name="$n" compression="metadata" introducer="false" skipIntroductionRemovals="false" introducedBy="">
        <address>$addr</address>
        <paused>false</paused>
        <autoAcceptFolders>false</autoAcceptFolders>
        <maxSendKbps>0</maxSendKbps>
        <maxRecvKbps>0</maxRecvKbps>
        <maxRequestKiB>0</maxRequestKiB>
        <untrusted>false</untrusted>
        <remoteGUIPort>0</remoteGUIPort>
    </device>
XML
}

# syncthing_config NODE: the whole config.xml.  Everything that talks to
# the outside is off (global and local discovery, relays, NAT, STUN,
# usage and crash reports, upgrades), and the URLs those would use point at
# a closed loopback port in case anything ignores its switch.  The folder
# is watched with the smallest delay (1 s) and rescanned every 10 s.
# setLowPriority is off so that Syncthing runs at the same priority as the
# KrakenFS agent.
syncthing_config() {
  local n=$1 listen gui nowhere=http://127.0.0.1:9/
  if [ "$n" = a ]; then listen=tcp://127.0.0.1:$ST_SYNC_A; else listen=tcp://127.0.0.2:$ST_SYNC_B; fi
  gui=127.0.0.1:${ST_GUI[$n]}
  cat <<XML
<configuration version="36">
    <folder id="bench" label="bench" path="$T/syncthing/$n/folder" type="sendreceive" rescanIntervalS="10" fsWatcherEnabled="true" fsWatcherDelayS="1" ignorePerms="false" autoNormalize="true">
        <filesystemType>basic</filesystemType>
        <device id="${ST_ID[a]}" introducedBy=""><encryptionPassword></encryptionPassword></device>
        <device id="${ST_ID[b]}" introducedBy=""><encryptionPassword></encryptionPassword></device>
        <minDiskFree unit="%">1</minDiskFree>
        <versioning><cleanupIntervalS>3600</cleanupIntervalS><fsPath></fsPath><fsType>basic</fsType></versioning>
        <copiers>0</copiers>
        <pullerMaxPendingKiB>0</pullerMaxPendingKiB>
        <hashers>0</hashers>
        <order>random</order>
        <ignoreDelete>false</ignoreDelete>
        <scanProgressIntervalS>0</scanProgressIntervalS>
        <pullerPauseS>0</pullerPauseS>
        <maxConflicts>10</maxConflicts>
        <disableSparseFiles>false</disableSparseFiles>
        <disableTempIndexes>false</disableTempIndexes>
        <paused>false</paused>
        <weakHashThresholdPct>25</weakHashThresholdPct>
        <markerName>.stfolder</markerName>
        <copyOwnershipFromParent>false</copyOwnershipFromParent>
        <modTimeWindowS>0</modTimeWindowS>
        <maxConcurrentWrites>2</maxConcurrentWrites>
        <disableFsync>false</disableFsync>
        <blockPullOrder>standard</blockPullOrder>
        <copyRangeMethod>standard</copyRangeMethod>
        <caseSensitiveFS>false</caseSensitiveFS>
        <junctionsAsDirs>false</junctionsAsDirs>
    </folder>
$(syncthing_device a)
$(syncthing_device b)
    <gui enabled="true" tls="false" debugging="false">
        <address>$gui</address>
        <apikey>$ST_KEY</apikey>
        <theme>default</theme>
    </gui>
    <options>
        <listenAddress>$listen</listenAddress>
        <globalAnnounceServer>$nowhere</globalAnnounceServer>
        <globalAnnounceEnabled>false</globalAnnounceEnabled>
        <localAnnounceEnabled>false</localAnnounceEnabled>
        <localAnnouncePort>21027</localAnnouncePort>
        <localAnnounceMCAddr>[ff12::8384]:21027</localAnnounceMCAddr>
        <maxSendKbps>0</maxSendKbps>
        <maxRecvKbps>0</maxRecvKbps>
        <reconnectionIntervalS>5</reconnectionIntervalS>
        <relaysEnabled>false</relaysEnabled>
        <relayReconnectIntervalM>10</relayReconnectIntervalM>
        <startBrowser>false</startBrowser>
        <natEnabled>false</natEnabled>
        <urAccepted>-1</urAccepted>
        <urSeen>3</urSeen>
        <urURL>$nowhere</urURL>
        <urPostInsecurely>false</urPostInsecurely>
        <urInitialDelayS>1800</urInitialDelayS>
        <restartOnWakeup>false</restartOnWakeup>
        <autoUpgradeIntervalH>0</autoUpgradeIntervalH>
        <upgradeToPreReleases>false</upgradeToPreReleases>
        <keepTemporariesH>24</keepTemporariesH>
        <progressUpdateIntervalS>5</progressUpdateIntervalS>
        <limitBandwidthInLan>false</limitBandwidthInLan>
        <minHomeDiskFree unit="%">1</minHomeDiskFree>
        <releasesURL>$nowhere</releasesURL>
        <overwriteRemoteDeviceNamesOnConnect>false</overwriteRemoteDeviceNamesOnConnect>
        <tempIndexMinBlocks>10</tempIndexMinBlocks>
        <setLowPriority>false</setLowPriority>
        <maxFolderConcurrency>0</maxFolderConcurrency>
        <crashReportingURL>$nowhere</crashReportingURL>
        <crashReportingEnabled>false</crashReportingEnabled>
        <stunKeepaliveStartS>0</stunKeepaliveStartS>
        <stunKeepaliveMinS>0</stunKeepaliveMinS>
        <stunServer>127.0.0.1:9</stunServer>
        <databaseTuning>auto</databaseTuning>
        <announceLANAddresses>false</announceLANAddresses>
        <sendFullIndexOnUpgrade>false</sendFullIndexOnUpgrade>
        <insecureAllowOldTLSVersions>false</insecureAllowOldTLSVersions>
    </options>
</configuration>
XML
}

# syncthing_start NODE: starts the instance and waits until its API answers.
syncthing_start() {
  local n=$1 start=$SECONDS
  STNORESTART=1 STNOUPGRADE=1 STNODEFAULTFOLDER=1 \
    on_cpu_of "$n" syncthing serve --home="$T/syncthing/$n/home" --no-browser --no-restart --no-upgrade \
      >>"$T/syncthing/$n/syncthing.log" 2>&1 &
  PID[syncthing_$n]=$!
  until st_api "$n" GET /rest/system/ping >/dev/null; do
    kill -0 "${PID[syncthing_$n]}" 2>/dev/null || fail "Syncthing node $n exited at start-up"
    [ $((SECONDS - start)) -lt "$cap" ] || fail "Syncthing node $n: API did not answer"
    nap 0.01
  done
}

syncthing_stop() {
  local key=syncthing_$1 pid=${PID[syncthing_$1]} rc=0 start=$SECONDS
  proc_sample "$key"
  st_api "$1" POST /rest/system/shutdown >/dev/null || kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    [ $((SECONDS - start)) -lt 60 ] || { kill -9 "$pid"; break; }
    nap 0.05
  done
  wait "$pid" || rc=$?
  unset "PID[$key]"
  [ "$rc" -eq 0 ] || fail "Syncthing node $1 exited $rc after a shutdown request"
}

syncthing_connected() {
  [ "$(st_api a GET /rest/system/connections | jq -r --arg d "${ST_ID[b]}" '.connections[$d].connected')" = true ] &&
  [ "$(st_api b GET /rest/system/connections | jq -r --arg d "${ST_ID[a]}" '.connections[$d].connected')" = true ]
}
syncthing_idle() {
  [ "$(st_api a GET '/rest/db/status?folder=bench' | jq -r .state)" = idle ] &&
  [ "$(st_api b GET '/rest/db/status?folder=bench' | jq -r .state)" = idle ]
}
syncthing_wait_ready() {
  wait_until "$cap" "Syncthing nodes did not connect" syncthing_connected
  wait_until "$cap" "Syncthing folders did not become idle" syncthing_idle
}

# Application bytes B exchanged with A as Syncthing counts them: protocol
# messages (blocks included) inside TLS, both directions.
syncthing_wire() {
  st_api b GET /rest/system/connections |
    jq -r --arg d "${ST_ID[a]}" '.connections[$d] | .inBytesTotal + .outBytesTotal'
}
syncthing_chunk_in() { echo; }
# A's local sequence: one step per file version it indexed (deletes too).
syncthing_local_changes() { st_api a GET '/rest/db/status?folder=bench' | jq -r .sequence; }
syncthing_settle_counters() { sleep 1.5; }

# ---------------------------------------------------------------------------
# Test data, generated once and written identically for both systems.

make_data() {
  local s=$T/stage
  mkdir -p "$s/many" "$s/catch" "$s/catch-new" "$s/catch-mod"
  say "generating test data ($MANY small files, a $BIG_MIB MiB file)"
  # The latency files are random base64 text, held in memory: the shell can
  # write and compare text with builtins, and so needs no fork in the timed
  # loop (fork+exec of cp or cmp costs ~15 ms on a busy small VM, more than
  # the latency being measured).
  local all i
  all=$(head -c $((LAT_FILES * SMALL)) /dev/urandom | base64 -w0)
  for ((i = 0; i < LAT_FILES; i++)); do LAT_DATA[i]=${all:i*SMALL:SMALL}; done
  head -c $((MANY * SMALL)) /dev/urandom | split -b "$SMALL" -a 5 -d - "$s/many/f"
  head -c $((CATCH_FILES * SMALL)) /dev/urandom | split -b "$SMALL" -a 4 -d - "$s/catch/f"
  head -c $((250 * SMALL)) /dev/urandom | split -b "$SMALL" -a 4 -d - "$s/catch-new/n"
  head -c $((500 * SMALL)) /dev/urandom | split -b "$SMALL" -a 4 -d - "$s/catch-mod/f"
  head -c $((BIG_MIB << 20)) /dev/urandom > "$s/big.bin"
  head -c $((1 << 20)) /dev/urandom > "$s/patch.bin"
}

# What this disk allows: the big file written by dd and fsync'ed, as a
# replica must be before it is shown.  Row 3 cannot beat it by much (the
# sender also has to read and hash the file, both run on this machine).
measure_disk() {
  local t0 t1
  sync
  now_us t0
  dd if="$T/stage/big.bin" of="$T/disk-reference.bin" bs=4M conv=fsync status=none
  now_us t1
  rm -f "$T/disk-reference.bin"
  DISK_MBS=$(awk -v d=$(( t1 - t0 )) -v b=$((BIG_MIB << 20)) 'BEGIN { printf "%.0f", b / (d / 1e6) / 1e6 }')
  say "disk reference: $BIG_MIB MiB written and fsync'ed by dd at $DISK_MBS MB/s"
}

# ---------------------------------------------------------------------------
# The steps, the same for both systems.  SYS is "kraken" or "syncthing".

run_system() {
  local sys=$1 label=$2 s=$T/stage t0 t1 i f lats=() w0 w1 c0 c1 l0 l1
  # Dirty pages left by the data generation or the other system's run
  # would be flushed by the first fsync this system makes (ext4 commits
  # the data it allocated with its journal): the setup's cost, not the
  # first measured file's.
  sync
  say "$label: setting up two nodes"
  "${sys}_setup"
  "${sys}_start" a
  "${sys}_start" b
  "${sys}_wait_ready"
  if [ "$sys" = kraken ]; then
    # The volume itself is created on A and replicated.
    mkdir "$RA"
    wait_until "$cap" "KrakenFS: volume did not appear on B" test -d "$RB"
  fi

  # 1. One small file at a time: write on A (open, write, close), poll B
  # every millisecond, reading it and comparing with what was written; cmp
  # confirms each file once the clock has stopped.
  say "$label: step 1, $LAT_FILES single 4 KiB files"
  mkdir "$RA/lat"
  wait_until "$cap" "$label: directory lat did not reach B" test -d "$RB/lat"
  local got start
  for ((i = 0; i < LAT_FILES; i++)); do
    f=f$i
    now_us t0
    printf '%s' "${LAT_DATA[i]}" > "$RA/lat/$f"
    start=$SECONDS
    until [ -e "$RB/lat/$f" ] && { IFS= read -r -d '' got < "$RB/lat/$f" || true; } &&
          [ "$got" = "${LAT_DATA[i]}" ]; do
      [ $((SECONDS - start)) -lt "$cap" ] || fail "$label step 1: lat/$f not identical on B after ${cap}s"
      nap 0.001
    done
    now_us t1
    cmp -s "$RA/lat/$f" "$RB/lat/$f" || fail "$label step 1: cmp finds lat/$f different on B"
    lats+=($(( t1 - t0 )))
    nap 0.1   # let each write stand alone
  done
  read -r "RES[lat_p50,$sys]" "RES[lat_p99,$sys]" < <(printf '%s\n' "${lats[@]}" | sort -n |
    awk '{v[NR] = $1} END {
      i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++
      i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++
      printf "%.1f %.1f\n", v[i50] / 1000, v[i99] / 1000 }')
  say "$label: step 1: p50 ${RES[lat_p50,$sys]} ms, p99 ${RES[lat_p99,$sys]} ms; in write order (ms):" \
    "$(printf '%s\n' "${lats[@]}" | awk '{printf "%.0f ", $1 / 1000}')"

  # 2. Many small files written as fast as cp can.
  say "$label: step 2, $MANY files of 4 KiB"
  now_us t0
  cp -r "$s/many" "$RA/many"
  wait_dir "$RA/many" "$RB/many" "$label step 2"
  RES[many,$sys]=$(awk -v d=$(( WAIT_US - t0 )) 'BEGIN { printf "%.2f", d / 1e6 }')
  say "$label: step 2: ${RES[many,$sys]} s"

  # 3. One big file of random data.
  say "$label: step 3, one $BIG_MIB MiB file"
  mkdir "$RA/big"
  wait_until "$cap" "$label: directory big did not reach B" test -d "$RB/big"
  now_us t0
  dd if="$s/big.bin" of="$RA/big/big.bin" bs=4M status=none
  now_us t1
  wait_file "$RA/big/big.bin" "$RB/big/big.bin" "$label step 3"
  RES[big_s,$sys]=$(awk -v d=$(( WAIT_US - t1 )) 'BEGIN { printf "%.2f", d / 1e6 }')
  RES[big_total,$sys]=$(awk -v d=$(( WAIT_US - t0 )) 'BEGIN { printf "%.2f", d / 1e6 }')
  RES[big_mbs,$sys]=$(awk -v d=$(( WAIT_US - t1 )) -v b=$((BIG_MIB << 20)) 'BEGIN { printf "%.0f", b / (d / 1e6) / 1e6 }')
  say "$label: step 3: ${RES[big_s,$sys]} s after the write (${RES[big_mbs,$sys]} MB/s), ${RES[big_total,$sys]} s from its start"

  # 4. 1 MiB overwritten in the middle of it.
  say "$label: step 4, 1 MiB overwritten in the middle"
  sleep 2   # quiet wire before the baseline
  "${sys}_settle_counters"
  w0=$("${sys}_wire"); c0=$("${sys}_chunk_in"); l0=$(lo_rx_bytes)
  local oldsig
  oldsig=$(file_sig "$RB/big/big.bin")
  now_us t0
  dd if="$s/patch.bin" of="$RA/big/big.bin" bs=1M seek=$((BIG_MIB / 2)) conv=notrunc status=none
  wait_file "$RA/big/big.bin" "$RB/big/big.bin" "$label step 4" "$oldsig"
  RES[patch_s,$sys]=$(awk -v d=$(( WAIT_US - t0 )) 'BEGIN { printf "%.2f", d / 1e6 }')
  "${sys}_settle_counters"
  w1=$("${sys}_wire"); c1=$("${sys}_chunk_in"); l1=$(lo_rx_bytes)
  RES[patch_wire,$sys]=$(( w1 - w0 ))
  if [ -n "$c0" ]; then RES[patch_chunk,$sys]=$(( c1 - c0 )); fi
  if [ "${BENCH_NETNS:-0}" = 1 ]; then RES[patch_lo,$sys]=$(( l1 - l0 )); fi
  say "$label: step 4: ${RES[patch_s,$sys]} s, ${RES[patch_wire,$sys]} bytes counted by the app"

  # 5. Catch-up: B down, 1,000 changes on A (500 overwritten, 250 deleted,
  # 250 created), B up again.  A is given time to record every change
  # before B starts, so the figure is B's catch-up alone.
  say "$label: step 5, catch-up after downtime"
  cp -r "$s/catch" "$RA/catch"
  wait_dir "$RA/catch" "$RB/catch" "$label step 5 (initial copy)"
  say "$label: step 5: $CATCH_FILES files on both nodes; stopping B"
  "${sys}_stop" b
  local seq0 seq1
  seq0=$("${sys}_local_changes")
  # Three commands, not 1,000: forks are slow on a busy machine.
  cp "$s"/catch-mod/* "$RA/catch/"                    # f0000-f0499 overwritten
  (cd "$RA/catch" && rm $(seq -f 'f%04g' 500 749))     # f0500-f0749 deleted
  cp "$s"/catch-new/* "$RA/catch/"                    # n0000-n0249 created
  local start=$SECONDS
  while :; do
    seq1=$("${sys}_local_changes" || echo "$seq0")
    [ $(( seq1 - seq0 )) -ge 1000 ] && break
    [ $((SECONDS - start)) -lt "$cap" ] ||
      fail "$label step 5: A recorded only $(( seq1 - seq0 )) of 1000 changes in ${cap}s"
    nap 0.2
  done
  say "$label: step 5: A recorded the changes ($(( seq1 - seq0 )) new versions) within $((SECONDS - start)) s; starting B"
  now_us t0
  "${sys}_start" b
  wait_dir "$RA/catch" "$RB/catch" "$label step 5"
  RES[catch,$sys]=$(awk -v d=$(( WAIT_US - t0 )) 'BEGIN { printf "%.2f", d / 1e6 }')
  say "$label: step 5: ${RES[catch,$sys]} s"

  # Everything must match at the end, not only what each step looked at.
  say "$label: final check of the whole tree"
  "${sys}_wait_ready"
  wait_dir "$RA" "$RB" "$label final check of the whole tree"

  # 6. Resources over the whole run.
  "${sys}_stop" a
  "${sys}_stop" b
  for i in a b; do
    RES[cpu_$i,$sys]=$(awk -v t="${CPU[${sys}_$i]:-0}" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz }')
    RES[rss_$i,$sys]=$(awk -v k="${HWM[${sys}_$i]:-0}" 'BEGIN { printf "%.0f", k / 1024 }')
  done
  say "$label: done; CPU A ${RES[cpu_a,$sys]} s, B ${RES[cpu_b,$sys]} s"
}

# ---------------------------------------------------------------------------
# The table.

# row LABEL KEY: KrakenFS, Syncthing and their ratio.
row() {
  local k=${RES[$2,kraken]:-} s=${RES[$2,syncthing]:-} ratio=
  if [ -n "$k" ] && [ -n "$s" ]; then
    ratio=$(awk -v k="$k" -v s="$s" 'BEGIN { if (s + 0 == 0) print "-"; else printf "%.2f", k / s }')
  fi
  if [ -z "$s" ] && [ -n "$ST_NA" ]; then s=n/a; fi
  printf '%-64s %12s %12s %7s\n' "$1" "${k:--}" "${s:--}" "${ratio:--}"
}

print_table() {
  local big="$BIG_MIB MiB"; [ "$BIG_MIB" = 1024 ] && big="1 GiB"
  echo
  printf 'KrakenFS vs Syncthing, two nodes on loopback, %s cores, %s%s%s\n' "$(nproc)" \
    "$( [ "$quick" = 1 ] && echo "--quick" || echo "full run")" \
    "$( [ "$tls" = 1 ] && echo ", KrakenFS with TLS" || echo ", KrakenFS without TLS")" \
    "$( [ "$pin" = 1 ] && echo ", one CPU per node (--pin)" || true)"
  printf 'load average (1, 5, 15 min) at the start %s, now %s\n' "$LOAD0" "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%-64s %12s %12s %7s\n' "measure" "KrakenFS" "Syncthing" "K/S"
  row "1. 4 KiB file write to identical replica, p50 (ms)" lat_p50
  row "   p99 over $LAT_FILES files (ms)" lat_p99
  row "2. $MANY x 4 KiB files, first write to all identical (s)" many
  row "3. $big file, end of write to identical (MB/s)" big_mbs
  row "   same, seconds" big_s
  row "   same, seconds from the start of the write" big_total
  printf '%-64s %12s\n' "   disk reference: dd of the same file + fsync (MB/s)" "${DISK_MBS:--}"
  row "4. 1 MiB overwritten in the middle, to identical (s)" patch_s
  row "   bytes on the wire, app counters on B, in+out" patch_wire
  row "   of which chunk payload received (KrakenFS)" patch_chunk
  row "   loopback bytes, all packets in the private netns" patch_lo
  row "5. catch-up: B down, 1,000 changes on A, B up to identical (s)" catch
  row "6. CPU seconds, user+sys, node A" cpu_a
  row "   CPU seconds, user+sys, node B (both lifetimes)" cpu_b
  row "   peak RSS (VmHWM), node A (MiB)" rss_a
  row "   peak RSS (VmHWM), node B (MiB)" rss_b
  echo
  echo "K/S = KrakenFS / Syncthing: below 1 is better for KrakenFS, except MB/s."
  echo "Wire bytes: KrakenFS = delta of bytes_in + bytes_out in B's peer report for A"
  echo "(every framed message, TLS record overhead not included); Syncthing = delta of"
  echo "inBytesTotal + outBytesTotal of /rest/system/connections on B for A (protocol"
  echo "messages inside TLS).  Loopback bytes = delta of lo rx_bytes in /proc/net/dev,"
  echo "TCP/IP headers and TLS included, measured only in the private network namespace."
  echo "CPU: utime+stime of each node's processes, read just before each stop, summed"
  echo "over B's two lifetimes.  Peak RSS: VmHWM summed over the node's processes"
  echo "(Syncthing runs a monitor process plus its worker), the larger of B's lifetimes."
  [ -z "$ST_NA" ] || echo "Syncthing: n/a because $ST_NA."
}

ST_NA=${BENCH_ST_NA:-}
[ -n "$ST_NA" ] || command -v syncthing >/dev/null || ST_NA="syncthing is not installed"
# Anything else running here skews every figure: say so in the table.
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD0%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
  say "warning: load average is $LOAD0 on $(nproc) cores; other work will skew the figures"
fi
say "work directory $T$( [ "${BENCH_NETNS:-0}" = 1 ] && echo ", private network namespace")"
make_data
measure_disk
run_system kraken KrakenFS
if [ -z "$ST_NA" ]; then
  say "$(syncthing --version | head -1)"
  run_system syncthing Syncthing
else
  say "Syncthing skipped: $ST_NA"
fi
print_table
