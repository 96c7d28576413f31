#!/usr/bin/env bash
# Who a running agent's REST API answers, as curl and a browser see it:
# every request must name the agent in Host (DNS rebinding), reads are open
# without api.read_token_file (and the log says so) and need the read or
# the admin token with it, the read token opens no admin call, the
# dashboard sends the token it was opened with, and bad values of the new
# options are refused before anything starts.
source "$(dirname "$0")/lib.sh"

PORT=17951   # peers; the API is on PORT + 1
APORT=$((PORT + 1))
API=http://127.0.0.1:$APORT
mkdir -p "$T/volumes/web"
echo "hello" > "$T/volumes/web/hello-reads.txt"
echo "admin-s3cret" > "$T/r1.token"
echo "read-s3cret" > "$T/read.token"
chmod 600 "$T/r1.token" "$T/read.token"

# reads_config FILE [yaml lines under api:...]: a one-node cluster on
# 127.0.0.1, the API on APORT.
reads_config() {
  local file=$1; shift
  cluster_config "$file.base" r1 127.0.0.1 "$PORT" r1:127.0.0.1 \
    "$T/volumes" "$T/journal.db"
  { sed -n '1,/^  token_file:/p' "$file.base"
    if [ $# -gt 0 ]; then printf '%s\n' "$@"; fi
    sed '1,/^  token_file:/d' "$file.base"; } > "$file"
}

get() { curl -sS -o "$T/body" -w '%{http_code}' "$@"; }
# expect CODE WHAT CURL-ARGS...
expect() {
  local want=$1 what=$2 got; shift 2
  got=$(get "$@")
  [ "$got" = "$want" ] || fail "$what: got $got, wanted $want: $(head -c 300 "$T/body")"
}
READS=(/v1/status /v1/journal /v1/peers /v1/volumes /v1/conflicts /metrics /health)

# ---- without api.read_token_file -----------------------------------------
reads_config "$T/open.yaml"
start_agent open "$T/open.yaml"

expect 403 "read with Host: evil.example" -H "Host: evil.example" "$API/v1/journal"
jq -e '.error | test("api.allowed_hosts")' "$T/body" >/dev/null || fail "403 does not name api.allowed_hosts: $(cat "$T/body")"
expect 403 "read with Host: evil.example:$APORT" -H "Host: evil.example:$APORT" "$API/v1/status"
expect 403 "dashboard with Host: evil.example" -H "Host: evil.example" "$API/"
expect 403 "admin call with Host: evil.example and the admin token" -X POST \
  -H "Host: evil.example" -H "Authorization: Bearer admin-s3cret" "$API/v1/admin/rescan"
expect 400 "HTTP/1.1 request without Host" -H "Host:" "$API/v1/status"
expect 200 "read with Host: 127.0.0.1:$APORT" -H "Host: 127.0.0.1:$APORT" "$API/v1/status"
expect 200 "read with Host: localhost:$APORT" -H "Host: localhost:$APORT" "$API/v1/status"
expect 202 "admin call with Host: localhost:$APORT" -X POST -H "Host: localhost:$APORT" \
  -H "Authorization: Bearer admin-s3cret" "$API/v1/admin/rescan"
pass "Host: evil.example refused (403) on reads, the page and admin calls; 127.0.0.1 and localhost accepted"

for p in "${READS[@]}"; do expect 200 "open read $p" "$API$p"; done
expect 200 "the dashboard page" "$API/"
jq -e '.entries | map(.path) | index("hello-reads.txt") != null' <(curl -sS "$API/v1/journal") >/dev/null ||
  fail "journal lacks the scanned file"
grep -q "API reads .* are open .*api.read_token_file" "$T/open.log" ||
  fail "the start-up log does not say that reads are open"
pass "without api.read_token_file reads answer 200 with no token, and the log says reads are open"
stop_agent open

# ---- with api.read_token_file and api.allowed_hosts ------------------------
reads_config "$T/guarded.yaml" "  read_token_file: \"$T/read.token\"" \
  "  allowed_hosts: [\"kraken.test\"]"
start_agent guarded "$T/guarded.yaml"
grep -q "API reads .* are open" "$T/guarded.log" && fail "the log says reads are open with a read token"

for p in "${READS[@]}"; do
  expect 401 "$p without a token" "$API$p"
  jq -e '.error | test("api.read_token_file")' "$T/body" >/dev/null ||
    fail "$p: the 401 does not name api.read_token_file: $(cat "$T/body")"
  expect 401 "$p with a wrong token" -H "Authorization: Bearer wrong" "$API$p"
  expect 200 "$p with the read token" -H "Authorization: Bearer read-s3cret" "$API$p"
  expect 200 "$p with the admin token" -H "Authorization: Bearer admin-s3cret" "$API$p"
done
pass "with api.read_token_file reads answer 401 without or with a wrong token, 200 with the read or the admin token"

expect 401 "admin call with the read token" -X POST -H "Authorization: Bearer read-s3cret" "$API/v1/admin/rescan"
expect 401 "admin reload with the read token" -X POST -H "Authorization: Bearer read-s3cret" "$API/v1/admin/reload"
expect 202 "admin call with the admin token" -X POST -H "Authorization: Bearer admin-s3cret" "$API/v1/admin/rescan"
pass "the read token opens no admin call"

expect 200 "read with Host: kraken.test:$APORT" -H "Host: kraken.test:$APORT" \
  -H "Authorization: Bearer read-s3cret" "$API/v1/status"
expect 200 "read with Host: kraken.test" -H "Host: kraken.test" \
  -H "Authorization: Bearer read-s3cret" "$API/metrics"
expect 403 "read with Host: kraken.test on another port" -H "Host: kraken.test:80" \
  -H "Authorization: Bearer read-s3cret" "$API/v1/status"
expect 403 "read with Host: evil.example and the read token" -H "Host: evil.example" \
  -H "Authorization: Bearer read-s3cret" "$API/v1/status"
expect 403 "admin call with Host: evil.example" -X POST -H "Host: evil.example" \
  -H "Authorization: Bearer admin-s3cret" "$API/v1/admin/rescan"
pass "a name in api.allowed_hosts is accepted, other names are not"

# The page needs no token (it holds no data); its requests do, and carry
# the token given in the fragment.
expect 200 "the dashboard page without a token" "$API/"
grep -q '<!DOCTYPE html>' "$T/body" || fail "GET / is not the page"
dump_dom "$API/" "$T/dom-none.html"
grep -q '<form id="login">' "$T/dom-none.html" || fail "the page without a token does not ask for one"
grep -q 'needs a read token' "$T/dom-none.html" || fail "the page without a token does not say why"
grep -q 'hello-reads.txt' "$T/dom-none.html" && fail "the page shows the journal without a token"
dump_dom "$API/#token=read-s3cret" "$T/dom-token.html"
grep -q '<b id="node">r1</b>' "$T/dom-token.html" || fail "the page with #token does not show the node"
grep -q 'hello-reads.txt' "$T/dom-token.html" || fail "the page with #token does not show the journal"
grep -q '<form id="login" hidden' "$T/dom-token.html" || fail "the page with #token still asks for one"
pass "the dashboard asks for a token, and with #token=... its requests send it (headless Chromium)"
stop_agent guarded

# ---- bad values --------------------------------------------------------------
check_refused() {
  local name=$1 want=$2 rc=0; shift 2
  reads_config "$T/$name.yaml" "$@"
  "$AGENT" --validate-config "$T/$name.yaml" > "$T/$name.out" 2>&1 || rc=$?
  [ "$rc" -ne 0 ] || fail "--validate-config accepted $name"
  grep -qF "$want" "$T/$name.out" || fail "$name: output lacks '$want': $(cat "$T/$name.out")"
}
check_refused relative "api.read_token_file: expected an absolute path, got \"read.token\"" \
  '  read_token_file: "read.token"'
check_refused spaced "api.allowed_hosts: expected a host name or address" \
  '  allowed_hosts: ["two words"]'
check_refused ported "got \"kraken.test:8080\"" '  allowed_hosts: ["kraken.test:8080"]'
check_refused empty "api.allowed_hosts: expected a host name or address" '  allowed_hosts: [""]'
rc=0
"$AGENT" --config "$T/relative.yaml" > "$T/relative-start.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "the agent started with a relative api.read_token_file"
grep -qF "api.read_token_file: expected an absolute path" "$T/relative-start.out" ||
  fail "start-up output lacks the problem: $(cat "$T/relative-start.out")"
pass "a relative api.read_token_file and bad api.allowed_hosts entries are refused with the key named"
