#!/usr/bin/env bash
# Installs, configures and starts KrakenFS on this node, as root:
#
#   sudo NODE_ID=vm1 CLUSTER_NODES=vm1:192.168.1.10,vm2:192.168.1.11 tools/deploy.sh
#
# Why one script: a node needs binaries, a config file, state directories,
# an API token, cluster credentials, a service and a few kernel limits, and
# each of these is easy to get subtly wrong by hand.  The script is safe to
# run again: whatever is already right is left alone and reported as
# "unchanged"; an existing config file is kept (its difference from what the
# environment asks for is shown) unless --force-config is given.
#
# Cluster credentials: peers speak mutual TLS by default.  The first node of
# CLUSTER_NODES, given no secret, creates the cluster CA and prints the ONE
# file to hand to the other nodes (the CA certificate and key as a single
# PEM bundle, mode 0600).  Every other node is deployed with
#   CLUSTER_SECRET_FILE=/path/to/cluster-secret.pem   (or CLUSTER_SECRET=<base64>)
# and issues its own node certificate from it; the CA key is not kept there.
#
# Options:
#   --force-config   rewrite the config file from the environment
#   --no-build       use the binaries already in the build tree
#   --no-restart     leave a running agent alone even if what it uses changed
#                    (to apply a new config with SIGHUP / systemctl reload)
#   --uninstall      stop the agent and remove what deploy.sh installed;
#                    journal, volumes and credentials are kept
#   --print-config   print the config file the environment describes, exit
#   --print-unit     print the systemd unit as it would be installed, exit
#   -h, --help       this text, with every environment variable
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)

usage() {
  sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Environment (defaults in brackets):
  NODE_ID               this node's id, required (1-64 of A-Z a-z 0-9 . _ -)
  CLUSTER_NODES         every node, this one included: id:host[:port],...
                        [NODE_ID:127.0.0.1, a cluster of one]
  CLUSTER_SECRET_FILE   cluster-secret.pem from the first node
  CLUSTER_SECRET        the same file's content, base64
  CLUSTER_INIT=1        create a new cluster CA here although this node is
                        not the first of CLUSTER_NODES
  KRAKENFS_TLS          on | off [on]; off sends replication in clear text
  KRAKENFS_P2P_PORT     peer port [6881]
  KRAKENFS_LISTEN_ADDRESS  address the peer port binds [0.0.0.0]
  KRAKENFS_API_LISTEN   REST API host:port [127.0.0.1:6882]
  KRAKENFS_CLUSTER_ID   cluster name [krakenfs]
  KRAKENFS_LOG_LEVEL    error | warn | info | debug [info]
  KRAKENFS_EXCLUDE      comma-separated patterns never replicated [*.tmp]
  KRAKENFS_STRATEGY     timestamp | lamport [timestamp]
  KRAKENFS_EGRESS_BPS, KRAKENFS_INGRESS_BPS
                        replication limits in bits/s [0: none]
Paths, for tests and unusual layouts:
  PREFIX                binaries go to PREFIX/bin [/usr/local]
  KRAKENFS_CONFIG_DIR   [/etc/krakenfs]: config.yaml, api-token, tls/
  KRAKENFS_STATE_DIR    [/var/lib/krakenfs]: journal.db, volumes/
  KRAKENFS_RUN_DIR      [/run/krakenfs]: agent.pid without systemd
  KRAKENFS_LOG_DIR      [/var/log/krakenfs]: agent.log without systemd
  KRAKENFS_PLUGIN_DIR   [/run/docker/plugins]: where dockerd finds krakenfs.sock
  KRAKENFS_UNIT_DIR     [/etc/systemd/system]
  KRAKENFS_SYSCTL_DIR   [/etc/sysctl.d]
  KRAKENFS_BIN_DIR      install the binaries from this directory instead of
                        building with tools/build.sh
  KRAKENFS_BUILD_DIR    [<repository>/build]
  KRAKENFS_SERVICE      auto | systemd | direct [auto: systemd when it is PID 1]
  KRAKENFS_START_TIMEOUT       seconds to wait for the agent [90]
  KRAKENFS_MIN_INOTIFY_WATCHES raise fs.inotify.max_user_watches to this
                               when lower [524288]
EOF
}

# ---- options and settings ------------------------------------------------

mode=install force_config=0 build=1 no_restart=0
for arg in "$@"; do
  case "$arg" in
    --force-config) force_config=1 ;;
    --no-build) build=0 ;;
    --no-restart) no_restart=1 ;;
    --uninstall) mode=uninstall ;;
    --print-config) mode=print-config ;;
    --print-unit) mode=print-unit ;;
    -h|--help) usage; exit 0 ;;
    *) echo "deploy.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

PREFIX=${PREFIX:-/usr/local}
CONFIG_DIR=${KRAKENFS_CONFIG_DIR:-/etc/krakenfs}
STATE_DIR=${KRAKENFS_STATE_DIR:-/var/lib/krakenfs}
RUN_DIR=${KRAKENFS_RUN_DIR:-/run/krakenfs}
LOG_DIR=${KRAKENFS_LOG_DIR:-/var/log/krakenfs}
PLUGIN_DIR=${KRAKENFS_PLUGIN_DIR:-/run/docker/plugins}
UNIT_DIR=${KRAKENFS_UNIT_DIR:-/etc/systemd/system}
SYSCTL_DIR=${KRAKENFS_SYSCTL_DIR:-/etc/sysctl.d}
BUILD_DIR=${KRAKENFS_BUILD_DIR:-$REPO/build}
START_TIMEOUT=${KRAKENFS_START_TIMEOUT:-90}
MIN_WATCHES=${KRAKENFS_MIN_INOTIFY_WATCHES:-524288}
SERVICE=${KRAKENFS_SERVICE:-auto}

CONFIG=$CONFIG_DIR/config.yaml
TOKEN=$CONFIG_DIR/api-token
TLS_DIR=$CONFIG_DIR/tls
SECRET_OUT=$TLS_DIR/cluster-secret.pem
VOLUMES=$STATE_DIR/volumes
JOURNAL=$STATE_DIR/journal.db
SOCKET=$PLUGIN_DIR/krakenfs.sock
PIDFILE=$RUN_DIR/agent.pid
LOG=$LOG_DIR/agent.log
UNIT=$UNIT_DIR/krakenfs.service
SYSCTL_FILE=$SYSCTL_DIR/60-krakenfs.conf
AGENT=$PREFIX/bin/krakenfs-agent
KJ=$PREFIX/bin/kraken-journal

TLS=${KRAKENFS_TLS:-on}
P2P_PORT=${KRAKENFS_P2P_PORT:-6881}
LISTEN_ADDRESS=${KRAKENFS_LISTEN_ADDRESS:-0.0.0.0}
API_LISTEN=${KRAKENFS_API_LISTEN:-127.0.0.1:6882}
CLUSTER_ID=${KRAKENFS_CLUSTER_ID:-krakenfs}
LOG_LEVEL=${KRAKENFS_LOG_LEVEL:-info}
EXCLUDE=${KRAKENFS_EXCLUDE-*.tmp}
STRATEGY=${KRAKENFS_STRATEGY:-timestamp}
EGRESS=${KRAKENFS_EGRESS_BPS:-0}
INGRESS=${KRAKENFS_INGRESS_BPS:-0}

# ---- output --------------------------------------------------------------

say() { printf 'deploy: %s\n' "$*"; }
warn() { printf 'deploy: WARNING: %s\n' "$*" >&2; }
die() { printf 'deploy: ERROR: %s\n' "$*" >&2; exit 1; }

changed=()       # what this run changed, for the summary
restart=0        # the running agent must be restarted to see a change
note_change() { changed+=("$1"); say "$1"; }

TMP=
cleanup() { [ -z "$TMP" ] || rm -rf "$TMP"; }
trap cleanup EXIT
tmpdir() {
  if [ -z "$TMP" ]; then
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/krakenfs-deploy-XXXXXX")
    chmod 700 "$TMP"
  fi
}

# ---- checks on the environment ------------------------------------------

ID_RE='^[A-Za-z0-9._-]{1,64}$'

check_settings() {
  [ -n "${NODE_ID:-}" ] ||
    die "NODE_ID is not set. Run, for example:
    sudo NODE_ID=vm1 CLUSTER_NODES=vm1:192.168.1.10,vm2:192.168.1.11 $0"
  [[ $NODE_ID =~ $ID_RE ]] ||
    die "NODE_ID '$NODE_ID' is not a node id: use 1 to 64 of A-Z a-z 0-9 . _ -"
  CLUSTER_NODES=${CLUSTER_NODES:-$NODE_ID:127.0.0.1}
  CLUSTER_NODES=${CLUSTER_NODES// /}
  local item id found=0
  NODES=()
  IFS=, read -r -a NODES <<<"$CLUSTER_NODES"
  [ "${#NODES[@]}" -gt 0 ] || die "CLUSTER_NODES is empty"
  for item in "${NODES[@]}"; do
    id=${item%%:*}
    [[ $item == *:?* && $id =~ $ID_RE && $item != *'"'* && $item != *\\* ]] ||
      die "CLUSTER_NODES entry '$item' is not id:host[:port] (e.g. vm2:192.168.1.11)"
    [ "$id" = "$NODE_ID" ] && found=1
  done
  [ "$found" -eq 1 ] ||
    die "NODE_ID '$NODE_ID' is not in CLUSTER_NODES ($CLUSTER_NODES): list every node, this one included"
  FIRST_NODE=${NODES[0]%%:*}
  case "$TLS" in on|off) ;; *) die "KRAKENFS_TLS must be on or off, not '$TLS'" ;; esac
  case "$SERVICE" in auto|systemd|direct) ;;
    *) die "KRAKENFS_SERVICE must be auto, systemd or direct, not '$SERVICE'" ;; esac
  [[ $P2P_PORT =~ ^[0-9]{1,5}$ ]] && [ "$P2P_PORT" -ge 1 ] && [ "$P2P_PORT" -le 65535 ] ||
    die "KRAKENFS_P2P_PORT '$P2P_PORT' is not a port (1-65535)"
  [[ $START_TIMEOUT =~ ^[0-9]+$ ]] || die "KRAKENFS_START_TIMEOUT must be a number of seconds"
  local v
  for v in "$LISTEN_ADDRESS" "$API_LISTEN" "$CLUSTER_ID" "$LOG_LEVEL" "$EXCLUDE" \
           "$STRATEGY" "$EGRESS" "$INGRESS" "$PREFIX" "$CONFIG_DIR" "$STATE_DIR" \
           "$PLUGIN_DIR"; do
    [[ $v != *'"'* && $v != *\\* && $v != *$'\n'* ]] ||
      die "setting '$v' contains a quote, backslash or newline"
  done
  for v in "$PREFIX" "$CONFIG_DIR" "$STATE_DIR" "$RUN_DIR" "$LOG_DIR" "$PLUGIN_DIR"; do
    [[ $v == /* ]] || die "path '$v' must be absolute"
  done
}

need_root() {
  [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"
}

# systemd manages the agent only when it is this system's init.
use_systemd() {
  case "$SERVICE" in
    systemd) return 0 ;;
    direct) return 1 ;;
  esac
  [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] &&
    command -v systemctl >/dev/null
}

# ---- files ---------------------------------------------------------------

# install_file SRC DST MODE WHAT: copies SRC to DST unless they are equal;
# returns 0 when it changed something.
install_file() {
  local src=$1 dst=$2 mode=$3 what=$4
  if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
    if [ "$(stat -c %a "$dst")" != "${mode#0}" ]; then
      chmod "$mode" "$dst"
      note_change "$what: mode set to $mode ($dst)"
      return 0
    fi
    say "$what: unchanged ($dst)"
    return 1
  fi
  local verb=installed
  [ -e "$dst" ] && verb=updated
  mkdir -p "$(dirname "$dst")"
  # A new file renamed into place: a running binary is never rewritten.
  install -m "$mode" "$src" "$dst.krakenfs-new"
  mv -f "$dst.krakenfs-new" "$dst"
  note_change "$what: $verb ($dst)"
  return 0
}

make_dir() {
  local dir=$1 mode=$2
  if [ -d "$dir" ]; then
    return 0
  fi
  mkdir -p "$dir"
  chmod "$mode" "$dir"
  note_change "created $dir"
}

# ---- binaries ------------------------------------------------------------

find_binaries() {
  local bin
  if [ -n "${KRAKENFS_BIN_DIR:-}" ]; then
    bin=$KRAKENFS_BIN_DIR
  else
    bin=$BUILD_DIR/bin
    if [ "$build" -eq 1 ]; then
      command -v cmake >/dev/null ||
        die "cmake is missing: run tools/install-deps.sh first (or pass KRAKENFS_BIN_DIR=DIR with built binaries)"
      say "building with tools/build.sh $BUILD_DIR"
      "$REPO/tools/build.sh" "$BUILD_DIR" -DWERROR=OFF ||
        die "the build failed (see above); tools/install-deps.sh installs what it needs"
    fi
  fi
  SRC_AGENT=$bin/krakenfs-agent
  SRC_KJ=$bin/kraken-journal
  [ -x "$SRC_AGENT" ] && [ -x "$SRC_KJ" ] ||
    die "no krakenfs-agent and kraken-journal in $bin: build with tools/build.sh, or set KRAKENFS_BIN_DIR"
}

install_binaries() {
  local tmp_changed=0
  install_file "$SRC_AGENT" "$AGENT" 0755 "binary krakenfs-agent" && tmp_changed=1
  install_file "$SRC_KJ" "$KJ" 0755 "binary kraken-journal" || true
  [ "$tmp_changed" -eq 0 ] || restart=1
}

# ---- prerequisites -------------------------------------------------------

check_inotify() {
  local cur
  cur=$(cat /proc/sys/fs/inotify/max_user_watches 2>/dev/null || echo 0)
  if [ "$cur" -ge "$MIN_WATCHES" ]; then
    say "inotify: max_user_watches is $cur (enough: one watch per directory in the volumes)"
  else
    if sysctl -q -w "fs.inotify.max_user_watches=$MIN_WATCHES" >/dev/null 2>&1 ||
       { echo "$MIN_WATCHES" > /proc/sys/fs/inotify/max_user_watches; } 2>/dev/null; then
      note_change "inotify: raised max_user_watches from $cur to $MIN_WATCHES (one watch per directory)"
    else
      warn "inotify: max_user_watches is $cur and cannot be raised here; volumes with more directories than that are only caught by rescans"
    fi
  fi
  # Persist it when the running value had to be raised (or was, by an
  # earlier run), so that it survives a reboot.
  if [ "$cur" -lt "$MIN_WATCHES" ] || [ -f "$SYSCTL_FILE" ]; then
    tmpdir
    printf '# Written by KrakenFS tools/deploy.sh: the agent watches every directory\n# of every volume with inotify.\nfs.inotify.max_user_watches = %s\n' \
      "$MIN_WATCHES" > "$TMP/sysctl"
    install_file "$TMP/sysctl" "$SYSCTL_FILE" 0644 "sysctl fs.inotify.max_user_watches" || true
  fi
  local inst
  inst=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 128)
  [ "$inst" -ge 8 ] ||
    warn "inotify: max_user_instances is $inst; the agent needs one (raise fs.inotify.max_user_instances)"
}

# The pid of the agent this script manages, or nothing.
managed_pid() {
  local pid
  if use_systemd; then
    pid=$(systemctl show -p MainPID --value krakenfs 2>/dev/null || true)
    [ -n "$pid" ] && [ "$pid" != 0 ] && echo "$pid"
    return 0
  fi
  [ -f "$PIDFILE" ] || return 0
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = krakenfs-agent ] || return 0
  # A killed agent stays a zombie until its parent (init) reaps it.
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] && echo "$pid"
  return 0
}

is_wildcard() { case "$1" in 0.0.0.0|'*'|'[::]'|::|'[::ffff:0.0.0.0]') return 0 ;; esac; return 1; }

# check_port ADDRESS PORT WHAT: fails when a program other than our agent
# listens on PORT at ADDRESS (or at a wildcard, or anywhere when ADDRESS is
# itself a wildcard).
check_port() {
  local addr=$1 port=$2 what=$3 line local_addr own lines=()
  command -v ss >/dev/null || { warn "ss (iproute2) is missing: not checking port $port"; return 0; }
  addr=${addr#[}; addr=${addr%]}
  while read -r line; do
    [ -n "$line" ] || continue
    local_addr=$(awk '{print $4}' <<<"$line")
    local_addr=${local_addr%:*}; local_addr=${local_addr%%%*}
    local_addr=${local_addr#[}; local_addr=${local_addr%]}
    if is_wildcard "$addr" || is_wildcard "$local_addr" || [ "$local_addr" = "$addr" ]; then
      lines+=("$line")
    fi
  done < <(ss -H -ltnp "sport = :$port" 2>/dev/null)
  if [ "${#lines[@]}" -eq 0 ]; then
    say "port $port ($what): free"
    return 0
  fi
  own=$(managed_pid)
  if [ -n "$own" ] && [[ ${lines[*]} == *"pid=$own,"* ]]; then
    say "port $port ($what): held by our agent (pid $own)"
    return 0
  fi
  if [[ ${lines[*]} == *krakenfs-agent* ]]; then
    die "port $port ($what) is held by a krakenfs-agent this script did not start:
    ${lines[0]}
  stop it (kill the pid above) and run deploy.sh again"
  fi
  die "port $port ($what) is in use:
    ${lines[0]}
  stop that program, or choose another port (KRAKENFS_P2P_PORT / KRAKENFS_API_LISTEN) on every node"
}

# Ports from the config that will be used (a kept file may differ from the
# environment).
config_value() {  # config_value SECTION KEY FILE: a scalar, unquoted
  awk -v s="$1" -v k="$2" '
    /^[^ #]/ { sec = $1; sub(/:.*/, "", sec) }
    sec == s && $1 == k ":" { v = $2; gsub(/"/, "", v); print v; exit }' "$3"
}

check_ports() {
  local p2p listen api
  p2p=$(config_value sync p2p_port "$CONFIG")
  listen=$(config_value sync listen_address "$CONFIG")
  api=$(config_value api listen "$CONFIG")
  check_port "${listen:-0.0.0.0}" "${p2p:-6881}" "peers"
  api=${api:-127.0.0.1:6882}
  check_port "${api%:*}" "${api##*:}" "REST API"
}

docker_state() {  # prints running, stopped or absent
  if ! command -v docker >/dev/null && ! command -v dockerd >/dev/null; then
    echo absent
  elif timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    echo running
  else
    echo stopped
  fi
}

report_docker() {
  case "$(docker_state)" in
    absent)
      warn "docker is not installed: plain directories under $VOLUMES still replicate; install docker to use the volume driver 'krakenfs'" ;;
    stopped)
      warn "docker is installed but not running: plain directories under $VOLUMES still replicate; the driver 'krakenfs' is there once dockerd starts" ;;
    running)
      if [ "$PLUGIN_DIR" != /run/docker/plugins ] && [ "$PLUGIN_DIR" != /var/run/docker/plugins ]; then
        warn "the plugin socket $SOCKET is outside /run/docker/plugins: dockerd will not find the driver there"
      fi
      say "docker: running; no restart needed (dockerd finds the plugin socket $SOCKET when a volume first names the driver)" ;;
  esac
}

# ---- credentials ---------------------------------------------------------

fingerprint() { openssl x509 -in "$1" -noout -fingerprint -sha256 2>/dev/null | sed 's/.*=//'; }

# split_secret FILE DIR: the bundle's CA certificate and key as DIR/ca.pem
# and DIR/ca-key.pem, as 'krakenfs-agent tls issue' expects them.
split_secret() {
  local src=$1 dir=$2
  ( umask 077
    awk -v c="$dir/ca.pem" -v k="$dir/ca-key.pem" '
      /^-----BEGIN CERTIFICATE-----/ { out = c }
      /^-----BEGIN .*PRIVATE KEY-----/ { out = k }
      out != "" { print > out }
      /^-----END / { out = "" }' "$src" )
  [ -s "$dir/ca.pem" ] && [ -s "$dir/ca-key.pem" ] ||
    die "the cluster secret holds no CA certificate and key: pass the cluster-secret.pem that deploy.sh printed on the first node"
  chmod 600 "$dir/ca-key.pem"
}

node_cert_ok() {  # the node certificate is ours, for NODE_ID, from ca.pem
  [ -s "$TLS_DIR/node.pem" ] && [ -s "$TLS_DIR/node-key.pem" ] && [ -s "$TLS_DIR/ca.pem" ] || return 1
  openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/node.pem" >/dev/null 2>&1 || return 1
  openssl x509 -in "$TLS_DIR/node.pem" -noout -subject -nameopt RFC2253 2>/dev/null |
    grep -qx "subject=CN=$NODE_ID"
}

# issue_from DIR: a node certificate for NODE_ID from the CA in DIR, moved
# into TLS_DIR together with the CA certificate.
issue_from() {
  local dir=$1
  "$AGENT" tls issue "$dir" "$NODE_ID" --force >/dev/null ||
    die "krakenfs-agent tls issue failed (see above)"
  install -m 0644 "$dir/ca.pem" "$TLS_DIR/ca.pem"
  install -m 0600 "$dir/node-key.pem" "$TLS_DIR/node-key.pem"
  install -m 0644 "$dir/node.pem" "$TLS_DIR/node.pem"
  restart=1
}

print_secret_help() {
  local others=() item
  for item in "${NODES[@]}"; do
    [ "${item%%:*}" = "$NODE_ID" ] || others+=("${item%%:*}")
  done
  cat <<EOF
deploy: ------------------------------------------------------------------
deploy: cluster secret: $SECRET_OUT (mode 0600)
deploy: It is the cluster's CA certificate and key; whoever holds it can add
deploy: nodes.  Copy it to each other node (${others[*]:-none listed yet}), e.g.
deploy:     scp $SECRET_OUT root@NODE:/root/krakenfs-cluster-secret.pem
deploy: and deploy there with it:
deploy:     sudo CLUSTER_SECRET_FILE=/root/krakenfs-cluster-secret.pem \\
deploy:       NODE_ID=<id> CLUSTER_NODES=$CLUSTER_NODES tools/deploy.sh
deploy: or pass its content instead of a file:
deploy:     CLUSTER_SECRET=\$(base64 -w0 $SECRET_OUT)
deploy: Delete the copy on each node once it is deployed.
deploy: ------------------------------------------------------------------
EOF
}

setup_credentials() {
  if [ "$TLS" = off ]; then
    warn "KRAKENFS_TLS=off: peers are not authenticated and replication is not encrypted"
    return 0
  fi
  command -v openssl >/dev/null || die "openssl is missing: apt-get install openssl (or run tools/install-deps.sh)"
  if [ ! -d "$TLS_DIR" ]; then
    mkdir -p "$TLS_DIR"
    note_change "created $TLS_DIR"
  fi
  chmod 700 "$TLS_DIR"
  tmpdir
  local secret=
  if [ -n "${CLUSTER_SECRET_FILE:-}" ]; then
    [ -r "$CLUSTER_SECRET_FILE" ] || die "CLUSTER_SECRET_FILE $CLUSTER_SECRET_FILE cannot be read"
    secret=$CLUSTER_SECRET_FILE
  elif [ -n "${CLUSTER_SECRET:-}" ]; then
    ( umask 077; printf '%s' "$CLUSTER_SECRET" | base64 -d > "$TMP/secret.pem" 2>/dev/null ) ||
      die "CLUSTER_SECRET is not base64: pass \$(base64 -w0 cluster-secret.pem)"
    secret=$TMP/secret.pem
  fi

  if [ -n "$secret" ]; then
    mkdir -p "$TMP/ca"
    split_secret "$secret" "$TMP/ca"
    if [ -s "$TLS_DIR/ca.pem" ] &&
       [ "$(fingerprint "$TLS_DIR/ca.pem")" != "$(fingerprint "$TMP/ca/ca.pem")" ]; then
      die "this node already has the credentials of another cluster CA in $TLS_DIR
  (ca.pem $(fingerprint "$TLS_DIR/ca.pem"),
   secret $(fingerprint "$TMP/ca/ca.pem")).
  If this node should move to the new cluster, move $TLS_DIR away and run deploy.sh again."
    fi
    if node_cert_ok; then
      say "credentials: unchanged (node certificate for $NODE_ID from the cluster CA in $TLS_DIR)"
    else
      issue_from "$TMP/ca"
      note_change "credentials: issued the node certificate for $NODE_ID ($TLS_DIR/node.pem) from the cluster secret"
      if [ -n "${CLUSTER_SECRET_FILE:-}" ] &&
         [ "$(readlink -f "$CLUSTER_SECRET_FILE")" != "$(readlink -f "$SECRET_OUT")" ]; then
        say "credentials: the CA key is not kept on this node; delete $CLUSTER_SECRET_FILE once every node is deployed"
      else
        say "credentials: the CA key is not kept on this node"
      fi
    fi
    if [ "$NODE_ID" = "$FIRST_NODE" ] && [ -s "$SECRET_OUT" ]; then print_secret_help; fi
    return 0
  fi

  if node_cert_ok; then
    say "credentials: unchanged (node certificate for $NODE_ID in $TLS_DIR)"
    [ -s "$SECRET_OUT" ] && say "credentials: the cluster secret for other nodes is $SECRET_OUT"
    return 0
  fi
  if [ -s "$TLS_DIR/ca-key.pem" ] && [ -s "$TLS_DIR/ca.pem" ]; then
    # This node holds the CA (it created it): a new node id, or a lost cert.
    mkdir -p "$TMP/ca"
    install -m 0644 "$TLS_DIR/ca.pem" "$TMP/ca/ca.pem"
    install -m 0600 "$TLS_DIR/ca-key.pem" "$TMP/ca/ca-key.pem"
    issue_from "$TMP/ca"
    note_change "credentials: issued the node certificate for $NODE_ID from the CA in $TLS_DIR"
    return 0
  fi
  if [ -s "$TLS_DIR/ca.pem" ]; then
    die "$TLS_DIR holds a cluster CA certificate but no valid certificate for node $NODE_ID.
  Pass the cluster secret from the first node: CLUSTER_SECRET_FILE=/path/cluster-secret.pem $0"
  fi
  if [ "$NODE_ID" != "$FIRST_NODE" ] && [ "${CLUSTER_INIT:-0}" != 1 ]; then
    die "no cluster credentials on this node, and it is not the first of CLUSTER_NODES ($FIRST_NODE).
  Deploy $FIRST_NODE first; it creates the cluster CA and prints the file to pass here:
    sudo CLUSTER_SECRET_FILE=/path/cluster-secret.pem NODE_ID=$NODE_ID CLUSTER_NODES=$CLUSTER_NODES $0
  (CLUSTER_INIT=1 creates a new, separate cluster CA here instead.)"
  fi
  "$AGENT" tls init "$TLS_DIR" >/dev/null || die "krakenfs-agent tls init $TLS_DIR failed (see above)"
  ( umask 077; cat "$TLS_DIR/ca.pem" "$TLS_DIR/ca-key.pem" > "$SECRET_OUT" )
  chmod 600 "$SECRET_OUT" "$TLS_DIR/ca-key.pem"
  mkdir -p "$TMP/ca"
  install -m 0644 "$TLS_DIR/ca.pem" "$TMP/ca/ca.pem"
  install -m 0600 "$TLS_DIR/ca-key.pem" "$TMP/ca/ca-key.pem"
  issue_from "$TMP/ca"
  note_change "credentials: created the cluster CA and the node certificate for $NODE_ID in $TLS_DIR"
  print_secret_help
}

# ---- config --------------------------------------------------------------

render_config() {
  local item pat
  cat <<EOF
# KrakenFS agent configuration for node $NODE_ID, written by tools/deploy.sh
# from its environment.  examples/config.yaml explains every key.  Later
# runs of deploy.sh keep this file; 'deploy.sh --force-config' rewrites it.
log:
  level: "$LOG_LEVEL"

filesystem:
  watch_paths:
    - "$VOLUMES"
EOF
  if [ -z "$EXCLUDE" ]; then
    echo "  exclude_patterns: []"
  else
    echo "  exclude_patterns:"
    IFS=, read -r -a pats <<<"$EXCLUDE"
    for pat in "${pats[@]}"; do [ -z "$pat" ] || echo "    - \"$pat\""; done
  fi
  cat <<EOF
  recursive: true

sync:
  node_id: "$NODE_ID"
  cluster_nodes:
EOF
  for item in "${NODES[@]}"; do echo "    - \"$item\""; done
  local bw=false
  { [ "$EGRESS" != 0 ] || [ "$INGRESS" != 0 ]; } && bw=true
  local tls=true
  [ "$TLS" = on ] || tls=false
  cat <<EOF
  p2p_port: $P2P_PORT
  listen_address: "$LISTEN_ADDRESS"
  cluster_id: "$CLUSTER_ID"
  bandwidth:
    enable: $bw
    egress_bits_per_sec: $EGRESS
    ingress_bits_per_sec: $INGRESS
  conflict_resolution:
    strategy: "$STRATEGY"
    timeout: "30s"
  tls:
    enable: $tls
    cert_file: "$TLS_DIR/node.pem"
    key_file: "$TLS_DIR/node-key.pem"
    ca_file: "$TLS_DIR/ca.pem"

volume:
  root_path: "$VOLUMES"
  driver_name: "krakenfs"

journal:
  path: "$JOURNAL"

api:
  listen: "$API_LISTEN"
  token_file: "$TOKEN"

plugin:
  socket: "$SOCKET"
EOF
}

# The agent reads NODE_ID and CLUSTER_NODES from its environment; the config
# file written here is what it must go by.
agent_env() { env -u NODE_ID -u CLUSTER_NODES "$@"; }

write_config() {
  tmpdir
  render_config > "$TMP/config.yaml"
  agent_env "$SRC_AGENT" --validate-config "$TMP/config.yaml" >"$TMP/validate.out" 2>&1 || {
    cat "$TMP/validate.out" >&2
    die "the config built from the environment is not valid (see above)"
  }
  if [ ! -f "$CONFIG" ]; then
    install -m 0644 "$TMP/config.yaml" "$CONFIG"
    note_change "config: created $CONFIG"
    restart=1
  elif cmp -s "$TMP/config.yaml" "$CONFIG"; then
    say "config: unchanged ($CONFIG)"
  else
    say "config: $CONFIG differs from what the environment describes:"
    diff -u --label "$CONFIG (existing)" --label "$CONFIG (from the environment)" \
      "$CONFIG" "$TMP/config.yaml" | sed 's/^/    /' || true
    if [ "$force_config" -eq 1 ]; then
      cp -p "$CONFIG" "$CONFIG.old"
      install -m 0644 "$TMP/config.yaml" "$CONFIG"
      note_change "config: rewrote $CONFIG (the previous one is $CONFIG.old)"
      restart=1
    else
      say "config: kept the existing file; run with --force-config to write the one above"
    fi
  fi
  agent_env "$SRC_AGENT" --validate-config "$CONFIG" >"$TMP/validate.out" 2>&1 || {
    cat "$TMP/validate.out" >&2
    die "$CONFIG is not valid (see above): fix it, or rewrite it with --force-config"
  }
}

write_token() {
  if [ -s "$TOKEN" ]; then
    if [ "$(stat -c %a "$TOKEN")" != 600 ]; then
      chmod 600 "$TOKEN"
      note_change "API token: mode set to 0600 ($TOKEN)"
    else
      say "API token: unchanged ($TOKEN)"
    fi
    return 0
  fi
  ( umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$TOKEN"; echo >> "$TOKEN" )
  chmod 600 "$TOKEN"
  note_change "API token: created $TOKEN (mode 0600; admin calls need 'Authorization: Bearer \$(cat $TOKEN)')"
}

# ---- the service ---------------------------------------------------------

# The unit names the two directories the agent writes so that systemd
# creates them before it builds the sandbox (StateDirectory= under /var/lib,
# RuntimeDirectory= under /run; see the unit's comment).  Elsewhere systemd
# cannot create them: they become ReadWritePaths= entries for directories
# this script creates (make_unit_dirs), which then must outlive a reboot.
render_unit() {
  local state_line plugin_line
  case "${STATE_DIR%/}" in
    /var/lib/?*) state_line="StateDirectory=${STATE_DIR#/var/lib/}" ;;
    *) state_line="ReadWritePaths=$STATE_DIR" ;;
  esac
  case "${PLUGIN_DIR%/}" in
    /run/?*) plugin_line="RuntimeDirectory=${PLUGIN_DIR#/run/}" ;;
    *) plugin_line="ReadWritePaths=$PLUGIN_DIR" ;;
  esac
  sed -e "s#/usr/local/bin/#$PREFIX/bin/#g" \
      -e "s#/etc/krakenfs/config.yaml#$CONFIG#g" \
      -e "s#^StateDirectory=krakenfs\$#${state_line%/}#" \
      -e "s#^RuntimeDirectory=docker/plugins\$#${plugin_line%/}#" \
      "$REPO/systemd/krakenfs.service"
}

agent_started_line() {  # the agent's last start-up log line since OFFSET
  tail -c +"$(($1 + 1))" "$LOG" 2>/dev/null | grep -q 'watching'
}

unit_restarts() { systemctl show -p NRestarts --value krakenfs 2>/dev/null || echo 0; }

unit_failed() {  # unit_failed WHAT: the unit's last log lines, then dies
  echo
  journalctl -u krakenfs -n 15 --no-pager -o cat >&2 || true
  die "krakenfs.service $1 (its last log lines are above; all of them: journalctl -u krakenfs)"
}

# wait_up PID LOG_OFFSET: until the agent has started completely.  Under
# systemd a start that fails is restarted every RestartSec: the first
# restart ends the wait, rather than the timeout.
wait_up() {
  local pid=$1 off=$2 t0=$SECONDS next=5 restarts0=0
  use_systemd && restarts0=$(unit_restarts)
  printf 'deploy: waiting for the agent to start (up to %s s)' "$START_TIMEOUT"
  while :; do
    if use_systemd; then
      case "$(systemctl is-active krakenfs 2>/dev/null || true)" in
        active) [ -S "$SOCKET" ] && break ;;
        failed) unit_failed "failed to start" ;;
      esac
      [ "$(unit_restarts)" -le "$restarts0" ] ||
        unit_failed "failed to start, and systemd is restarting it"
    else
      if ! kill -0 "$pid" 2>/dev/null; then
        echo
        tail -n 20 "$LOG" >&2 || true
        die "the agent exited during start-up; its log is $LOG (last lines above)"
      fi
      agent_started_line "$off" && [ -S "$SOCKET" ] && break
    fi
    if [ $((SECONDS - t0)) -ge "$START_TIMEOUT" ]; then
      echo
      if use_systemd; then
        [ -S "$SOCKET" ] && warn "the plugin socket is there but systemd saw no READY=1 from the agent"
        die "krakenfs.service did not become active within $START_TIMEOUT s: see 'journalctl -u krakenfs'"
      fi
      tail -n 20 "$LOG" >&2 || true
      die "the agent did not finish starting within $START_TIMEOUT s (log: $LOG); a large first scan can take longer: KRAKENFS_START_TIMEOUT=600"
    fi
    if [ $((SECONDS - t0)) -ge "$next" ]; then
      printf ' %ss' "$((SECONDS - t0))"
      next=$((next + 5))
    else
      printf '.'
    fi
    sleep 1
  done
  printf ' up after %s s\n' "$((SECONDS - t0))"
}

stop_direct() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "the agent (pid $pid) ignored SIGTERM for 30 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
}

start_direct() {
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  local off
  off=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
  rm -f "$PIDFILE"
  # setsid: a session of its own, so that it outlives this shell and its
  # terminal.  The shell writes its own pid, then becomes the agent: the pid
  # file names the agent whether or not setsid had to fork.
  env -u NODE_ID -u CLUSTER_NODES setsid sh -c 'echo $$ > "$1"; exec "$2" --config "$3"' \
    sh "$PIDFILE" "$AGENT" "$CONFIG" >>"$LOG" 2>&1 </dev/null &
  local pid="" i
  for ((i = 0; i < 100; i++)); do
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    [ -n "$pid" ] && break
    sleep 0.05
  done
  [ -n "$pid" ] || die "the agent did not start (no pid in $PIDFILE); see $LOG"
  say "agent: started directly (pid $pid, pid file $PIDFILE, log $LOG)"
  wait_up "$pid" "$off"
}

run_direct() {
  say "service: systemd is not PID 1 here (a container or a test host): running the agent directly, without a unit; it will not start at boot"
  local pid
  pid=$(managed_pid)
  if [ -n "$pid" ]; then
    if [ "$restart" -eq 1 ] && [ "$no_restart" -eq 1 ]; then
      say "agent: left running (pid $pid) with its previous files (--no-restart); apply the changes above with 'kill -HUP $pid' (reload) or a restart"
    elif [ "$restart" -eq 1 ]; then
      say "agent: restarting (pid $pid) to apply the changes above"
      stop_direct "$pid"
      start_direct
      changed+=("agent restarted")
    else
      say "agent: unchanged (running, pid $pid)"
    fi
  else
    [ -f "$PIDFILE" ] && say "agent: not running (stale pid file $PIDFILE)"
    start_direct
    changed+=("agent started")
  fi
}

make_unit_dirs() {
  case "${PLUGIN_DIR%/}" in
    /run/?*) ;;
    *) make_dir "$PLUGIN_DIR" 755 ;;
  esac
}

run_systemd() {
  local unit_changed=0
  make_unit_dirs
  tmpdir
  render_unit > "$TMP/krakenfs.service"
  if install_file "$TMP/krakenfs.service" "$UNIT" 0644 "systemd unit"; then
    systemctl daemon-reload
    unit_changed=1
  fi
  if systemctl is-enabled --quiet krakenfs 2>/dev/null; then
    say "service: unchanged (krakenfs.service enabled)"
  else
    systemctl enable --quiet krakenfs
    note_change "service: enabled krakenfs.service (starts at boot, before docker.service)"
  fi
  if systemctl is-active --quiet krakenfs; then
    if [ "$no_restart" -eq 1 ] && { [ "$restart" -eq 1 ] || [ "$unit_changed" -eq 1 ]; }; then
      say "service: left running with its previous files (--no-restart); apply the changes above with 'systemctl reload krakenfs' or a restart"
    elif [ "$restart" -eq 1 ] || [ "$unit_changed" -eq 1 ]; then
      systemctl restart --no-block krakenfs
      note_change "service: restarted krakenfs.service to apply the changes above"
    else
      say "service: unchanged (krakenfs.service active)"
    fi
  else
    systemctl start --no-block krakenfs
    note_change "service: started krakenfs.service"
  fi
  wait_up 0 0
}

# ---- uninstall -----------------------------------------------------------

uninstall() {
  local removed=() pid f
  if use_systemd && [ -f "$UNIT" ]; then
    systemctl disable --now --quiet krakenfs 2>/dev/null || true
    rm -f "$UNIT"
    systemctl daemon-reload
    removed+=("krakenfs.service (stopped, disabled, $UNIT)")
  fi
  pid=$(KRAKENFS_SERVICE=direct managed_pid)
  if [ -n "$pid" ]; then
    stop_direct "$pid"
    removed+=("the agent (pid $pid, stopped)")
  fi
  for f in "$AGENT" "$KJ" "$CONFIG" "$CONFIG.old" "$TOKEN" "$PIDFILE" "$LOG" "$SYSCTL_FILE"; do
    if [ -e "$f" ]; then rm -f "$f"; removed+=("$f"); fi
  done
  [ -S "$SOCKET" ] && { rm -f "$SOCKET"; removed+=("$SOCKET"); }
  rmdir "$RUN_DIR" "$LOG_DIR" 2>/dev/null || true
  if [ "${#removed[@]}" -eq 0 ]; then
    say "uninstall: nothing to remove (unchanged)"
  else
    say "uninstall: removed:"
    printf 'deploy:     %s\n' "${removed[@]}"
  fi
  [[ " ${removed[*]} " == *"$SYSCTL_FILE"* ]] &&
    say "uninstall: fs.inotify.max_user_watches keeps its current value until reboot"
  say "uninstall: kept (this node's data; remove by hand to erase it):"
  for f in "$JOURNAL" "$VOLUMES" "$TLS_DIR"; do
    [ -e "$f" ] && say "    $f"
  done
  if [ "$(docker_state)" = running ]; then
    say "uninstall: docker keeps running; volumes of the driver krakenfs are unavailable until KrakenFS is deployed again"
  fi
}

# ---- main ----------------------------------------------------------------

case "$mode" in
  print-config) check_settings; render_config; exit 0 ;;
  print-unit) render_unit; exit 0 ;;
  uninstall) need_root --uninstall; uninstall; exit 0 ;;
esac

need_root
check_settings
say "node $NODE_ID of cluster '$CLUSTER_ID': ${NODES[*]}"
find_binaries
make_dir "$CONFIG_DIR" 755
make_dir "$STATE_DIR" 755
make_dir "$VOLUMES" 755
install_binaries
check_inotify
write_token
setup_credentials
write_config
check_ports
report_docker
if use_systemd; then run_systemd; else run_direct; fi

echo
agent_env "$KJ" --config "$CONFIG" status || warn "kraken-journal status failed"
echo
if [ "${#changed[@]}" -eq 0 ]; then
  say "done: node $NODE_ID is deployed; nothing changed (unchanged)"
else
  say "done: node $NODE_ID is deployed; changed: ${#changed[@]} item(s)"
fi
