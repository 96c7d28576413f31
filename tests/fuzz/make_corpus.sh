#!/usr/bin/env bash
# Writes the seed corpus of every fuzz target into tests/fuzz/corpus/NAME:
# a few valid inputs of each shape the target reads and a few broken ones,
# so that a fuzzer starts past the first checks and the replay test of
# every build covers both answers.  Deterministic; run it again after
# changing it and commit the result.  Inputs a fuzzer found (crashes
# turned into regression seeds) are kept: only the files written here
# are replaced.
#
#   tests/fuzz/make_corpus.sh
set -euo pipefail
cd "$(dirname "$0")"
export LC_ALL=C

# ---- writing ------------------------------------------------------------

# put NAME FILE HEX: the bytes of HEX into corpus/NAME/FILE.
put() {
  mkdir -p "corpus/$1"
  printf "$(printf '%s' "$3" | sed 's/../\\x&/g')" > "corpus/$1/$2"
}

# text NAME FILE STRING: STRING as it is, no newline added.
text() {
  mkdir -p "corpus/$1"
  printf '%s' "$3" > "corpus/$1/$2"
}

# ---- encoding (wire.h: big-endian) --------------------------------------

u8() { printf '%02x' "$1"; }
u16() { printf '%04x' "$1"; }
u32() { printf '%08x' "$1"; }
u64() { printf '%016x' "$1"; }
bytes() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }
str() { u16 "${#1}"; bytes "$1"; }
rep() { printf "%.0s$2" $(seq "$1"); }       # rep COUNT BYTEHEX
hash() { rep 32 "$1"; }                      # a SHA-256 of one repeated byte
ref() { str "$1"; u64 "$2"; }

# frame TYPE PAYLOAD: header (magic, version 1, type, flags 0, length).
frame() { bytes KRFS; u8 1; u8 "$1"; u16 0; u32 $((${#2} / 2)); printf '%s' "$2"; }

O1=vm1@0123456789abcdef
O2=vm2@fedcba9876543210

# entry OP MODE VOLUME PATH HASH TARGET [BASE_ORIGIN]: hash and target
# are "-" when absent.
entry() {
  ref "$O1" 7; u64 42; u64 1767225600000000000
  str "$3"; str "$4"; u8 "$1"; u32 "$2"; u32 1000; u32 1000
  u64 5; u64 1767225600000000000
  if [ "$5" = - ]; then u8 0; else u8 1; hash "$5"; fi
  if [ "$6" = - ]; then u8 0; else u8 1; str "$6"; fi
  if [ -n "${7:-}" ]; then u16 1; ref "$7" 3; else u16 0; fi
}

REG=$((0100644)) DIR=$((040755)) LNK=$((0120777))

# ---- wire: frames of every type ------------------------------------------

wire() {
  local vec
  vec=$(u32 2; ref "$O1" 12; ref "$O2" 0)
  put wire hello "$(frame 1 "$(str vm1; str krakenfs; u32 15; u32 1; ref "$O1" 12)")"
  put wire vector "$(frame 2 "$vec")"
  put wire entries-put "$(frame 3 "$(u32 1; entry 1 $REG vol1 dir/a.txt ab - "$O2")")"
  put wire entries-mixed "$(frame 3 "$(u32 4
    entry 2 $DIR vol1 dir - -
    entry 3 $LNK vol1 dir/link - ../a.txt
    entry 4 0 vol1 old.txt - -
    entry 6 $DIR vol2 '' - -)")"
  put wire get-chunklist "$(frame 4 "$(hash 11; u32 0; u8 1; hash 22)")"
  put wire chunklist "$(frame 5 "$(hash 11; u64 300000; u32 3; u32 0; u8 1
    hash 22; u32 2; u8 0; hash 33; u32 100000; u8 1; u32 1; u32 2)")"
  put wire get-chunks "$(frame 6 "$(u32 2; hash 33; hash 44)")"
  put wire chunk "$(frame 7 "$(hash 33; u32 5; bytes hello)")"
  put wire not-here "$(frame 8 "$(hash 33)")"
  put wire ping "$(frame 9 "$(u64 77)")"
  put wire pong "$(frame 10 "$(u64 77)")"
  put wire error "$(frame 11 "$(u16 3; str 'cluster id differs')")"
  put wire changing "$(frame 12 "$(str vol1; str dir/a.txt; hash 11; u64 4096)")"
  put wire get-delta "$(frame 13 "$(hash 33; u32 9000; rep 24 5c)")"
  put wire delta "$(frame 14 "$(hash 33; u32 9000; u8 3; rep 808 61)")"
  put wire state-begin "$(frame 15 "$vec")"
  put wire state "$(frame 16 "$(u32 1; entry 5 $REG vol1 dir/a.txt ab -)")"
  put wire state-end "$(frame 17 "$(u64 1)")"
  put wire ack "$(frame 18 "$vec")"
  # Chained: prev, seg_end 0; then prev, seg_end 1, key_id, a 72-byte
  # signature.  KEY: a (fake) DER certificate, a SEQUENCE of 62 bytes.
  put wire chain-entries "$(frame 20 "$(u32 2
    entry 1 $REG vol1 dir/a.txt ab - "$O2"; hash 11; u8 0
    entry 4 0 vol1 old.txt - -; hash 22; u8 1; hash 33; u16 72; rep 72 5a)")"
  put wire key "$(frame 22 "$(u16 64; u8 48; u8 62; rep 62 a5)")"
  # Proven heads: a run of two, two digests between them, one after the
  # second up to its signature.  SEALS: one origin's signed chain hash.
  put wire chain-state "$(frame 21 "$(u32 2
    entry 1 $REG vol1 dir/a.txt ab - "$O2"; hash 11; u16 2; hash 41; hash 42; u8 0
    entry 4 0 vol1 old.txt - -; hash 22; u16 1; hash 43; u8 1; hash 33; u16 72; rep 72 5a)")"
  put wire seals "$(frame 23 "$(u32 1; ref "$O2" 9; hash 61; hash 62; u16 72; rep 72 5b)")"
  # Which versions of a file a peer keeps, and its answer.
  put wire ask-kept "$(frame 24 "$(u64 5; str vol1; str dir/a.txt; u32 2; hash 11; hash 22)")"
  put wire kept "$(frame 25 "$(u64 5; u32 2; u8 1; u8 0)")"
  put wire bad-kept-flag "$(frame 25 "$(u64 5; u32 1; u8 2)")"
  # Broken: each refused for one reason.
  put wire bad-magic "$(bytes KRFX; u8 1; u8 9; u16 0; u32 8; u64 1)"
  put wire bad-version "$(bytes KRFS; u8 2; u8 9; u16 0; u32 8; u64 1)"
  put wire bad-flags "$(bytes KRFS; u8 1; u8 9; u16 1; u32 8; u64 1)"
  put wire bad-size "$(bytes KRFS; u8 1; u8 9; u16 0; u32 9; u64 1; u8 0)"
  put wire bad-hostile-path "$(frame 3 "$(u32 1; entry 1 $REG vol1 ../etc/passwd ab -)")"
  put wire bad-shape "$(frame 3 "$(u32 1; entry 2 $DIR vol1 dir ab -)")"
  put wire bad-count "$(frame 2 "$(u32 4000000000; ref "$O1" 1)")"
  put wire bad-trailing "$(frame 2 "$vec$(u8 0)")"
}

# ---- chunklist: CHUNKLIST payloads ---------------------------------------

chunklist() {
  put chunklist plain "$(hash 11; u64 200000; u32 2; u32 0; u8 0; u32 2
    u8 0; hash 33; u32 120000; u8 0; hash 44; u32 80000)"
  put chunklist runs "$(hash 11; u64 1048576; u32 10; u32 2; u8 1; hash 22
    u32 3; u8 1; u32 0; u32 4; u8 0; hash 33; u32 65536; u8 1; u32 7; u32 3)"
  put chunklist empty "$(hash 11; u64 0; u32 0; u32 0; u8 0; u32 0)"
  put chunklist tail "$(hash 11; u64 99; u32 5; u32 5; u8 1; hash 22; u32 0)"
  put chunklist get-chunklist "$(hash 11; u32 3; u8 1; hash 22)"
  put chunklist bad-run-no-base "$(hash 11; u64 9; u32 4; u32 0; u8 0; u32 1
    u8 1; u32 0; u32 4)"
  put chunklist bad-span "$(hash 11; u64 9; u32 3; u32 1; u8 1; hash 22; u32 2
    u8 1; u32 0; u32 2; u8 0; hash 33; u32 10)"
  put chunklist bad-len "$(hash 11; u64 9; u32 1; u32 0; u8 0; u32 1
    u8 0; hash 33; u32 0)"
  put chunklist bad-count "$(hash 11; u64 9; u32 9; u32 0; u8 0; u32 9
    u8 0; hash 33; u32 10)"
}

# ---- delta: DELTA and GET_DELTA payloads, edit recipes --------------------

delta() {
  put delta delta-one-block "$(hash 33; u32 100; u8 0; rep 100 62)"
  put delta delta-held "$(hash 33; u32 9000; u8 3; rep 808 61)"
  put delta delta-all-held "$(hash 33; u32 1048576; rep 32 ff)"
  put delta get-delta "$(hash 33; u32 9000; rep 24 5c)"
  put delta bad-map-past-end "$(hash 33; u32 9000; u8 15)"
  put delta bad-short-data "$(hash 33; u32 9000; u8 3; rep 800 61)"
  put delta bad-len-zero "$(hash 33; u32 0; u8 0)"
  # Recipes: 3 bytes LEN - 1, 4 bytes of held blocks, then a seed.
  put delta recipe-small "$(printf '%06x' 99; u32 0; bytes 'hello, world')"
  put delta recipe-edit "$(printf '%06x' 40000; u32 $((0x3f7)); bytes 'some file')"
  put delta recipe-none-held "$(printf '%06x' 98303; u32 0; rep 64 00)"
  put delta recipe-all-held "$(printf '%06x' 8191; u32 $((0xffffffff)); bytes x)"
}

# ---- rest: query-string values --------------------------------------------

rest() {
  local i=0 v
  for v in 2026-01-02T03:04:05Z 2026-01-02T03:04:05.678Z \
           2026-01-02t03:04:05.123456789+05:30 '2026-01-02 03:04:05-08:00' \
           2026-01-02 @1767225600 @0 90s 15m 2h 3d 0s \
           put volume-create \
           '' garbage 2026-13-45 2026-01-02T25:00:00Z 2026-01-02T03:04:05+24:00 \
           2026-01-02T03:04:05. @-1 @99999999999999999999 -5s 1.5h 5w \
           99999999999999999999d 1969-12-31T23:59:59Z PUT \
           @1767225600.5 @9223372036.854775807 @9223372036.854775808 @1.; do
    text rest "$(printf 'v%02d' "$i")" "$v"
    i=$((i + 1))
  done
}

# ---- plugin: request bodies -------------------------------------------------

plugin() {
  local id
  id=$(rep 32 ab)
  text plugin create '{"Name":"vol1","Opts":{"node_id":"vm1"}}'
  text plugin create-no-opts '{"Name":"web-data","Opts":null}'
  text plugin mount "{\"Name\":\"vol1\",\"ID\":\"$id\"}"
  text plugin get '{"Name":"v.1_x-y"}'
  text plugin empty ''
  text plugin null 'null'
  text plugin array '["Name","vol1"]'
  text plugin malformed '{"Name":'
  text plugin bad-name-dot '{"Name":".krakenfs-removed"}'
  text plugin bad-name-slash '{"Name":"../etc"}'
  text plugin bad-name-type '{"Name":7,"ID":[]}'
  text plugin bad-name-nul '{"Name":"vol\u0000x","ID":"a\u0001b"}'
  text plugin bad-name-utf8 '{"Name":"vol\u00e9\u4e2d"}'
  text plugin bad-opts '{"Name":"vol1","Opts":{"size":"1G","node_id":1}}'
  text plugin bad-opts-type '{"Name":"vol1","Opts":"node_id=vm1"}'
  text plugin bad-long-id "{\"Name\":\"vol1\",\"ID\":\"$(rep 300 61)\"}"
}

# ---- config: YAML files ------------------------------------------------------

config() {
  cp ../../examples/config.yaml corpus/config/example.yaml
  text config empty ''
  text config node 'sync:
  node_id: "vm1"
  cluster_nodes: ["vm1:10.0.0.1", "vm2:10.0.0.2:7000", "vm3:[fd00::13]"]
volume:
  root_path: "/srv/volumes"
filesystem:
  watch_paths: ["/srv/volumes/web"]
  exclude_patterns: ["*.tmp"]
journal:
  retention: "12h"
  retention_pin_max: "2d"
api:
  listen: "[::1]:6882"
plugin:
  mount_wait: "500ms"
'
  text config env '#env:vm2;vm1:10.0.0.1,vm2:10.0.0.2
log:
  level: debug
'
  text config bad-env '#env:bad id!;vm1:10.0.0.1,vm1:10.0.0.2
'
  text config bad-values 'sync:
  node_id: "vm 1"
  p2p_port: 70000
  cluster_nodes: ["vm2:10.0.0.2", "vm2:10.0.0.3"]
  conflict_resolution:
    strategy: newest
    timeout: 30
journal:
  retention: "30d"
  retention_pin_max: "1d"
plugin:
  mount_wait: "2m"
volume:
  root_path: relative/dir
'
  text config bad-unknown-key 'sync:
  nodeid: vm1
logging:
  level: info
'
  text config bad-syntax 'sync: [unclosed
  node_id: "vm1'
  text config bad-tab "$(printf 'sync:\n\tnode_id: vm1\n')"
  put config bad-nesting "$(rep 40 5b)"
  text config bad-two-documents 'log: {level: info}
---
log: {level: debug}
'
  text config bad-aliases 'a: &a [x, x, x, x]
b: &b [*a, *a, *a, *a]
sync: *b
'
  text config bad-top-level '- just
- a list
'
  put config bad-nul "$(bytes 'log:'; u8 0; bytes ' {}')"
}

wire
chunklist
delta
rest
plugin
mkdir -p corpus/config
config
