#!/usr/bin/env bash
# Configure and build into DIR (default build/).  Extra arguments go to
# cmake's configure step, e.g. tools/build.sh build-asan -DSANITIZE=address,undefined
# Warnings are errors here (WERROR=ON: development, tests, CI); pass
# -DWERROR=OFF to build with a compiler newer than the code.  Assertions
# stay compiled in (ASSERTIONS=ON) although the build type is
# RelWithDebInfo, so that the tests run with them.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWERROR=ON -DASSERTIONS=ON "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
