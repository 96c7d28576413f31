#!/usr/bin/env bash
# Volumes exist cluster-wide: one made on a node appears on the others, and
# one removed there is removed everywhere with its data moved aside under
# ROOT/.krakenfs-removed, never destroyed.
source "$(dirname "$0")/lib.sh"

PORT=17903
NODES=n1:127.0.0.1,n2:127.0.0.2
for i in 1 2; do
  mkdir -p "$T/n$i/volumes"
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$T/n$i/volumes" "$T/n$i/journal.db"
done
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"

mkdir "$T/n1/volumes/photos"
echo "cat picture" > "$T/n1/volumes/photos/cat.txt"
wait_for 60 test -f "$T/n2/volumes/photos/cat.txt" || fail "volume not created on n2"
"$KJ" --db "$T/n2/journal.db" --json log --op volume-create | jq -e 'select(.volume == "photos")' >/dev/null ||
  fail "volume-create not in n2's journal"
pass "a volume made on n1 exists on n2"

# Taking the whole directory away is removing the volume.
mv "$T/n1/volumes/photos" "$T/photos-taken-away"
wait_for 60 test ! -e "$T/n2/volumes/photos" || fail "volume not removed on n2"
aside=$(find "$T/n2/volumes/.krakenfs-removed" -name cat.txt | head -1)
[ -n "$aside" ] && [ "$(cat "$aside")" = "cat picture" ] || fail "removed volume's data not kept aside on n2"
grep -q "volume photos removed by a peer; its data is kept in" "$T/n2.log" || fail "removal not logged"
pass "removing it on n1 removes it on n2, data moved aside"

mkdir "$T/n2/volumes/photos"
echo "new life" > "$T/n2/volumes/photos/dog.txt"
wait_for 60 test -f "$T/n1/volumes/photos/dog.txt" || fail "re-created volume not on n1"
[ ! -e "$T/n1/volumes/photos/cat.txt" ] || fail "old content came back"
pass "a volume made again under the same name starts empty everywhere"
