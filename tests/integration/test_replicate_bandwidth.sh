#!/usr/bin/env bash
# sync.bandwidth limits are honoured: with n1's egress capped at 80 Mbit/s
# (10 MB/s), 64 MiB cannot reach n2 in much less than the time the cap
# allows (the bucket starts with a burst of one second plus 4 MiB).  Only a
# lower bound is asserted: a slow machine can only make it slower.
source "$(dirname "$0")/lib.sh"

PORT=17899
NODES=n1:127.0.0.1,n2:127.0.0.2
for i in 1 2; do
  mkdir -p "$T/n$i/volumes/data"
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$T/n$i/volumes" "$T/n$i/journal.db" \
    "  bandwidth:" "    enable: true" \
    "    egress_bits_per_sec: 80000000" "    ingress_bits_per_sec: 0"
done
# The extra lines went after journal:, move them under sync: with sed.
for i in 1 2; do
  sed -i '/^  bandwidth:/,/ingress_bits_per_sec/d' "$T/n$i.yaml"
  sed -i '/^sync:/a\  bandwidth:\n    enable: true\n    egress_bits_per_sec: 80000000' "$T/n$i.yaml"
done
"$AGENT" --validate-config "$T/n1.yaml" >/dev/null || fail "bandwidth config rejected"
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
head -c $((64 << 20)) /dev/urandom > "$T/src.bin"
start=$(date +%s.%N)
cp "$T/src.bin" "$T/n1/volumes/data/big.bin"
wait_for 120 cmp -s "$T/src.bin" "$T/n2/volumes/data/big.bin" || fail "64 MiB did not arrive"
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
# (64 MiB - 14 MB of burst) at 10 MB/s is about 5 s.
awk -v t="$took" 'BEGIN { exit !(t >= 3.5) }' || fail "64 MiB arrived in $took s despite a 10 MB/s cap"
pass "64 MiB under a 10 MB/s egress cap took $took s"
