#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, runs the unit and
# integration suites, the end-to-end test (three simulated VMs deployed
# with tools/deploy.sh) and a short nemesis run (tests/chaos), once, on
# the plain build, then builds again with AddressSanitizer and
# UndefinedBehaviorSanitizer and runs the unit and integration suites
# once more.
#
#   tools/test.sh            everything
#   tools/test.sh --quick    skip the sanitizer pass (the end-to-end test runs)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "test.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the tests need root (they chown files and run agents); run: sudo $0" >&2
  exit 1
fi

tools/install-deps.sh

# The Debian roots that tests/integration/test_systemd.sh boots are made
# once, for both builds.
export KRAKENFS_NSPAWN_CACHE=$PWD/build/nspawn

run_suite() {
  local dir=$1; shift
  echo "== building $dir"
  tools/build.sh "$dir" "$@"
  echo "== testing $dir"
  (cd "$dir" && ctest --output-on-failure --timeout 600 -j 2)
}

run_suite build
echo "== end-to-end: three simulated VMs (tests/e2e/three_vms.sh)"
tests/e2e/three_vms.sh build/bin
# A short nemesis run (kill -9, SIGSTOP, partitions, full disks, skewed
# clocks while a writer changes every node), on a seed that once lost
# data; tests/chaos/run.sh --help for longer runs and other seeds.
echo "== nemesis: tests/chaos/run.sh --seed 2"
tests/chaos/run.sh build/bin --seed 2
if [ "$quick" -eq 0 ]; then
  # detect_leaks stays on: LeakSanitizer works as root outside ptrace.
  export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite build-asan -DSANITIZE=address,undefined
fi
echo "== all tests passed"
