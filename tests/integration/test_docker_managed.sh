#!/usr/bin/env bash
# The managed Docker plugin: tools/build-plugin.sh packs the agent of this
# build into a plugin and installs it into a private dockerd ("vm1"); it is
# configured through its mounts (state, config) and `docker plugin set`,
# enabled, and then serves the seed guide's Step 2 like the legacy socket.
# The plugin-run agent n1 replicates: test.txt reaches an ordinary agent n2
# on 127.0.0.2.  Rebuilding is refused while the plugin is enabled and,
# with --force, replaces it keeping its settings and the data, which lives
# in the host's state directory, not in the plugin.
#
# Under the sanitizer build the plugin holds libasan/libubsan (ldd names
# them); the plugin's process does not inherit ASAN_OPTIONS.  docker_lib.sh
# disables the plugin and kills every process of the daemon on exit.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/docker_lib.sh"

PORT=17915
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_PLUGIN=$SRC/tools/build-plugin.sh

docker_tools
[ -x "$BUILD_PLUGIN" ] || fail "$BUILD_PLUGIN is missing or not executable"

# 1. The ordinary agent n2.  n1's state and config directories, on the
# host, for the plugin's mounts: config.yaml sets the addresses and ports,
# node id and cluster come from the plugin's environment below.
mkdir -p "$T/n2/volumes" "$T/n1" "$T/n1-etc"
cluster_config "$T/n2.yaml" n2 127.0.0.2 "$PORT" n1:127.0.0.1,n2:127.0.0.2 \
  "$T/n2/volumes" "$T/n2/journal.db"
start_agent n2 "$T/n2.yaml"
cat > "$T/n1-etc/config.yaml" <<EOF
sync:
  listen_address: "127.0.0.1"
  p2p_port: $PORT
api:
  listen: "127.0.0.1:$((PORT + 1))"
EOF
cp "$T/n1-etc/config.yaml" "$T/n1.yaml"     # kept with the logs
pass "agent n2 is up"

# 2. vm1's dockerd, with an empty plugin directory.
docker_start
docker_image

# 3. Build and install the plugin.
DOCKER=$DOCKER_CLI "$BUILD_PLUGIN" -H "unix://$DSOCK" -b "$BIN" -o "$T/plugin" \
  >"$T/build-plugin.log" 2>&1 || fail "build-plugin.sh failed: $(cat "$T/build-plugin.log")"
for lib in $(ldd "$BIN/krakenfs-agent" | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }'); do
  [ -f "$T/plugin/rootfs$lib" ] || fail "the plugin's rootfs lacks $lib"
done
d plugin ls --format '{{.Name}} {{.Enabled}}' > "$T/plugins.txt"
grep -qx "krakenfs:latest false" "$T/plugins.txt" ||
  fail "docker plugin ls does not show a disabled krakenfs: $(cat "$T/plugins.txt")"
pass "build-plugin.sh installed krakenfs (docker plugin ls shows it, disabled)"

# 4. Configure and enable.
d plugin set krakenfs state.source="$T/n1" config.source="$T/n1-etc" \
  NODE_ID=n1 CLUSTER_NODES="n1:127.0.0.1:$PORT,n2:127.0.0.2:$PORT" ||
  fail "docker plugin set failed"
d plugin enable krakenfs || fail "docker plugin enable failed: $(tail -n 20 "$DLOG")"
d plugin inspect --format '{{.Enabled}}' krakenfs | grep -qx true ||
  fail "krakenfs is not enabled after docker plugin enable"
wait_for 60 grep -q "peer n1 connected" "$T/n2.log" ||
  fail "the plugin's agent n1 did not connect to n2: $(grep 'plugin=' "$DLOG" | tail -n 20)"
[ -f "$T/n1/journal.db" ] || fail "the plugin's journal is not in its state directory"
pass "plugin enabled; its agent n1 runs with the host's state and connects to n2"

# 5. The seed guide's Step 2 through the managed plugin.
docker_step2 my-shared-volume
d volume inspect --format '{{.Driver}} {{.Status.state}} {{.Status.peers_total}}' \
  my-shared-volume | grep -qx "krakenfs:latest ok 1" ||
  fail "inspect: $(d volume inspect my-shared-volume 2>&1)"
grep -qx "Hello from VM1" "$T/n1/volumes/my-shared-volume/test.txt" ||
  fail "test.txt is not in the host's state directory $T/n1/volumes"
pass "the volume lives in the host's state directory"

# 6. The plugin's agent replicates to the ordinary agent.
wait_for 30 grep -qx "Hello from VM1" "$T/n2/volumes/my-shared-volume/test.txt" ||
  fail "test.txt did not reach n2"
pass "test.txt reached n2 with its content"

# 7. Rebuilding: refused while enabled; --force replaces the plugin,
# keeps its settings, re-enables it, and the data is still there.
if DOCKER=$DOCKER_CLI "$BUILD_PLUGIN" -H "unix://$DSOCK" -b "$BIN" -o "$T/plugin" \
    >"$T/build-plugin.log" 2>&1; then
  fail "build-plugin.sh replaced an enabled plugin without --force"
fi
grep -q "is enabled; disable it first" "$T/build-plugin.log" ||
  fail "build-plugin.sh refused with: $(cat "$T/build-plugin.log")"
DOCKER=$DOCKER_CLI "$BUILD_PLUGIN" -H "unix://$DSOCK" -b "$BIN" -o "$T/plugin" --force \
  >"$T/build-plugin.log" 2>&1 || fail "build-plugin.sh --force failed: $(cat "$T/build-plugin.log")"
d plugin inspect --format '{{.Enabled}} {{.Settings.Env}}' krakenfs |
  grep -q "^true .*NODE_ID=n1" || fail "the replaced plugin lost its settings: $(d plugin inspect krakenfs 2>&1)"
out=$(d run --rm --network none -v my-shared-volume:/data kraken-test:busybox \
  cat /data/test.txt) || fail "reading through the replaced plugin failed"
[ "$out" = "Hello from VM1" ] || fail "after the replacement the container read '$out'"
pass "build-plugin.sh refuses an enabled plugin; --force replaces it, data and settings kept"
