#!/usr/bin/env bash
# systemd/krakenfs.service must load cleanly: `systemd-analyze verify`
# catches misspelt directives, bad values and missing executables, which
# would otherwise only show on a real host at boot.  The unit is checked as
# tools/deploy.sh installs it (PREFIX substituted, here the build tree, so
# that ExecStart names an existing binary), and the directives the agent
# and dockerd rely on are checked to be there.
#
# Needs systemd-analyze (Debian's systemd, tools/install-deps.sh); systemd
# need not be running.  test_systemd.sh runs the unit under a real systemd.
source "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
UNIT_SRC=$ROOT/systemd/krakenfs.service
[ -f "$UNIT_SRC" ] || fail "no $UNIT_SRC"
command -v systemd-analyze >/dev/null ||
  fail "systemd-analyze not found: install Debian's systemd (tools/install-deps.sh)"
[ -x "$BIN/krakenfs-agent" ] || fail "no $BIN/krakenfs-agent"

# 1. The unit as deploy.sh renders it for PREFIX=<build tree>.
mkdir -p "$T/unit"
PREFIX=$(dirname "$BIN") KRAKENFS_CONFIG_DIR=$T/etc KRAKENFS_STATE_DIR=$T/state \
  "$ROOT/tools/deploy.sh" --print-unit > "$T/unit/krakenfs.service" ||
  fail "deploy.sh --print-unit failed"
grep -qx "ExecStart=$BIN/krakenfs-agent --config $T/etc/config.yaml" "$T/unit/krakenfs.service" ||
  fail "deploy.sh did not substitute PREFIX and the config path: $(grep ExecStart= "$T/unit/krakenfs.service")"
# A state directory outside /var/lib cannot be a StateDirectory=: it becomes
# a ReadWritePaths= entry; the plugin directory under /run stays a
# RuntimeDirectory= that systemd creates.
grep -qx "ReadWritePaths=$T/state" "$T/unit/krakenfs.service" ||
  fail "deploy.sh did not make the state directory writable: $(grep -E 'ReadWritePaths=|Directory=' "$T/unit/krakenfs.service")"
grep -qx "RuntimeDirectory=docker/plugins" "$T/unit/krakenfs.service" ||
  fail "the plugin directory is not a RuntimeDirectory=: $(grep -E 'ReadWritePaths=|Directory=' "$T/unit/krakenfs.service")"
pass "deploy.sh renders the unit with its PREFIX and paths"

# The default layout: both directories made by systemd before the sandbox,
# so the unit starts on a host where neither exists (at boot, /run is
# empty); a plugin directory outside /run becomes a ReadWritePaths= entry.
PREFIX=/usr/local KRAKENFS_STATE_DIR=/var/lib/kfs-other KRAKENFS_PLUGIN_DIR=/srv/plugins \
  "$ROOT/tools/deploy.sh" --print-unit > "$T/unit/other.service" || fail "deploy.sh --print-unit failed"
grep -qx "StateDirectory=kfs-other" "$T/unit/other.service" &&
  grep -qx "ReadWritePaths=/srv/plugins" "$T/unit/other.service" ||
  fail "other paths rendered wrongly: $(grep -E 'ReadWritePaths=|Directory=' "$T/unit/other.service")"
pass "deploy.sh names the writable directories as systemd can create them"

# 2. systemd-analyze verify: no output and exit 0.  SYSTEMD_LOG_LEVEL keeps
# notices about this host (no systemd running) out of the way.
out=$(cd "$T/unit" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify ./krakenfs.service 2>&1) ||
  fail "systemd-analyze verify failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify complained: $out"
pass "systemd-analyze verify accepts the unit"

# 3. The original unit differs only in those paths.
diff <(sed -e "s#$BIN/#/usr/local/bin/#" -e "s#$T/etc/#/etc/krakenfs/#" \
           -e "s#^ReadWritePaths=$T/state\$#StateDirectory=krakenfs#" "$T/unit/krakenfs.service") "$UNIT_SRC" >/dev/null ||
  fail "the rendered unit differs from $UNIT_SRC beyond the paths"

# 4. What the agent and dockerd rely on.
want() {
  grep -qx "$1" "$UNIT_SRC" || fail "krakenfs.service lacks '$1'"
}
want 'Type=notify'
want 'NotifyAccess=main'
want 'WatchdogSec=30s'
want 'Before=docker.service'
want 'Restart=on-failure'
want 'ExecReload=/bin/kill -HUP $MAINPID'
want 'ProtectSystem=strict'
want 'NoNewPrivileges=yes'
want 'ExecStart=/usr/local/bin/krakenfs-agent --config /etc/krakenfs/config.yaml'
want 'CapabilityBoundingSet=CAP_CHOWN CAP_FOWNER CAP_FSETID CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH'
want 'StateDirectory=krakenfs'
want 'RuntimeDirectory=docker/plugins'
want 'RuntimeDirectoryPreserve=yes'
# A ReadWritePaths= entry must never name a directory that may not exist
# at start (it fails the start with 226/NAMESPACE), nor may ExecStartPre=
# be relied on to create one (its own sandbox is built first).
! grep -q '^ExecStartPre=' "$UNIT_SRC" || fail "krakenfs.service has an ExecStartPre= again"
! grep -q '^ReadWritePaths=' "$UNIT_SRC" ||
  fail "krakenfs.service has a ReadWritePaths= entry: $(grep '^ReadWritePaths=' "$UNIT_SRC")"
pass "notify, watchdog, ordering before docker, reload, sandbox and capabilities are set"
