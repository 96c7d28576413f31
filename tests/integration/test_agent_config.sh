#!/usr/bin/env bash
# Start-up refuses bad configuration with messages that name the key and
# line, --validate-config says the same, and the environment overrides.
source "$(dirname "$0")/lib.sh"

ROOT=$T/volumes
mkdir -p "$ROOT"

cat > "$T/bad.yaml" <<YAML
log:
  level: loud
sync:
  node_id: vm1
  p2p_port: 99999
  colour: blue
volume:
  root_path: relative/path
YAML
set +e
"$AGENT" --validate-config "$T/bad.yaml" > "$T/v.out" 2>&1; rc=$?
"$AGENT" --config "$T/bad.yaml" > "$T/s.out" 2>&1; rc2=$?
set -e
[ "$rc" -ne 0 ] || fail "--validate-config accepted a bad file"
[ "$rc2" -ne 0 ] || fail "agent started with a bad file"
for want in "bad.yaml:2: log.level" "bad.yaml:5: sync.p2p_port" \
            "bad.yaml:6: sync.colour" "bad.yaml:8: volume.root_path"; do
  grep -qF "$want" "$T/v.out" || fail "validate output lacks '$want': $(cat "$T/v.out")"
  grep -qF "$want" "$T/s.out" || fail "start-up output lacks '$want'"
done
pass "bad keys and values named with their lines"

write_config "$T/good.yaml" vm1 "$ROOT" "$T/j.db" \
  "  # trailing comment"
grep -q "ok" <<<"$("$AGENT" --validate-config "$T/good.yaml")" || fail "good config rejected"
pass "a good config validates"

# The environment overrides the file, and is validated like it.
set +e
NODE_ID=vm9 CLUSTER_NODES=vm1:127.0.0.1,vm2:127.0.0.2 \
  "$AGENT" --validate-config "$T/good.yaml" > "$T/e.out" 2>&1; rc=$?
set -e
[ "$rc" -ne 0 ] || fail "node id missing from CLUSTER_NODES accepted"
grep -q "vm9" "$T/e.out" || fail "message does not name the node: $(cat "$T/e.out")"
out=$(NODE_ID=vm2 CLUSTER_NODES=vm1:127.0.0.1,vm2:127.0.0.2:7000 \
  "$AGENT" --validate-config "$T/good.yaml")
grep -q "node vm2, 2 cluster" <<<"$out" || fail "environment override not applied: $out"
pass "NODE_ID / CLUSTER_NODES override and are checked"

# The seed guide's config file, verbatim apart from paths.
cat > "$T/seed.yaml" <<YAML
log:
  level: "info"

filesystem:
  watch_paths:
    - "$ROOT"
  exclude_patterns:
    - "*.tmp"
    - "*.log"
  recursive: true

sync:
  node_id: "vm1"
  cluster_nodes:
    - "vm1:192.168.1.10"
    - "vm2:192.168.1.11"
  p2p_port: 6881
  bandwidth:
    enable: true
    egress_bits_per_sec: 1677721600
    ingress_bits_per_sec: 2516582400
  conflict_resolution:
    strategy: "timestamp"
    timeout: "30s"

volume:
  root_path: "$ROOT"
  driver_name: "krakenfs"
YAML
"$AGENT" --validate-config "$T/seed.yaml" >/dev/null || fail "seed config rejected"
pass "the seed guide's config validates"

# A journal made for another node is refused at start-up.
write_config "$T/a.yaml" vm1 "$ROOT" "$T/shared.db"
write_config "$T/b.yaml" vm2 "$ROOT" "$T/shared.db"
start_agent one "$T/a.yaml"
stop_agent one
set +e
"$AGENT" --config "$T/b.yaml" > "$T/id.out" 2>&1; rc=$?
set -e
[ "$rc" -ne 0 ] || fail "agent accepted another node's journal"
grep -q "belongs to node 'vm1'" "$T/id.out" || fail "identity message: $(cat "$T/id.out")"
pass "another node's journal is refused"

set +e
"$AGENT" --config "$T/missing.yaml" > "$T/m.out" 2>&1; rc=$?
"$AGENT" --bogus > /dev/null 2>&1; rc3=$?
set -e
[ "$rc" -ne 0 ] && grep -q "missing.yaml" "$T/m.out" || fail "missing config: $(cat "$T/m.out")"
[ "$rc3" -eq 2 ] || fail "unknown option exit $rc3"
pass "missing file and unknown option"
