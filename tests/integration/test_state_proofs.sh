#!/usr/bin/env bash
# A state exchange proves what it carries, in a TLS cluster.
#
#  1. A member (a peer holding n3's valid certificate) sends n2 a state
#     exchange in three ways: an unproven DELETE of vx/victim.txt as n1's
#     next seq (STATE); the same as a proven head signed with its own key
#     (CHAIN_STATE); and no head but a vector claiming n1 1,000 seqs
#     further than n1 went (which made n2 forget every file of n1 and
#     drop n1's next changes as held).  n2 takes none of it, says why,
#     keeps every file, and still takes n1's real next change.
#  2. An honest exchange: n4 joins while n1 is down and n2 has compacted
#     n1's history, so n4 catches up from n2 by state exchange.  n1's
#     heads reach n4 with their proofs: n4 holds them chained, `verify
#     --chain` passes on its journal, and n1's later changes, relayed by
#     n2, link onto them.
source "$(dirname "$0")/lib.sh"

FAKE=$BIN/kraken-fake-peer
for tool in "$AGENT" "$KJ" "$FAKE"; do
  [ -x "$tool" ] || fail "missing $tool"
done
command -v jq >/dev/null || fail "jq is needed"
command -v sqlite3 >/dev/null || fail "sqlite3 is needed"

P1=17985 P2=17986 P3=17987 P4=17988
N1="n1:127.0.0.1:$P1" N2="n2:127.0.0.2:$P2" N3="n3:127.0.0.3:$P3" N4="n4:127.0.0.4:$P4"

# node_config NODE IP PORT API_PORT PIN NODES...: a TLS member keeping
# two seconds of history, not waiting for peers silent past PIN.
node_config() {
  local node=$1 ip=$2 port=$3 api=$4 pin=$5; shift 5
  tls_node_config "$node" "$ip" "$port" "$api" "$@"
  sed -i "s|^journal:|journal:\n  retention: \"2s\"\n  retention_pin_max: \"$pin\"|" \
    "$T/$node.yaml"
}

tls_members n1 n2 n3 n4
for n in n1 n2 n3 n4; do
  echo "secret-$n" > "$T/$n.token"
done
mkdir -p "$T/n1/volumes/vx" "$T/n2/volumes/vx"
configs() { # configs PIN
  node_config n1 127.0.0.1 "$P1" 17953 "$1" "$N1" "$N2"
  node_config n2 127.0.0.2 "$P2" 17954 "$1" "$N1" "$N2" "$N3" "$N4"
  node_config n4 127.0.0.4 "$P4" 17955 "$1" "$N2" "$N4"
}
configs 1h
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
V1=$T/n1/volumes/vx V2=$T/n2/volumes/vx

has_content() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

for f in a b c; do echo "file $f" > "$V1/$f.txt"; done
want="victim v0"
echo "$want" > "$V1/victim.txt"
for f in a b c; do
  wait_for 30 has_content "$V2/$f.txt" "file $f" || fail "$f.txt did not reach n2"
done
wait_for 30 has_content "$V2/victim.txt" "$want" || fail "victim.txt did not reach n2"
settled n1 n2

# intact WHAT: every file keeps its content on n1 and n2 for 3 s.
intact() {
  local i f
  for i in $(seq 30); do
    for f in a b c; do
      has_content "$V2/$f.txt" "file $f" || fail "$1: $f.txt on n2 is gone or changed"
    done
    has_content "$V2/victim.txt" "$want" ||
      fail "$1: victim.txt on n2 is gone or changed (content: '$(cat "$V2/victim.txt" 2>&1)')"
    has_content "$V1/victim.txt" "$want" || fail "$1: victim.txt on n1 is gone or changed"
    sleep 0.1
  done
}

# ---- 1: forged state exchanges ----------------------------------------------
k=0
for kind in state-plain state-ownkey state-vector; do
  k=$((k + 1))
  lines=$(wc -l < "$T/n2.log")
  set +e
  got=$("$FAKE" --tls "$T/n3/tls" 127.0.0.2 "$P2" forge n3 vx victim.txt n1 "$kind" 2>"$T/fake-$kind.err")
  rc=$?
  set -e
  [ "$rc" -eq 0 ] || fail "$kind: the fake peer exited $rc: $(cat "$T/fake-$kind.err")"
  forged=$(sed -n 's/^forging \([^ ]*\) .*/\1/p' "$T/fake-$kind.err")
  [ -n "$forged" ] || fail "$kind: the fake peer forged nothing: $(cat "$T/fake-$kind.err")"
  intact "$kind ($forged)"
  new_log() { tail -n +$((lines + 1)) "$T/n2.log"; }
  origin=${forged%:*} seq=${forged##*:}
  case $kind in
    state-plain) why="the state from n3 holds 1 heads not taken" ;;
    state-ownkey) why="refused the state sent by n3: its head $origin:$seq has a signature that does not verify" ;;
    state-vector) why="the state from n3 says it holds $origin up to $((seq + 1000)), but no signature of $origin proves more than" ;;
  esac
  wait_for 5 eval 'new_log | grep -qF "$why"' ||
    fail "$kind: n2 did not log \"$why\": $(new_log | grep -i 'state\|refus\|n3' | tail -5)"
  [ "$kind" != state-ownkey ] || [ "$got" = closed ] ||
    fail "$kind: n2 kept the connection of a peer whose proof failed ($got)"
  # n1's real change with the seq the forgery claimed.
  want="victim v$k"
  echo "$want" > "$V1/victim.txt"
  wait_for 10 has_content "$V2/victim.txt" "$want" ||
    fail "$kind: n1's next change ($origin:$seq) did not reach n2 within 10 s (content: '$(cat "$V2/victim.txt" 2>&1)')"
  settled n1 n2
  pass "$kind: forged state refused (fake peer: $got), logged, every file kept; n1's real seq $seq reached n2"
done

# ---- 2: an honest exchange carries its proofs ---------------------------------
configs 4s
for n in n1 n2; do
  curl -sf -X POST -H "Authorization: Bearer secret-$n" \
    "http://127.0.0.${n#n}:$([ $n = n1 ] && echo 17953 || echo 17954)/v1/admin/reload" >/dev/null ||
    fail "reload $n"
done
# History n4 will never see: superseded versions and a deleted file.
for r in 1 2 3; do echo "round $r" > "$V1/a.txt"; sleep 0.2; done
rm "$V1/b.txt"
echo "new on n1" > "$V1/d.txt"
wait_for 30 has_content "$V2/d.txt" "new on n1" || fail "d.txt did not reach n2"
wait_for 30 has_content "$V2/a.txt" "round 3" || fail "a.txt round 3 did not reach n2"
settled n1 n2
n1_floor() { sqlite3 -readonly "$T/n2/journal.db" \
  "SELECT coalesce(max(floor), 0) FROM origins WHERE node = 'n1'"; }
wait_for 60 eval '[ "$(n1_floor)" -gt 0 ]' || fail "n2 never compacted n1's history"
stop_agent n1
start_agent n4 "$T/n4.yaml"
V4=$T/n4/volumes/vx
wait_for 60 grep -q "caught up with n2 by state exchange" "$T/n4.log" ||
  fail "n4 did not catch up by state exchange: $(grep -i 'state\|refus' "$T/n4.log" | tail -5)"
for f in a:"round 3" c:"file c" d:"new on n1" victim:"$want"; do
  wait_for 30 has_content "$V4/${f%%:*}.txt" "${f#*:}" ||
    fail "${f%%:*}.txt did not reach n4 by the exchange (content: '$(cat "$V4/${f%%:*}.txt" 2>&1)')"
done
[ ! -e "$V4/b.txt" ] || fail "b.txt, deleted before n4 joined, is on n4"
! grep -q "not taken\|refused\|no signature of" "$T/n4.log" ||
  fail "n4 refused part of an honest exchange: $(grep 'not taken\|refused\|no signature of' "$T/n4.log")"
pass "n4 caught up from n2 by state exchange; every head of n1 taken"

set +e
"$KJ" --db "$T/n4/journal.db" --json verify --chain --ca "$T/ca/ca.pem" > "$T/n4.verify"; rc=$?
set -e
[ "$rc" -eq 0 ] || fail "verify --chain on n4's journal exited $rc: $(cat "$T/n4.verify")"
jq -e '[.origins[] | select(.origin | startswith("n1@")) |
        select(.changes > 0 and .unchained == 0 and .problems == 0)] | length == 1' \
  "$T/n4.verify" >/dev/null ||
  fail "n1's heads on n4 are not held chained: $(jq -c '.origins' "$T/n4.verify")"
pass "n4 holds n1's heads chained and signed: verify --chain passes ($(jq -c '.origins[] | select(.origin | startswith("n1@")) | {changes, skips, segments}' "$T/n4.verify"))"

start_agent n1 "$T/n1.yaml"
echo "after the exchange" > "$V1/e.txt"
wait_for 30 has_content "$V4/e.txt" "after the exchange" || fail "n1's new change did not reach n4 through n2"
! grep -q "refused" "$T/n4.log" || fail "n4 refused n1's later entries: $(grep refused "$T/n4.log")"
stop_agent n4
set +e
"$KJ" --db "$T/n4/journal.db" verify --chain --ca "$T/ca/ca.pem" > "$T/n4.verify2"; rc=$?
set -e
[ "$rc" -eq 0 ] || fail "verify --chain on n4 after n1's later change exited $rc: $(cat "$T/n4.verify2")"
pass "n1's later changes link onto the proven heads on n4; verify --chain still passes"
