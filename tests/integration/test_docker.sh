#!/usr/bin/env bash
# The seed guide's Step 2 against a real dockerd: a private Docker daemon
# ("vm1") finds the agent n1 as the volume plugin krakenfs, one container
# writes into a krakenfs volume and another reads it back, the volume's
# inspect carries the plugin's replication Status, the file reaches the
# second agent n2, and a volume made on n2 shows in vm1's `docker volume ls`.
#
# Needs root and Debian's docker.io and busybox-static (tools/install-deps.sh).
# dockerd runs in a private mount namespace with a tmpfs on /run, so it
# neither sees nor disturbs a system dockerd or containerd: it starts its own
# containerd, and its plugin directory /run/docker/plugins holds only
# krakenfs/krakenfs.sock, a bind mount of n1's plugin socket.  (A bind mount
# straight at /run/docker/plugins/krakenfs.sock is found by name, but the
# directory scan behind `docker volume ls` reads the entry's own type, a
# regular file, and skips it; in a subdirectory it is stat()ed, which sees
# the socket.)  Everything it starts is
# killed on exit, whatever the outcome; no dockerd or containerd survives.
source "$(dirname "$0")/lib.sh"

PORT=17911
NODES=n1:127.0.0.1,n2:127.0.0.2
D=$T/docker1
DSOCK=$T/docker1.sock
DLOG=$T/dockerd1.log
DOCKERD_PID=
DOCKER_NS=

# Every process in dockerd's mount namespace (dockerd, its containerd,
# shims, container processes).
ns_pids() {
  local p
  [ -n "$DOCKER_NS" ] || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$DOCKER_NS" ] && echo "${p#/proc/}"
  done
  return 0
}

docker_cleanup() {
  local rc=$? i pids m
  set +e
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    # Containers first (all are --rm, so normally there are none), then
    # the daemon: SIGTERM, up to 20 s, then SIGKILL.
    pids=$(timeout 10 "$DOCKER_CLI" -H "unix://$DSOCK" ps -aq 2>/dev/null)
    [ -n "$pids" ] && timeout 20 "$DOCKER_CLI" -H "unix://$DSOCK" rm -f $pids >/dev/null 2>&1
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    for ((i = 0; i < 200; i++)); do
      kill -0 "$DOCKERD_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
      echo "test_docker: dockerd ignored SIGTERM for 20 s, killing it" >&2
      kill -KILL "$DOCKERD_PID" 2>/dev/null
    fi
  fi
  # Whatever is left in the namespace (containerd after a SIGKILL, shims):
  # SIGTERM, a moment, SIGKILL.  The namespace and its mounts go with them.
  pids=$(ns_pids)
  if [ -n "$pids" ]; then
    kill -TERM $pids 2>/dev/null
    for ((i = 0; i < 50; i++)); do
      [ -z "$(ns_pids)" ] && break
      sleep 0.1
    done
    pids=$(ns_pids)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    sleep 0.2
  fi
  # Reap our children, then make sure nothing survived.
  wait "$DOCKERD_PID" 2>/dev/null
  pids=$(ns_pids)
  for f in "$D/dockerd.pid" "$D/exec/containerd/containerd.pid"; do
    [ -f "$f" ] && pgrep -F "$f" >/dev/null 2>&1 && pids="$pids $(cat "$f")"
  done
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    pids="$pids $DOCKERD_PID"
  fi
  if [ -n "${pids// /}" ]; then
    echo "FAIL: docker processes survived the cleanup: $pids" >&2
    ps -o pid,args -p ${pids// /,} >&2
    kill -KILL $pids 2>/dev/null
    rc=1
  fi
  # Nothing of ours should be mounted in this namespace, but never let
  # rm -rf walk into a mount.
  while read -r m; do
    umount -l "$m" 2>/dev/null
  done < <(findmnt -rn -o TARGET | grep "^$T/" | sort -r)
  # KEEP_LOGS=DIR keeps the agents' and dockerd's logs for a post-mortem.
  if [ -n "${KEEP_LOGS:-}" ]; then
    mkdir -p "$KEEP_LOGS" && cp "$T"/*.log "$T"/*.yaml "$KEEP_LOGS"/ 2>/dev/null
    for i in 1 2; do
      for f in "$T/n$i"/journal.db*; do
        [ -f "$f" ] && cp "$f" "$KEEP_LOGS/n$i-${f##*/}"
      done
    done
  fi
  cleanup
  exit "$rc"
}
trap docker_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" -eq 0 ] || fail "must run as root (dockerd needs it)"
DOCKERD=$(command -v dockerd) ||
  fail "dockerd not found: install Debian's docker.io (tools/install-deps.sh)"
# The client that comes with that dockerd, before any other on the PATH.
DOCKER_CLI=
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
# A bounded docker command against vm1's daemon.
d() { timeout 60 "$DOCKER_CLI" -H "unix://$DSOCK" "$@"; }

# 1. Two agents.
for i in 1 2; do
  mkdir -p "$T/n$i/volumes"
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$T/n$i/volumes" "$T/n$i/journal.db"
done
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
wait_for 60 grep -q "peer n2 connected" "$T/n1.log" || fail "peers did not connect"
[ -S "$T/n1.sock" ] || fail "agent n1 has no plugin socket $T/n1.sock"
pass "agents n1 and n2 are up and connected"

# 2. vm1's dockerd, in a private mount namespace with a tmpfs on /run: its
# containerd, shim sockets and plugin directory are its own.
mkdir -p "$D/data" "$D/exec"
echo '{}' > "$D/daemon.json"
unshare --mount --propagation private -- sh -c '
  set -e
  mount -t tmpfs -o mode=755 kraken-docker-run /run
  mkdir -p /run/docker/plugins/krakenfs
  : > /run/docker/plugins/krakenfs/krakenfs.sock
  mount --bind "$1" /run/docker/plugins/krakenfs/krakenfs.sock
  shift
  exec "$@"' sh "$T/n1.sock" \
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

# 3. A tiny image from busybox-static.
mkdir -p "$T/rootfs/bin" "$T/rootfs/data" "$T/rootfs/tmp"
cp /bin/busybox "$T/rootfs/bin/busybox"
for a in sh cat echo ls; do ln -s busybox "$T/rootfs/bin/$a"; done
tar -C "$T/rootfs" -c . | d import - kraken-test:busybox >/dev/null ||
  fail "docker import failed"
pass "image kraken-test:busybox imported"

# 4. The seed guide's Step 2.
d volume create --driver krakenfs my-shared-volume >/dev/null ||
  fail "docker volume create --driver krakenfs failed"
d run --rm --network none -v my-shared-volume:/data kraken-test:busybox \
  sh -c "echo 'Hello from VM1' > /data/test.txt" ||
  fail "the writing container failed"
out=$(d run --rm --network none -v my-shared-volume:/data kraken-test:busybox \
  cat /data/test.txt) || fail "the reading container failed"
[ "$out" = "Hello from VM1" ] || fail "the second container read '$out'"
pass "one container writes into my-shared-volume, another reads 'Hello from VM1'"

# 5. Inspect: the driver and the plugin's Status.
d volume inspect my-shared-volume > "$T/inspect.json" || fail "docker volume inspect failed"
jq -e '.[0].Driver == "krakenfs" and .[0].Name == "my-shared-volume"' "$T/inspect.json" >/dev/null ||
  fail "inspect: $(cat "$T/inspect.json")"
jq -e '.[0].Status | type == "object" and .state == "ok" and .peers_total == 1
       and (.peers_in_sync | type == "number") and .on_this_node == true' \
  "$T/inspect.json" >/dev/null || fail "inspect Status: $(cat "$T/inspect.json")"
jq -e '.[0].Mountpoint == "'"$T/n1/volumes/my-shared-volume"'"' "$T/inspect.json" >/dev/null ||
  fail "inspect Mountpoint: $(cat "$T/inspect.json")"
pass "inspect shows Driver krakenfs and the replication Status"

# 6. The file reaches the second agent.
wait_for 30 grep -qx "Hello from VM1" "$T/n2/volumes/my-shared-volume/test.txt" ||
  fail "test.txt did not reach n2"
pass "test.txt reached n2 with its content"

# 7. A volume made on the second node shows in vm1's docker volume ls.
mkdir "$T/n2/volumes/from-vm2"
listed() { d volume ls --format '{{.Driver}} {{.Name}}' | grep -qx "krakenfs $1"; }
wait_for 30 listed from-vm2 || fail "from-vm2 not in vm1's volume ls: $(d volume ls 2>&1)"
listed my-shared-volume || fail "my-shared-volume not in volume ls: $(d volume ls 2>&1)"
pass "a volume made on n2 shows in vm1's docker volume ls"

# 8. Remove the volume through docker (the cleanup stops everything).
d volume rm my-shared-volume >/dev/null || fail "docker volume rm failed"
d volume ls --format '{{.Name}}' | grep -qx my-shared-volume &&
  fail "my-shared-volume still listed after docker volume rm"
pass "docker volume rm"
