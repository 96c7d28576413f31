#!/usr/bin/env bash
# One agent journals what a user does to its volumes; kraken-journal
# reports exactly that, in tables and JSON, and verify catches tampering.
source "$(dirname "$0")/lib.sh"

ROOT=$T/volumes
DB=$T/state/journal.db
CFG=$T/config.yaml
mkdir -p "$ROOT/pre"
echo "made while the agent was down" > "$ROOT/pre/offline.txt"
write_config "$CFG" node-a "$ROOT" "$DB"

grep -q -- "--validate-config" <<<"$("$AGENT" --help)" || fail "--help"
grep -q "krakenfs-agent" <<<"$("$AGENT" --version)" || fail "--version"
grep -q "history VOLUME PATH" <<<"$("$KJ" --help)" || fail "kraken-journal --help"

start_agent a "$CFG"
kj() { "$KJ" --db "$DB" "$@"; }
has_change() { # VOLUME PATH OP
  kj --json log --volume "$1" --op "$3" |
    jq -s -e --arg p "$2" 'any(.[]; .path == $p)' >/dev/null
}

wait_for 5 has_change pre offline.txt put || fail "offline file not journalled at start-up"
pass "start-up scan found the file made while down"

mkdir "$ROOT/web"
printf 'hello from node-a\n' > "$ROOT/web/index.html"
mkdir -p "$ROOT/web/css"
printf 'body{}' > "$ROOT/web/css/site.css"
ln -s ../index.html "$ROOT/web/css/link"
echo junk > "$ROOT/web/ignored.tmp"
wait_for 5 has_change web index.html put || fail "put of index.html"
wait_for 5 has_change web css mkdir || fail "mkdir css"
wait_for 5 has_change web css/site.css put || fail "put of site.css"
wait_for 5 has_change web css/link symlink || fail "symlink"
has_change web "" volume-create || fail "volume-create of web"
! has_change web ignored.tmp put || fail "excluded *.tmp was journalled"
pass "volume, files, directory and symlink journalled; *.tmp excluded"

# JSON carries what the test did: hash, size, mode, target.
line=$(kj --json log --volume web --path index.html --op put --limit 1)
want=$(hash_of_small_file "$ROOT/web/index.html")
[ "$(jq -r .hash <<<"$line")" = "$want" ] || fail "hash $(jq -r .hash <<<"$line") != $want"
[ "$(jq -r .size <<<"$line")" = 18 ] || fail "size in $line"
[ "$(jq -r .mode <<<"$line")" = $((0100644)) ] || fail "mode in $line"
for k in origin seq lamport time volume path op size mode hash base; do
  jq -e "has(\"$k\")" <<<"$line" >/dev/null || fail "json lacks $k: $line"
done
[ "$(jq -r .origin <<<"$line" | cut -d@ -f1)" = node-a ] || fail "origin in $line"
target=$(kj --json log --op symlink --limit 1 | jq -r .target)
[ "$target" = ../index.html ] || fail "symlink target '$target'"
pass "json fields match the files"

# Edit, chmod, rename, delete; history links each version to the last.
printf 'second version\n' > "$ROOT/web/index.html"
# eval: the count is taken again at every poll, not once before it.
wait_for 5 eval '[ "$(kj --json history web index.html | wc -l)" -eq 2 ]' || fail "second version"
chmod 600 "$ROOT/web/index.html"
wait_for 5 has_change web index.html meta || fail "chmod as meta"
mv "$ROOT/web/css/site.css" "$ROOT/web/css/main.css"
rm "$ROOT/web/css/link"
wait_for 5 has_change web css/main.css put || fail "rename target"
wait_for 5 has_change web css/site.css delete || fail "rename source"
wait_for 5 has_change web css/link delete || fail "delete of link"
hist=$(kj --json history web index.html)
[ "$(wc -l <<<"$hist")" -eq 3 ] || fail "history has $(wc -l <<<"$hist") versions: $hist"
first_seq=$(sed -n 1p <<<"$hist" | jq .seq)
[ "$(sed -n 2p <<<"$hist" | jq '.base[0].seq')" = "$first_seq" ] || fail "base link: $hist"
kj history web /index.html > "$T/hist.out"
grep -q "(base node-a@" "$T/hist.out" || fail "table history shows bases"
pass "edit, chmod, rename, delete and history with bases"

# Filters.
[ "$(kj --json log --op delete | wc -l)" -eq 2 ] || fail "--op delete"
[ "$(kj --json log --limit 3 | wc -l)" -eq 3 ] || fail "--limit"
[ "$(kj --json log --since 1h --volume pre | wc -l)" -eq 2 ] || fail "--since/--volume"
[ "$(kj --json log --until 2000-01-01 | wc -l)" -eq 0 ] || fail "--until"
# The REST API's grammar: a fraction and an offset (an hour ahead of UTC).
since=$(date -u -d '1 hour ago' +%Y-%m-%dT%H:%M:%S)
since_plus1=$(date -u -d "$since UTC + 1 hour" +%Y-%m-%dT%H:%M:%S).5+01:00
[ "$(kj --json log --since "$since_plus1" --volume pre | wc -l)" -eq 2 ] ||
  fail "--since with a fraction and an offset ($since_plus1)"
[ "$(kj --json log --origin node-b | wc -l)" -eq 0 ] || fail "--origin"
out=$(kj log --op bogus 2>&1) && fail "--op bogus accepted"
grep -q "unknown operation 'bogus'" <<<"$out" || fail "bad --op message: $out"
kj log > "$T/table.out"
head -1 "$T/table.out" | grep -q "VOLUME/PATH" || fail "table header"
pass "log filters"

# Status: node, vector, counts; while the agent runs.
st=$(kj --json status)
[ "$(jq -r .node_id <<<"$st")" = node-a ] || fail "status node: $st"
total=$(jq -r .changes <<<"$st")
[ "$(jq -r '.version_vector | to_entries[0].value' <<<"$st")" = "$total" ] || fail "vector: $st"
[ "$(jq -r .volumes <<<"$st")" = 2 ] || fail "volumes: $st"
kj status > "$T/status.out"
grep -q "version vector" "$T/status.out" || fail "status table"
pass "status"

kj verify > "$T/verify.out" || fail "verify on a clean tree: $(cat "$T/verify.out")"
stop_agent a
grep -q "event-to-commit latency" "$T/a.log" || fail "latency summary at exit"
pass "SIGTERM exits 0 with a latency summary"

# Tamper while the agent is down, keeping size and mtime: verify sees it.
cp -p "$ROOT/web/css/main.css" "$T/ref"
printf 'BODY{}' > "$ROOT/web/css/main.css"
touch -r "$T/ref" "$ROOT/web/css/main.css"
echo extra > "$ROOT/web/untracked.txt"
rm "$ROOT/pre/offline.txt"
set +e
kj verify > "$T/verify.out"; rc=$?
set -e
[ "$rc" -eq 1 ] || fail "verify exit $rc after tampering"
grep -q "content *web/css/main.css" "$T/verify.out" || fail "verify content: $(cat "$T/verify.out")"
grep -q "untracked *web/untracked.txt" "$T/verify.out" || fail "verify untracked"
grep -q "missing *pre/offline.txt" "$T/verify.out" || fail "verify missing"
pass "verify reports content, untracked and missing files"

# Restart: the scan records the offline delete and new file; the edit
# with preserved size and mtime is found by hashing on inode/ctime doubt.
start_agent a2 "$CFG"
wait_for 5 has_change pre offline.txt delete || fail "offline delete"
wait_for 5 has_change web untracked.txt put || fail "offline new file"
[ "$(kj --json history web css/main.css | wc -l)" -eq 2 ] || fail "offline edit with kept mtime"
kj verify >/dev/null || fail "verify after rescan"
stop_agent a2
pass "restart scan records offline changes"
