#!/usr/bin/env bash
# Three agents on 127.0.0.1/2/3 keep their volumes identical while any of
# them writes, is killed, or is down; content moves as chunks, and what a
# node already holds is not transferred again.
source "$(dirname "$0")/lib.sh"

PORT=17881
NODES=n1:127.0.0.1,n2:127.0.0.2,n3:127.0.0.3
LOG_LEVEL=debug   # some checks below read what the agents did from it
for i in 1 2 3; do
  mkdir -p "$T/n$i/volumes"
  cluster_config "$T/n$i.yaml" "n$i" "127.0.0.$i" "$PORT" "$NODES" \
    "$T/n$i/volumes" "$T/n$i/journal.db"
done
R1=$T/n1/volumes R2=$T/n2/volumes R3=$T/n3/volumes
start_agent n1 "$T/n1.yaml"
start_agent n2 "$T/n2.yaml"
start_agent n3 "$T/n3.yaml"
converged() { same_tree "$R1" "$R2" && same_tree "$R1" "$R3"; }
settle() { wait_for "${1:-60}" converged || fail "nodes did not converge: $(diff -r "$R1" "$R2" | head; diff -r "$R1" "$R3" | head)"; }

mkdir "$R1/web"
echo 'Hello from n1' > "$R1/web/test.txt"
wait_for 60 test -f "$R3/web/test.txt" || fail "file did not reach n3"
settle
[ "$(cat "$R2/web/test.txt")" = "Hello from n1" ] || fail "content on n2"
pass "a file written on n1 is on n2 and n3"

# Without TLS nothing can be signed: the log and /v1/status say so.
grep -q "chained but not signed, so any peer can forge" "$T/n1.log" ||
  fail "a plaintext agent does not warn that entries are not signed"
st=$(curl -sf "http://127.0.0.1:$((PORT + 1))/v1/status") || fail "no status from n1"
[ "$(jq -r .journal_signing.signed <<<"$st")" = false ] ||
  fail "a plaintext agent reports a signed journal: $(jq -c .journal_signing <<<"$st")"
pass "a plaintext cluster says its journal is not signed"

echo 'reply from n3' > "$R3/web/reply.txt"
printf 'edited on n2\n' > "$R2/web/test.txt"
settle
[ "$(cat "$R1/web/test.txt")" = "edited on n2" ] || fail "edit from n2 on n1"
pass "writes from every node, edits of replicated files"

mkdir -p "$R2/web/a/b"
ln -s ../test.txt "$R2/web/a/link"
chmod 700 "$R2/web/a"
echo gone > "$R2/web/a/b/tmpfile"
settle
rm "$R2/web/a/b/tmpfile"
rmdir "$R2/web/a/b"
chmod 640 "$R1/web/reply.txt"
settle
[ "$(readlink "$R3/web/a/link")" = "../test.txt" ] || fail "symlink target"
[ "$(stat -c %a "$R3/web/a")" = 700 ] || fail "directory mode"
[ ! -e "$R3/web/a/b" ] || fail "rmdir not replicated"
[ "$(stat -c %a "$R2/web/reply.txt")" = 640 ] || fail "chmod not replicated"
pass "mkdir, rmdir, symlink, chmod and delete"

mkdir "$R2/many"
next_report "$T/n1/journal.db"
asked_before=$(peer_stat "$T/n1/journal.db" n2 bytes_out)
echoed_before=$(peer_stat "$T/n1/journal.db" n2 entries_out)
for i in $(seq 1 1000); do echo "small file $i" > "$R2/many/f$i"; done
settle 180
next_report "$T/n1/journal.db"
# n2's changes also reach n1 through n3, often first: n1 must not relay
# them back to their author.
echoed=$(( $(peer_stat "$T/n1/journal.db" n2 entries_out) - echoed_before ))
[ "$echoed" -eq 0 ] || fail "n1 relayed $echoed of n2's own changes back to n2"
# Their content came pushed with the entries: n1 asked n2 for next to
# nothing (a GET_CHUNKLIST and a GET_CHUNKS per file would be 129 KB).
asked=$(( $(peer_stat "$T/n1/journal.db" n2 bytes_out) - asked_before ))
[ "$asked" -lt 20000 ] || fail "n1 sent n2 $asked bytes of requests for 1,000 pushed small files"
# Pushes are sent from the bytes the watcher read: every one must match.
! grep -h 'does not match its hash' "$T"/n*.log || fail "a pushed chunk did not match its hash"
pass "1,000 small files, pushed with their entries ($asked bytes of requests)"

head -c $((200 << 20)) /dev/urandom > "$R1/web/big.bin"
settle 300
next_report "$T/n2/journal.db"   # the last of the transfer is counted
in_before=$(peer_stat "$T/n2/journal.db" n1 chunk_bytes_in)
mv "$R1/web/big.bin" "$R1/web/renamed.bin"
settle 60
next_report "$T/n2/journal.db"
in_after=$(peer_stat "$T/n2/journal.db" n1 chunk_bytes_in)
moved=$(( in_after - in_before ))
[ "$moved" -lt $((1 << 20)) ] || fail "renaming 200 MiB moved $moved chunk bytes to n2"
pass "200 MiB file replicated; its rename moved $moved chunk bytes"

wire3() { # every byte n3 exchanged with both peers, frames included
  local p t=0
  for p in n1 n2; do
    t=$(( t + $(peer_stat "$T/n3/journal.db" $p bytes_in) + $(peer_stat "$T/n3/journal.db" $p bytes_out) ))
  done
  echo "$t"
}
before=$(( $(peer_stat "$T/n3/journal.db" n1 chunk_bytes_in) + $(peer_stat "$T/n3/journal.db" n2 chunk_bytes_in) ))
wire_before=$(wire3)
head -c $((1 << 20)) /dev/urandom |
  dd of="$R1/web/renamed.bin" bs=1M seek=100 conv=notrunc status=none
settle 60
next_report "$T/n3/journal.db"
after=$(( $(peer_stat "$T/n3/journal.db" n1 chunk_bytes_in) + $(peer_stat "$T/n3/journal.db" n2 chunk_bytes_in) ))
edit=$(( after - before ))
wire=$(( $(wire3) - wire_before ))
# The chunks at the edit's edges, made mostly of old bytes, come as deltas:
# at most a 4 KiB block of old bytes each way is sent again (without
# deltas, 20 to 250 KiB more).
[ "$edit" -le $(( (1 << 20) + (16 << 10) )) ] || fail "a 1 MiB edit moved $edit chunk bytes to n3"
# The new chunk list travels as runs of the old one, not 6,400 entries.
[ "$wire" -le $(( (11 << 20) / 10 )) ] || fail "a 1 MiB edit cost $wire bytes on the wire (at most 1.1 MiB)"
pass "a 1 MiB edit in the middle moved $edit chunk bytes, $wire bytes on the wire in all"

# n1 announced the change before hashing it; n3, holding the version it
# replaced, copied that version meanwhile, and its transfer began there.
grep -q "n1 is changing web/renamed.bin" "$T/n3.log" ||
  fail "n3 was not told that n1 was changing renamed.bin"
grep -q "web/renamed.bin: starting from the copy made ahead" "$T/n3.log" ||
  fail "n3's transfer of the edited renamed.bin did not start from its copy made ahead"
pass "the edit's old version was copied on n3 while n1 hashed the new one"

# A page-sized write (a database's) moves about a page, not the one to
# three whole chunks around it.
before=$(( $(peer_stat "$T/n3/journal.db" n1 chunk_bytes_in) + $(peer_stat "$T/n3/journal.db" n2 chunk_bytes_in) ))
head -c 4096 /dev/urandom |
  dd of="$R1/web/renamed.bin" bs=4096 seek=$(( (150 << 20) / 4096 + 3 )) conv=notrunc status=none
settle 60
next_report "$T/n3/journal.db"
after=$(( $(peer_stat "$T/n3/journal.db" n1 chunk_bytes_in) + $(peer_stat "$T/n3/journal.db" n2 chunk_bytes_in) ))
page=$(( after - before ))
[ "$page" -le $((12 << 10)) ] || fail "a 4 KiB write into renamed.bin moved $page chunk bytes to n3"
pass "a 4 KiB write into a 200 MiB file moved $page chunk bytes"

# A change that turns out to keep the content (a touch) is announced too;
# the copies the peers began are removed once the version arrives.
announced_again() { [ "$(grep -c "n1 is changing web/renamed.bin" "$T/n3.log")" -ge 3 ]; }
touch "$R1/web/renamed.bin"
wait_for 30 announced_again || fail "touching renamed.bin on n1 was not announced to n3"
settle 60
no_copies() { ! ls -A "$R2/web" "$R3/web" | grep -q '^\.krakenfs-tmp-'; }
wait_for 15 no_copies ||
  fail "copies made ahead of the touched renamed.bin were left behind: $(ls -A "$R2/web" "$R3/web" | grep krakenfs-tmp)"
pass "copies made ahead of a version that did not need them are removed"
mtime_of() { stat -c %Y.%y "$1"; }
same_mtimes() {
  [ "$(mtime_of "$R1/web/renamed.bin")" = "$(mtime_of "$R2/web/renamed.bin")" ] &&
  [ "$(mtime_of "$R1/web/renamed.bin")" = "$(mtime_of "$R3/web/renamed.bin")" ]
}
wait_for 30 same_mtimes ||
  fail "the touch on n1 did not reach the others: $(stat -c '%y %n' "$R1/web/renamed.bin" "$R2/web/renamed.bin" "$R3/web/renamed.bin")"
pass "a touch (mtime only) reaches every node"

# A file peers were served from is let go once deleted: the agents keep
# the file they last read chunks from open between requests (checked
# at every request and dropped after 2 s idle), but never the blocks of
# a deleted one for long.
rm "$R1/web/renamed.bin"
settle 60
held() { # descriptors the three agents hold on the deleted file
  ls -l "/proc/$PID_n1/fd" "/proc/$PID_n2/fd" "/proc/$PID_n3/fd" 2>/dev/null |
    grep -c 'renamed.bin (deleted)' || true
}
none_held() { [ "$(held)" = 0 ]; }
wait_for 15 none_held || fail "$(held) descriptors still hold the deleted renamed.bin"
pass "the deleted 200 MiB file is no longer held open"

# The receiver killed in the middle of a large transfer: nothing partial
# ever appears under the real name, and it finishes after a restart.
head -c $((200 << 20)) /dev/urandom > "$T/big2.src"
cp "$T/big2.src" "$R1/web/big2.bin"
wait_for 60 sh -c "ls -a '$R3/web' | grep -q '^.krakenfs-tmp-'" ||
  fail "no transfer to n3 started"
kill -9 "$PID_n3"; wait "$PID_n3" 2>/dev/null || true
[ ! -e "$R3/web/big2.bin" ] || cmp -s "$R3/web/big2.bin" "$T/big2.src" ||
  fail "a partial big2.bin is visible on n3"
start_agent n3k "$T/n3.yaml"
settle 120
[ -z "$(find "$R3" -name '.krakenfs-tmp-*')" ] || fail "temp files left on n3"
pass "receiver killed mid-transfer: no partial file, converged after restart"

# n2 killed, 1,000 changes elsewhere, restarted: it catches up.
kill -9 "$PID_n2"; wait "$PID_n2" 2>/dev/null || true
mkdir "$R1/while-down"
for i in $(seq 1 500); do echo "n1 $i" > "$R1/while-down/a$i"; done
for i in $(seq 1 500); do echo "n3 $i" > "$R3/web/while-down-$i.txt"; done
wait_for 180 same_tree "$R1" "$R3" || fail "n1 and n3 diverged while n2 was down"
next_report "$T/n1/journal.db"
[ "$(peer_stat "$T/n1/journal.db" n2 connected)" = false ] || fail "n2 not reported down"
[ "$(peer_stat "$T/n1/journal.db" n2 lag_entries)" -ge 1000 ] || fail "lag of n2: $(peer_stat "$T/n1/journal.db" n2 lag_entries)"
[ "$(peer_stat "$T/n1/journal.db" n2 lag_bytes)" -gt 0 ] || fail "lag bytes of n2"
start_agent n2b "$T/n2.yaml"
settle 60
pass "n2 killed with -9, 1,000 changes made, restarted and caught up"

# The origin is down while another node catches up from a third.
stop_agent n3k
echo "only n1 wrote this" > "$R1/web/late.txt"
wait_for 60 test -f "$R2/web/late.txt" || fail "n2 did not get late.txt"
stop_agent n1
start_agent n3b "$T/n3.yaml"
wait_for 60 test -f "$R3/web/late.txt" || fail "n3 did not catch up from n2 while n1 was down"
same_tree "$R2" "$R3" || wait_for 60 same_tree "$R2" "$R3" || fail "n2 and n3 differ"
pass "n3 caught up from n2 while the origin n1 was down"

# Concurrent writes to one file: n2 is frozen, both write, n2 thaws.
start_agent n1b "$T/n1.yaml"
settle
kill -STOP "$PID_n2b"
echo "version from n1" > "$R1/web/shared.txt"
wait_for 60 test -f "$R3/web/shared.txt" || fail "shared.txt to n3"
echo "version from n2" > "$R2/web/shared.txt"
kill -CONT "$PID_n2b"
settle 30
copies=$(find "$R1/web" -name 'shared.conflict-*' | wc -l)
[ "$copies" -eq 1 ] || fail "expected one conflict copy, found $copies: $(ls "$R1/web")"
both=$(cat "$R1/web/shared.txt" "$R1"/web/shared.conflict-* | sort | tr '\n' '|')
[ "$both" = "version from n1|version from n2|" ] || fail "a version was lost: $both"
cj=$("$KJ" --db "$T/n1/journal.db" --json conflicts --volume web)
[ "$(jq -s 'length' <<<"$cj")" = 1 ] || fail "kraken-journal conflicts: $cj"
copy=$(jq -r '.versions[] | select(.copy != null) | .copy' <<<"$cj")
[ -f "$R1/web/${copy#*/}" ] || [ -f "$R1/web/$(basename "$copy")" ] || fail "listed copy $copy is not on disk"
[ "$(jq '[.versions[] | select(.winner)] | length' <<<"$cj")" = 1 ] || fail "one winner: $cj"
"$KJ" --db "$T/n3/journal.db" conflicts > "$T/conflicts.out"
grep -q "web/shared.txt" "$T/conflicts.out" || fail "table conflicts on n3"
pass "concurrent writes: identical everywhere, one conflict copy, nothing lost, listed by kraken-journal conflicts"

for n in 1 2 3; do "$KJ" --db "$T/n$n/journal.db" verify >/dev/null || fail "verify on n$n"; done
pass "kraken-journal verify passes on every node"
