#!/usr/bin/env bash
# A peer that stops answering (SIGSTOP: its sockets stay open) is shown as
# not connected within seconds, not after the 60 s that close the session,
# and what it has not acknowledged counts as its lag; once it answers
# again both clear.  A connection silent through a 30 s partition does
# not wait for TCP's backed-off retransmissions when the link comes back:
# a fresh connection carries the changes within seconds.
source "$(dirname "$0")/lib.sh"

PORT=17927
NODES=n1:127.0.0.1,n2:127.0.0.2
for i in 1 2; do
  mkdir -p "$T/n$i/volumes/vol"
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$T/n$i/volumes" "$T/n$i/journal.db"
done
peer() { # peer FIELD: n2 as n1's /v1/peers shows it
  curl -sf "http://127.0.0.1:$((PORT + 1))/v1/peers" |
    jq -r --arg f "$1" '(.peers? // .)[] | select(.node_id == "n2") | .[$f]'
}
metric() { # metric NAME: n1's sample of NAME for n2
  curl -sf "http://127.0.0.1:$((PORT + 1))/metrics" |
    awk -v m="$1{peer=\"n2\"}" '$1 == m { print $2 }'
}
is() { [ "$("$1" "$2")" = "$3" ]; }
above() { [ "$("$1" "$2")" -gt "$3" ] 2>/dev/null; }

start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
wait_for 30 is peer connected true || fail "n2 not shown connected: $(peer connected)"
echo first > "$T/n1/volumes/vol/first.txt"
wait_for 30 test -f "$T/n2/volumes/vol/first.txt" || fail "first.txt did not reach n2"
wait_for 15 is peer lag_entries 0 || fail "n2's lag is not 0 once it has everything: $(peer lag_entries)"

kill -STOP "$PID_n2"
t=$SECONDS
for f in $(seq 1 20); do echo "$f" > "$T/n1/volumes/vol/while-stopped-$f.txt"; done
wait_for 20 is peer connected false || fail "a stopped n2 still shown connected after 20 s"
shown=$((SECONDS - t))
[ "$(metric krakenfs_peer_connected)" = 0 ] || fail "krakenfs_peer_connected is $(metric krakenfs_peer_connected)"
above peer lag_entries 19 || fail "n2's lag while stopped: $(peer lag_entries) (20 files unacknowledged)"
seen=$(metric krakenfs_peer_last_seen_seconds)
[ -n "$seen" ] && [ "$seen" -gt 0 ] && [ "$(( $(date +%s) - seen ))" -ge 8 ] ||
  fail "krakenfs_peer_last_seen_seconds is '$seen', $(date +%s) now"
pass "a stopped peer shown as not connected after $shown s, with 20 entries of lag"

kill -CONT "$PID_n2"
wait_for 30 is peer connected true || fail "n2 not connected again after SIGCONT"
wait_for 30 test -f "$T/n2/volumes/vol/while-stopped-20.txt" || fail "n2 did not catch up"
wait_for 20 is peer lag_entries 0 || fail "n2's lag after catching up: $(peer lag_entries)"
pass "once it answers again it is connected and its lag clears"

# A partition: every packet to or from the agents' port dropped
# for 30 s while n1 keeps writing; the old connection's retransmission
# timer has backed off to ~25 s by then, so only a new connection
# delivers soon after the heal.
command -v iptables >/dev/null || fail "iptables is needed (tools/install-deps.sh installs it)"
# (By port: on loopback either end may use 127.0.0.1 as its source.)
RULES=("INPUT -p tcp --dport $PORT -j DROP" "INPUT -p tcp --sport $PORT -j DROP")
heal() { for r in "${RULES[@]}"; do while iptables -D $r 2>/dev/null; do :; done; done; }
trap 'heal; cleanup' EXIT
for r in "${RULES[@]}"; do iptables -I $r || fail "cannot add the iptables rule '$r'"; done
t=$SECONDS
while [ $((SECONDS - t)) -lt 30 ]; do
  echo "$SECONDS" > "$T/n1/volumes/vol/during-partition-$((SECONDS - t)).txt"
  sleep 2
done
[ ! -e "$T/n2/volumes/vol/during-partition-0.txt" ] || fail "the partition let a file through"
heal
echo healed > "$T/n1/volumes/vol/after-heal.txt"
t=$SECONDS
wait_for 10 test -f "$T/n2/volumes/vol/after-heal.txt" ||
  fail "a file written when the partition healed was not on n2 $((SECONDS - t)) s later"
wait_for 10 test -f "$T/n2/volumes/vol/during-partition-0.txt" || fail "what was written during the partition did not follow"
pass "after a 30 s partition the changes flow again $((SECONDS - t)) s after the heal"
