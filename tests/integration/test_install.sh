#!/usr/bin/env bash
# cmake --install puts what a host needs where a distribution expects it:
# the two programs, the systemd unit naming the installed agent, the
# example config and the docs; nothing under /etc (the config is the
# operator's).  Checked with --prefix into a private tree, and as a
# package build stages it (DESTDIR, prefix /usr); the installed programs
# run, and systemd-analyze accepts the installed unit.
source "$(dirname "$0")/lib.sh"

BUILD=$(dirname "$BIN")
[ -f "$BUILD/CMakeCache.txt" ] || fail "$BUILD is not a CMake build tree"
command -v systemd-analyze >/dev/null ||
  fail "systemd-analyze not found: install Debian's systemd (tools/install-deps.sh)"

cmake --install "$BUILD" --prefix "$T/root" > "$T/install.log" 2>&1 ||
  fail "cmake --install failed: $(tail -5 "$T/install.log")"
for f in bin/krakenfs-agent bin/kraken-journal; do
  [ -x "$T/root/$f" ] || fail "cmake --install did not install $f: $(cat "$T/install.log")"
done
for f in lib/systemd/system/krakenfs.service share/doc/krakenfs/README.md \
         share/doc/krakenfs/LICENSE share/doc/krakenfs/examples/config.yaml; do
  [ -s "$T/root/$f" ] || fail "cmake --install did not install $f: $(cat "$T/install.log")"
done
[ ! -e "$T/root/etc" ] || fail "cmake --install wrote under etc: $(find "$T/root/etc")"
"$T/root/bin/krakenfs-agent" --version | grep -q '^krakenfs-agent [0-9]' ||
  fail "the installed agent does not run: $("$T/root/bin/krakenfs-agent" --version 2>&1)"
"$T/root/bin/kraken-journal" --help > /dev/null || fail "the installed kraken-journal does not run"
unit=$T/root/lib/systemd/system/krakenfs.service
grep -qx "ExecStart=$T/root/bin/krakenfs-agent --config /etc/krakenfs/config.yaml" "$unit" ||
  fail "the installed unit does not start the installed agent: $(grep ExecStart= "$unit")"
out=$(cd "$(dirname "$unit")" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify ./krakenfs.service 2>&1) ||
  fail "systemd-analyze verify failed on the installed unit: $out"
[ -z "$out" ] || fail "systemd-analyze verify complained: $out"
pass "cmake --install --prefix: programs that run, a unit systemd-analyze accepts, docs, no /etc"

DESTDIR=$T/stage cmake --install "$BUILD" --prefix /usr > "$T/stage.log" 2>&1 ||
  fail "cmake --install with DESTDIR failed: $(tail -5 "$T/stage.log")"
[ -x "$T/stage/usr/bin/krakenfs-agent" ] &&
  grep -qx "ExecStart=/usr/bin/krakenfs-agent --config /etc/krakenfs/config.yaml" \
    "$T/stage/usr/lib/systemd/system/krakenfs.service" ||
  fail "a staged install (DESTDIR) is not laid out for /usr: $(find "$T/stage" -type f)"
pass "a package build's staged install (DESTDIR, prefix /usr) names /usr/bin in the unit"
