#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, runs the unit and
# integration suites, then builds again with AddressSanitizer and
# UndefinedBehaviorSanitizer and runs the whole suite once more.
#
#   tools/test.sh            everything
#   tools/test.sh --quick    skip the sanitizer pass
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "test.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the tests need root (they chown files and run agents); run: sudo $0" >&2
  exit 1
fi

tools/install-deps.sh

run_suite() {
  local dir=$1; shift
  echo "== building $dir"
  tools/build.sh "$dir" "$@"
  echo "== testing $dir"
  (cd "$dir" && ctest --output-on-failure --timeout 600 -j 2)
}

run_suite build
if [ "$quick" -eq 0 ]; then
  # detect_leaks stays on: LeakSanitizer works as root outside ptrace.
  export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite build-asan -DSANITIZE=address,undefined
fi
echo "== all tests passed"
