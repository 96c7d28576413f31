#!/usr/bin/env bash
# The KrakenFS demo: installs what is missing, builds, starts two agents on
# this machine (127.0.0.1 and 127.0.0.2, each with its own state
# directory), changes a volume on the first the way a container would, and
# shows the change arriving on the second and in both journals.
#
#   tools/demo.sh           run the demo and clean up afterwards
#   tools/demo.sh --keep    leave both agents running and say how to go on
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
case "${1:-}" in
  --keep) keep=1 ;;
  -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "demo.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then
  tools/install-deps.sh
else
  tools/install-deps.sh || { echo "demo.sh: run as root to install packages" >&2; exit 1; }
fi
step "building"
tools/build.sh build
BIN=$PWD/build/bin
PORT=16881

STATE=$(mktemp -d /tmp/krakenfs-demo-XXXXXX)
pids=()
cleanup() {
  if [ "$keep" -eq 0 ]; then
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$STATE"
  fi
}
trap cleanup EXIT

for n in 1 2; do
  mkdir -p "$STATE/demo$n/volumes"
  cat > "$STATE/demo$n/config.yaml" <<YAML
log:
  level: info
filesystem:
  exclude_patterns: ["*.tmp", "*.swp"]
sync:
  node_id: demo$n
  cluster_nodes: ["demo1:127.0.0.1", "demo2:127.0.0.2"]
  listen_address: "127.0.0.$n"
  p2p_port: $PORT
volume:
  root_path: "$STATE/demo$n/volumes"
journal:
  path: "$STATE/demo$n/journal.db"
api:
  listen: "127.0.0.$n:$((PORT + 1))"
  token_file: "$STATE/demo$n/api-token"
plugin:
  socket: "$STATE/demo$n/krakenfs.sock"
YAML
done

step "starting two agents: demo1 on 127.0.0.1, demo2 on 127.0.0.2 (state in $STATE)"
for n in 1 2; do
  "$BIN/krakenfs-agent" --config "$STATE/demo$n/config.yaml" > "$STATE/demo$n/agent.log" 2>&1 &
  pids+=("$!")
done
for n in 1 2; do
  for _ in $(seq 1 500); do
    grep -q "peer demo.* connected" "$STATE/demo$n/agent.log" && break
    sleep 0.02
  done
  grep -q "peer demo.* connected" "$STATE/demo$n/agent.log" ||
    { cat "$STATE/demo$n/agent.log"; echo "demo.sh: agents did not connect" >&2; exit 1; }
done
cat "$STATE/demo1/agent.log"

V1=$STATE/demo1/volumes V2=$STATE/demo2/volumes
step "a container on demo1 writes to volume 'web'"
set -x
mkdir "$V1/web"
echo '<h1>Hello from demo1</h1>' > "$V1/web/index.html"
mkdir "$V1/web/css"
echo 'body { color: teal }' > "$V1/web/css/site.css"
ln -s index.html "$V1/web/home.html"
echo 'scratch' > "$V1/web/notes.tmp"
echo '<h1>Hello again</h1>' > "$V1/web/index.html"
chmod 640 "$V1/web/css/site.css"
set +x
for _ in $(seq 1 200); do
  [ -f "$V2/web/css/site.css" ] && [ "$(cat "$V2/web/index.html" 2>/dev/null)" = '<h1>Hello again</h1>' ] && break
  sleep 0.02
done

step "what demo2 has now (notes.tmp is excluded, so it stays on demo1)"
(cd "$V2" && find . -printf '%M %p %l\n' | sort)
echo "index.html on demo2: $(cat "$V2/web/index.html")"

KJ="$BIN/kraken-journal"
step "kraken-journal log on demo1 (newest first)"
$KJ --db "$STATE/demo1/journal.db" log
step "kraken-journal history web index.html on demo2: the versions came from demo1"
$KJ --db "$STATE/demo2/journal.db" history web index.html
sleep 1.1   # the agents write their peer report once a second
step "kraken-journal status on demo2"
$KJ --db "$STATE/demo2/journal.db" status
step "kraken-journal verify on demo2"
$KJ --db "$STATE/demo2/journal.db" verify

step "how to go on"
if [ "$keep" -eq 1 ]; then
  cat <<TXT
Both agents are still running (pids ${pids[*]}). Try:
  echo more > $V2/web/more.txt            # written on demo2, appears on demo1
  $KJ --db $STATE/demo1/journal.db log --limit 5
  $KJ --db $STATE/demo1/journal.db --json status | jq .peers
  kill ${pids[*]}                          # stop them; they commit what is pending
TXT
else
  cat <<TXT
Run 'tools/demo.sh --keep' to leave both agents running and play with them.
Run 'tools/test.sh' for the whole test suite, 'tools/bench/local.sh' and
'tools/bench/replicate.sh' for the benchmarks, and see README.md for running
a cluster on several hosts.
TXT
fi
