#!/usr/bin/env bash
# krakenfs.service under a real systemd, as a new Debian 12 host runs it:
# a minimal Debian 12 root (nspawn_lib.sh) booted with systemd as PID 1,
# where tools/deploy.sh installs the unit, and where the boot path, the
# notify protocol, reload, the watchdog, stop, journald priorities and
# uninstall are checked with systemd's own tools.  Then a host with Docker:
# after a boot, dockerd starts after the agent and the driver works at once.
#
# Needs root, mmdebstrap, systemd-nspawn and Debian's mirror the first time
# (the roots are cached; see nspawn_lib.sh).
# A mount namespace of its own: the overlays vanish with the test.
[ -n "${KRAKENFS_CT_NS:-}" ] ||
  KRAKENFS_CT_NS=1 exec unshare --mount --propagation private bash "$0" "$@"
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nspawn_lib.sh"
ct_check_tools

# What the agent needs at run time (sanitizer runtimes for the ASan
# build), what deploy.sh uses, and curl to speak to the plugin socket.
PKGS=(systemd systemd-sysv dbus libsqlite3-0 libyaml-0-2 libssl3
      libmicrohttpd12 libjansson4 libasan8 libubsan1 openssl iproute2 procps
      curl)
ct_root_ensure base "${PKGS[@]}"
BASE=$CT_ROOT
ct_root_ensure docker "${PKGS[@]}" docker.io
DOCKER_ROOT=$CT_ROOT

CONFIG=/etc/krakenfs/config.yaml
SOCK=/run/docker/plugins/krakenfs.sock
VOLS=/var/lib/krakenfs/volumes

# A failed check shows the agent's side of the story.
fail_ct() {
  local name=$1; shift
  echo "--- journalctl -u krakenfs on $name" >&2
  ct "$name" journalctl -u krakenfs -n 40 --no-pager >&2 || true
  fail "$name: $*"
}

prop() { ct "$1" systemctl show -p "$3" --value "$2"; }
# A time property ("30s", "1min 30s") in whole seconds.
prop_seconds() {
  local us
  us=$(ct "$1" systemd-analyze timespan "$(prop "$@")" | awk '$1 ~ /s:$/ && $2 ~ /^[0-9]+$/ { print $2 }')
  [ -n "$us" ] || fail "cannot read $3 of $2"
  echo $((us / 1000000))
}

deploy() {  # deploy HOST [OPTIONS]: tools/deploy.sh --no-build as the guide runs it
  local name=$1; shift
  ct "$name" NODE_ID=vm1 CLUSTER_NODES=vm1:127.0.0.1 KRAKENFS_BIN_DIR=/krakenfs-bin \
    /krakenfs/tools/deploy.sh --no-build "$@"
}

plugin_activate() {  # the request dockerd sends first to a volume plugin
  ct "$1" curl -sf --max-time 5 --unix-socket "$SOCK" -X POST \
    -H 'Content-Type: application/json' -d '{}' http://plugin/Plugin.Activate
}

# ---- 1. a fresh host without Docker: deploy, and deploy again ------------

ct_boot vm "$BASE"
ct vm test ! -e /run/docker/plugins ||
  fail "the fresh host already has /run/docker/plugins: the test would not show the boot case"
deploy vm >"$T/deploy1.out" 2>&1 || { tail -n 30 "$T/deploy1.out" >&2; fail_ct vm "deploy.sh failed"; }
[ "$(ct vm systemctl is-active krakenfs)" = active ] || fail_ct vm "krakenfs.service is not active after deploy.sh"
[ "$(ct vm systemctl is-enabled krakenfs)" = enabled ] || fail_ct vm "krakenfs.service is not enabled"
pass "deploy.sh on a host where /run/docker/plugins does not exist: service active and enabled"

pid1=$(prop vm krakenfs MainPID)
deploy vm >"$T/deploy2.out" 2>&1 || { tail -n 30 "$T/deploy2.out" >&2; fail_ct vm "second deploy.sh failed"; }
grep -q 'nothing changed (unchanged)' "$T/deploy2.out" ||
  fail "the second deploy.sh changed something: $(grep -E 'deploy: (created|.*: (installed|updated)|service: (re)?started)' "$T/deploy2.out")"
[ "$(prop vm krakenfs MainPID)" = "$pid1" ] || fail "the second deploy.sh restarted the agent"
pass "a second deploy.sh changes nothing and leaves the agent running"

# ---- 2. Type=notify: active only once the agent said READY=1 -----------
# 'systemctl restart' returns when the unit is active; with READY=1 sent
# only after the journal, the scan and the sockets are up, the plugin
# answers at once (with Type=simple it would return before any of them).

[ "$(prop vm krakenfs Type)" = notify ] || fail "krakenfs.service is not Type=notify"
ct vm systemctl restart krakenfs || fail_ct vm "systemctl restart failed"
out=$(plugin_activate vm) || fail_ct vm "the plugin socket did not answer right after 'systemctl restart' returned"
[[ $out == *VolumeDriver* ]] || fail "Plugin.Activate answered '$out'"
ct vm kraken-journal --config "$CONFIG" status >/dev/null || fail_ct vm "kraken-journal status failed"
status=$(prop vm krakenfs StatusText)
[[ $status == "node vm1, "* ]] || fail "StatusText is '$status', expected it to name node vm1"
pass "Type=notify: active after READY=1, plugin answering, StatusText '$status'"

# ---- 3. the boot path ----------------------------------------------------

ct_poweroff vm
ct_boot vm "$BASE"
[ "$(ct vm systemctl is-active krakenfs)" = active ] ||
  fail_ct vm "krakenfs.service is not active after a boot ($(ct vm systemctl is-active krakenfs))"
[ "$(prop vm krakenfs NRestarts)" = 0 ] || fail_ct vm "krakenfs.service needed restarts at boot"
plugin_activate vm >/dev/null || fail_ct vm "the plugin socket does not answer after a boot"
ct vm kraken-journal --config "$CONFIG" status >/dev/null || fail_ct vm "kraken-journal status failed after a boot"
pass "after poweroff and a fresh boot the service is active with no manual step"

# ---- 4. reload applies a changed config; journald gets priorities -------

pid1=$(prop vm krakenfs MainPID)
ct vm sed -i -e 's/^    - "vm1:127.0.0.1"$/    - "vm1:127.0.0.1"\n    - "vm2:127.0.0.2"/' \
  -e 's/^    - "\*\.tmp"$/    - "*.tmp"\n    - "*.swp"/' "$CONFIG"
ct vm grep -q vm2 "$CONFIG" || fail "could not add vm2 to $CONFIG"
ct vm systemctl reload krakenfs || fail_ct vm "systemctl reload failed"
ct_wait 10 vm sh -c "kraken-journal --config $CONFIG status | grep -q '^  vm2 '" ||
  fail_ct vm "vm2 did not appear in kraken-journal status after the reload: $(ct vm kraken-journal --config "$CONFIG" status)"
[ "$(prop vm krakenfs MainPID)" = "$pid1" ] || fail "the reload restarted the agent"
[ "$(ct vm systemctl is-active krakenfs)" = active ] || fail_ct vm "not active after the reload"
pass "systemctl reload applies a new cluster node without a restart"

# The reload logged a warning (exclude_patterns only takes effect at a
# restart) and info lines; -p warning must show the one, not the others.
all=$(ct vm journalctl -u krakenfs -o cat --no-pager)
warn=$(ct vm journalctl -u krakenfs -p warning -o cat --no-pager)
grep -q 'info  agent: reload: ' <<<"$all" || fail "no info line of the reload in the journal: $all"
grep -q 'warn  agent: reload: filesystem.exclude_patterns changed' <<<"$warn" ||
  fail "journalctl -p warning lacks the agent's warning: $warn"
! grep -q '^info ' <<<"$warn" || fail "journalctl -p warning shows info lines: $(grep '^info ' <<<"$warn" | head -3)"
! grep -q '^<[0-9]>' <<<"$all" || fail "priority prefixes reached the journal text"
pass "journald receives the agent's lines with their priority"

# ---- 5. the watchdog -----------------------------------------------------

pid1=$(prop vm krakenfs MainPID)
restarts=$(prop vm krakenfs NRestarts)
wd=$(prop_seconds vm krakenfs WatchdogUSec)
[ "$wd" -gt 0 ] || fail "no WatchdogSec on krakenfs.service"
t0=$SECONDS
ct vm kill -STOP "$pid1"
limit=$((wd + 20))
until pid2=$(prop vm krakenfs MainPID) && [ "$pid2" != "$pid1" ] && [ "$pid2" != 0 ] &&
      [ "$(ct vm systemctl is-active krakenfs)" = active ]; do
  [ $((SECONDS - t0)) -le "$limit" ] ||
    fail_ct vm "the agent stopped with SIGSTOP was not replaced within $limit s (WatchdogSec $wd s)"
  sleep 0.5
done
took=$((SECONDS - t0))
[ "$(prop vm krakenfs NRestarts)" -gt "$restarts" ] || fail "NRestarts did not grow"
# Read whole first: under pipefail, grep -q leaving at the match would
# fail the pipe with the writer's SIGPIPE.
unit_log=$(ct vm journalctl -u krakenfs -o cat --no-pager)
grep -q 'Watchdog timeout' <<<"$unit_log" ||
  fail_ct vm "systemd logged no watchdog timeout"
plugin_activate vm >/dev/null || fail_ct vm "the plugin does not answer after the watchdog restart"
pass "watchdog: a stopped agent was killed and restarted by systemd after $took s (WatchdogSec $wd s)"

# ---- 6. stop commits the journal -----------------------------------------

ct vm mkdir -p "$VOLS/v1"
ct_wait 10 vm sh -c "kraken-journal --config $CONFIG log --op volume-create | grep -q v1" ||
  fail_ct vm "the volume v1 was not recorded"
ct vm sh -c "echo last > $VOLS/v1/written-before-stop"
t0=$SECONDS
timeout_stop=$(prop_seconds vm krakenfs TimeoutStopUSec)
ct vm systemctl stop krakenfs || fail_ct vm "systemctl stop failed"
took=$((SECONDS - t0))
[ "$took" -le "$timeout_stop" ] || fail "systemctl stop took $took s (TimeoutStopSec $timeout_stop s)"
[ "$(prop vm krakenfs Result)" = success ] || fail_ct vm "Result=$(prop vm krakenfs Result) after stop"
[ "$(prop vm krakenfs ExecMainStatus)" = 0 ] || fail_ct vm "the agent exited $(prop vm krakenfs ExecMainStatus) on stop"
grep -q 'written-before-stop' <<<"$(ct vm kraken-journal --config "$CONFIG" log --volume v1)" ||
  fail_ct vm "the file written just before the stop is not in the journal: $(ct vm kraken-journal --config "$CONFIG" log --volume v1)"
pass "systemctl stop exits 0 in $took s with the last change committed"

# ---- 7. uninstall ---------------------------------------------------------

ct vm systemctl start krakenfs || fail_ct vm "start after stop failed"
deploy vm --uninstall >"$T/uninstall.out" 2>&1 || { cat "$T/uninstall.out" >&2; fail "deploy.sh --uninstall failed"; }
state=$(ct vm systemctl is-active krakenfs || true)
[ "$state" = inactive ] || fail "krakenfs.service is '$state' after --uninstall"
! ct vm systemctl is-enabled krakenfs >/dev/null 2>&1 || fail "krakenfs.service is still enabled after --uninstall"
! ct vm pgrep -x krakenfs-agent >/dev/null || fail "an agent still runs after --uninstall"
ct vm test -f /var/lib/krakenfs/journal.db || fail "--uninstall removed the journal"
pass "deploy.sh --uninstall stops and disables the service, keeps the journal"
ct_poweroff vm

# ---- 8. with Docker: dockerd starts after the agent at boot -------------

ct_boot dock "$DOCKER_ROOT"
[ "$(ct dock systemctl is-active docker)" = active ] || fail "dockerd does not run on the Docker host"
deploy dock >"$T/deploy-docker.out" 2>&1 ||
  { tail -n 30 "$T/deploy-docker.out" >&2; fail_ct dock "deploy.sh failed on the Docker host"; }
ct_poweroff dock
ct_boot dock "$DOCKER_ROOT"
ct dock docker volume create --driver krakenfs v1 >/dev/null 2>"$T/volume-create.err" ||
  fail_ct dock "docker volume create right after boot failed: $(cat "$T/volume-create.err")"
ready=$(prop dock krakenfs ActiveEnterTimestampMonotonic)
dockerd=$(prop dock docker ExecMainStartTimestampMonotonic)
[ "$ready" -gt 0 ] && [ "$dockerd" -gt 0 ] || fail "missing timestamps (agent $ready, dockerd $dockerd)"
[ "$ready" -le "$dockerd" ] ||
  fail "dockerd started $(( (ready - dockerd) / 1000 )) ms before the agent was ready"
ct dock test -d "$VOLS/v1" || fail "the volume v1 has no directory under $VOLS"
[ "$(ct dock docker volume inspect -f '{{.Driver}}' v1)" = krakenfs ] || fail "v1 is not a krakenfs volume"
pass "after a boot dockerd started $(( (dockerd - ready) / 1000 )) ms after the agent was ready; docker volume create works at once"
ct_poweroff dock
