# Hosts booted with systemd as PID 1, for the tests of what happens under
# a real service manager: a minimal Debian 12 root made once with
# mmdebstrap and cached, booted with systemd-nspawn on an overlay of it, so
# that every test starts from the same fresh host and leaves the cache as it
# was.  Sourced after lib.sh (T, fail, pass, wait_for).
#
#   ct_root_ensure NAME PACKAGES...   the cached root NAME (made when missing
#                                     or when its package list changed)
#   ct_boot NAME ROOT                 boots host NAME on an overlay of ROOT;
#                                     booting NAME again reuses its overlay,
#                                     so a host keeps its files across a
#                                     poweroff like a disk would
#   ct NAME CMD...                    runs CMD in host NAME as root, with a
#                                     clean environment
#   ct_poweroff NAME                  'systemctl poweroff', then waits for it
#
# The cache is KRAKENFS_NSPAWN_CACHE, by default the directory "nspawn"
# beside the binaries' directory (build/nspawn for build/bin);
# tools/test.sh points every build at one.  The repository is bound into
# each host at /krakenfs and the binaries under test at /krakenfs-bin, both
# read-only.  Hosts have a private network (loopback only) and a /run of
# their own, empty at every boot, as on a real machine.
#
# Needs mmdebstrap and systemd-nspawn (Debian's mmdebstrap and
# systemd-container, tools/install-deps.sh), root, and Debian's package
# mirror the first time.  The caller must run in a mount namespace of its
# own, so that no overlay outlives it; its first line does that:
#
#   [ -n "${KRAKENFS_CT_NS:-}" ] ||
#     KRAKENFS_CT_NS=1 exec unshare --mount --propagation private bash "$0" "$@"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CT_CACHE=${KRAKENFS_NSPAWN_CACHE:-$(dirname "$BIN")/nspawn}
CT_SUITE=bookworm
declare -A CT_NSPAWN=() CT_LEADER=() CT_MACHINE=()

ct_check_tools() {
  local t
  [ -n "${KRAKENFS_CT_NS:-}" ] || fail "nspawn_lib.sh: run the test in a private mount namespace (see its header)"
  for t in mmdebstrap systemd-nspawn nsenter; do
    command -v "$t" >/dev/null ||
      fail "$t not found: install Debian's mmdebstrap and systemd-container (tools/install-deps.sh)"
  done
  # nspawn keeps per-machine state under /run/systemd/nspawn; a tmpfs of
  # this namespace's own keeps the host's /run clean.
  mkdir -p /run/systemd/nspawn
  mount -t tmpfs -o mode=0755 krakenfs-test /run/systemd/nspawn ||
    fail "cannot mount a tmpfs on /run/systemd/nspawn"
}

ct_root_ensure() {
  local name=$1; shift
  local root=$CT_CACHE/$name want
  want="$CT_SUITE minbase $*"
  mkdir -p "$CT_CACHE"
  (
    flock 9
    if [ -f "$root.stamp" ] && [ "$(cat "$root.stamp")" = "$want" ] && [ -x "$root/sbin/init" ]; then
      exit 0
    fi
    echo "building the Debian 12 root '$name' in $root (once; about 20 s)"
    rm -rf "$root" "$root.new" "$root.stamp"
    mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "$*")" \
      "$CT_SUITE" "$root.new" >"$CT_CACHE/$name.log" 2>&1 || {
      tail -n 20 "$CT_CACHE/$name.log" >&2
      exit 1
    }
    mv "$root.new" "$root"
    echo "$want" > "$root.stamp"
  ) 9>"$CT_CACHE/.lock" || fail "mmdebstrap could not build the root '$name' (log: $CT_CACHE/$name.log)"
  CT_ROOT=$root
}

ct_boot() {
  local name=$1 lower=$2 dir=$T/ct-$1 pid leader="" i
  mkdir -p "$dir/upper" "$dir/work" "$dir/root"
  if ! mountpoint -q "$dir/root"; then
    mount -t overlay "krakenfs-$name" \
      -o "lowerdir=$lower,upperdir=$dir/upper,workdir=$dir/work" "$dir/root" ||
      fail "cannot mount an overlay of $lower"
  fi
  CT_MACHINE[$name]=${CT_MACHINE[$name]:-kfs-$name-$$}
  # --register=no --keep-unit: no machined or scope, since the host that
  # runs the tests need not run systemd itself.
  systemd-nspawn --boot --directory="$dir/root" --machine="${CT_MACHINE[$name]}" \
    --private-network --capability=all --register=no --keep-unit \
    --console=passive --bind-ro="$REPO:/krakenfs" --bind-ro="$BIN:/krakenfs-bin" \
    >>"$T/$name.boot.log" 2>&1 &
  pid=$!
  CT_NSPAWN[$name]=$pid
  for ((i = 0; i < 200; i++)); do
    leader=$(pgrep -P "$pid" 2>/dev/null | head -n 1 || true)
    [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ] && break
    kill -0 "$pid" 2>/dev/null || fail "systemd-nspawn exited while booting $name (log: $T/$name.boot.log)"
    leader=""
    sleep 0.05
  done
  [ -n "$leader" ] || fail "host $name: no systemd started within 10 s"
  CT_LEADER[$name]=$leader
  # systemctl fails at once until PID 1 listens on its private socket.
  local state="" deadline=$((SECONDS + 120))
  while [ "$SECONDS" -lt "$deadline" ]; do
    state=$(timeout $((deadline - SECONDS + 1)) nsenter -t "$leader" -a \
              systemctl is-system-running --wait 2>/dev/null || true)
    case "$state" in running|degraded|maintenance|stopping) break ;; esac
    kill -0 "$pid" 2>/dev/null || fail "host $name stopped while booting (log: $T/$name.boot.log)"
    sleep 0.1
  done
  case "$state" in
    running) ;;
    degraded) echo "host $name booted degraded: $(ct "$name" systemctl --failed --plain --no-legend | tr '\n' ' ')" ;;
    *) fail "host $name did not finish booting within 120 s (state '$state')" ;;
  esac
}

ct() {
  local name=$1; shift
  nsenter -t "${CT_LEADER[$name]}" -a \
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 SYSTEMD_PAGER= "$@"
}

# ct_wait SECONDS NAME CMD...: polls until CMD succeeds in host NAME.
ct_wait() {
  local limit=$1 name=$2; shift 2
  local deadline=$((SECONDS + limit))
  until ct "$name" "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

ct_poweroff() {
  local name=$1 pid=${CT_NSPAWN[$1]}
  ct "$name" systemctl poweroff >/dev/null 2>&1 || true
  wait_for 90 bash -c "! kill -0 $pid" || fail "host $name did not power off within 90 s"
  wait "$pid" 2>/dev/null || true
  unset "CT_NSPAWN[$name]"
}

# Stops whatever is still booted (SIGTERM asks nspawn for a clean shutdown)
# and removes the overlays; lib.sh's cleanup follows.
ct_cleanup() {
  local name pid
  for name in "${!CT_NSPAWN[@]}"; do
    pid=${CT_NSPAWN[$name]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  for name in "$T"/ct-*/root; do
    mountpoint -q "$name" && umount -l "$name"
  done
  cleanup
}
trap ct_cleanup EXIT
