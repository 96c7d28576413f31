#!/usr/bin/env bash
# `kraken-journal versions` and GET /v1/versions say, for a version this
# node does not hold, which peers keep it, or that none does any more.
# Three nodes: n1 writes f.txt v1 then v2 itself, so n1 keeps nothing of
# v1; n2 keeps it; n3 keeps no versions at all (versions.keep "0").
#   - v1 is "on n2", both peers having answered;
#   - g.txt's v1 never reached n2 (it was down), so no node has it: gone;
#   - with n3 stopped (SIGSTOP) the question still ends, in about two
#     seconds, and the API answers other requests meanwhile; g.txt v1 is
#     then "not here", as n3 could not say;
#   - restores to a file on n1 (a single file, the whole volume) fetch
#     what only n2 keeps into n1's store through the agent, and leave
#     the volume alone; a version no node keeps fails, saying so;
#   - n1's agent stops cleanly while a question waits for a hung peer;
#   - with n1's agent stopped the CLI lists what n1 holds and says why
#     the peers were not asked.
source "$(dirname "$0")/lib.sh"

PORT=18050
NODES=n1:127.0.0.1,n2:127.0.0.2,n3:127.0.0.3
for i in 1 2 3; do
  mkdir -p "$T/n$i/volumes/vx"
  echo "secret-$i" > "$T/n$i.token"
  extra=()
  [ "$i" = 3 ] && extra=("versions:" '  keep: "0"')
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$T/n$i/volumes" "$T/n$i/journal.db" "${extra[@]}"
done
V1=$T/n1/volumes/vx V2=$T/n2/volumes/vx V3=$T/n3/volumes/vx
API=http://127.0.0.1:$((PORT + 1))
holds() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }
versions() { "$KJ" --config "$T/n1.yaml" "$@" versions vx "${PATH_ARG:-f.txt}"; }

start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
start_agent n3 "$T/n3.yaml"
echo "f one" > "$V1/f.txt"
wait_for 30 holds "$V2/f.txt" "f one" && wait_for 30 holds "$V3/f.txt" "f one" ||
  fail "f.txt v1 did not reach n2 and n3"
t1=$(date +%s.%N)
sleep 0.1
echo "f two" > "$V1/f.txt"
wait_for 30 holds "$V2/f.txt" "f two" && wait_for 30 holds "$V3/f.txt" "f two" ||
  fail "f.txt v2 did not reach n2 and n3"
[ -z "$(ls -A "$T/n3/volumes/.krakenfs-versions" 2>/dev/null)" ] ||
  fail "n3 keeps versions with versions.keep \"0\": the test proves nothing"

versions > "$T/v.txt" 2> "$T/v.err" || fail "versions: $(cat "$T/v.txt" "$T/v.err")"
grep -Eq ' put .* on n2$' "$T/v.txt" && grep -Eq ' put .* live$' "$T/v.txt" ||
  fail "n1 does not list v1 as on n2 and v2 as live: $(cat "$T/v.txt")"
grep -q "^peers asked: n2 (answered), n3 (answered)$" "$T/v.txt" ||
  fail "the listing does not say which peers answered: $(cat "$T/v.txt")"
versions --json > "$T/v.json" || fail "versions --json"
jq -e '.[0].content == "peer" and .[0].peers == ["n2"] and .[1].content == "live"' \
  "$T/v.json" >/dev/null || fail "versions --json: $(cat "$T/v.json")"
curl -sf "$API/v1/versions?volume=vx&path=f.txt" > "$T/api.json" || fail "GET /v1/versions"
jq -e '(.versions | length) == 2 and .versions[0].content == "peer" and
       .versions[0].peers == ["n2"] and .versions[1].content == "live" and
       ([.peers[] | .status] == ["answered", "answered"])' "$T/api.json" >/dev/null ||
  fail "GET /v1/versions: $(cat "$T/api.json")"
dump_dom "$API/#path=vx/f.txt" "$T/dom.html"
grep -q '<span class="pill up">on n2</span>' "$T/dom.html" ||
  fail "the dashboard's history of vx/f.txt does not show v1 on n2"
pass "v1 of f.txt, replaced by n1 itself, is listed as on n2 (CLI, API, dashboard)"

# g.txt v1 goes to n3 only, which keeps nothing; n2 catches up on v2.
stop_agent n2
echo "g one" > "$V1/g.txt"
wait_for 30 holds "$V3/g.txt" "g one" || fail "g.txt v1 did not reach n3"
tg=$(date +%s.%N)
sleep 0.1
echo "g two" > "$V1/g.txt"
wait_for 30 holds "$V3/g.txt" "g two" || fail "g.txt v2 did not reach n3"
start_agent n2b "$T/n2.yaml"
wait_for 30 holds "$V2/g.txt" "g two" || fail "g.txt v2 did not reach n2"
PATH_ARG=g.txt versions > "$T/g.txt.out" || fail "versions g.txt"
grep -Eq ' put .* gone$' "$T/g.txt.out" && grep -q "^'gone': no node keeps" "$T/g.txt.out" ||
  fail "g.txt v1, which no node keeps, is not listed as gone: $(cat "$T/g.txt.out")"
pass "a version no node keeps is listed as gone"

# Restores to a file on n1 fetch what only n2 keeps into n1's store
# through the agent: the whole volume as it was at t1 (f.txt v1), then
# f.txt alone.  The volume and its history do not change.
changes() { "$KJ" --db "$T/n1/journal.db" --json log --volume vx | wc -l; }
before=$(changes)
"$KJ" --config "$T/n1.yaml" restore vx --at "@$t1" --to "$T/tree" > "$T/tree.out" 2>&1 ||
  fail "whole-volume restore on n1 at t1: $(cat "$T/tree.out")"
holds "$T/tree/f.txt" "f one" && [ ! -e "$T/tree/g.txt" ] ||
  fail "the volume as it was at t1 is not f.txt v1 alone: $(ls -la "$T/tree"; cat "$T/tree.out")"
grep -q "fetched version n1@.* of vx/f.txt into the version store" "$T/n1.log" ||
  fail "n1's log does not say it fetched f.txt v1 into its store"
"$KJ" --config "$T/n1.yaml" --json versions vx f.txt > "$T/after.json" || fail "versions after the fetch"
jq -e '.[0].content == "kept"' "$T/after.json" >/dev/null ||
  fail "n1 does not keep f.txt v1 after fetching it: $(cat "$T/after.json")"
"$KJ" --config "$T/n1.yaml" restore vx f.txt --at "@$t1" --to "$T/f-v1.txt" > "$T/one.out" 2>&1 &&
  holds "$T/f-v1.txt" "f one" || fail "restore of f.txt v1 on n1: $(cat "$T/one.out")"
holds "$V1/f.txt" "f two" && [ "$(changes)" = "$before" ] &&
  [ -z "$(find "$V1" -name '.krakenfs-*')" ] ||
  fail "fetching into the store changed n1's volume or its history: $(ls -la "$V1")"
pass "restores to a file on n1 of a version only n2 keeps: fetched into n1's store, volume untouched"

rc=0
"$KJ" --config "$T/n1.yaml" restore vx g.txt --at "@$tg" --to "$T/g-v1.txt" > "$T/g.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "fetching it from peers failed: no connected peer keeps it" "$T/g.out" &&
  [ ! -e "$T/g-v1.txt" ] ||
  fail "restore of g.txt v1, which no node keeps: exit $rc, $(cat "$T/g.out")"
rc=0
"$KJ" --config "$T/n3.yaml" restore vx f.txt --at "@$t1" --to "$T/n3-v1.txt" > "$T/n3.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "this node keeps no versions (versions.keep is 0)" "$T/n3.out" ||
  fail "restore to a file on n3, which keeps no versions: exit $rc, $(cat "$T/n3.out")"
pass "a restore to a file of a version no node keeps fails, saying so; so does one on a node that keeps none"

# n3 hung: the question waits for it at most about two seconds, and the
# API serves other requests meanwhile.
kill -STOP "$PID_n3"
start=$(date +%s%N)
curl -sf --max-time 10 "$API/v1/versions?volume=vx&path=g.txt" > "$T/slow.json" &
asker=$!
sleep 0.3
curl -sf --max-time 1 "$API/health" >/dev/null ||
  fail "the API did not answer /health while a question to peers waited"
wait "$asker" || fail "GET /v1/versions with n3 hung failed"
took=$(( ($(date +%s%N) - start) / 1000000 ))
kill -CONT "$PID_n3"
jq -e '.versions[0].content == "not here" and
       ([.peers[] | select(.id == "n3") | .status] == ["no answer"])' \
  "$T/slow.json" >/dev/null || fail "with n3 hung: $(cat "$T/slow.json")"
[ "$took" -lt 8000 ] || fail "the question waited ${took} ms for a hung peer"
pass "a hung peer: the answer comes without it (${took} ms), v1 'not here', other requests served"

stop_agent n3
PATH_ARG=g.txt versions > "$T/off.txt" || fail "versions with n3 stopped"
grep -Eq ' put .* not here$' "$T/off.txt" &&
  grep -q "n3 (offline)" "$T/off.txt" && grep -q "could not be asked may keep" "$T/off.txt" ||
  fail "with n3 stopped, g.txt v1 is not 'not here' with n3 offline: $(cat "$T/off.txt")"
pass "an offline peer might keep a version: 'not here', not 'gone'"

# The agent stops cleanly while a request waits for a hung peer (n2).
kill -STOP "$PID_n2b"
curl -s --max-time 10 -o "$T/stopping.json" "$API/v1/versions?volume=vx&path=g.txt" &
asker=$!
sleep 0.3
stop_agent n1
kill -CONT "$PID_n2b"
wait "$asker" || true
[ ! -s "$T/stopping.json" ] || jq -e '.versions | length == 2' "$T/stopping.json" >/dev/null ||
  fail "the request waiting when n1 stopped got: $(cat "$T/stopping.json")"
pass "the agent stops cleanly (exit 0) while a question to a hung peer waits"

PATH_ARG=g.txt versions > "$T/down.txt" 2>&1 || fail "versions with the agent stopped: $(cat "$T/down.txt")"
grep -Eq ' put .* not here$' "$T/down.txt" &&
  grep -q "not asked: the agent at 127.0.0.1:$((PORT + 1)) does not answer" "$T/down.txt" ||
  fail "with n1's agent stopped, the listing does not say why peers were not asked: $(cat "$T/down.txt")"
pass "with the agent stopped: what n1 holds, and why the peers were not asked"
