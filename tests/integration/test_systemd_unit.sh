#!/usr/bin/env bash
# systemd/krakenfs.service must load cleanly: `systemd-analyze verify`
# catches misspelt directives, bad values and missing executables, which
# would otherwise only show on a real host at boot.  The unit is checked as
# tools/deploy.sh installs it (PREFIX substituted, here the build tree, so
# that ExecStart names an existing binary), and the directives the agent
# and dockerd rely on are checked to be there.
#
# Needs systemd-analyze (Debian's systemd, tools/install-deps.sh); systemd
# need not be running.
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
grep -q "^ReadWritePaths=$T/state $T/state/volumes /run/docker/plugins\$" "$T/unit/krakenfs.service" ||
  fail "deploy.sh did not substitute the state directory: $(grep ReadWritePaths= "$T/unit/krakenfs.service")"
pass "deploy.sh renders the unit with its PREFIX and paths"

# 2. systemd-analyze verify: no output and exit 0.  SYSTEMD_LOG_LEVEL keeps
# notices about this host (no systemd running) out of the way.
out=$(cd "$T/unit" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify ./krakenfs.service 2>&1) ||
  fail "systemd-analyze verify failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify complained: $out"
pass "systemd-analyze verify accepts the unit"

# 3. The original unit differs only in those paths.
diff <(sed -e "s#$BIN/#/usr/local/bin/#" -e "s#$T/etc/#/etc/krakenfs/#" \
           -e "s#$T/state#/var/lib/krakenfs#g" "$T/unit/krakenfs.service") "$UNIT_SRC" >/dev/null ||
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
grep -q '^ReadWritePaths=.*/var/lib/krakenfs.*/run/docker/plugins' "$UNIT_SRC" ||
  fail "ReadWritePaths must hold the state directory and /run/docker/plugins"
pass "notify, watchdog, ordering before docker, reload, sandbox and capabilities are set"
