#!/usr/bin/env bash
# With sync.tls.enable, peers prove their node id with a certificate from
# the cluster's CA: members replicate, a node with another CA's
# certificate is refused and sees nothing, plain TCP is refused, and a key
# file others may read stops the agent with advice.
source "$(dirname "$0")/lib.sh"

PORT=17895
NODES=n1:127.0.0.1,n2:127.0.0.2,n3:127.0.0.3
out=$("$AGENT" tls init "$T/ca")
grep -q "issue" <<<"$out" || fail "tls init gives no next step: $out"
for i in 1 2; do
  mkdir -p "$T/n$i/tls" "$T/n$i/volumes/web"
  cp "$T/ca/ca.pem" "$T/ca/ca-key.pem" "$T/n$i/tls/"
  "$AGENT" tls issue "$T/n$i/tls" "n$i" >/dev/null || fail "tls issue n$i"
done
[ "$(stat -c %a "$T/n1/tls/node-key.pem")" = 600 ] || fail "node key mode"
[ "$(stat -c %a "$T/ca/ca-key.pem")" = 600 ] || fail "ca key mode"
# n3 has a certificate for its name, from a CA of its own.
"$AGENT" tls init "$T/rogue" >/dev/null
"$AGENT" tls issue "$T/rogue" n3 >/dev/null
mkdir -p "$T/n3/volumes/web"
tls_lines() {
  echo "  tls:"
  echo "    enable: true"
  echo "    cert_file: \"$1/node.pem\""
  echo "    key_file: \"$1/node-key.pem\""
  echo "    ca_file: \"$1/ca.pem\""
}
for i in 1 2; do
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$T/n$i/volumes" "$T/n$i/journal.db"
  tls_lines "$T/n$i/tls" > "$T/tls$i.yaml"
  # the tls block belongs under sync:
  sed -i "/^sync:/r $T/tls$i.yaml" "$T/n$i.yaml"
done
cluster_config "$T/n3.yaml" n3 127.0.0.3 "$PORT" "$NODES" "$T/n3/volumes" "$T/n3/journal.db"
tls_lines "$T/rogue" > "$T/tls3.yaml"
sed -i "/^sync:/r $T/tls3.yaml" "$T/n3.yaml"

start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
start_agent n3 "$T/n3.yaml"
echo "secret" > "$T/n1/volumes/web/a.txt"
wait_for 60 test -f "$T/n2/volumes/web/a.txt" || fail "members did not replicate over TLS"
pass "two members replicate over mutual TLS"

# Their journals are signed, and /v1/status says so; each learned the
# other's signing key from its handshake.
st=$(curl -sf "http://127.0.0.1:$((PORT + 1))/v1/status") || fail "no status from n1"
[ "$(jq -r .journal_signing.signed <<<"$st")" = true ] ||
  fail "a TLS agent does not report a signed journal: $(jq -c .journal_signing <<<"$st")"
wait_for 10 grep -q "learned n2's journal signing key from n2" "$T/n1.log" ||
  fail "n1 did not keep n2's signing key"
pass "the journal is signed, and /v1/status says so"

echo "from the rogue" > "$T/n3/volumes/web/rogue.txt"
sleep 2
[ ! -e "$T/n3/volumes/web/a.txt" ] || fail "the rogue node received data"
[ ! -e "$T/n1/volumes/web/rogue.txt" ] || fail "the rogue node's file was accepted"
grep -q "certificate" "$T/n1.log" "$T/n2.log" "$T/n3.log" || fail "refusal not logged"
pass "a node with another CA's certificate is refused and sees nothing"

got=$("$BIN/kraken-fake-peer" 127.0.0.1 "$PORT" garbage)
[ "$got" = closed ] || fail "plain bytes to a TLS port: $got"
pass "plain TCP to a TLS agent is closed"

stop_agent n2
chmod 644 "$T/n2/tls/node-key.pem"
set +e
"$AGENT" --config "$T/n2.yaml" > "$T/badkey.out" 2>&1; rc=$?
set -e
[ "$rc" -ne 0 ] || fail "agent started with a world-readable key"
grep -q "chmod 600" "$T/badkey.out" || fail "no advice for the key mode: $(cat "$T/badkey.out")"
pass "a key file others may read stops the agent with advice"
