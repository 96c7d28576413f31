#!/usr/bin/env bash
# A running agent's REST API answers what kraken-journal would, guards its
# admin calls with the token, exposes Prometheus metrics, and its dashboard
# renders in a real headless Chromium with the peers and a fresh change,
# without console errors.
source "$(dirname "$0")/lib.sh"

PORT=17907
NODES=n1:127.0.0.1,n2:127.0.0.2
for i in 1 2; do
  mkdir -p "$T/n$i/volumes/web"
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$T/n$i/volumes" "$T/n$i/journal.db"
done
echo "s3cret-token" > "$T/n1.token"
chmod 600 "$T/n1.token"
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
API=http://127.0.0.1:$((PORT + 1))
wait_for 60 grep -q "peer n2 connected" "$T/n1.log" || fail "peers did not connect"
echo "made during the test" > "$T/n2/volumes/web/fresh-change.txt"
wait_for 60 test -f "$T/n1/volumes/web/fresh-change.txt" || fail "change did not replicate"
# The loop publishes its snapshot once a second: wait for one published
# after this moment (younger than the time since), not a fixed while.
mark=$(date +%s.%N)
fresh_snapshot() {
  local age
  age=$(curl -sS "$API/v1/status" | jq -r '.snapshot_age_s // empty') && [ -n "$age" ] &&
    awk -v a="$age" -v m="$mark" -v n="$(date +%s.%N)" 'BEGIN { exit !(a < n - m) }'
}
wait_for 10 fresh_snapshot || fail "no API snapshot published for 10 s: $(curl -sS "$API/v1/status" | jq .snapshot_age_s)"

get() { curl -sS -o "$T/body" -w '%{http_code}' "$@"; }
[ "$(get "$API/health")" = 200 ] && jq -e '.status == "ok"' "$T/body" >/dev/null || fail "/health: $(cat "$T/body")"
[ "$(get "$API/v1/status")" = 200 ] || fail "/v1/status"
jq -e '.node_id == "n1" and (.version_vector | length) >= 1 and (.uptime_s >= 0)' "$T/body" >/dev/null ||
  fail "status fields: $(cat "$T/body")"
# The journal's sizes: the database file has its pages (checkpoints run
# while the agent does), the WAL is a number.
jq -e '(.journal_bytes > 4096) and (.wal_bytes | type == "number")' "$T/body" >/dev/null ||
  fail "journal sizes in status: $(jq -c '{journal_bytes, wal_bytes}' "$T/body")"
"$KJ" --db "$T/n1/journal.db" --json status | jq -e '(.journal_bytes > 4096) and (.wal_bytes | type == "number")' >/dev/null ||
  fail "journal sizes in kraken-journal status --json: $("$KJ" --db "$T/n1/journal.db" --json status)"
"$KJ" --db "$T/n1/journal.db" status | grep -qE '^journal: +[0-9]+ bytes \(WAL [0-9]+ bytes\)$' ||
  fail "journal sizes in kraken-journal status: $("$KJ" --db "$T/n1/journal.db" status)"
# Lag counts what n2 has acknowledged (it says so every second).
n2_caught_up() {
  curl -sS "$API/v1/status" | jq -e '.peers[] | select(.node_id == "n2" and .connected == true and .lag_entries == 0)' >/dev/null
}
wait_for 10 n2_caught_up || fail "peer n2 in status: $(curl -sS "$API/v1/status")"
[ "$(get "$API/v1/journal?volume=web&limit=5")" = 200 ] || fail "/v1/journal"
jq -e '.entries | map(.path) | index("fresh-change.txt") != null' "$T/body" >/dev/null ||
  fail "journal via API lacks the change: $(cat "$T/body")"
[ "$(get "$API/v1/volumes/web")" = 200 ] || fail "/v1/volumes/web"
[ "$(get "$API/v1/volumes/nope")" = 404 ] && jq -e '.error' "$T/body" >/dev/null || fail "404 with a JSON body"
[ "$(get "$API/v1/journal?limit=abc")" = 400 ] || fail "bad limit not a 400"
pass "health, status with peers, journal, volumes, 404 and 400"

[ "$(get "$API/metrics")" = 200 ] || fail "/metrics"
grep -v '^#' "$T/body" | grep -v '^$' | grep -qvE '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEinfNa]+$' &&
  fail "a metrics line is not Prometheus text: $(grep -v '^#' "$T/body" | grep -vE '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEinfNa]+$' | head -3)"
grep -q '^krakenfs_peer_connected{peer="n2"} 1' "$T/body" || fail "peer gauge missing"
grep -q '^krakenfs_commit_latency_seconds_count ' "$T/body" || fail "latency histogram missing"
awk '$1 == "krakenfs_journal_bytes" && $2 > 4096 { a = 1 } $1 == "krakenfs_journal_wal_bytes" { b = 1 }
     END { exit !(a && b) }' "$T/body" || fail "journal size gauges missing: $(grep journal "$T/body")"
# n1 applied n2's fresh change: one apply-latency sample at least.
awk '$1 == "krakenfs_apply_latency_seconds_count" && $2 >= 1 { ok = 1 } END { exit !ok }' "$T/body" ||
  fail "apply latency not sampled: $(grep apply_latency "$T/body" | tail -3)"
pass "/metrics is Prometheus text with peer, commit and apply latency series"

[ "$(get -X POST "$API/v1/admin/rescan")" = 401 ] || fail "admin without a token"
[ "$(get -X POST -H 'Authorization: Bearer wrong' "$API/v1/admin/rescan")" = 401 ] || fail "admin with a wrong token"
[ "$(get -X POST -H 'Authorization: Bearer s3cret-token' "$API/v1/admin/rescan")" = 202 ] || fail "admin rescan"
wait_for 60 grep -q "rescan requested through the API" "$T/n1.log" || fail "rescan did not reach the agent"
[ "$(get -X POST -H 'Authorization: Bearer s3cret-token' "$API/v1/admin/resync")" = 202 ] || fail "admin resync"
wait_for 60 grep -q "resync requested through the API" "$T/n1.log" || fail "resync did not reach the agent"
wait_for 60 sh -c "grep -c 'peer n2 connected' '$T/n1.log' | grep -q 2" || fail "no reconnection after resync"
pass "admin calls: 401 without the token, 202 with it, and the agent acts"

dump_dom "$API/" "$T/dom.html"
grep -q "n2" "$T/dom.html" || fail "dashboard does not show the peer n2"
grep -q "fresh-change.txt" "$T/dom.html" || fail "dashboard does not show the change made during the test"
if grep -E "CONSOLE|Uncaught" "$T/chromium.log" | grep -qiE "error|uncaught"; then
  fail "console errors: $(grep -E 'CONSOLE|Uncaught' "$T/chromium.log" | head -5)"
fi
pass "the dashboard renders in headless Chromium with the peer and the change, no console errors"
