#!/usr/bin/env bash
# End to end: the seed guide's walkthrough on three simulated VMs.
#
#   tests/e2e/three_vms.sh BIN_DIR        (as root; tools/test.sh runs it)
#   KEEP_LOGS=DIR                          copy every log there at the end
#
# Why: the unit and integration tests run agents side by side on one
# loopback; only separate hosts show that tools/deploy.sh really sets up a
# node from nothing with its defaults (/etc/krakenfs, /var/lib/krakenfs,
# /usr/local, /run), that the cluster secret handed from the first node is
# all the others need, and that Docker on each host uses the driver while
# links go down and agents die.
#
# Each VM is a network namespace (krfs-e2e-<pid>-vmN, address 10.231.0.1N on
# a bridge in a namespace of its own, so nothing of the host's network is
# touched) plus a private mount namespace held by one long-lived process:
# a tmpfs on /run, overlays on /etc, /var/lib and /var/log (so the VM can
# create /etc/krakenfs, /etc/sysctl.d/... without touching the host's), and
# bind mounts of per-VM directories on /etc/krakenfs, /var/lib/krakenfs,
# /var/log/krakenfs and /usr/local.  Commands run in a VM through
# `nsenter --target HOLDER --mount --net` (never `ip netns exec`, which
# remounts /sys).  Each VM runs its own dockerd on /run/docker.sock with its
# own data and exec roots.
#
# deploy.sh runs in each VM with NODE_ID and CLUSTER_NODES only, plus
# KRAKENFS_BIN_DIR (the binaries under test instead of a rebuild) and
# KRAKENFS_MIN_INOTIFY_WATCHES set to the host's current value: the inotify
# limit is a kernel-wide setting, and a test must not change the host's.
#
# Scenario: deploy vm1 (creates the CA), vm2 (CLUSTER_SECRET_FILE), vm3
# (CLUSTER_SECRET); a second deploy changes nothing; Step 2 of the guide
# (volume create, a container on vm1 writes, containers on vm2 and vm3
# read); vm2's link down while vm3 writes, then vm2 converges; vm1 and vm3
# write the same file during a partition and end identical with one conflict
# copy; vm2's agent is killed with SIGKILL in the middle of a 200 MiB
# transfer, restarted by deploy.sh, and converges; deploy.sh --uninstall
# keeps the data.  Cleanup (trap) removes every namespace, veth, mount and
# process, whatever happened.  Anything missing fails the test.
set -euo pipefail

case "${1:-}" in
  -h|--help) sed -n '2,41p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") echo "usage: $0 BIN_DIR (try --help)" >&2; exit 2 ;;
esac
BIN=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TAG=$(($$ % 100000))
PFX=krfs-e2e-$TAG            # namespace names
IFX=kf$TAG                   # interface names in the switch (<= 15 chars)
NET=10.231.0                 # 10.231.0.11 is vm1, .12 vm2, ...
IMAGE=krfs-e2e:busybox
T=$(mktemp -d /tmp/krfs-e2e-XXXXXX)
T0=$SECONDS
VMS=()                       # numbers of the VMs made so far
declare -A HOLDER MNTNS
NETNS=()

# The test's own stdout and stderr: a trap can fire inside a function whose
# output is redirected to /dev/null, and the cleanup must still be heard.
exec 3>&1 4>&2
log() { printf '[%4ss] %s\n' "$((SECONDS - T0))" "$*" >&3; }
pass() { log "ok: $*"; }

dump_logs() {
  local i f
  for i in "${VMS[@]}"; do
    for f in "$T/vm$i/log/agent.log" "$T/vm$i/dockerd.log" "$T/vm$i"/deploy*.log; do
      [ -f "$f" ] && { echo "--- $f (last 25 lines)" >&2; tail -n 25 "$f" >&2; }
    done
  done
}

fail() {
  echo "FAIL: $*" >&4
  dump_logs 2>&4
  exit 1
}

# ---- cleanup: every process, mount, namespace and link this test made ---

ns_pids() {  # the pids in VM $1's mount namespace (one find, no fork per pid)
  local ns=${MNTNS[$1]:-} pat
  [ -n "$ns" ] || return 0
  pat=${ns//[/\\[}; pat=${pat//]/\\]}
  find /proc/[0-9]*/ns/mnt -maxdepth 0 -lname "$pat" 2>/dev/null | cut -d/ -f3
  return 0
}

cleanup() {
  local rc=$? i pids n left=""
  set +e
  exec 1>&3 2>&4
  trap - EXIT INT TERM
  if [ -n "${KEEP_LOGS:-}" ]; then
    mkdir -p "$KEEP_LOGS"
    for i in "${VMS[@]}"; do
      for f in "$T/vm$i/log/agent.log" "$T/vm$i/dockerd.log" "$T/vm$i"/deploy*.log; do
        [ -f "$f" ] && cp "$f" "$KEEP_LOGS/vm$i-${f##*/}"
      done
    done
  fi
  # dockerd first, gently (it stops its containerd and shims).
  log "cleaning up"
  local t=$SECONDS
  for i in "${VMS[@]}"; do
    pids=$(ns_pids "$i")
    [ -n "$pids" ] || continue
    for p in $pids; do
      [ "$(cat /proc/$p/comm 2>/dev/null)" = dockerd ] && kill -TERM "$p"
    done
  done
  for ((n = 0; n < 150; n++)); do
    pids=""
    for i in "${VMS[@]}"; do
      for p in $(ns_pids "$i"); do
        [ "$(cat /proc/$p/comm 2>/dev/null)" = dockerd ] && pids="$pids $p"
      done
    done
    [ -z "$pids" ] && break
    sleep 0.2
  done
  log "dockerd stopped in $((SECONDS - t)) s"; t=$SECONDS
  # Then everything else in each VM (agent, containerd, holder): TERM, KILL.
  for i in "${VMS[@]}"; do
    pids=$(ns_pids "$i")
    [ -n "$pids" ] && kill -TERM $pids 2>/dev/null
  done
  for ((n = 0; n < 50; n++)); do
    pids=""
    for i in "${VMS[@]}"; do pids="$pids$(ns_pids "$i")"; done
    [ -z "$pids" ] && break
    sleep 0.2
  done
  for i in "${VMS[@]}"; do
    pids=$(ns_pids "$i")
    [ -n "$pids" ] || continue
    log "vm$i: still running after SIGTERM, killing: $(for p in $pids; do printf '%s(%s) ' "$(cat /proc/$p/comm 2>/dev/null)" "$p"; done)"
    kill -KILL $pids 2>/dev/null
  done
  log "VM processes stopped in $((SECONDS - t)) s"; t=$SECONDS
  sleep 0.3
  wait 2>/dev/null
  for i in "${VMS[@]}"; do
    pids=$(ns_pids "$i")
    [ -n "$pids" ] && left="$left vm$i:$(echo $pids)"
  done
  # The namespaces: deleting one destroys its end of each veth pair, and
  # with it the pair.
  for n in "${NETNS[@]}"; do
    ip netns del "$n" 2>/dev/null
  done
  ip netns list 2>/dev/null | grep -q "^$PFX-" && left="$left netns:$(ip netns list | grep "^$PFX-" | tr '\n' ' ')"
  ip -br link 2>/dev/null | grep -q "^$IFX" && left="$left links:$(ip -br link | grep "^$IFX" | awk '{print $1}')"
  log "namespaces removed in $((SECONDS - t)) s"
  # Mounts live in the VMs' namespaces, which died with their processes;
  # never let rm -rf walk into a mount in ours.
  if findmnt -rn -o TARGET | grep -q "^$T/"; then
    left="$left mounts:$(findmnt -rn -o TARGET | grep "^$T/" | tr '\n' ' ')"
    findmnt -rn -o TARGET | grep "^$T/" | sort -r | xargs -r -n1 umount -l
  fi
  if [ -n "$left" ]; then
    echo "FAIL: the cleanup left:$left" >&2
    rc=1
  else
    rm -rf "$T"
  fi
  [ -z "$left" ] && log "cleaned up: no namespace, link, mount or process left (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- prerequisites: missing is a failure, never a skip ------------------

[ "$(id -u)" -eq 0 ] || fail "must run as root (namespaces, dockerd)"
for c in ip nsenter unshare setsid tc ss jq sha256sum findmnt base64 openssl; do
  command -v "$c" >/dev/null || fail "$c not found: run tools/install-deps.sh"
done
DOCKERD=$(command -v dockerd) || fail "dockerd not found: install Debian's docker.io (tools/install-deps.sh)"
# The client that comes with that dockerd (the VMs hide /usr/local).
DOCKER_CLI=
for c in "$(dirname "$(readlink -f "$DOCKERD")")/../bin/docker" /usr/bin/docker; do
  [ -x "$c" ] && { DOCKER_CLI=$(readlink -f "$c"); break; }
done
[ -n "$DOCKER_CLI" ] || fail "docker client not found: install Debian's docker.io"
case "$DOCKER_CLI" in /usr/local/*) fail "the docker client $DOCKER_CLI is under /usr/local, which each VM replaces" ;; esac
[ -x /bin/busybox ] || fail "/bin/busybox not found: install busybox-static"
readelf -l /bin/busybox 2>/dev/null | grep -q INTERP &&
  fail "/bin/busybox is dynamically linked: install busybox-static"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
  fail "overlayfs is not available (needed for the VMs' private /etc)"
[ -x "$BIN/krakenfs-agent" ] && [ -x "$BIN/kraken-journal" ] ||
  fail "no krakenfs-agent and kraken-journal in $BIN"
[ -x "$ROOT/tools/deploy.sh" ] || fail "no $ROOT/tools/deploy.sh"
# The test's addresses must not exist anywhere on this host.
ip -4 addr | grep -q " $NET\." && fail "$NET.0/24 is in use on this host; the test needs it to itself"
ip netns list 2>/dev/null | grep -q "^$PFX-" && fail "namespaces $PFX-* exist already"
WATCHES=$(cat /proc/sys/fs/inotify/max_user_watches)
export DOCKER_CONFIG=$T/docker-cli
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
mkdir -p "$DOCKER_CONFIG"

# ---- the simulated VMs ---------------------------------------------------

nsx() { local n=$1; shift; nsenter --net="/run/netns/$n" -- "$@"; }   # a netns only
vm() { local i=$1; shift; nsenter --target "${HOLDER[$i]}" --mount --net -- "$@"; }
d() { local i=$1; shift; vm "$i" timeout 120 "$DOCKER_CLI" "$@"; }      # docker in VM i
vol() { echo "$T/vm$1/state/volumes/my-shared-volume"; }                # seen from the host
cluster_nodes() {  # cluster_nodes N: vm1..vmN
  local i out=""
  for ((i = 1; i <= $1; i++)); do out="$out${out:+,}vm$i:$NET.1$i"; done
  echo "$out"
}

make_switch() {
  ip netns add "$PFX-sw"
  NETNS+=("$PFX-sw")
  nsx "$PFX-sw" ip link set lo up
  nsx "$PFX-sw" ip link add name br0 type bridge
  nsx "$PFX-sw" ip link set br0 up
}

# make_vm I: network namespace, veth to the switch, mount namespace holder.
make_vm() {
  local i=$1 V=$T/vm$1 n
  ip netns add "$PFX-vm$i"
  NETNS+=("$PFX-vm$i")
  VMS+=("$i")
  nsx "$PFX-sw" ip link add name "${IFX}s$i" type veth peer name eth0 netns "$PFX-vm$i"
  nsx "$PFX-sw" ip link set "${IFX}s$i" master br0 up
  nsx "$PFX-vm$i" ip link set lo up
  nsx "$PFX-vm$i" ip addr add "$NET.1$i/24" dev eth0
  nsx "$PFX-vm$i" ip link set eth0 up
  mkdir -p "$V"/{etc.up,etc.wk,varlib.up,varlib.wk,varlog.up,varlog.wk} \
           "$V"/{etc-krakenfs,state,log,prefix,docker}
  echo '{}' > "$V/daemon.json"
  # The holder: sets up the mounts, then sleeps; its namespaces are the VM.
  nsenter --net="/run/netns/$PFX-vm$i" -- \
    unshare --mount --propagation private -- bash -c '
      set -e
      V=$1
      mount -t tmpfs -o mode=755 krfs-e2e-run /run
      for d in etc var/lib var/log; do
        u=${d//\//}
        mount -t overlay "krfs-e2e-$u" -o "lowerdir=/$d,upperdir=$V/$u.up,workdir=$V/$u.wk" "/$d"
      done
      mkdir -p /etc/krakenfs /var/lib/krakenfs /var/log/krakenfs
      mount --bind "$V/etc-krakenfs" /etc/krakenfs
      mount --bind "$V/state" /var/lib/krakenfs
      mount --bind "$V/log" /var/log/krakenfs
      mount --bind "$V/prefix" /usr/local
      : > "$V/holder.ready"
      exec sleep infinity' holder "$V" </dev/null >"$V/holder.log" 2>&1 &
  HOLDER[$i]=$!
  for ((n = 0; n < 200; n++)); do
    [ -f "$V/holder.ready" ] && break
    kill -0 "${HOLDER[$i]}" 2>/dev/null || fail "vm$i: the namespace holder died: $(cat "$V/holder.log")"
    sleep 0.05
  done
  [ -f "$V/holder.ready" ] || fail "vm$i: the namespace holder did not get ready"
  MNTNS[$i]=$(readlink "/proc/${HOLDER[$i]}/ns/mnt")
  [ "${MNTNS[$i]}" != "$(readlink /proc/$$/ns/mnt)" ] || fail "vm$i has no mount namespace of its own"
  [ "$(readlink "/proc/${HOLDER[$i]}/ns/net")" != "$(readlink /proc/$$/ns/net)" ] ||
    fail "vm$i has no network namespace of its own"
  vm "$i" test ! -e /usr/local/bin/krakenfs-agent || fail "vm$i: /usr/local is not private"
}

start_dockerd() {
  local i=$1 V=$T/vm$1
  vm "$i" setsid "$DOCKERD" --config-file "$V/daemon.json" \
    --data-root "$V/docker" --exec-root /run/docker \
    -H unix:///run/docker.sock --pidfile /run/docker.pid \
    --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
    --storage-driver=vfs </dev/null >"$V/dockerd.log" 2>&1 &
}

wait_dockerd() {
  local i=$1 deadline=$((SECONDS + 90))
  until d "$i" info >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "vm$i: dockerd did not answer within 90 s"
    sleep 0.3
  done
  d "$i" info --format '{{.Driver}}' | grep -qx vfs || fail "vm$i: dockerd does not use vfs"
}

# deploy I LOGNAME [ENV=VALUE...]: tools/deploy.sh inside VM I.
deploy() {
  local i=$1 name=$2; shift 2
  vm "$i" env "$@" KRAKENFS_BIN_DIR="$BIN" KRAKENFS_MIN_INOTIFY_WATCHES="$WATCHES" \
    KRAKENFS_START_TIMEOUT=60 "$ROOT/tools/deploy.sh" >"$T/vm$i/$name.log" 2>&1 ||
    fail "vm$i: deploy.sh failed (log $name.log, below)"
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND, fails naming WHAT.
wait_until() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what: not within $limit s"
    sleep 0.3
  done
}

peers_connected() {  # peers_connected I N: VM I sees N peers connected
  local n
  n=$(vm "$1" /usr/local/bin/kraken-journal --json status |
      jq '[.peers[] | select(.connected == true or .state == "connected")] | length')
  [ "$n" -eq "$2" ]
}

has_line() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

read_in_container() {  # read_in_container I FILE WANT
  local out
  out=$(d "$1" run --rm --network none -v my-shared-volume:/data "$IMAGE" cat "/data/$2" 2>/dev/null) || return 1
  [ "$out" = "$3" ]
}

# A manifest of a volume root: every name, type, mode and content hash.
manifest() {
  (cd "$T/vm$1/state/volumes" &&
   find . -name '.krakenfs-*' -prune -o -printf '%y %m %p\n' | sort &&
   find . -name '.krakenfs-*' -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

all_identical() {  # all_identical N: vm1..vmN hold the same trees
  local i ref
  ref=$(manifest 1)
  for ((i = 2; i <= $1; i++)); do
    [ "$(manifest "$i")" = "$ref" ] || return 1
  done
}

link() {  # link I up|down: VM I's only network link
  vm "$1" ip link set eth0 "$2"
}

agent_pid() { cat "/proc/${HOLDER[$1]}/root/run/krakenfs/agent.pid"; }

# ---- 1. three VMs, each with its own dockerd ----------------------------

log "making vm1..vm3 ($PFX-*, $NET.11-13) in $T"
make_switch
for i in 1 2 3; do make_vm "$i"; done
for i in 1 2 3; do start_dockerd "$i"; done
for i in 1 2 3; do wait_dockerd "$i"; done
pass "three VMs up, each with a network and mount namespace and dockerd $("$DOCKERD" --version | awk '{print $3}' | tr -d ,)"

# A tiny image: busybox-static imported on vm1, copied to the others.
mkdir -p "$T/rootfs/bin" "$T/rootfs/data" "$T/rootfs/tmp" "$T/rootfs/dev"
cp /bin/busybox "$T/rootfs/bin/busybox"
for a in sh cat echo ls dd sha256sum sleep; do ln -s busybox "$T/rootfs/bin/$a"; done
tar -C "$T/rootfs" -c . | d 1 import - "$IMAGE" >/dev/null || fail "docker import on vm1 failed"
for i in 2 3; do
  d 1 save "$IMAGE" | d "$i" load >/dev/null || fail "docker save | docker load into vm$i failed"
done
pass "image $IMAGE on all three daemons (import, save | load)"

# ---- 2. deploy.sh on each VM -------------------------------------------

CN=$(cluster_nodes 3)
t=$SECONDS
deploy 1 deploy1 NODE_ID=vm1 CLUSTER_NODES="$CN"
grep -q "created the cluster CA" "$T/vm1/deploy1.log" || fail "vm1: deploy.sh did not create the cluster CA"
grep -q "docker: running; no restart needed" "$T/vm1/deploy1.log" || fail "vm1: deploy.sh did not report docker"
grep -q "systemd is not PID 1" "$T/vm1/deploy1.log" || fail "vm1: deploy.sh did not say how it runs the agent"
SECRET=$T/vm1/etc-krakenfs/tls/cluster-secret.pem
[ "$(stat -c %a "$SECRET")" = 600 ] || fail "the cluster secret is not mode 0600"
[ "$(stat -c %a "$T/vm1/etc-krakenfs/api-token")" = 600 ] || fail "the API token is not mode 0600"
[ "$(stat -c %a "$T/vm1/etc-krakenfs/tls/node-key.pem")" = 600 ] || fail "the node key is not mode 0600"
install -m 0600 "$SECRET" "$T/vm2/cluster-secret.pem"
deploy 2 deploy1 NODE_ID=vm2 CLUSTER_NODES="$CN" CLUSTER_SECRET_FILE="$T/vm2/cluster-secret.pem"
deploy 3 deploy1 NODE_ID=vm3 CLUSTER_NODES="$CN" CLUSTER_SECRET="$(base64 -w0 "$SECRET")"
for i in 2 3; do
  grep -q "issued the node certificate for vm$i" "$T/vm$i/deploy1.log" ||
    fail "vm$i: deploy.sh did not issue its certificate from the secret"
  [ ! -e "$T/vm$i/etc-krakenfs/tls/ca-key.pem" ] || fail "vm$i keeps the CA key"
  grep -q 'enable: true' "$T/vm$i/etc-krakenfs/config.yaml" || fail "vm$i: TLS is not enabled"
done
for i in 1 2 3; do
  vm "$i" test -x /usr/local/bin/krakenfs-agent || fail "vm$i: no /usr/local/bin/krakenfs-agent"
  vm "$i" test -S /run/docker/plugins/krakenfs.sock || fail "vm$i: no plugin socket"
  grep -q "^node: *vm$i" "$T/vm$i/deploy1.log" || fail "vm$i: deploy.sh did not end with the node's status"
done
pass "deploy.sh set up vm1 (CA), vm2 (secret file), vm3 (secret as base64) in $((SECONDS - t)) s"
t=$SECONDS
for i in 1 2 3; do wait_until 60 "vm$i: both peers connected over TLS" peers_connected "$i" 2; done
pass "every agent has both peers connected (mutual TLS) after $((SECONDS - t)) s"

deploy 1 deploy2 NODE_ID=vm1 CLUSTER_NODES="$CN"
grep -q "nothing changed (unchanged)" "$T/vm1/deploy2.log" || fail "a second deploy.sh on vm1 changed something"
pass "a second deploy.sh changes nothing"

# ---- 3. the guide's Step 2 ----------------------------------------------

t=$SECONDS
d 1 volume create --driver krakenfs my-shared-volume >/dev/null || fail "docker volume create --driver krakenfs failed"
d 1 run --rm --network none -v my-shared-volume:/data "$IMAGE" \
  sh -c "echo 'Hello from VM1' > /data/test.txt" || fail "the writing container on vm1 failed"
for i in 2 3; do
  wait_until 60 "a container on vm$i reads 'Hello from VM1'" read_in_container "$i" test.txt "Hello from VM1"
done
pass "Step 2: written in a container on vm1, read in containers on vm2 and vm3 ($((SECONDS - t)) s)"

# ---- 4. vm2's link down while vm3 writes -------------------------------

t=$SECONDS
link 2 down
d 3 run --rm --network none -v my-shared-volume:/data "$IMAGE" \
  sh -c "echo 'vm3 wrote this while vm2 was away' > /data/partition.txt" ||
  fail "the writing container on vm3 failed"
wait_until 30 "partition.txt reaches vm1" has_line "$(vol 1)/partition.txt" "vm3 wrote this while vm2 was away"
sleep 1
[ ! -e "$(vol 2)/partition.txt" ] || fail "partition.txt reached vm2 although its link was down"
link 2 up
wait_until 120 "vm2 converges after its link is back" has_line "$(vol 2)/partition.txt" "vm3 wrote this while vm2 was away"
read_in_container 2 partition.txt "vm3 wrote this while vm2 was away" || fail "a container on vm2 does not read partition.txt"
pass "vm3 wrote while vm2's link was down; vm2 converged $((SECONDS - t)) s later"

# ---- 5. concurrent writes on vm1 and vm3 during a partition -------------

t=$SECONDS
d 1 run --rm --network none -v my-shared-volume:/data "$IMAGE" \
  sh -c "echo base > /data/shared.txt" || fail "writing shared.txt on vm1 failed"
for i in 2 3; do wait_until 60 "shared.txt reaches vm$i" has_line "$(vol "$i")/shared.txt" base; done
link 3 down
d 1 run --rm --network none -v my-shared-volume:/data "$IMAGE" \
  sh -c "echo 'vm1 version' > /data/shared.txt" &
w1=$!
d 3 run --rm --network none -v my-shared-volume:/data "$IMAGE" \
  sh -c "echo 'vm3 version' > /data/shared.txt" &
w3=$!
wait "$w1" || fail "the writing container on vm1 failed"
wait "$w3" || fail "the writing container on vm3 failed"
# Five rounds of writes to the same 21 files on both sides: after the
# heal each file has one copy, of the losing side's last version.
mkdir -p "$(vol 1)/rounds" "$(vol 3)/rounds"
for r in 1 2 3 4 5; do
  for f in $(seq -w 1 21); do
    echo "vm1 round $r" > "$(vol 1)/rounds/f$f.txt"
    echo "vm3 round $r" > "$(vol 3)/rounds/f$f.txt"
  done
  sleep 0.5
done
wait_until 30 "vm1's version reaches vm2" has_line "$(vol 2)/shared.txt" "vm1 version"
has_line "$(vol 3)/shared.txt" "vm3 version" || fail "vm3's own write is gone during the partition"
link 3 up
one_conflict() {
  all_identical 3 || return 1
  local copies
  copies=$(find "$(vol 1)" -maxdepth 1 -name 'shared.conflict-*.txt' | wc -l)
  [ "$copies" -eq 1 ] || return 1
  copies=$(find "$(vol 1)/rounds" -name '*.conflict-*' | wc -l)
  [ "$copies" -eq 21 ]
}
# Said before failing: where the trees differ, and what each agent lacks.
show_divergence() {
  local i
  for i in 1 2 3; do
    echo "vm$i: $(find "$(vol "$i")" -name '*.conflict-*' | wc -l) conflict copies;" \
      "peers: $(vm "$i" /usr/local/bin/kraken-journal --json status |
        jq -c '[.peers[] | {node_id, lag_entries, connected}]')"
    [ "$i" = 1 ] || diff <(manifest 1) <(manifest "$i") | head -n 20
  done
  # Which paths hold other than one copy, and what each copy holds.
  (cd "$(vol 1)" && find . -name '*.conflict-*' | sed 's/\.conflict-[^.]*//' |
     sort | uniq -c | awk '$1 != 1' && find . -name '*.conflict-*' -exec grep -H . {} + | sort | head -n 60)
}
one_conflict_or_say() {
  local deadline=$((SECONDS + $1))
  until one_conflict >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      show_divergence >&4 2>&1
      fail "vm1..vm3 identical with one conflict copy per file: not within $1 s"
    fi
    sleep 0.3
  done
}
one_conflict_or_say 120
for f in "$(vol 1)"/rounds/*.conflict-*; do
  grep -qx "vm[13] round 5" "$f" || fail "conflict copy ${f##*/} holds an intermediate version: $(cat "$f")"
done
copy=$(find "$(vol 1)" -maxdepth 1 -name 'shared.conflict-*.txt')
[[ ${copy##*/} =~ ^shared\.conflict-vm[13]-[0-9]+\.txt$ ]] || fail "conflict copy name ${copy##*/}"
got=$(sort <(cat "$(vol 1)/shared.txt") <(cat "$copy") | tr '\n' '|')
[ "$got" = "vm1 version|vm3 version|" ] || fail "the two versions are not both kept: $got"
pass "concurrent writes on vm1 and vm3: identical on all three, winner in shared.txt, loser in ${copy##*/}; 5 rounds on 21 files, one copy each ($((SECONDS - t)) s)"

# ---- 6. SIGKILL in the middle of a 200 MiB transfer --------------------

t=$SECONDS
# Slow the switch's port towards vm2 (about 25 MB/s), so that the transfer
# takes seconds and the kill lands in its middle.
nsx "$PFX-sw" tc qdisc add dev "${IFX}s2" root tbf rate 200mbit burst 256kb latency 200ms
d 1 run --rm --network none -v my-shared-volume:/data "$IMAGE" \
  sh -c "dd if=/dev/urandom of=/data/big.bin bs=1M count=200 2>/dev/null" ||
  fail "writing big.bin on vm1 failed"
want=$(sha256sum < "$(vol 1)/big.bin" | awk '{print $1}')
transferring() {  # vm2 has a temp file with 20+ MiB in it
  local f
  for f in "$(vol 2)"/.krakenfs-tmp-*; do
    [ -f "$f" ] && [ "$(stat -c %b "$f")" -ge 40960 ] && return 0
  done
  return 1
}
wait_until 90 "vm2 receives big.bin" transferring
pid=$(agent_pid 2)
kill -9 "$pid"
got=$({ sha256sum < "$(vol 2)/big.bin"; } 2>/dev/null | awk '{print $1}' || true)
[ "$got" != "$want" ] || fail "big.bin was complete on vm2 before the kill"
log "killed vm2's agent (pid $pid) with SIGKILL mid-transfer"
nsx "$PFX-sw" tc qdisc del dev "${IFX}s2" root
deploy 2 deploy2 NODE_ID=vm2 CLUSTER_NODES="$CN"
grep -q "stale pid file" "$T/vm2/deploy2.log" || fail "vm2: deploy.sh did not notice the dead agent"
grep -q "agent: started directly" "$T/vm2/deploy2.log" || fail "vm2: deploy.sh did not restart the agent"
[ "$(agent_pid 2)" != "$pid" ] || fail "vm2: the agent's pid did not change"
same_big() { [ "$({ sha256sum < "$(vol 2)/big.bin"; } 2>/dev/null | awk '{print $1}')" = "$want" ]; }
wait_until 180 "vm2 converges on big.bin after the restart" same_big
wait_until 60 "vm1..vm3 identical after the restart" all_identical 3
vm 2 /usr/local/bin/kraken-journal verify >"$T/vm2/verify.log" 2>&1 ||
  fail "kraken-journal verify on vm2: $(cat "$T/vm2/verify.log")"
pass "vm2's agent killed mid-transfer, restarted by deploy.sh: big.bin identical (sha256 ${want:0:16}...) ($((SECONDS - t)) s)"

# ---- 7. a fourth VM joins with SIGHUP on the others ---------------------

# add_fourth_vm: vm4 is deployed with the cluster secret and a CLUSTER_NODES
# listing all four; the others get vm4 in their config (deploy.sh
# --force-config --no-restart rewrites it and leaves the agent running) and
# a SIGHUP to reload it; vm4 catches up with everything.
add_fourth_vm() {
  local t=$SECONDS i CN4 pid
  declare -A before
  CN4=$(cluster_nodes 4)
  make_vm 4
  start_dockerd 4
  wait_dockerd 4
  install -m 0600 "$SECRET" "$T/vm4/cluster-secret.pem"
  deploy 4 deploy1 NODE_ID=vm4 CLUSTER_NODES="$CN4" CLUSTER_SECRET_FILE="$T/vm4/cluster-secret.pem"
  for i in 1 2 3; do
    pid=$(agent_pid "$i")
    vm "$i" env NODE_ID="vm$i" CLUSTER_NODES="$CN4" KRAKENFS_BIN_DIR="$BIN" \
      KRAKENFS_MIN_INOTIFY_WATCHES="$WATCHES" "$ROOT/tools/deploy.sh" --force-config --no-restart \
      >"$T/vm$i/deploy-add.log" 2>&1 || fail "vm$i: deploy.sh --force-config --no-restart failed"
    grep -q "vm4:$NET.14" "$T/vm$i/etc-krakenfs/config.yaml" || fail "vm$i: vm4 is not in the config"
    [ "$(agent_pid "$i")" = "$pid" ] || fail "vm$i: deploy.sh --no-restart restarted the agent"
    before[$i]=$pid
    kill -HUP "$pid"
  done
  for i in 1 2 3 4; do wait_until 60 "vm$i: three peers connected" peers_connected "$i" 3; done
  wait_until 180 "vm4 catches up" all_identical 4
  for i in 1 2 3; do
    kill -0 "${before[$i]}" 2>/dev/null || fail "vm$i: the agent did not survive SIGHUP"
  done
  pass "vm4 joined with SIGHUP on the others and caught up ($((SECONDS - t)) s)"
}
add_fourth_vm

# ---- 8. uninstall keeps the data ---------------------------------------

vm 3 "$ROOT/tools/deploy.sh" --uninstall >"$T/vm3/deploy-uninstall.log" 2>&1 ||
  fail "vm3: deploy.sh --uninstall failed"
vm 3 test ! -e /usr/local/bin/krakenfs-agent || fail "vm3: the binary survived --uninstall"
vm 3 test ! -e /etc/krakenfs/config.yaml || fail "vm3: the config survived --uninstall"
for f in /var/lib/krakenfs/journal.db /var/lib/krakenfs/volumes/my-shared-volume/big.bin \
         /etc/krakenfs/tls/node.pem; do
  vm 3 test -e "$f" || fail "vm3: --uninstall removed $f"
done
[ -z "$(vm 3 sh -c 'cat /run/krakenfs/agent.pid 2>/dev/null')" ] || fail "vm3: pid file left"
pass "deploy.sh --uninstall stopped vm3's agent and kept journal, volumes and credentials"

log "all passed in $((SECONDS - T0)) s"
