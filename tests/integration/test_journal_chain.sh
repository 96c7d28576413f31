#!/usr/bin/env bash
# kraken-journal verify --chain: two TLS members that wrote on both sides
# hold chains of both origins, every segment signed and verifying; a copy
# of the journal with one change's path edited, or one signature byte
# changed, fails with the origin and seq named; another CA does not vouch
# for the keys; a plaintext pair checks its chains without a CA and says
# its segments are unsigned.
source "$(dirname "$0")/lib.sh"

PORT=17981        # p2p; the API is on PORT+1 (cluster_config)
PLAIN_PORT=17983

# ---- a TLS pair, n1 and n2 ---------------------------------------------
"$AGENT" tls init "$T/ca" >/dev/null || fail "tls init"
"$AGENT" tls init "$T/other" >/dev/null || fail "tls init of another CA"
pair_config "$PORT"
for i in 1 2; do
  mkdir -p "$T/n$i/tls"
  cp "$T/ca/ca.pem" "$T/ca/ca-key.pem" "$T/n$i/tls/"
  "$AGENT" tls issue "$T/n$i/tls" "n$i" >/dev/null || fail "tls issue n$i"
  {
    echo "  tls:"
    echo "    enable: true"
    echo "    cert_file: \"$T/n$i/tls/node.pem\""
    echo "    key_file: \"$T/n$i/tls/node-key.pem\""
    echo "    ca_file: \"$T/n$i/tls/ca.pem\""
  } > "$T/tls$i.yaml"
  sed -i "/^sync:/r $T/tls$i.yaml" "$T/n$i.yaml"
done

start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
for k in 1 2 3; do
  echo "one $k" > "$T/n1/volumes/vx/from-n1-$k.txt"
  echo "two $k" > "$T/n2/volumes/vx/from-n2-$k.txt"
done
mkdir -p "$T/n1/volumes/vx/dir"
echo "deep" > "$T/n1/volumes/vx/dir/deep.txt"
for k in 1 2 3; do
  wait_for 60 test -f "$T/n2/volumes/vx/from-n1-$k.txt" || fail "n1's files did not reach n2"
  wait_for 60 test -f "$T/n1/volumes/vx/from-n2-$k.txt" || fail "n2's files did not reach n1"
done
wait_for 60 test -f "$T/n2/volumes/vx/dir/deep.txt" || fail "n1's dir did not reach n2"
echo "edited" > "$T/n2/volumes/vx/from-n1-1.txt"
wait_for 60 grep -q edited "$T/n1/volumes/vx/from-n1-1.txt" || fail "n2's edit did not reach n1"
pass "a TLS pair replicated writes made on both sides"

DB=$T/n2/journal.db
CA=$T/ca/ca.pem

# Read-only beside the running agent.
set +e
"$KJ" --db "$DB" verify --chain --ca "$CA" > "$T/live.out" 2> "$T/live.err"; rc=$?
set -e
[ "$rc" -eq 0 ] || fail "verify --chain beside the agent exited $rc: $(cat "$T/live.out" "$T/live.err")"
pass "verify --chain runs beside the agent"

stop_agent n1
stop_agent n2

set +e
"$KJ" --db "$DB" verify --chain --ca "$CA" > "$T/good.out" 2> "$T/good.err"; rc=$?
"$KJ" --db "$DB" --json verify --chain --ca "$CA" > "$T/good.json"; jrc=$?
set -e
cat "$T/good.out"
[ "$rc" -eq 0 ] || fail "verify --chain exited $rc: $(cat "$T/good.out" "$T/good.err")"
[ "$jrc" -eq 0 ] || fail "verify --chain --json exited $jrc"
[ ! -s "$T/good.err" ] || fail "a good run wrote to stderr: $(cat "$T/good.err")"
grep -q "^chains of 2 origins verified: [1-9][0-9]* changes, [1-9][0-9]* signatures$" "$T/good.out" ||
  fail "no good summary: $(cat "$T/good.out")"
for n in n1 n2; do
  # ORIGIN CHANGES UNCHAINED SKIPS SEGMENTS UNSIGNED PROBLEMS
  awk -v n="$n" '$1 ~ "^" n "@" && $2 > 0 && $3 == 0 && $5 > 0 && $6 == 0 && $7 == 0 {ok=1}
                 END {exit !ok}' "$T/good.out" || fail "$n's row is not clean: $(cat "$T/good.out")"
done
jq -e '.ok and .signatures_checked and (.problems | length) == 0 and
       (.origins | length) == 2 and
       ([.origins[] | select(.problems == 0 and .unsigned == 0 and .changes > 0)] | length) == 2 and
       .total.signatures > 0 and .total.unsigned == 0' "$T/good.json" >/dev/null ||
  fail "--json of a good journal: $(cat "$T/good.json")"
pass "both origins' chains verify, every segment signed"

# The config's sync.tls.ca_file is the CA when --ca is not given.
set +e
"$KJ" --config "$T/n2.yaml" verify --chain > "$T/cfg.out" 2> "$T/cfg.err"; rc=$?
set -e
[ "$rc" -eq 0 ] || fail "verify --chain with the config's CA exited $rc: $(cat "$T/cfg.out" "$T/cfg.err")"
! grep -q "not checked" "$T/cfg.out" "$T/cfg.err" || fail "the config's CA was not used"
pass "sync.tls.ca_file of the config is the default CA"

# Plain verify is unchanged.
"$KJ" --config "$T/n2.yaml" verify > "$T/plain.out" || fail "plain verify: $(cat "$T/plain.out")"
grep -q " 0 problems$" "$T/plain.out" || fail "plain verify: $(cat "$T/plain.out")"
set +e
"$KJ" --db "$DB" verify --ca "$CA" >/dev/null 2>&1; rc=$?
set -e
[ "$rc" -eq 2 ] || fail "--ca without --chain exited $rc, not 2"
pass "plain verify still re-hashes the volumes; --ca needs --chain"

# (a) one change's path edited in a copy.
sqlite3 "$DB" ".backup '$T/altered.db'"
row=$(sqlite3 -separator ' ' "$T/altered.db" "SELECT o.node || '@' || o.epoch, c.seq, c.id
  FROM changes c JOIN origins o ON o.id = c.origin
  WHERE o.node = 'n1' AND c.digest IS NOT NULL AND c.path LIKE 'from-n1-%'
  ORDER BY c.seq LIMIT 1")
read -r origin seq id <<<"$row"
[ -n "$id" ] || fail "no chained change of n1 in n2's journal"
sqlite3 "$T/altered.db" "UPDATE changes SET path = 'evil.txt' WHERE id = $id"
set +e
"$KJ" --db "$T/altered.db" verify --chain --ca "$CA" > "$T/altered.out" 2>&1; rc=$?
set -e
cat "$T/altered.out"
[ "$rc" -eq 1 ] || fail "an altered change: exit $rc, not 1"
grep -q "^$origin seq $seq: altered" "$T/altered.out" || fail "the altered change is not named ($origin seq $seq)"
grep -q "problems\? in 2 origins$" "$T/altered.out" || fail "no problem summary"
pass "an altered change is named with its origin and seq (exit 1)"

# (b) one byte of a signature changed in a copy.
sqlite3 "$DB" ".backup '$T/forged.db'"
row=$(sqlite3 -separator ' ' "$T/forged.db" "SELECT o.node || '@' || o.epoch, s.seq, s.origin
  FROM signatures s JOIN origins o ON o.id = s.origin
  WHERE o.node = 'n1' AND s.sig IS NOT NULL ORDER BY s.seq LIMIT 1")
read -r sorigin sseq soid <<<"$row"
[ -n "$soid" ] || fail "no signature of n1 in n2's journal"
sqlite3 "$T/forged.db" "UPDATE signatures SET sig = CAST(substr(sig, 1, 19) ||
  CASE WHEN substr(sig, 20, 1) = X'5A' THEN X'A5' ELSE X'5A' END ||
  substr(sig, 21) AS BLOB) WHERE origin = $soid AND seq = $sseq"
[ "$(sqlite3 "$T/forged.db" "SELECT hex(sig) FROM signatures WHERE origin = $soid AND seq = $sseq")" != \
  "$(sqlite3 "$DB" "SELECT hex(sig) FROM signatures WHERE origin = $soid AND seq = $sseq")" ] ||
  fail "the signature was not changed"
set +e
"$KJ" --db "$T/forged.db" verify --chain --ca "$CA" > "$T/forged.out" 2>&1; rc=$?
set -e
cat "$T/forged.out"
[ "$rc" -eq 1 ] || fail "a changed signature: exit $rc, not 1"
grep -q "^$sorigin seq $sseq: .*does not verify" "$T/forged.out" || fail "the bad signature is not named"
pass "a changed signature does not verify (exit 1)"

# (c) a CA that did not issue the nodes' certificates.
set +e
"$KJ" --db "$DB" verify --chain --ca "$T/other/ca.pem" > "$T/other.out" 2>&1; rc=$?
set -e
[ "$rc" -eq 1 ] || fail "another CA: exit $rc, not 1"
grep -q "^n1 key [0-9a-f]*: .*not issued by the cluster CA" "$T/other.out" ||
  fail "n1's key is not reported: $(cat "$T/other.out")"
grep -q "holds no certificate for" "$T/other.out" || fail "signatures by the unused keys not reported"
pass "keys another CA did not issue are reported and not used (exit 1)"

set +e
"$KJ" --db "$DB" verify --chain --ca "$T/no-such-ca.pem" >/dev/null 2>&1; rc=$?
set -e
[ "$rc" -eq 2 ] || fail "a CA file that is not there: exit $rc, not 2"
pass "a CA that cannot be read is exit 2"

# ---- a plaintext pair, n3 and n4 ---------------------------------------
for i in 3 4; do
  mkdir -p "$T/n$i/volumes/vx"
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PLAIN_PORT" \
    n3:127.0.0.3,n4:127.0.0.4 "$T/n$i/volumes" "$T/n$i/journal.db"
  # a CA file that does not exist: only chains are checked
  printf '  tls:\n    ca_file: "%s"\n' "$T/no-ca.pem" > "$T/plain$i.yaml"
  sed -i "/^sync:/r $T/plain$i.yaml" "$T/n$i.yaml"
done
start_agent n3 "$T/n3.yaml"
start_agent n4 "$T/n4.yaml"
echo "three" > "$T/n3/volumes/vx/from-n3.txt"
echo "four" > "$T/n4/volumes/vx/from-n4.txt"
wait_for 60 test -f "$T/n4/volumes/vx/from-n3.txt" || fail "n3's file did not reach n4"
wait_for 60 test -f "$T/n3/volumes/vx/from-n4.txt" || fail "n4's file did not reach n3"
stop_agent n3
stop_agent n4
set +e
"$KJ" --config "$T/n4.yaml" verify --chain > "$T/plain.out" 2> "$T/plain.err"; rc=$?
"$KJ" --config "$T/n4.yaml" --json verify --chain > "$T/plain.json" 2>/dev/null; jrc=$?
set -e
cat "$T/plain.err" "$T/plain.out"
[ "$rc" -eq 0 ] || fail "plaintext verify --chain exited $rc"
[ "$jrc" -eq 0 ] || fail "plaintext verify --chain --json exited $jrc"
grep -q "signatures are not checked, only the chains" "$T/plain.err" || fail "no note that signatures are not checked"
grep -q "^chains of 2 origins verified" "$T/plain.out" || fail "no good summary"
jq -e '.ok and (.signatures_checked | not) and .ca == null and
       (.origins | length) == 2 and .total.unsigned > 0 and
       ([.origins[] | select(.unsigned > 0 and .problems == 0)] | length) == 2' \
  "$T/plain.json" >/dev/null || fail "--json of a plaintext journal: $(cat "$T/plain.json")"
pass "a plaintext journal's chains verify, its segments unsigned"
