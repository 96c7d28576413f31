# A private Docker daemon for integration tests; sourced after lib.sh.
#
# dockerd runs in a private mount namespace with a tmpfs on /run, so it
# neither sees nor disturbs a system dockerd or containerd: it starts its
# own containerd, and its plugin directory /run/docker/plugins holds only
# what the test puts there.  Its data and exec roots live under $T.
# Everything it starts (containerd, shims, containers, managed plugins) is
# killed on exit, whatever the outcome, and the exit fails if any of it
# survives: a test must never leave a daemon behind on a shared machine.
#
# Use:  docker_tools; docker_start [LEGACY_SOCKET]; d ...; docker_image
# Needs root and Debian's docker.io and busybox-static (tools/install-deps.sh).

D=$T/docker1
DSOCK=$T/docker1.sock
DLOG=$T/dockerd1.log
DOCKERD_PID=
DOCKER_NS=
DOCKER_CLI=
TEST_NAME=$(basename "$0" .sh)

# Every process in dockerd's mount namespace (dockerd, its containerd and
# shims) and every descendant of those: containers and managed plugins
# run in mount namespaces of their own, as children of a shim.
docker_pids() {
  local p
  local -a roots=()
  [ -n "$DOCKER_NS" ] || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$DOCKER_NS" ] && roots+=("${p#/proc/}")
  done
  [ "${#roots[@]}" -gt 0 ] || return 0
  ps -e -o pid=,ppid= | awk -v roots="${roots[*]}" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
    { parent[$1] = $2 }
    END {
      do {                        # add children until nothing changes
        grew = 0
        for (p in parent)
          if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grew = 1 }
      } while (grew)
      for (p in keep) print p
    }'
}

# PID:STARTTIME of each pid given, so that a pid reused later is not
# mistaken for a survivor.
proc_ids() {
  local p s
  for p in "$@"; do
    s=$(awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$p/stat" 2>/dev/null) &&
      echo "$p:$s"
  done
  return 0
}

# Those of the PID:STARTTIME ids given that still run.
still_running() {
  local id
  for id in "$@"; do
    [ "$(proc_ids "${id%%:*}")" = "$id" ] && echo "${id%%:*}"
  done
  return 0
}

docker_cleanup() {
  local rc=$? i p pids plugins m f
  local -a seen
  set +e
  # Everything of docker's before anything is killed: a plugin whose shim
  # dies first is re-parented away from the namespace's processes.
  seen=($(proc_ids $(docker_pids)))
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    # Containers first (all are --rm, so normally there are none), then
    # managed plugins, then the daemon: SIGTERM, up to 20 s, then SIGKILL.
    pids=$(timeout 10 "$DOCKER_CLI" -H "unix://$DSOCK" ps -aq 2>/dev/null)
    [ -n "$pids" ] && timeout 20 "$DOCKER_CLI" -H "unix://$DSOCK" rm -f $pids >/dev/null 2>&1
    plugins=$(timeout 10 "$DOCKER_CLI" -H "unix://$DSOCK" plugin ls -q --filter enabled=true 2>/dev/null)
    for p in $plugins; do
      timeout 30 "$DOCKER_CLI" -H "unix://$DSOCK" plugin disable -f "$p" >/dev/null 2>&1
    done
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    for ((i = 0; i < 200; i++)); do
      kill -0 "$DOCKERD_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
      echo "$TEST_NAME: dockerd ignored SIGTERM for 20 s, killing it" >&2
      kill -KILL "$DOCKERD_PID" 2>/dev/null
    fi
  fi
  # Whatever is left (containerd after a SIGKILL, shims, plugins): SIGTERM,
  # a moment, SIGKILL.  The namespace and its mounts go with them.
  pids="$(docker_pids) $(still_running "${seen[@]}")"
  if [ -n "${pids// /}" ]; then
    kill -TERM $pids 2>/dev/null
    for ((i = 0; i < 50; i++)); do
      pids="$(docker_pids) $(still_running "${seen[@]}")"
      [ -z "${pids// /}" ] && break
      sleep 0.1
    done
    [ -n "${pids// /}" ] && kill -KILL $pids 2>/dev/null
    sleep 0.2
  fi
  # Reap our children, then make sure nothing survived.
  wait "$DOCKERD_PID" 2>/dev/null
  pids="$(docker_pids) $(still_running "${seen[@]}")"
  for f in "$D/dockerd.pid" "$D/exec/containerd/containerd.pid"; do
    [ -f "$f" ] && pgrep -F "$f" >/dev/null 2>&1 && pids="$pids $(cat "$f")"
  done
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    pids="$pids $DOCKERD_PID"
  fi
  pids=$(echo $pids)
  if [ -n "$pids" ]; then
    echo "FAIL: docker processes survived the cleanup: $pids" >&2
    ps -o pid,args -p "${pids// /,}" >&2
    kill -KILL $pids 2>/dev/null
    rc=1
  fi
  # Nothing of ours should be mounted in this namespace, but never let
  # rm -rf walk into a mount.
  while read -r m; do
    umount -l "$m" 2>/dev/null
  done < <(findmnt -rn -o TARGET | grep "^$T/" | sort -r)
  # KEEP_LOGS=DIR keeps the agents' and dockerd's logs, configs and
  # journals for a post-mortem.
  if [ -n "${KEEP_LOGS:-}" ]; then
    mkdir -p "$KEEP_LOGS" && cp "$T"/*.log "$T"/*.yaml "$KEEP_LOGS"/ 2>/dev/null
    for f in "$T"/*/journal.db*; do
      [ -f "$f" ] && m=${f%/*} && cp "$f" "$KEEP_LOGS/${m##*/}-${f##*/}"
    done
  fi
  cleanup
  exit "$rc"
}
trap docker_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Finds dockerd and its own client, checks root and busybox-static, and
# gives the client a private config directory.
docker_tools() {
  local c
  [ "$(id -u)" -eq 0 ] || fail "must run as root (dockerd needs it)"
  DOCKERD=$(command -v dockerd) ||
    fail "dockerd not found: install Debian's docker.io (tools/install-deps.sh)"
  # The client that comes with that dockerd, before any other on the PATH.
  for c in "$(dirname "$(readlink -f "$DOCKERD")")/../bin/docker" /usr/bin/docker "$(command -v docker || true)"; do
    [ -n "$c" ] && [ -x "$c" ] && { DOCKER_CLI=$(readlink -f "$c"); break; }
  done
  [ -n "$DOCKER_CLI" ] || fail "docker client not found: install Debian's docker.io"
  [ -x /bin/busybox ] || fail "/bin/busybox not found: install busybox-static"
  if readelf -l /bin/busybox 2>/dev/null | grep -q INTERP; then
    fail "/bin/busybox is dynamically linked: install busybox-static"
  fi
  export DOCKER_CONFIG=$T/docker-cli
  unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
  mkdir -p "$DOCKER_CONFIG"
}

# A bounded docker command against the private daemon.
d() { timeout 60 "$DOCKER_CLI" -H "unix://$DSOCK" "$@"; }

# docker_start [LEGACY_DIR]: starts the private dockerd and waits until
# it answers.  With LEGACY_DIR, its plugin directory holds krakenfs/, a
# bind mount of that directory, where the agent listens on krakenfs.sock.
# (The directory, not the socket: an agent that restarts makes a new
# socket, which a bind mount of the old one would never show.  A bind mount
# straight at /run/docker/plugins/krakenfs.sock is found by name, but the
# directory scan behind `docker volume ls` reads the entry's own type, a
# regular file, and skips it; in a subdirectory it is stat()ed, which sees
# the socket.)
docker_start() {
  local legacy=${1:-} i deadline
  mkdir -p "$D/data" "$D/exec"
  echo '{}' > "$D/daemon.json"
  unshare --mount --propagation private -- sh -c '
    set -e
    mount -t tmpfs -o mode=755 kraken-docker-run /run
    mkdir -p /run/docker/plugins
    if [ -n "$1" ]; then
      mkdir -p /run/docker/plugins/krakenfs
      mount --bind "$1" /run/docker/plugins/krakenfs
    fi
    shift
    exec "$@"' sh "$legacy" \
    "$DOCKERD" --debug \
      --config-file "$D/daemon.json" \
      --data-root "$D/data" --exec-root "$D/exec" \
      -H "unix://$DSOCK" --pidfile "$D/dockerd.pid" \
      --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
      --storage-driver=vfs \
    >"$DLOG" 2>&1 &
  DOCKERD_PID=$!
  # The namespace, to find every process in it at the end.
  for ((i = 0; i < 100; i++)); do
    DOCKER_NS=$(readlink "/proc/$DOCKERD_PID/ns/mnt" 2>/dev/null) || true
    [ -n "$DOCKER_NS" ] && [ "$DOCKER_NS" != "$(readlink /proc/$$/ns/mnt)" ] && break
    DOCKER_NS=
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.05
  done
  deadline=$((SECONDS + 60))
  until d info >/dev/null 2>&1; do
    kill -0 "$DOCKERD_PID" 2>/dev/null || fail "dockerd exited during start-up (see $DLOG above)"
    [ "$SECONDS" -lt "$deadline" ] || fail "dockerd did not answer docker info within 60 s"
    sleep 0.2
  done
  [ -n "$DOCKER_NS" ] || fail "dockerd is not in a mount namespace of its own"
  d info --format '{{.Driver}}' | grep -qx vfs || fail "dockerd does not use vfs"
  pass "private dockerd $("$DOCKERD" --version | awk '{print $3}' | tr -d ,) is up"
}

# docker_image: imports kraken-test:busybox, a tiny image made of
# busybox-static.
docker_image() {
  local a
  mkdir -p "$T/rootfs/bin" "$T/rootfs/data" "$T/rootfs/tmp"
  cp /bin/busybox "$T/rootfs/bin/busybox"
  for a in sh cat echo ls sleep; do ln -s busybox "$T/rootfs/bin/$a"; done
  tar -C "$T/rootfs" -c . | d import - kraken-test:busybox >/dev/null ||
    fail "docker import failed"
  pass "image kraken-test:busybox imported"
}

# docker_step2 VOLUME: the seed guide's Step 2: creates VOLUME with the
# krakenfs driver, one container writes /data/test.txt into it and another
# reads 'Hello from VM1' back.
docker_step2() {
  local vol=$1 out
  d volume create --driver krakenfs "$vol" >/dev/null ||
    fail "docker volume create --driver krakenfs $vol failed"
  d run --rm --network none -v "$vol:/data" kraken-test:busybox \
    sh -c "echo 'Hello from VM1' > /data/test.txt" ||
    fail "the writing container failed"
  out=$(d run --rm --network none -v "$vol:/data" kraken-test:busybox \
    cat /data/test.txt) || fail "the reading container failed"
  [ "$out" = "Hello from VM1" ] || fail "the second container read '$out'"
  pass "one container writes into $vol, another reads 'Hello from VM1'"
}
