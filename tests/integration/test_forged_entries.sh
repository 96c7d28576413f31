#!/usr/bin/env bash
# A member of a TLS cluster cannot forge another node's changes: a peer
# holding n3's valid certificate sends n2 a DELETE of vx/victim.txt
# labelled as n1's next seq, in four ways (plain ENTRIES; CHAIN_ENTRIES
# with a wrong prev; with the right prev signed by its own key; with n1's
# key id and a made-up signature).  Each time n2 refuses it, logs why and
# who sent it, keeps the file, and still takes n1's real next change
# (whose seq the forgery tried to take).  A certificate from another CA
# does not even get through the handshake.  A node that hears of n1 only
# through n2 (n4) gets n1's changes and n1's signing key from n2.
source "$(dirname "$0")/lib.sh"

FAKE=$BIN/kraken-fake-peer
for tool in "$AGENT" "$KJ" "$FAKE"; do
  [ -x "$tool" ] || fail "missing $tool"
done
command -v jq >/dev/null || fail "jq is needed"

# Every node on its own address and port; n3 never runs (the fake peer
# holds its certificate, nothing listens at its address).
P1=17971 P2=17972 P3=17973 P4=17974
N1="n1:127.0.0.1:$P1" N2="n2:127.0.0.2:$P2" N3="n3:127.0.0.3:$P3" N4="n4:127.0.0.4:$P4"

tls_members n1 n2 n3 n4
# A certificate naming n3, from a CA of its own: not a member's.
"$AGENT" tls init "$T/rogue" >/dev/null || fail "tls init rogue"
"$AGENT" tls issue "$T/rogue" n3 >/dev/null || fail "tls issue rogue n3"
mkdir -p "$T/n1/volumes/vx" "$T/n2/volumes/vx"

tls_node_config n1 127.0.0.1 "$P1" 17975 "$N1" "$N2"
tls_node_config n2 127.0.0.2 "$P2" 17976 "$N1" "$N2" "$N3" "$N4"
tls_node_config n4 127.0.0.4 "$P4" 17977 "$N2" "$N4"
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
pass "n1 and n2 replicate over TLS; victim.txt is on n2"

# survives: victim.txt keeps its content on n2 and n1 for 3 s.
survives() {
  local what=$1 i
  for i in $(seq 30); do
    has_content "$V2/victim.txt" "$want" ||
      fail "$what: victim.txt on n2 is gone or changed (content: '$(cat "$V2/victim.txt" 2>&1)')"
    has_content "$V1/victim.txt" "$want" ||
      fail "$what: victim.txt on n1 is gone or changed"
    sleep 0.1
  done
}

k=0
for kind in plain badprev ownkey stolenid; do
  k=$((k + 1))
  lines=$(wc -l < "$T/n2.log")
  set +e
  got=$("$FAKE" --tls "$T/n3/tls" 127.0.0.2 "$P2" forge n3 vx victim.txt n1 "$kind" 2>"$T/fake-$kind.err")
  rc=$?
  set -e
  [ "$rc" -eq 0 ] || fail "$kind: the fake peer exited $rc: $(cat "$T/fake-$kind.err")"
  forged=$(sed -n 's/^forging \([^ ]*\) .*/\1/p' "$T/fake-$kind.err")
  [ -n "$forged" ] || fail "$kind: the fake peer forged nothing: $(cat "$T/fake-$kind.err")"
  case $kind in
    plain) ;;   # refused quietly: the connection may stay
    *) [ "$got" = closed ] || fail "$kind: n2 kept the connection of a peer that forged $forged ($got)" ;;
  esac
  survives "$kind forgery ($forged)"
  new_log() { tail -n +$((lines + 1)) "$T/n2.log"; }
  origin=${forged%:*} seq=${forged##*:}
  case $kind in
    plain) why="peer n3 relays $origin's entries without their signatures" ;;
    badprev) why="refused entries of $origin from seq $seq sent by n3: it does not follow the origin's chain" ;;
    *) why="refused entries of $origin from seq $seq sent by n3: the signature does not verify" ;;
  esac
  # (grep reads the whole text: with -q it would leave the writer a
  # SIGPIPE that pipefail takes for a failure)
  grep -qF "$why" <<<"$(new_log)" || fail "$kind: n2 did not log \"$why\": $(new_log | grep -i 'refus\|n3' | tail -5)"
  # n1's real change with the seq the forgery claimed.
  want="victim v$k"
  echo "$want" > "$V1/victim.txt"
  wait_for 10 has_content "$V2/victim.txt" "$want" ||
    fail "$kind: n1's next change ($origin:$seq) did not reach n2 within 10 s (content: '$(cat "$V2/victim.txt" 2>&1)')"
  settled n1 n2
  pass "$kind forgery of $forged refused (fake peer: $got), logged, victim.txt kept; n1's real seq $seq reached n2"
done

# The refusals are counted per peer, for an alert: one or more for each
# of the four forgeries, none from n1.
refused() { curl -sf "http://127.0.0.2:17976/v1/peers" |
  jq -r --arg p "$1" '(.peers? // .)[] | select(.node_id == $p) | .entries_refused'; }
# (the status is published once a second: wait for the last forgery)
wait_for 5 eval '[ "$(refused n3)" -ge 4 ]' || fail "n2 counts $(refused n3) entries refused from n3, not 4 or more"
[ "$(refused n1)" = 0 ] || fail "n2 counts $(refused n1) entries refused from n1"
metrics=$(curl -sf "http://127.0.0.2:17976/metrics") || fail "GET /metrics on n2"
grep -q '^krakenfs_peer_entries_refused_total{peer="n3"} [4-9]' <<<"$metrics" ||
  fail "krakenfs_peer_entries_refused_total does not count n3's forgeries: $(grep entries_refused <<<"$metrics")"
pass "n2 counts $(refused n3) refused entries from n3 (/v1/peers, metrics), none from n1"

# Another CA's certificate for n3: the handshake fails (the fake peer
# exits 3 and says so), nothing is forged.
set +e
got=$("$FAKE" --tls "$T/rogue" 127.0.0.2 "$P2" forge n3 vx victim.txt n1 plain 2>"$T/fake-rogue.err")
rc=$?
set -e
[ "$rc" -eq 3 ] || fail "a certificate from another CA: fake peer exited $rc, printed '$got' ($(cat "$T/fake-rogue.err"))"
grep -q "TLS handshake failed" "$T/fake-rogue.err" || fail "no handshake failure: $(cat "$T/fake-rogue.err")"
! grep -q "^forging" "$T/fake-rogue.err" || fail "something was forged without a member's certificate"
survives "rogue certificate"
pass "a certificate from another CA fails the handshake ($(head -1 "$T/fake-rogue.err")); victim.txt kept"

# n4 knows only n2: n1's changes and n1's signing key reach it through n2.
start_agent n4 "$T/n4.yaml"
echo "relayed" > "$V1/relay.txt"
wait_for 60 has_content "$T/n4/volumes/vx/relay.txt" relayed || fail "relay.txt did not reach n4 through n2"
wait_for 30 has_content "$T/n4/volumes/vx/victim.txt" "$want" || fail "victim.txt did not reach n4"
grep -q "learned n1's journal signing key from n2" "$T/n4.log" ||
  fail "n4 does not say it learned n1's key from n2: $(grep -i 'key' "$T/n4.log" | tail -5)"
! grep -q "refused entries" "$T/n4.log" || fail "n4 refused relayed entries: $(grep 'refused entries' "$T/n4.log")"
pass "n4, which knows only n2, gets n1's files and n1's signing key from n2"
