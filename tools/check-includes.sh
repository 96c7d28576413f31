#!/usr/bin/env bash
# Fails when a file outside a module includes one of the module's
# internal headers: those beside its sources, as opposed to the public
# ones in src/MODULE/include.  The build already keeps them off every
# other target's include path; this catches what the path does not, a
# relative include ("../journal/journal_int.h") or a header of the
# module's own directory reached from a subdirectory.
#
#   tools/check-includes.sh SOURCE_DIR [DIR=FILE...]
#
# Each DIR=FILE lets FILE (relative to SOURCE_DIR) include DIR's internal
# headers: CMakeLists.txt passes the white-box tests it grants
# (kraken_white_box), so the two cannot disagree.
set -euo pipefail

# The modules whose internal headers are private, one per line.
modules=(
  src/common
  src/content
  src/journal
  src/watch
  src/api
  src/agent/config
  src/agent
)

top=${1:?usage: check-includes.sh SOURCE_DIR [DIR=FILE...]}
shift
cd "$top"
declare -A granted=()
for g in "$@"; do
  granted[$g]=1
done

status=0
# Every quoted include of the tree, once: FILE:LINE:NAME.
mapfile -t includes < <(find src tools tests -name '*.[ch]' -print0 | sort -z |
  xargs -0 -r awk '/^[ \t]*#[ \t]*include[ \t]*"/ {
    s = $0; sub(/^[^"]*"/, "", s); sub(/".*/, "", s)
    print FILENAME ":" FNR ":" s }')
for dir in "${modules[@]}"; do
  declare -A internal=()
  for h in "$dir"/*.h; do
    [ -e "$h" ] && internal[${h##*/}]=1
  done
  for entry in "${includes[@]}"; do
    IFS=: read -r f line inc <<<"$entry"
    name=${inc##*/}
    [ -n "${internal[$name]:-}" ] || continue
    fdir=${f%/*}
    [ "$fdir" = "$dir" ] && continue
    if [[ $inc == */* ]]; then
      # A path: whose header it names, resolved from the file.
      [ "$(realpath -m "$fdir/$inc")" = "$(realpath -m "$dir/$name")" ] ||
        continue
    elif [ -e "$fdir/$name" ]; then
      continue              # a header of that name of its own
    fi
    [ -n "${granted[$dir=$f]:-}" ] && continue
    echo "$f:$line: includes \"$inc\", internal to $dir" >&2
    status=1
  done
  unset internal
done
if [ $status -ne 0 ]; then
  echo "check-includes: include the module's public header instead, or" \
       "grant a white-box test with kraken_white_box in CMakeLists.txt" >&2
fi
exit $status
