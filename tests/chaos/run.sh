#!/usr/bin/env bash
# Nemesis: a seeded, reproducible fault-injection run against a small
# KrakenFS cluster.
#
#   tests/chaos/run.sh BIN_DIR [--minutes N] [--seed S] [--nodes 3..5]
#                      [--faults LIST]            (as root)
#   tests/chaos/run.sh BIN_DIR --regressions      every seed in tests/chaos/seeds
#
# 3 to 5 agents (BIN_DIR/krakenfs-agent), each in a network namespace of its
# own wired by a veth to a bridge in a switch namespace (so a partition is
# a real link going down), each with its own journal and its own volume
# root on a 64 MiB tmpfs.  While a writer changes the volumes of random
# nodes directly on disk (writes in place, appends, atomic replaces,
# deletes, renames of files and directories, mkdir -p and rm -rf of small
# trees, symlinks, chmods), a nemesis injects faults on random nodes.  The
# writer picks its node from the seed alone, so it also writes to nodes
# whose agent is stopped, cut off or down, as a container would: the agent
# must pick those changes up when it comes back.  The faults:
#
#   kill          kill -9, restart a few seconds later
#   stop          SIGSTOP, SIGCONT a few seconds later
#   partition     the node's link down (its NIC or the switch's port), then up
#   disk-full     the node's tmpfs filled (beside the volumes, or inside one,
#                 so that the big file also replicates), then freed
#   clock-skew    restarted under libfaketime (+2h, -30m, ...), later normally
#   journal-loss  stopped, journal.db/-wal/-shm removed, restarted (the
#                 agent rejoins the cluster's history; a removal made on
#                 its disk from its first change no peer held yet (or
#                 just before the loss) to just after the rejoin is known
#                 to nobody and comes back, as it must, so check (c)
#                 leaves those out)
#
# Then every fault is healed and the run asserts: (a) all nodes hold the
# same tree; (b) every content the writer wrote is on every node, at its
# path or elsewhere (a rename, a conflict copy), unless a later writer
# operation provably destroyed it (it overwrote, appended to or deleted
# that very content); (c) no deleted or renamed-away content came back at
# the path it left, unless a later operation on another node changed it
# there first (a chmod, or a write that failed after opening it: a
# modification beats a concurrent delete); (d) kraken-journal verify and
# verify --chain are clean everywhere; (e) no
# .krakenfs-tmp-* file is left; (f) every agent is alive, answers
# /v1/status with its peers connected and no job queued, and none died or
# hung on SIGTERM by itself.
#
# Options:
#   --minutes N     length of the fault phase (default 1.25: the whole run,
#                   setup and final checks included, stays under 3 minutes)
#   --seed S        a non-negative integer; default from the clock, always
#                   printed.  The seed alone fixes the fault schedule (printed
#                   at start) and the writer's sequence of operations; timing
#                   only decides how far the writer gets and which operations
#                   find their target.  Replay a run with the same --seed,
#                   --nodes and --faults (and --minutes, or a shorter one:
#                   a shorter run replays a prefix of a longer one).
#   --nodes N       3 (default) to 5 agents
#   --faults LIST   comma-separated kinds from the list above, or "none"
#                   (default: every kind)
#   --regressions   run each seed listed in tests/chaos/seeds (one per line:
#                   the seed, optional options, a comment), each as a
#                   default-length run unless its line says --minutes
#
# Environment: KRAKEN_TEST_KEEP=1 keeps the temporary directory (the final
# trees are copied there before the tmpfs mounts go); CHAOS_SETTLE (seconds,
# default 60) is how long the healed cluster gets to converge; LOG_LEVEL is
# the agents' log level (default info).
#
# The writer is bash; each file operation is carried out by fsop.pl (perl,
# one process per operation) so that what an operation replaced is observed
# through the same descriptor that changes it, never guessed: the agents
# rename peers' versions into place at any moment.
set -euo pipefail
export LC_ALL=C   # a '.' in $EPOCHREALTIME, byte order in sort

HERE=$(cd "$(dirname "$0")" && pwd)
FSOP=$HERE/fsop.pl
ALL_FAULTS=kill,stop,partition,disk-full,clock-skew,journal-loss
DEFAULT_FAULTS=$ALL_FAULTS

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# ---- options -------------------------------------------------------------

BIN="" MINUTES=1.25 SEED="" NODES=3 FAULTS=$DEFAULT_FAULTS REGRESSIONS=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --minutes) MINUTES=${2:?--minutes needs a number}; shift 2 ;;
    --seed) SEED=${2:?--seed needs a number}; shift 2 ;;
    --nodes) NODES=${2:?--nodes needs 3..5}; shift 2 ;;
    --faults) FAULTS=${2:?--faults needs a list}; shift 2 ;;
    --regressions) REGRESSIONS=1; shift ;;
    -*) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
    *) [ -z "$BIN" ] || { echo "one BIN_DIR only (try --help)" >&2; exit 2; }
       BIN=$1; shift ;;
  esac
done
[ -n "$BIN" ] || { echo "usage: $0 BIN_DIR [options] (try --help)" >&2; exit 2; }
BIN=$(cd "$BIN" && pwd)

# --regressions: each listed seed, with the options on its line.
run_regressions() {
  local list=$HERE/seeds line seed opts failed=() n=0
  [ -f "$list" ] || { echo "no $list" >&2; exit 2; }
  while IFS= read -r line; do
    line=${line%%#*}
    read -r seed opts <<<"$line" || true
    [ -n "${seed:-}" ] || continue
    n=$((n + 1))
    echo "=== regression seed $seed ${opts:-}"
    # shellcheck disable=SC2086  # the options on the line are words
    if ! "$BASH" "$0" "$BIN" --seed "$seed" ${opts:-}; then
      failed+=("$seed")
    fi
  done < "$list"
  if [ "${#failed[@]}" -gt 0 ]; then
    echo "regressions: ${#failed[@]} of $n failed: ${failed[*]}"
    exit 1
  fi
  echo "regressions: all $n passed"
}
if [ "$REGRESSIONS" = 1 ]; then run_regressions; exit 0; fi

[[ $SEED =~ ^[0-9]*$ ]] || { echo "--seed must be a non-negative integer" >&2; exit 2; }
[ -n "$SEED" ] || SEED=$(( $(date +%s%N) / 1000 % 1000000000 ))
SEED=$((10#$SEED))
[[ $NODES =~ ^[345]$ ]] || { echo "--nodes must be 3, 4 or 5" >&2; exit 2; }
[[ $MINUTES =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "--minutes must be a number" >&2; exit 2; }
DURATION=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
[ "$DURATION" -ge 10 ] || { echo "--minutes must be at least 10 s" >&2; exit 2; }
[ "$FAULTS" = none ] && FAULTS=""
IFS=, read -r -a FAULT_KINDS <<<"$FAULTS"
for f in "${FAULT_KINDS[@]}"; do
  [[ ,$ALL_FAULTS, == *,"$f",* ]] || { echo "unknown fault $f (known: $ALL_FAULTS)" >&2; exit 2; }
done
SETTLE=${CHAOS_SETTLE:-60}

# ---- prerequisites -------------------------------------------------------

die() { echo "chaos: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, tmpfs)"
for c in ip nsenter mount umount curl jq perl awk; do
  command -v "$c" >/dev/null || die "$c not found: run tools/install-deps.sh"
done
perl -MDigest::SHA -MTime::HiRes -e1 2>/dev/null || die "perl's Digest::SHA is missing (Debian package perl)"
AGENT=$BIN/krakenfs-agent KJ=$BIN/kraken-journal
[ -x "$AGENT" ] && [ -x "$KJ" ] || die "no krakenfs-agent and kraken-journal in $BIN"
FAKETIME_LIB=""
if [[ ,$FAULTS, == *,clock-skew,* ]]; then
  # The library itself, not the faketime wrapper: the wrapper forks, and
  # the agent's pid must be the one that is killed and checked.
  for f in /usr/lib/*/faketime/libfaketimeMT.so.1; do [ ! -e "$f" ] || { FAKETIME_LIB=$f; break; }; done
  [ -n "$FAKETIME_LIB" ] || die "clock-skew needs libfaketime: apt-get install faketime"
fi

# ---- run state -----------------------------------------------------------

TAG=$(($$ % 100000))
PFX=kchaos-$TAG             # namespace names
IFX=kc$TAG                  # the switch's interface names (<= 15 chars)
NET=10.77.0                 # node I is $NET.1I, inside its namespace only
P2P=7000 APIPORT=7001
VOLS=(alpha beta)
T=$(mktemp -d /tmp/kraken-chaos-XXXXXX)
LEDGER=$T/ledger EVENTS=$T/events ERRORS=$T/errors
: > "$LEDGER"; : > "$EVENTS"; : > "$ERRORS"; : > "$T/losses"
T0=$EPOCHREALTIME
export CHAOS_T0=$T0
NETNS=() MOUNTS=() BG=()

exec 3>&1 4>&2
elapsed() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%6.1f", b - a }'; }
say() { local m; m="[$(elapsed)s] $*"; echo "$m" >&3; echo "$m" >> "$EVENTS"; }
# An error seen while the faults run: recorded, asserted on at the end.
error() { say "ERROR: $*"; echo "$*" >> "$ERRORS"; }

root_of() { echo "$T/n$1/root"; }
journal_of() { echo "$T/n$1/state/journal.db"; }
ns_of() { echo "$PFX-n$1"; }
ip_of() { echo "$NET.1$1"; }
nsx() { local ns=$1; shift; nsenter --net="/run/netns/$ns" -- "$@"; }

# ---- cleanup: every process, namespace and mount the run made ------------

cleanup() {
  local rc=$? i pid n
  set +e
  trap - EXIT INT TERM
  exec 1>&3 2>&4
  touch "$T/stop"
  for pid in "${BG[@]}"; do
    for ((n = 0; n < 100; n++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$pid" 2>/dev/null
  done
  for ((i = 1; i <= NODES; i++)); do
    pid=$(cat "$T/n$i/pid" 2>/dev/null) || continue
    kill -CONT "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null
  done
  for ((i = 1; i <= NODES; i++)); do
    pid=$(cat "$T/n$i/pid" 2>/dev/null) || continue
    for ((n = 0; n < 100; n++)); do agent_alive "$pid" || break; sleep 0.05; done
  done
  wait 2>/dev/null
  if [ "${KRAKEN_TEST_KEEP:-0}" = 1 ]; then
    for ((i = 1; i <= NODES; i++)); do
      [ -d "$T/n$i/root" ] && (cd "$T/n$i/root" && tar -c --exclude=./.chaos-fill --exclude='chaos-fill-*' . 2>/dev/null) |
        (mkdir -p "$T/n$i/final" && tar -x -C "$T/n$i/final" 2>/dev/null)
    done
  fi
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m"; done
  for n in "${NETNS[@]}"; do ip netns del "$n" 2>/dev/null; done
  if [ "${KRAKEN_TEST_KEEP:-0}" = 1 ]; then
    echo "kept $T"
  else
    rm -rf "$T"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- deterministic randomness --------------------------------------------

# xorshift32, one state per stream (RS), so that the fault schedule and the
# writer's operations each depend on the seed alone and not on each other.
rng_init() {  # rng_init STREAM
  RS=$(( (SEED * 2654435761 + $1 * 40503 + 12345) & 0xFFFFFFFF ))
  [ "$RS" -ne 0 ] || RS=1
  local i _
  for ((i = 0; i < 8; i++)); do rng _ 2; done
}
# The helpers below return through printf -v into the caller's variable;
# their own locals have prefixed names so that they never shadow it.
rng() {  # rng VAR N: VAR = a number in [0, N)
  local _rng_x=$RS
  _rng_x=$(( (_rng_x ^ (_rng_x << 13)) & 0xFFFFFFFF ))
  _rng_x=$(( _rng_x ^ (_rng_x >> 17) ))
  _rng_x=$(( (_rng_x ^ (_rng_x << 5)) & 0xFFFFFFFF ))
  RS=$_rng_x
  printf -v "$1" '%d' $(( _rng_x % $2 ))
}
pick() {  # pick VAR WORD...: one of the words
  local _pk_v=$1 _pk_i; shift
  rng _pk_i $#
  local _pk_a=("$@")
  printf -v "$_pk_v" '%s' "${_pk_a[$_pk_i]}"
}

# ---- agents --------------------------------------------------------------

agent_alive() {  # agent_alive PID: a running (or stopped) agent, not a zombie
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = krakenfs-agent ]
}
agent_pid() { cat "$T/n$1/pid" 2>/dev/null || echo 0; }

write_config() {  # write_config I
  local i=$1 j
  {
    echo "log:"
    echo "  level: ${LOG_LEVEL:-info}"
    echo "filesystem:"
    echo "  exclude_patterns: [\"*.tmp\"]"
    echo "sync:"
    echo "  node_id: \"n$i\""
    echo "  listen_address: \"$(ip_of "$i")\""
    echo "  p2p_port: $P2P"
    echo "  cluster_nodes:"
    for ((j = 1; j <= NODES; j++)); do echo "    - \"n$j:$(ip_of "$j"):$P2P\""; done
    echo "volume:"
    echo "  root_path: \"$(root_of "$i")\""
    echo "journal:"
    echo "  path: \"$(journal_of "$i")\""
    echo "api:"
    echo "  listen: \"$(ip_of "$i"):$APIPORT\""
    echo "  token_file: \"$T/n$i/api-token\""
    echo "plugin:"
    echo "  socket: \"$T/n$i/plugin.sock\""
  } > "$T/n$i/config.yaml"
}

# start_agent I [SKEW]: starts node I's agent in its namespace, under
# libfaketime when SKEW (e.g. +2h) is given, and waits until it watches.
start_agent() {
  local i=$1 skew=${2:-} log=$T/n$1/agent.log before pid deadline
  local envs=()
  touch "$log"
  before=$(grep -c ' watching ' "$log" || true)
  if [ -n "$skew" ]; then
    # Only the wall clock moves: monotonic time and file times stay real,
    # as on a host whose clock is wrong.
    envs=(env "LD_PRELOAD=$FAKETIME_LIB" "FAKETIME=$skew" FAKETIME_DONT_FAKE_MONOTONIC=1
          DONT_FAKE_MONOTONIC=1 NO_FAKE_STAT=1)
  fi
  echo "---- start ${skew:+(clock $skew) }at $(elapsed)s" >> "$log"
  # nsenter and env exec: $! is the agent itself.  It must not hold the
  # run's own output (3, 4) open after the run ends.
  nsenter --net="/run/netns/$(ns_of "$i")" -- "${envs[@]}" "$AGENT" --config "$T/n$i/config.yaml" \
    </dev/null >>"$log" 2>&1 3>&- 4>&- &
  pid=$!
  disown "$pid"   # polled by pid, never waited for: no "Killed" notices
  echo "$pid" > "$T/n$i/pid"
  rm -f "$T/n$i/down"
  deadline=$((SECONDS + 60))
  until [ "$(grep -c ' watching ' "$log" || true)" -gt "$before" ]; do
    # Not agent_alive: until nsenter has exec'd the agent, its name differs.
    if ! kill -0 "$pid" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
      error "n$i: the agent exited during start-up"; return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then error "n$i: the agent did not start within 60 s"; return 1; fi
    sleep 0.1
  done
}

wait_dead() {  # wait_dead PID SECONDS
  local deadline=$((SECONDS + $2))
  while agent_alive "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

kill_agent() {  # kill_agent I: SIGKILL, as a crash or a power cut
  local pid
  pid=$(agent_pid "$1")
  touch "$T/n$1/down"
  kill -KILL "$pid" 2>/dev/null || true
  wait_dead "$pid" 10 || error "n$1: the agent survived SIGKILL for 10 s"
}

stop_agent() {  # stop_agent I: SIGTERM, which must end it within 30 s
  local pid
  pid=$(agent_pid "$1")
  touch "$T/n$1/down"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_dead "$pid" 30; then
    error "n$1: the agent did not exit within 30 s of SIGTERM"
    kill -KILL "$pid" 2>/dev/null || true
    wait_dead "$pid" 10 || true
  fi
}

api() {  # api I PATH: GET from node I's REST API
  nsx "$(ns_of "$1")" curl -sf --max-time 5 "http://$(ip_of "$1"):$APIPORT$2"
}

# ---- the network ---------------------------------------------------------

make_network() {
  local i ns
  ip netns add "$PFX-sw"; NETNS+=("$PFX-sw")
  ip -n "$PFX-sw" link set lo up
  ip -n "$PFX-sw" link add name br0 type bridge
  ip -n "$PFX-sw" link set br0 up
  for ((i = 1; i <= NODES; i++)); do
    ns=$(ns_of "$i")
    ip netns add "$ns"; NETNS+=("$ns")
    ip -n "$PFX-sw" link add name "${IFX}s$i" type veth peer name eth0 netns "$ns"
    ip -n "$PFX-sw" link set "${IFX}s$i" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(ip_of "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
}

link_set() {  # link_set I up|down nic|cable
  if [ "$3" = nic ]; then
    ip -n "$(ns_of "$1")" link set eth0 "$2"
  else
    ip -n "$PFX-sw" link set "${IFX}s$1" "$2"
  fi
}

# ---- the fault schedule --------------------------------------------------

# gen_schedule: one line per fault, "K START END KIND NODE PARAM" (seconds
# from the start of the fault phase), a function of the seed alone.  At
# most MAXC faults at a time, never two on one node; a fault ends at
# least 2 s before the next one on its node begins.
gen_schedule() {
  local t=3 k=0 gap kind node dur param i active cands maxc
  local -a busy
  maxc=$(( NODES - 1 < 3 ? NODES - 1 : 3 ))
  [ "${#FAULT_KINDS[@]}" -gt 0 ] || return 0
  rng_init 1
  for ((i = 1; i <= NODES; i++)); do busy[i]=0; done
  while [ "$t" -lt "$DURATION" ]; do
    active=0 cands=()
    for ((i = 1; i <= NODES; i++)); do
      if [ "${busy[i]}" -gt "$t" ]; then active=$((active + 1)); else cands+=("$i"); fi
    done
    if [ "$active" -ge "$maxc" ] || [ "${#cands[@]}" -eq 0 ]; then t=$((t + 1)); continue; fi
    pick kind "${FAULT_KINDS[@]}"
    pick node "${cands[@]}"
    case "$kind" in
      kill) rng dur 8; dur=$((dur + 1)); param=- ;;
      stop) rng dur 9; dur=$((dur + 2)); param=- ;;
      partition) rng dur 18; dur=$((dur + 3)); pick param nic cable ;;
      disk-full) rng dur 16; dur=$((dur + 5)); pick param local volume ;;
      clock-skew) rng dur 31; dur=$((dur + 10)); pick param +2h -30m +1d -3h +90s ;;
      journal-loss) rng dur 5; dur=$((dur + 1)); pick param term kill ;;
    esac
    k=$((k + 1))
    echo "$k $t $((t + dur)) $kind $node $param"
    busy[node]=$((t + dur + 2))
    rng gap 6
    t=$((t + gap + 2))
  done
}

shown() { [ "$1" = - ] || printf ' %s' "$1"; }

fault_begin() {  # fault_begin K KIND NODE PARAM
  local k=$1 kind=$2 i=$3 param=$4 pid
  echo "$k $kind $param" > "$T/n$i/fault"
  say "fault $k begins: $kind n$i$(shown "$param")"
  pid=$(agent_pid "$i")
  case "$kind" in
    kill) kill_agent "$i" ;;
    stop) kill -STOP "$pid" || error "n$i: SIGSTOP failed: no agent" ;;
    partition) link_set "$i" down "$param" ;;
    disk-full) fill_disk "$i" "$param" "$k" ;;
    clock-skew) stop_agent "$i"; start_agent "$i" "$param" || true ;;
    journal-loss)
      if [ "$param" = kill ]; then kill_agent "$i"; else stop_agent "$i"; fi
      loss_begin "$i"
      rm -f "$(journal_of "$i")" "$(journal_of "$i")-wal" "$(journal_of "$i")-shm" ;;
  esac
}

ms_now() { echo $(( (${EPOCHREALTIME/./} - ${T0/./}) / 1000 )); }

# loss_begin I: n$I's agent is down, its journal about to go.  What no
# peer holds of its origin yet (a peer cut off, stopped, or behind a
# stalled connection) is lost with it, so the removals check (c) cannot
# hold it to begin at its first change no peer holds, if that is before
# now.  A line "nI FROM_MS RESTART_MS" goes to $T/losses at the restart.
loss_begin() {
  local i=$1 origin h=0 v j first now
  now=$(ms_now) first=$now
  origin=$("$KJ" --db "$(journal_of "$i")" --json status 2>/dev/null | jq -r '.origin // empty') || origin=
  if [ -n "$origin" ]; then
    for ((j = 1; j <= NODES; j++)); do
      [ "$j" != "$i" ] || continue
      v=$("$KJ" --db "$(journal_of "$j")" --json status 2>/dev/null |
          jq -r --arg o "$origin" '.version_vector[$o] // 0') || v=0
      [ "${v:-0}" -le "$h" ] || h=$v
    done
    v=$("$KJ" --db "$(journal_of "$i")" --json log --origin "$origin" --reverse 2>/dev/null |
        jq -r --argjson h "$h" 'select(.seq > $h) | .time_ns' | head -n 1) || v=
    # Entries recorded under a skewed clock say nothing useful: clamped.
    if [ -n "$v" ]; then
      v=$(( (v / 1000 - ${T0/./}) / 1000 ))
      if [ "$v" -lt 0 ]; then v=0; fi
      if [ "$v" -lt "$first" ]; then first=$v; fi
    fi
  fi
  echo "$first" > "$T/n$i/loss"
}

fault_end() {  # fault_end K KIND NODE PARAM
  local k=$1 kind=$2 i=$3 param=$4
  case "$kind" in
    kill) start_agent "$i" || true ;;
    journal-loss)
      echo "n$i $(cat "$T/n$i/loss") $(ms_now)" >> "$T/losses"
      start_agent "$i" || true ;;
    stop) kill -CONT "$(agent_pid "$i")" 2>/dev/null || true ;;
    partition) link_set "$i" up "$param" ;;
    disk-full) free_disk "$i" "$param" "$k" ;;
    clock-skew) stop_agent "$i"; start_agent "$i" || true ;;
  esac
  rm -f "$T/n$i/fault"
  say "fault $k ends: $kind n$i"
}

fill_path() {  # fill_path MODE K: beside the volumes, or in the first one
  if [ "$1" = local ]; then echo .chaos-fill; else echo "${VOLS[0]}/chaos-fill-$2.bin"; fi
}
fill_disk() {  # fill_disk I MODE K
  local ledger=$LEDGER
  [ "$2" = local ] && ledger=/dev/null
  perl "$FSOP" "$ledger" 0 "n$1" fill "$(root_of "$1")" "$(fill_path "$2" "$3")" ||
    error "n$1: filling the disk failed"
  say "  n$1: $(df -h --output=used,avail "$(root_of "$1")" | tail -n1 | awk '{print $1" used, "$2" free"}')"
}
free_disk() {  # free_disk I MODE K
  if [ "$2" = local ]; then
    rm -f "$(root_of "$1")/.chaos-fill"
  else
    perl "$FSOP" "$LEDGER" 0 "n$1" delete "$(root_of "$1")" "$(fill_path "$2" "$3")" || true
  fi
}

# scheduler: carries out the schedule's begins and ends at their times
# until the fault phase is over ($T/stop).
scheduler() {
  local k kind node param what when
  while read -r when what k; do
    read -r _ _ _ kind node param < <(grep "^$k " "$T/schedule")
    while [ $(( ${EPOCHREALTIME/./} - T_CHAOS_US )) -lt $(( when * 1000000 )) ]; do
      [ ! -e "$T/stop" ] || return 0
      sleep 0.1
    done
    [ ! -e "$T/stop" ] || return 0
    # Called in a condition, so that one failing step (logged as an
    # error) does not end the nemesis.
    if [ "$what" = begin ]; then
      fault_begin "$k" "$kind" "$node" "$param" || error "fault $k: begin failed"
    else
      fault_end "$k" "$kind" "$node" "$param" || error "fault $k: end failed"
    fi
  done < <(awk '{ print $2, "begin", $1; print $3, "end", $1 }' "$T/schedule" | sort -n -s -k1,1)
}

# ---- the writer ----------------------------------------------------------

FILE_NAMES=(f0.txt f1.txt f2.dat f3 "with space.txt" .hidden l0)
LINK_TARGETS=(f0.txt ../f1.txt d0 ../d1/s0 nowhere s0/f3 ../../f2.dat)
rand_dir() {  # rand_dir VAR: d0..d2, or one of their s0..s1
  local _rd_d _rd_s _rd_deep
  pick _rd_d d0 d1 d2
  rng _rd_deep 2
  if [ "$_rd_deep" = 1 ]; then pick _rd_s s0 s1; _rd_d=$_rd_d/$_rd_s; fi
  printf -v "$1" '%s' "$_rd_d"
}
rand_file() {  # rand_file VAR: a file name at depth 0, 1 or 2
  local _rf_f _rf_d _rf_depth
  pick _rf_f "${FILE_NAMES[@]}"
  rng _rf_depth 3
  case "$_rf_depth" in
    0) printf -v "$1" '%s' "$_rf_f" ;;
    1) pick _rf_d d0 d1 d2; printf -v "$1" '%s' "$_rf_d/$_rf_f" ;;
    2) rand_dir _rf_d; [[ $_rf_d == */* ]] || _rf_d=$_rf_d/s0
       printf -v "$1" '%s' "$_rf_d/$_rf_f" ;;
  esac
}
rand_size() {  # rand_size VAR: mostly small; some above the 8 KiB push limit
  local _rs_c _rs_s
  rng _rs_c 100
  if [ "$_rs_c" -lt 60 ]; then rng _rs_s 2000; _rs_s=$((_rs_s + 1))
  elif [ "$_rs_c" -lt 85 ]; then rng _rs_s 14000; _rs_s=$((_rs_s + 2048))
  elif [ "$_rs_c" -lt 96 ]; then rng _rs_s 240000; _rs_s=$((_rs_s + 16384))
  else rng _rs_s 1800000; _rs_s=$((_rs_s + 262144)); fi
  printf -v "$1" '%d' "$_rs_s"
}

fsop() {  # fsop SEQ NODE OP REL ARGS...: one operation on node NODE's volume
  local seq=$1 node=$2 op=$3; shift 3
  perl "$FSOP" "$LEDGER" "$seq" "n$node" "$op" "$(root_of "$node")" "$@" 2>>"$T/writer.err" ||
    echo "seq $seq: fsop $op $* failed" >> "$T/writer.err"
}

writer_op() {  # writer_op SEQ: the SEQth operation; it may take several sub-steps
  local seq=$1 node vol c p q size tmpk mode n f
  rng node "$NODES"; node=$((node + 1))
  pick vol "${VOLS[@]}"
  rng c 100
  if [ "$c" -lt 30 ]; then
    rand_file p; rand_size size
    fsop "$seq" "$node" write "$vol/$p" "$size" "s$SEED-$seq-n$node"
  elif [ "$c" -lt 40 ]; then
    rand_file p; rng size 5000
    fsop "$seq" "$node" append "$vol/$p" "$((size + 1))" "s$SEED-$seq-n$node"
  elif [ "$c" -lt 50 ]; then
    rand_file p; rand_size size; rng tmpk 2
    if [ "$tmpk" = 0 ]; then q=.wtmp-$seq; else q=wtmp-$seq.tmp; fi
    fsop "$seq" "$node" replace "$vol/$p" "$size" "s$SEED-$seq-n$node" "$q"
  elif [ "$c" -lt 58 ]; then
    rand_file p
    fsop "$seq" "$node" delete "$vol/$p"
  elif [ "$c" -lt 65 ]; then
    rand_file p; rand_file q
    fsop "$seq" "$node" rename "$vol/$p" "$vol/$q"
  elif [ "$c" -lt 68 ]; then
    rand_dir p; rand_dir q
    fsop "$seq" "$node" rename "$vol/$p" "$vol/$q"
  elif [ "$c" -lt 75 ]; then
    # mkdir -p of a small tree with a few files in it
    rand_dir p; [[ $p == */* ]] || p=$p/s1
    fsop "$seq" "$node" mkdir "$vol/$p"
    rng n 3
    for ((f = 0; f <= n; f++)); do
      pick q "${FILE_NAMES[@]}"; rng size 3000
      fsop "$seq" "$node" write "$vol/$p/$q" "$((size + 1))" "s$SEED-$seq.$f-n$node"
    done
  elif [ "$c" -lt 78 ]; then
    rand_dir p
    fsop "$seq" "$node" rmrf "$vol/$p"
  elif [ "$c" -lt 81 ]; then
    rand_dir p
    fsop "$seq" "$node" rmdir "$vol/$p"
  elif [ "$c" -lt 89 ]; then
    rand_file p; pick q "${LINK_TARGETS[@]}"
    fsop "$seq" "$node" symlink "$vol/$p" "$q"
  else
    rng n 2
    if [ "$n" = 0 ]; then rand_file p; pick mode 0600 0640 0644 0664 0755
    else rand_dir p; pick mode 0700 0750 0755 0775; fi
    fsop "$seq" "$node" chmod "$vol/$p" "$mode"
  fi
}

writer() {
  local seq=0 pause
  rng_init 2
  while [ ! -e "$T/stop" ]; do
    seq=$((seq + 1))
    writer_op "$seq" || echo "seq $seq: writer_op failed" >> "$T/writer.err"
    echo "$seq" > "$T/writer.seq.new" && mv "$T/writer.seq.new" "$T/writer.seq"
    rng pause 250
    sleep "$(printf '0.%03d' $((pause + 30)))"
  done
}

# ---- convergence and the checks ------------------------------------------

manifest() {  # manifest I: node I's tree, one sorted line per name
  perl "$FSOP" - - - manifest "$(root_of "$1")" | LC_ALL=C sort
}

snapshot() {  # snapshot: every node's manifest into $T/m.I
  local i
  for ((i = 1; i <= NODES; i++)); do manifest "$i" > "$T/m.$i"; done
}

all_identical() {
  local i
  snapshot
  for ((i = 2; i <= NODES; i++)); do cmp -s "$T/m.1" "$T/m.$i" || return 1; done
}

status_of() {  # status_of I: node I's /v1/status into $T/status.I
  api "$1" /v1/status > "$T/status.$1" 2>/dev/null
}

jobs_of() {  # jobs_of I: jobs in node I's journal (the API's count is a
  # snapshot that has been seen to say 0 with a job retried for ever)
  "$KJ" --db "$(journal_of "$1")" --json status 2>/dev/null | jq -r .jobs
}

quiet() {  # every agent answers, has every peer connected, no job queued
  local i jobs up
  for ((i = 1; i <= NODES; i++)); do
    status_of "$i" || return 1
    jobs=$(jq -r '.jobs' "$T/status.$i")
    up=$(jq '[.peers[] | select(.connected == true or .state == "connected")] | length' "$T/status.$i")
    [ "$jobs" = 0 ] && [ "$up" = $((NODES - 1)) ] && [ "$(jobs_of "$i")" = 0 ] || return 1
  done
}

# converge: identical trees, quiet agents, and still identical 2 s later.
converge() {
  local deadline=$((SECONDS + SETTLE))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if all_identical && quiet; then
      sleep 2
      all_identical && quiet && return 0
    fi
    sleep 1
  done
  return 1
}

heal_all() {
  local i k kind param pid
  for ((i = 1; i <= NODES; i++)); do
    if [ -f "$T/n$i/fault" ]; then
      read -r k kind param < "$T/n$i/fault"
      fault_end "$k" "$kind" "$i" "$param" || error "fault $k: healing failed"
    fi
  done
  for ((i = 1; i <= NODES; i++)); do
    pid=$(agent_pid "$i")
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != T ] || kill -CONT "$pid"
    if ! agent_alive "$pid"; then
      [ -f "$T/n$i/down" ] || error "n$i: the agent died by itself (pid $pid; see its log)"
      start_agent "$i" || true
    fi
    link_set "$i" up nic; link_set "$i" up cable
    rm -f "$(root_of "$i")/.chaos-fill"
  done
}

# loss_windows: for each journal lost, "nI FROM_MS UNTIL_MS": from its
# first change no peer held (loss_begin) to 3 s after it rejoined.
loss_windows() {
  local node from restart t until
  while read -r node from restart; do
    until=$((restart + 60000))
    while read -r t; do
      t=$(( $(date -d "$t" +%s%3N) - ${T0/./} / 1000 ))
      if [ "$t" -ge "$restart" ]; then until=$t; break; fi
    done < <(grep "rejoined the cluster's history" "$T/$node/agent.log" | cut -d' ' -f1)
    echo "$node $((from - 1000)) $((until + 3000))"
  done < "$T/losses"
}

# check_contents: (b) and (c), from the ledger and the final manifests.
check_contents() {
  local files=() i
  for ((i = 1; i <= NODES; i++)); do files+=("$T/m.$i"); done
  : > "$T/suspects"
  loss_windows > "$T/losses.windows"
  awk -F'\t' -v ledger="$LEDGER" -v nodes="$NODES" -v suspects="$T/suspects" \
      -v losses="$T/losses.windows" '
    function hex(h) { return h ~ /^[0-9a-f]+$/ && length(h) == 64 }
    function put(p, h, s) { P[p SUBSEP h] = P[p SUBSEP h] " " s }
    # A removal made on a node whose journal is gone, from its first
    # change no peer held (or a moment before the agent went: a kill
    # loses what was not recorded yet) to a moment after it rejoined, is
    # known to nobody: what it removed comes back from the peers, as it
    # must (loss_windows).
    function unknowable(node, ms,   i) {
      for (i = 1; i <= nl; i++)
        if (LN[i] == node && ms >= LA[i] && ms <= LB[i]) return 1
      return 0
    }
    FILENAME == losses {
      split($0, f, " ")
      nl++; LN[nl] = f[1]; LA[nl] = f[2]; LB[nl] = f[3]
      next
    }
    FILENAME == ledger {
      seq = $1 + 0; op = $4; st = $7
      if ((st == "ok" || st == "fail") && hex($8)) D[$8] = 1
      # A write that failed (ENOSPC) found the file and may have touched
      # it: a change of its metadata, which beats a concurrent removal.
      if (st == "fail" && (op == "write" || op == "append")) TOUCH[$5] = TOUCH[$5] " " seq
      if (st != "ok") next
      if ((op == "write" || op == "append" || op == "replace") && hex($9))
        { W[$9] = "seq " $1 " " $3 " " op " " $5; WP[$9] = $5 }
      if (op == "write" || op == "append" || op == "replace" || op == "chmod") put($5, $9, seq)
      if ((op == "delete" || op == "gone") && hex($8) && !unknowable($3, $2 + 0)) { nd++; Dp[nd] = $5; Dh[nd] = $8; Ds[nd] = seq; Dw[nd] = "seq " $1 " " $3 " " op }
      if (op == "move") { if (!unknowable($3, $2 + 0)) { nd++; Dp[nd] = $5; Dh[nd] = $9; Ds[nd] = seq; Dw[nd] = "seq " $1 " " $3 " rename to " $6 }; put($6, $9, seq) }
      next
    }
    {
      n = FILENAME; sub(/.*\./, "", n)
      if ($2 == "f") { H[n SUBSEP $5] = 1; AT[n SUBSEP $1 SUBSEP $5] = 1 }
    }
    END {
      bad = 0
      for (w in W) {
        if (w in D) continue
        checked++
        for (n = 1; n <= nodes; n++)
          if (!((n SUBSEP w) in H)) {
            print "(b) lost on n" n ": the content " substr(w, 1, 12) " written by " W[w]; bad++
            print WP[w] > suspects
          }
      }
      for (d = 1; d <= nd; d++) {
        key = Dp[d] SUBSEP Dh[d]
        after = 0; before = 0
        k = split(P[key], s, " ")
        for (j = 1; j <= k; j++) { if (s[j] + 0 > Ds[d]) after = 1; else if (s[j] + 0 < Ds[d]) before++ }
        k = split(TOUCH[Dp[d]], s, " ")
        for (j = 1; j <= k; j++) if (s[j] + 0 > Ds[d]) after = 1
        if (after || before > 1) continue
        for (n = 1; n <= nodes; n++)
          if ((n SUBSEP Dp[d] SUBSEP Dh[d]) in AT) {
            print "(c) back on n" n ": " Dp[d] " holds " substr(Dh[d], 1, 12) " again, removed by " Dw[d]; bad++
            print Dp[d] > suspects
          }
      }
      printf "checked %d surviving contents and %d removals\n", checked, nd > "/dev/stderr"
      exit (bad > 0)
    }' "$T/losses.windows" "$LEDGER" "${files[@]}"
}

report_failure() {
  local i
  {
    echo "==== FAILED: seed $SEED"
    echo "replay: $0 $BIN --seed $SEED --nodes $NODES --faults ${FAULTS:-none} --minutes $MINUTES"
    echo "---- fault schedule"; cat "$T/schedule"
    echo "---- events"; cat "$EVENTS"
    echo "---- ledger (last 40 of $(wc -l < "$LEDGER") records)"; tail -n 40 "$LEDGER"
    for ((i = 2; i <= NODES; i++)); do
      [ -f "$T/m.1" ] && [ -f "$T/m.$i" ] || continue
      if ! cmp -s "$T/m.1" "$T/m.$i"; then
        echo "---- manifests n1 vs n$i (path type mode size sha|target)"
        diff "$T/m.1" "$T/m.$i" | head -n 40 || true
      fi
    done
    for ((i = 1; i <= NODES; i++)); do
      echo "---- n$i agent log (last 40 lines; warnings and errors: $(grep -c -E ' (warn|error) ' "$T/n$i/agent.log" || true))"
      tail -n 40 "$T/n$i/agent.log"
    done
    # The paths that lost or regained a content: the writer's operations
    # on them and each node's journal history of them.
    sort -u "$T/suspects" 2>/dev/null | head -n 4 | while IFS= read -r p; do
      echo "---- $p: the writer's operations"
      awk -F'\t' -v p="$p" '$5 == p || $6 == p' "$LEDGER" | cut -c1-160
      for ((i = 1; i <= NODES; i++)); do
        echo "---- $p: history in n$i's journal"
        "$KJ" --db "$(journal_of "$i")" history "${p%%/*}" "${p#*/}" 2>&1 | head -n 20 || true
      done
    done || true
    for ((i = 1; i <= NODES; i++)); do
      echo "---- n$i jobs left in the journal"
      sqlite3 -readonly "$(journal_of "$i")" 'SELECT * FROM jobs LIMIT 10' 2>&1 || true
    done
    [ ! -s "$T/writer.err" ] || { echo "---- writer errors"; tail -n 20 "$T/writer.err"; }
  } >&4
}

# ---- the run -------------------------------------------------------------

say "seed $SEED, $NODES nodes, faults: ${FAULTS:-none}, fault phase ${DURATION}s, in $T"
say "replay: $0 $BIN --seed $SEED --nodes $NODES --faults ${FAULTS:-none} --minutes $MINUTES"
gen_schedule > "$T/schedule"
while read -r k s e kind node param; do
  say "  schedule $k: ${s}s-${e}s $kind n$node$(shown "$param")"
done < "$T/schedule"

make_network
for ((i = 1; i <= NODES; i++)); do
  mkdir -p "$T/n$i/root" "$T/n$i/state"
  mount -t tmpfs -o size=64m,mode=0755 "$PFX-n$i" "$T/n$i/root"
  MOUNTS+=("$T/n$i/root")
  write_config "$i"
done
for ((i = 1; i <= NODES; i++)); do start_agent "$i" || { report_failure; exit 1; }; done
all_connected() { local i; for ((i = 1; i <= NODES; i++)); do status_of "$i" || return 1; done; quiet; }
deadline=$((SECONDS + 60))
until all_connected; do
  [ "$SECONDS" -lt "$deadline" ] || { error "the agents did not connect within 60 s"; report_failure; exit 1; }
  sleep 0.3
done
for v in "${VOLS[@]}"; do mkdir "$(root_of 1)/$v"; done
deadline=$((SECONDS + 60))
until all_identical; do
  [ "$SECONDS" -lt "$deadline" ] || { error "the volumes did not reach every node"; report_failure; exit 1; }
  sleep 0.3
done
say "cluster up: $NODES agents connected, volumes ${VOLS[*]} everywhere"

T_CHAOS_US=${EPOCHREALTIME/./}
writer & BG+=($!)
scheduler & BG+=($!)
chaos_end=$((SECONDS + DURATION))
while [ "$SECONDS" -lt "$chaos_end" ]; do
  sleep 1
  if [ $(( (chaos_end - SECONDS) % 15 )) = 0 ]; then
    say "writer at operation $(cat "$T/writer.seq" 2>/dev/null || echo 0)"
  fi
done
touch "$T/stop"
say "fault phase over; waiting for the writer and the nemesis"
for pid in "${BG[@]}"; do wait "$pid" || error "a background process exited $?"; done
BG=()
say "writer did $(cat "$T/writer.seq" 2>/dev/null || echo 0) operations ($(awk -F'\t' '$7 == "ok"' "$LEDGER" | wc -l) records ok, $(awk -F'\t' '$7 == "skip"' "$LEDGER" | wc -l) skipped, $(awk -F'\t' '$7 == "fail"' "$LEDGER" | wc -l) failed, $(awk -F'\t' '$7 == "orphan"' "$LEDGER" | wc -l) orphaned)"

heal_all
say "every fault healed; waiting up to ${SETTLE}s for convergence"
failures=()
t_settle=$SECONDS
if converge; then
  say "converged in $((SECONDS - t_settle))s"
else
  all_identical || failures+=("(a) the nodes' trees differ after ${SETTLE}s")
  quiet || failures+=("(f) not every agent answers with its peers connected and no job left: $(for ((i = 1; i <= NODES; i++)); do printf 'n%s jobs=%s/%s peers=%s; ' "$i" "$(jq -r .jobs "$T/status.$i" 2>/dev/null)" "$(jobs_of "$i")" "$(jq -c '[.peers[] | select(.connected == true or .state == "connected") | .node_id]' "$T/status.$i" 2>/dev/null)"; done)")
fi
snapshot
out=$(check_contents 2>"$T/check.summary") || failures+=("$out")
say "$(cat "$T/check.summary")"
for ((i = 1; i <= NODES; i++)); do
  if ! "$KJ" --db "$(journal_of "$i")" verify > "$T/verify.$i" 2>&1; then
    failures+=("(d) kraken-journal verify on n$i: $(grep -v 'checked' "$T/verify.$i" | head -n 10 || true)")
  fi
  # Every origin's chain held together through the kills, full disks and
  # lost journals (plaintext: links and digests; there is nothing signed).
  if ! "$KJ" --db "$(journal_of "$i")" verify --chain > "$T/chain.$i" 2>&1; then
    failures+=("(d) kraken-journal verify --chain on n$i: $(grep ' seq ' "$T/chain.$i" | head -n 10 || true)")
  fi
  left=$(cd "$(root_of "$i")" && find . -name '.krakenfs-tmp-*' | head -n 5 || true)
  [ -z "$left" ] || failures+=("(e) temp files left on n$i: $left")
  agent_alive "$(agent_pid "$i")" || failures+=("(f) n$i's agent is not running")
  ! grep -q -E 'AddressSanitizer|runtime error:|LeakSanitizer' "$T/n$i/agent.log" ||
    failures+=("(f) a sanitizer report in n$i's log")
done
[ ! -s "$ERRORS" ] || failures+=("(f) during the run: $(sort -u "$ERRORS" | tr '\n' ';')")

if [ "${#failures[@]}" -gt 0 ]; then
  report_failure
  for f in "${failures[@]}"; do echo "FAIL: $f" >&4; done
  echo "FAIL: seed $SEED (replay: $0 $BIN --seed $SEED --nodes $NODES --faults ${FAULTS:-none} --minutes $MINUTES)" >&4
  exit 1
fi
# Not asserted, but worth a look: how loud each agent was.
for ((i = 1; i <= NODES; i++)); do
  w=$(grep -c -E ' (warn|error) ' "$T/n$i/agent.log" || true)
  [ "$w" -lt 100 ] || say "note: n$i logged $w warnings, mostly: $(grep -E ' (warn|error) ' "$T/n$i/agent.log" | cut -d' ' -f2- | sed 's/[0-9]\{2,\}/N/g' | sort | uniq -c | sort -rn | head -n1 | cut -c1-150 || true)"
done
say "ok: seed $SEED passed: identical trees, nothing lost or resurrected, verify clean, agents quiet ($(elapsed)s in all)"
