#!/usr/bin/env bash
# A restore in place on a node that does not keep the version's content
# fetches it from a peer that does.  n1 writes v1 and then v2 of a file
# itself, so only n2 (which applied v2 over v1) keeps v1.  POST
# /v1/admin/restore on n1 answers 202, n1 gets v1's bytes from n2's
# version store, and puts them in place as its own new version, which
# reaches n2 again.  A version no node keeps is given up with a clear
# log line, the job gone and the file untouched.
source "$(dirname "$0")/lib.sh"

PORT=18020
pair_config "$PORT"
echo "secret-1" > "$T/n1.token"
V1=$T/n1/volumes/vx V2=$T/n2/volumes/vx
same_as() { cmp -s "$1" "$2"; }
restore_n1() {
  curl -s -o "$T/restore.json" -w '%{http_code}' -X POST -H "Authorization: Bearer secret-1" \
    "http://127.0.0.1:$((PORT + 1))/v1/admin/restore?volume=vx&path=$1&at=@$2"
}

start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
# Several chunks, so that the fetch asks for a chunk list and chunks.
head -c 700000 /dev/urandom > "$T/v1.bin"
head -c 700000 /dev/urandom > "$T/v2.bin"
cp "$T/v1.bin" "$V1/f.bin"
wait_for 30 same_as "$V2/f.bin" "$T/v1.bin" || fail "v1 did not reach n2"
t1=$(date +%s.%N)
sleep 0.1
cp "$T/v2.bin" "$V1/f.bin"
wait_for 30 same_as "$V2/f.bin" "$T/v2.bin" || fail "v2 did not reach n2"
[ -z "$(ls -A "$T/n1/volumes/.krakenfs-versions" 2>/dev/null)" ] ||
  fail "n1 keeps a version although it replaced v1 itself: the test proves nothing"

"$KJ" --db "$T/n1/journal.db" versions vx f.bin > "$T/versions.txt"
[ "$(grep -c ' not here$' "$T/versions.txt")" = 1 ] && grep -q "peers that applied .* keep it" "$T/versions.txt" ||
  fail "n1's versions of f.bin do not say v1 is not here but may be on a peer: $(cat "$T/versions.txt")"
code=$(restore_n1 f.bin "$t1")
[ "$code" = 202 ] || fail "restore of a version only n2 keeps: HTTP $code $(cat "$T/restore.json")"
jq -e '.fetching | test("peers")' "$T/restore.json" >/dev/null ||
  fail "the answer does not say the content comes from peers: $(cat "$T/restore.json")"
wait_for 30 same_as "$V1/f.bin" "$T/v1.bin" || fail "n1 did not get v1 back from n2's store"
wait_for 30 same_as "$V2/f.bin" "$T/v1.bin" || fail "the restored version did not reach n2"
grep -q "restoring vx/f.bin as version n1@.*fetched from peers" "$T/n1.log" ||
  fail "n1's log does not say it fetches the restore from peers"
last=$("$KJ" --db "$T/n1/journal.db" --json log --volume vx --path f.bin --limit 1)
[ "$(jq -r .origin <<<"$last" | cut -d@ -f1)" = n1 ] && [ "$(jq -r .op <<<"$last")" = put ] ||
  fail "the restore is not n1's new version in the journal: $last"
pass "restore on n1 of a version only n2 keeps: fetched from n2's store, in place, replicated"

# The dashboard's history of f.bin offers, for each version, the command
# that puts it back; the one for v2 (its exact time, "at") does.
dump_dom "http://127.0.0.1:$((PORT + 1))/#path=vx/f.bin" "$T/dom.html"
# (sqlite3, not jq: jq rounds nanoseconds.)
read -r v2_hash v2_ns < <(sqlite3 -separator ' ' -readonly "$T/n1/journal.db" \
  "SELECT lower(hex(hash)), wall_ns FROM changes WHERE path = 'f.bin' AND op = 1 ORDER BY id LIMIT 1 OFFSET 1")
at=$(curl -sf "http://127.0.0.1:$((PORT + 1))/v1/journal?volume=vx&path=f.bin" |
     jq -r --arg h "$v2_hash" '.entries[] | select(.hash == $h) | .at' | head -n 1)
[ "$at" = "@$((v2_ns / 1000000000)).$(printf '%09d' $((v2_ns % 1000000000)))" ] ||
  fail "/v1/journal's at for v2 is '$at', not its exact time $v2_ns"
url="http://127.0.0.1:$((PORT + 1))/v1/admin/restore?volume=vx&amp;path=f.bin&amp;at=%40${at#@}"
[ "$(grep -c "api-token)\" '${url//./\.}'" "$T/dom.html")" = 1 ] ||
  fail "the dashboard's history of vx/f.bin does not offer v2's restore command"
curl -sf -X POST -H "Authorization: Bearer secret-1" "$(sed 's/&amp;/\&/g' <<<"$url")" > /dev/null ||
  fail "the dashboard's restore command for v2 failed"
wait_for 30 same_as "$V1/f.bin" "$T/v2.bin" || fail "the dashboard's command did not put v2 back"
pass "the dashboard lists f.bin's versions with their restore commands; v2's, run, puts v2 back"

# A version nobody keeps: g.txt v1 never left n1 (n2 was down), and n1
# replaced it itself.
stop_agent n2
echo "g one" > "$V1/g.txt"
sleep 1
tg=$(date +%s.%N)
sleep 0.1
echo "g two" > "$V1/g.txt"
start_agent n2b "$T/n2.yaml"
wait_for 30 eval '[ "$(cat "$V2/g.txt" 2>/dev/null)" = "g two" ]' || fail "g.txt did not reach n2"
code=$(restore_n1 g.txt "$tg")
[ "$code" = 202 ] || fail "restore of a version nobody keeps: HTTP $code $(cat "$T/restore.json")"
wait_for 30 grep -q "restoring vx/g.txt: no connected peer keeps the content" "$T/n1.log" ||
  fail "n1 does not say the restore of g.txt cannot be served"
[ "$(cat "$V1/g.txt")" = "g two" ] || fail "g.txt changed although nothing could be restored"
"$KJ" --db "$T/n1/journal.db" --json status | jq -e '.jobs == 0' >/dev/null ||
  fail "the given-up restore is still waiting: $("$KJ" --db "$T/n1/journal.db" status | grep -i wait)"
pass "a version no node keeps: restore given up with a clear log line, g.txt untouched"
