#!/usr/bin/env bash
# The seed guide's Step 2 against a real dockerd: a private Docker daemon
# ("vm1") finds the agent n1 as the volume plugin krakenfs, one container
# writes into a krakenfs volume and another reads it back, the volume's
# inspect carries the plugin's replication Status, the file reaches the
# second agent n2, and a volume made on n2 shows in vm1's `docker volume ls`.
#
# Then an Unmount is lost (n1 killed while a container using a volume
# stops) and the volume can still be removed once n1 is back: the stale
# mount reference is reconciled with the mounts that really exist.
#
# The agent is a legacy plugin here: the directory of its socket is
# bind-mounted into the private dockerd's /run/docker/plugins (docker_lib.sh
# says why and how the daemon is isolated and cleaned up).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/docker_lib.sh"

PORT=17911
NODES=n1:127.0.0.1,n2:127.0.0.2

docker_tools

# 1. Two agents.
for i in 1 2; do
  mkdir -p "$T/n$i/volumes"
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$T/n$i/volumes" "$T/n$i/journal.db"
done
mkdir -p "$T/n1-plugin"
sed -i "s|socket: \"$T/n1.sock\"|socket: \"$T/n1-plugin/krakenfs.sock\"|" "$T/n1.yaml"
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
wait_for 60 grep -q "peer n2 connected" "$T/n1.log" || fail "peers did not connect"
[ -S "$T/n1-plugin/krakenfs.sock" ] || fail "agent n1 has no plugin socket $T/n1-plugin/krakenfs.sock"
pass "agents n1 and n2 are up and connected"

# 2. vm1's dockerd, with n1's socket as its plugin krakenfs.
docker_start "$T/n1-plugin"

# 3. A tiny image from busybox-static.
docker_image

# 4. The seed guide's Step 2.
docker_step2 my-shared-volume
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

# 8. A lost Unmount.  A container holds from-vm2; n1 dies; the container
# stops while n1 is down, so its Unmount never arrives; n1 comes back.
d run -d --name holder --network none -v from-vm2:/data kraken-test:busybox sleep 600 >/dev/null ||
  fail "the holding container did not start"
mounted_at=$SECONDS
kill -9 "$PID_n1"
wait "$PID_n1" 2>/dev/null || true
d rm -f holder >/dev/null 2>&1 || true
d ps -a --format '{{.Names}}' | grep -qx holder && fail "the holding container was not removed"
start_agent n1 "$T/n1.yaml"
# The reference is trusted for 10 s after its Mount (Docker mounts after
# Mount answers), then dropped because nothing mounts the directory.
wait_for 40 d volume rm from-vm2 || fail "docker volume rm from-vm2 after a lost Unmount: $(d volume rm from-vm2 2>&1)"
# Docker retries the lost Unmount for about 15 s before giving up, so the
# reference is usually past its grace when n1 starts: then the start-up
# reconciliation drops it, else Remove does.
grep -Eq "dropped 1 mount reference of (from-vm2|any volume) that no container holds" "$T/n1.log" ||
  fail "the stale reference was not reported"
pass "after a lost Unmount the volume is removed once n1 is back ($((SECONDS - mounted_at)) s after its Mount)"

# 9. Remove the volume through docker (the cleanup stops everything).
d volume rm my-shared-volume >/dev/null || fail "docker volume rm failed"
d volume ls --format '{{.Name}}' | grep -qx my-shared-volume &&
  fail "my-shared-volume still listed after docker volume rm"
pass "docker volume rm"
