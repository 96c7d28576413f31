#!/usr/bin/env bash
# The KrakenFS demo: installs what is missing, builds, starts an agent on a
# temporary state directory, makes a few changes to a volume the way a
# container would, and shows them with kraken-journal.
#
#   tools/demo.sh           run the demo and clean up afterwards
#   tools/demo.sh --keep    leave the agent running and say how to go on
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
case "${1:-}" in
  --keep) keep=1 ;;
  -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

STATE=$(mktemp -d /tmp/krakenfs-demo-XXXXXX)
ROOT=$STATE/volumes
mkdir -p "$ROOT"
cat > "$STATE/config.yaml" <<YAML
log:
  level: info
filesystem:
  exclude_patterns: ["*.tmp", "*.swp"]
sync:
  node_id: demo1
volume:
  root_path: "$ROOT"
journal:
  path: "$STATE/journal.db"
YAML

agent_pid=
cleanup() {
  if [ -n "$agent_pid" ] && [ "$keep" -eq 0 ]; then
    kill -TERM "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
    rm -rf "$STATE"
  fi
}
trap cleanup EXIT

step "starting krakenfs-agent (state in $STATE)"
"$BIN/krakenfs-agent" --config "$STATE/config.yaml" > "$STATE/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 1 500); do
  grep -q "start-up scan" "$STATE/agent.log" && break
  kill -0 "$agent_pid" 2>/dev/null || { cat "$STATE/agent.log"; exit 1; }
  sleep 0.02
done
cat "$STATE/agent.log"

step "a container writes to volume 'web'"
set -x
mkdir "$ROOT/web"
echo '<h1>Hello from demo1</h1>' > "$ROOT/web/index.html"
mkdir "$ROOT/web/css"
echo 'body { color: teal }' > "$ROOT/web/css/site.css"
ln -s index.html "$ROOT/web/home.html"
echo 'scratch' > "$ROOT/web/notes.tmp"
echo '<h1>Hello again</h1>' > "$ROOT/web/index.html"
chmod 640 "$ROOT/web/css/site.css"
mv "$ROOT/web/css/site.css" "$ROOT/web/css/main.css"
set +x
sleep 0.5

KJ="$BIN/kraken-journal --db $STATE/journal.db"
step "kraken-journal log (newest first; notes.tmp is excluded)"
$KJ log
step "kraken-journal history web index.html"
$KJ history web index.html
step "kraken-journal status"
$KJ status
step "kraken-journal verify"
$KJ verify

step "how to go on"
if [ "$keep" -eq 1 ]; then
  cat <<TXT
The agent is still running (pid $agent_pid). Try:
  echo more > $ROOT/web/more.txt
  $KJ log --limit 5
  $KJ --json log --volume web | jq .
  kill $agent_pid              # stop it; it commits what is pending
TXT
else
  cat <<TXT
Run 'tools/demo.sh --keep' to leave the agent running and play with it.
Run 'tools/test.sh' for the whole test suite, 'tools/bench/local.sh' for the
benchmarks, and see README.md for deploying on several hosts.
TXT
fi
