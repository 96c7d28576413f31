#!/usr/bin/env bash
# Peers that misbehave are refused and logged, and the agent keeps serving
# the others: garbage, an oversized frame, a stranger, an entry whose path
# escapes the volume, one whose path crosses a symlink out of it, a
# flood of requests whose answers are never read, and one of made-up
# origins.
source "$(dirname "$0")/lib.sh"

PORT=17891
FAKE=$BIN/kraken-fake-peer
# n3 is in the cluster list but never runs: the fake peer claims to be it
# (without TLS nothing proves a node id; see test_replicate_tls.sh).
NODES=n1:127.0.0.1,n2:127.0.0.2,n3:127.0.0.3
for i in 1 2; do
  mkdir -p "$T/n$i/volumes/web"
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$T/n$i/volumes" "$T/n$i/journal.db"
done
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
# Made once n2 runs: a link present before a new journal's first start
# would be judged against the fake peer's entries (test_rejoin.sh).
mkdir -p "$T/outside"
ln -s "$T/outside" "$T/n2/volumes/web/evil"
has_link() { "$KJ" --db "$T/n2/journal.db" --json log --volume web | jq -s -e 'any(.[]; .path == "evil")'; }
wait_for 30 has_link || fail "n2 did not record its symlink"

expect() { # WANT MODE ARGS...: the fake peer's outcome
  local want=$1; shift
  local got
  got=$("$FAKE" 127.0.0.2 "$PORT" "$@")
  [ "$got" = "$want" ] || fail "fake peer '$*': connection $got, expected $want"
}

expect closed garbage
expect closed oversize
wait_for 60 grep -q "before HELLO\|malformed" "$T/n2.log" || fail "garbage not logged"
pass "garbage and an oversized frame: connection closed, logged"

expect closed stranger intruder
wait_for 60 grep -q "node 'intruder' is not in this node's cluster list" "$T/n2.log" ||
  fail "stranger not logged"
pass "a node outside the cluster is refused by name"

expect closed escape n3 web
wait_for 60 grep -q "malformed ENTRIES frame from n3: path escapes its volume" "$T/n2.log" ||
  fail "escaping path not logged: $(tail -3 "$T/n2.log")"
[ ! -e "$T/n2/volumes/escape" ] && [ ! -e "$T/n2/escape" ] || fail "a file escaped the volume"
pass "an entry with a '..' path is refused"

expect open through n3 web evil/pwned.txt
wait_for 60 grep -q "not applying web/evil/pwned.txt: the path leaves the volume or crosses a symlink" \
  "$T/n2.log" || fail "symlinked path not refused: $(tail -3 "$T/n2.log")"
[ -z "$(ls -A "$T/outside")" ] || fail "something was written through the symlink: $(ls "$T/outside")"
pass "an entry whose path crosses a symlink out of the volume is not applied"

expect closed flood n3
wait_for 60 grep -q "peer n3 asked for [0-9]* deltas without reading the answers; disconnecting" "$T/n2.log" ||
  fail "a flood of requests was not logged: $(grep n3 "$T/n2.log" | tail -5)"
pass "a peer asking for deltas without reading the answers is cut off"

# A stamp from the year 2262 once won every concurrent write.  It is
# refused, said once, and the rest of that origin is not asked for again
# and again on the same connection.
expect open future n3 web
wait_for 10 grep -q "refused entry n3@00000000000000ff:1 from n3: .* more than a day ahead of our clock" "$T/n2.log" ||
  fail "an entry stamped in 2262 is not refused: $(grep -i 'n3@00000000000000ff' "$T/n2.log" | tail -2)"
sleep 1
[ "$(grep -c "refused entry n3@00000000000000ff" "$T/n2.log")" = 1 ] ||
  fail "the refusal is repeated: $(grep -c "refused entry n3@00000000000000ff" "$T/n2.log") times"
held=$("$KJ" --db "$T/n2/journal.db" --json status | jq '.version_vector["n3@00000000000000ff"] // 0')
[ "$held" = 0 ] || fail "n2 holds $held entries of the origin that stamped 2262"
pass "an entry stamped in 2262 is refused once; nothing of its origin is taken"

expect closed origins n3 web 2000
made_up() { "$KJ" --db "$T/n2/journal.db" --json status | jq '[.version_vector | keys[] | select(startswith("n3@"))] | length'; }
[ "$(made_up)" -le 64 ] || fail "n2 took $(made_up) made-up origins from one peer within a minute"
grep -q "peer n3 brought more than 64 new origins in a minute" "$T/n2.log" ||
  fail "a flood of new origins is not logged"
pass "a peer may bring at most 64 new origins a minute ($(made_up) of 2000 taken)"

echo "still serving" > "$T/n1/volumes/web/after.txt"
wait_for 60 test -f "$T/n2/volumes/web/after.txt" || fail "n2 stopped serving n1"
pass "the agent still replicates with its real peers"
