#!/usr/bin/env bash
# Fails when the project's headers include each other in a circle.
#
#   tools/check-include-cycles.sh [DIR...]   (default: every src/* module)
#
# Only quoted includes of headers found in the given directories count;
# a header is named by its file name, as the build's include paths do.
# A circle means two modules each need the other's declarations: one of
# them should take the other's type as an opaque pointer instead.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
dirs=("$@")
[ "${#dirs[@]}" -gt 0 ] || dirs=(src/*/)

declare -A path edges color
for d in "${dirs[@]}"; do
  [ -d "$d" ] || { echo "check-include-cycles: no directory $d" >&2; exit 2; }
  # Down the tree: public headers sit in MODULE/include, and
  # src/agent/config is a module of its own under src/agent.
  while IFS= read -r h; do
    path[$(basename "$h")]=$h
  done < <(find "$d" -name '*.h')
done
[ "${#path[@]}" -gt 0 ] || { echo "check-include-cycles: no headers" >&2; exit 2; }

for name in "${!path[@]}"; do
  list=""
  while IFS= read -r inc; do
    [ -n "${path[$inc]:-}" ] && list+="$inc "
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "${path[$name]}")
  edges[$name]=$list
done

found=0
# Depth-first; a header met again while still on the stack closes a circle.
visit() {
  local n=$1 stack=$2
  color[$n]=grey
  for m in ${edges[$n]}; do
    if [ "${color[$m]:-white}" = grey ]; then
      echo "include circle: $stack$n -> $m" >&2
      found=1
    elif [ "${color[$m]:-white}" = white ]; then
      visit "$m" "$stack$n -> "
    fi
  done
  color[$n]=black
}
for name in $(printf '%s\n' "${!path[@]}" | sort); do
  [ "${color[$name]:-white}" = white ] && visit "$name" ""
done
if [ "$found" -ne 0 ]; then
  exit 1
fi
echo "check-include-cycles: ${#path[@]} headers, no circle"
