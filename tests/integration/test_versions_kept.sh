#!/usr/bin/env bash
# What a peer's change replaces or deletes is kept (versions.keep): n1
# writes v1, v2 and v3 of a file and deletes it; n2, which applied each
# change, still holds every one of the three contents, byte for byte,
# and `kraken-journal versions` says so for each.  Lowering
# versions.max_bytes prunes the oldest first; versions.keep prunes by
# age.
source "$(dirname "$0")/lib.sh"

PORT=17956
pair_config "$PORT"
echo "secret-2" > "$T/n2.token"
V1=$T/n1/volumes/vx V2=$T/n2/volumes/vx
content_is() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }
versions() { "$KJ" --db "$T/n2/journal.db" --json versions vx f.txt; }
# kept HASH: the store's file for HASH, as n2 keeps it.
kept() { cat "$T/n2/journal.db.versions/$1"; }

start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
for v in 1 2 3; do
  echo "version $v of f" > "$V1/f.txt"
  wait_for 30 content_is "$V2/f.txt" "version $v of f" || fail "v$v did not reach n2"
done
rm "$V1/f.txt"
wait_for 30 eval '[ ! -e "$V2/f.txt" ]' || fail "the delete did not reach n2"

versions > "$T/versions.json" || fail "kraken-journal versions: $(cat "$T/versions.json")"
jq -e 'length == 4 and ([.[] | select(.op == "put" and .content == "kept")] | length) == 3 and
       ([.[] | select(.op == "delete")] | length) == 1' "$T/versions.json" >/dev/null ||
  fail "n2 does not list three kept versions and a delete: $(cat "$T/versions.json")"
for v in 1 2 3; do
  h=$(jq -r --argjson i $((v - 1)) '[.[] | select(.op == "put")][$i].hash' "$T/versions.json")
  [ "$(kept "$h")" = "version $v of f" ] || fail "n2 keeps '$(kept "$h")' for v$v"
done
"$KJ" --db "$T/n2/journal.db" versions vx /f.txt > "$T/versions.txt" || fail "versions (text)"
[ "$(grep -c ' kept$' "$T/versions.txt")" = 3 ] || fail "the table does not say kept three times: $(cat "$T/versions.txt")"
pass "n2 keeps v1, v2 and v3 that n1's changes replaced and deleted, byte for byte"

# A cap of one version's size (16 bytes) keeps only the newest.
sed -i 's|^journal:|versions:\n  max_bytes: "16B"\njournal:|' "$T/n2.yaml"
curl -sf -X POST -H "Authorization: Bearer secret-2" \
  "http://127.0.0.2:$((PORT + 1))/v1/admin/reload" >/dev/null || fail "reload n2"
pruned_to_one() { versions | jq -e '[.[] | select(.content == "kept")] | length == 1' >/dev/null; }
wait_for 10 pruned_to_one || fail "versions.max_bytes did not prune: $(versions)"
versions | jq -e '[.[] | select(.op == "put")] | .[2].content == "kept" and .[0].content == "gone"' >/dev/null ||
  fail "pruning by size did not keep the newest: $(versions)"
grep -q "pruned 2 kept versions" "$T/n2.log" || fail "n2 does not log the pruning"
pass "versions.max_bytes prunes the oldest first and keeps the newest"

sed -i 's|^versions:|versions:\n  keep: "1s"|' "$T/n2.yaml"
sleep 1.1
curl -sf -X POST -H "Authorization: Bearer secret-2" \
  "http://127.0.0.2:$((PORT + 1))/v1/admin/reload" >/dev/null || fail "reload n2"
none_kept() { versions | jq -e '[.[] | select(.content == "kept")] | length == 0' >/dev/null; }
wait_for 10 none_kept || fail "versions.keep did not prune by age: $(versions)"
[ -z "$(ls "$T/n2/journal.db.versions")" ] || fail "pruned files are still in the store: $(ls "$T/n2/journal.db.versions")"
pass "versions.keep prunes by age, files and rows"
