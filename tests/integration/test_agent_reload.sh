#!/usr/bin/env bash
# Cluster changes without restarts, and the systemd notification protocol.
#
# n1 and n2 form a cluster; n3 starts with a config naming all three but
# is refused until n1 and n2 learn of it: n1 through SIGHUP, n2 through
# POST /v1/admin/reload.  Then n3 catches up from the journal.  A config
# with errors changes nothing (and the API says why); n3 is removed from
# n1 again; a key that needs a restart is reported as such.  n1 runs with
# NOTIFY_SOCKET and WATCHDOG_USEC as under systemd: READY=1 once the
# plugin socket listens, watchdog pings, RELOADING=1/READY=1 around a
# reload and STOPPING=1 on SIGTERM.
source "$(dirname "$0")/lib.sh"

PORT=17919
TWO=n1:127.0.0.1,n2:127.0.0.2
ALL=n1:127.0.0.1,n2:127.0.0.2,n3:127.0.0.3
for i in 1 2 3; do
  mkdir -p "$T/n$i/volumes/vol"
  echo "secret-$i" > "$T/n$i.token"
done
config() { # config NODE NODES [extra lines]
  local i=${1#n} node=$1 nodes=$2; shift 2
  cluster_config "$T/$node.yaml" "$node" "127.0.0.$i" "$PORT" "$nodes" \
    "$T/$node/volumes" "$T/$node/journal.db" "$@"
}
api() { # api NODE METHOD PATH -> body on stdout, status in $T/code
  local i=${1#n}
  curl -s -o "$T/body" -w '%{http_code}' -X "$2" \
    -H "Authorization: Bearer secret-$i" "http://127.0.0.$i:$((PORT + 1))$3" > "$T/code" || true
  cat "$T/body"
}
connected() { [ "$(peer_stat "$T/$1/journal.db" "$2" connected)" = "true" ]; }
notified() { grep -c -x "$1" "$T/notify.out" || true; }

config n1 "$TWO"; config n2 "$TWO"; config n3 "$ALL"

"$BIN/kraken-notify-listen" "$T/notify.sock" 300 > "$T/notify.out" &
PIDS+=($!)
wait_for 10 test -S "$T/notify.sock" || fail "notification listener did not start"
export NOTIFY_SOCKET=$T/notify.sock WATCHDOG_USEC=400000
start_agent n1 "$T/n1.yaml"
unset NOTIFY_SOCKET WATCHDOG_USEC
wait_for 10 grep -q '^READY=1;STATUS=node n1' "$T/notify.out" || fail "no READY=1 from n1"
test -S "$T/n1.sock" || fail "READY=1 sent before the plugin socket listens"
# Counted from here, not from the start (whose scan may hold the loop
# under ASan): 8 pings at half the 400 ms interval take 1.6 s, at the
# full interval 3.2 s, which systemd would already find late.
c0=$(notified WATCHDOG=1) t0=$(date +%s%N)
wait_for 10 eval '[ "$(notified WATCHDOG=1)" -ge $((c0 + 8)) ]' ||
  fail "watchdog pings missing: $(( $(notified WATCHDOG=1) - c0 )) in 10 s at a 400 ms interval"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$ms" -lt 3000 ] || fail "8 watchdog pings took $ms ms: not at half the 400 ms interval"
pass "READY=1 after the plugin socket listens; watchdog pinged at half the interval"

start_agent n2 "$T/n2.yaml"
start_agent n3 "$T/n3.yaml"
echo "before n3 joined" > "$T/n1/volumes/vol/early.txt"
wait_for 30 test -f "$T/n2/volumes/vol/early.txt" || fail "n1 -> n2 replication"
sleep 2
[ ! -e "$T/n3/volumes/vol/early.txt" ] || fail "n3 got data before the cluster knew it"
connected n3 n1 && fail "n1 accepted n3 before its config named it"
pass "a node the cluster's configs do not name is refused"

config n1 "$ALL"; config n2 "$ALL"
ready_before=$(notified READY=1)
kill -HUP "$PID_n1"
wait_for 10 grep -q "reload: 2 peers" "$T/n1.log" || fail "n1 did not reload on SIGHUP"
# eval: the counts are taken again at every poll, not once before it.
wait_for 10 eval '[ "$(notified RELOADING=1)" -ge 1 ]' || fail "no RELOADING=1 on SIGHUP"
wait_for 10 eval '[ "$(notified READY=1)" -gt "$ready_before" ]' || fail "no READY=1 after the reload"
api n2 POST /v1/admin/reload > /dev/null
[ "$(cat "$T/code")" = 202 ] || fail "POST /v1/admin/reload on n2: HTTP $(cat "$T/code"): $(cat "$T/body")"
wait_for 10 grep -q "reload: 2 peers" "$T/n2.log" || fail "n2 did not reload through the API"
wait_for 30 same_tree "$T/n1/volumes" "$T/n3/volumes" || fail "n3 did not catch up after joining"
echo "from the new node" > "$T/n3/volumes/vol/late.txt"
wait_for 30 test -f "$T/n1/volumes/vol/late.txt" || fail "n3 -> n1 after joining"
wait_for 30 test -f "$T/n2/volumes/vol/late.txt" || fail "n3 -> n2 after joining"
wait_for 10 connected n1 n3 || fail "n1 does not report n3 connected"
pass "n3 added with SIGHUP on n1 and the reload API on n2, caught up and replicates"

cp "$T/n2.yaml" "$T/n2.good"
printf 'sync:\n  p2p_port: 99999\n' > "$T/n2.yaml"
api n2 POST /v1/admin/reload > /dev/null
[ "$(cat "$T/code")" = 400 ] || fail "a bad config was not refused: HTTP $(cat "$T/code")"
jq -e '.problems | any(test("p2p_port"))' "$T/body" > /dev/null ||
  fail "the 400 does not name the bad key: $(cat "$T/body")"
curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer nope" -X POST \
  "http://127.0.0.2:$((PORT + 1))/v1/admin/reload" | grep -qx 401 || fail "reload without the token was not 401"
cp "$T/n1.yaml" "$T/n1.good"
printf 'sync:\n  cluster_nodes: [ "n1:127.0.0.1" \n' > "$T/n1.yaml"
kill -HUP "$PID_n1"
wait_for 10 grep -q "has errors (above); nothing was changed" "$T/n1.log" || fail "n1 did not report the bad file"
sleep 0.5
kill -0 "$PID_n1" || fail "n1 died on a bad config"
connected n1 n3 || fail "a bad config changed n1's peers"
cp "$T/n2.good" "$T/n2.yaml"
pass "a config with errors is refused (400 with the problems, or a log line) and changes nothing"

cluster_config "$T/n1.yaml" n1 127.0.0.1 "$PORT" "$TWO" "$T/n1/volumes" "$T/elsewhere.db"
kill -HUP "$PID_n1"
wait_for 10 grep -q "peer n3 removed from the cluster" "$T/n1.log" || fail "n3 not removed from n1"
grep -q "reload: journal.path changed; it takes effect when the agent restarts" "$T/n1.log" ||
  fail "a key needing a restart was not reported"
wait_for 10 sh -c "curl -sf http://127.0.0.1:$((PORT + 1))/v1/peers | jq -e 'length == 1 and all(.[]; .node_id != \"n3\")'" ||
  fail "n1 still lists n3"
curl -sf "http://127.0.0.1:$((PORT + 1))/v1/peers" | jq -e '.[] | select(.node_id == "n2" and .connected)' > /dev/null ||
  fail "n2 lost by the reload that removed n3: $(curl -s "http://127.0.0.1:$((PORT + 1))/v1/peers")"
[ ! -e "$T/elsewhere.db" ] || fail "journal.path changed while running"
pass "n3 removed from n1 with SIGHUP, n2 kept; restart-only keys reported"

stop_agent n1
grep -qx 'STOPPING=1' "$T/notify.out" || fail "no STOPPING=1 on SIGTERM"
pass "STOPPING=1 on SIGTERM"
