#!/usr/bin/env bash
# Builds KrakenFS as a managed Docker plugin: a minimal rootfs (the agent and
# exactly the shared libraries ldd names for it) plus config.json, then
# `docker plugin create NAME DIR`.  Run with --help for the options.
#
# Why the plugin looks the way it does (measured with Docker 20.10):
#  - interface docker.volumedriver/1.0 on socket krakenfs.sock: dockerd
#    bind-mounts its own directory for the plugin at /run/docker/plugins and
#    connects to /run/docker/plugins/krakenfs.sock, the agent's default
#    plugin.socket.  A managed plugin gets no Plugin.Activate call; the
#    agent does not need one.
#  - network host: peers reach the agent on sync.p2p_port of the host's
#    own addresses, and the REST API stays on the host's 127.0.0.1:6882.
#  - CAP_SYS_ADMIN: part of the recipe for a plugin with a propagated
#    mount (DESIGN.md section 7).  In this layout dockerd and runc make
#    every mount and the agent makes none: the same test passed once
#    without the capability, so it is a candidate for removal.
#  - propagatedMount: dockerd hands containers the Mountpoint the driver
#    answers, translated to the host.  A path under
#    propagatedMount becomes DATA_ROOT/plugins/ID/propagated-mount/...,
#    a directory dockerd makes rshared and binds into the plugin; any other
#    path becomes a path inside the plugin's rootfs, where mounts made in
#    the plugin are invisible.
#  - State on a host bind mount ("state", default /var/lib/krakenfs), put
#    on the propagatedMount itself (/var/lib/krakenfs).  dockerd deletes
#    DATA_ROOT/plugins/ID, propagated-mount included, on `docker plugin rm`
#    (after unmounting what is mounted under it), so volumes kept directly
#    in propagated-mount would die with every upgrade of the plugin, and a
#    journal that outlived them would then replicate their loss to every
#    peer.  The bind of the host directory is made inside the plugin on top
#    of the shared propagated mount, so it propagates back to the host's
#    propagated-mount: containers see the same files the agent watches,
#    journal and volumes live and die together in one host directory, and
#    removing or replacing the plugin leaves them alone.  The agent's
#    defaults (volume.root_path /var/lib/krakenfs/volumes, journal.path
#    /var/lib/krakenfs/journal.db) already point there, and a config.yaml
#    for the plugin must keep volumes and journal under /var/lib/krakenfs
#    and plugin.socket at its default.  Bind sources must exist on the
#    host: dockerd does not create them.
#  - Configuration on a read-only host bind mount ("config", default
#    /etc/krakenfs): config.yaml, tls/ and api-token, the agent's default
#    paths.  Without config.yaml the agent runs on built-in defaults, so
#    `docker plugin set NAME NODE_ID=... CLUSTER_NODES=...` is enough for a
#    plain cluster; "args" passes extra options (e.g. --log-level debug).
#  - The rootfs holds nothing but the agent, the libraries it loads, the
#    dynamic loader, and empty mount points: glibc >= 2.34 has the files and
#    dns NSS modules built in, dockerd supplies /etc/hosts and
#    /etc/resolv.conf, and the agent execs nothing.
#
# Replacing: an existing disabled plugin of the same name is removed first
# (docker keeps its volumes, which find the new plugin by name) and its
# settings are carried over to the new one; an enabled one is refused
# unless --force, which disables it first and enables the new one.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROG=build-plugin.sh

usage() {
  cat <<EOF
usage: tools/build-plugin.sh [options]

Builds the krakenfs-agent binary if needed, assembles a managed Docker
plugin (rootfs/ and config.json) and installs it with docker plugin create.

  -n, --name NAME      plugin name (default krakenfs)
  -H, --host HOST      docker daemon to install into (default: DOCKER_HOST,
                       else the docker client's default)
  -b, --bin-dir DIR    take krakenfs-agent from DIR (default build/bin,
                       built with tools/build.sh when missing)
  -o, --out DIR        where to assemble the plugin (default: plugin/ next
                       to the bin dir); its contents are replaced
      --dir-only       only assemble the directory, do not touch docker
  -f, --force          replace the plugin even if it is enabled (disables it)
  -h, --help           this text

Environment: DOCKER, the docker client to run (default: docker on PATH).
Afterwards:  docker plugin set NAME NODE_ID=vm1 CLUSTER_NODES=vm1:10.0.0.1,...
             docker plugin enable NAME
EOF
}

die() { echo "$PROG: $*" >&2; exit 1; }

NAME=krakenfs
HOST=
BIN_DIR=
OUT=
DIR_ONLY=0
FORCE=0

need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (try --help)"; }
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--name) need_arg "$@"; NAME=$2; shift 2 ;;
    -H|--host) need_arg "$@"; HOST=$2; shift 2 ;;
    -b|--bin-dir) need_arg "$@"; BIN_DIR=$2; shift 2 ;;
    -o|--out) need_arg "$@"; OUT=$2; shift 2 ;;
    --dir-only) DIR_ONLY=1; shift ;;
    -f|--force) FORCE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$PROG: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

# Docker's reference grammar, lower case, bounded: [registry/]path[:tag].
[ "${#NAME}" -le 255 ] && [[ $NAME =~ ^[a-z0-9]+([._/:-][a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$ ]] ||
  die "bad plugin name '$NAME': lower-case letters, digits and . _ - / (an optional :tag)"
[ -z "$HOST" ] || [ "${#HOST}" -le 1024 ] || die "--host is too long"

# 1. The daemon, checked before anything is built: an enabled plugin of
# that name is refused here unless --force.
DOCKER=${DOCKER:-docker}
[ "$DIR_ONLY" -eq 1 ] || command -v "$DOCKER" >/dev/null || die "docker client '$DOCKER' not found (set DOCKER or install docker.io)"
dk() {
  if [ -n "$HOST" ]; then
    timeout 300 "$DOCKER" -H "$HOST" "$@"
  else
    timeout 300 "$DOCKER" "$@"
  fi
}
[ "$DIR_ONLY" -eq 1 ] || dk version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
  die "cannot reach the docker daemon${HOST:+ at $HOST}: $(dk version 2>&1 | tail -n 1)"

EXISTING=
WAS_ENABLED=false
if [ "$DIR_ONLY" -eq 0 ] && state=$(dk plugin inspect --format '{{.Enabled}}' "$NAME" 2>/dev/null); then
  EXISTING=1
  WAS_ENABLED=$state
  if [ "$WAS_ENABLED" = "true" ] && [ "$FORCE" -eq 0 ]; then
    die "plugin $NAME is enabled; disable it first (docker plugin disable -f $NAME) or pass --force"
  fi
fi

# 2. The agent binary.
if [ -z "$BIN_DIR" ]; then
  BIN_DIR=$ROOT/build/bin
  if [ ! -x "$BIN_DIR/krakenfs-agent" ]; then
    echo "$PROG: no build/bin/krakenfs-agent; building it with tools/build.sh"
    "$ROOT/tools/build.sh" build
  fi
fi
[ -d "$BIN_DIR" ] || die "bin dir '$BIN_DIR' does not exist"
BIN_DIR=$(cd "$BIN_DIR" && pwd)
AGENT=$BIN_DIR/krakenfs-agent
[ -x "$AGENT" ] || die "$AGENT is missing or not executable (build it: tools/build.sh)"
[ -n "$OUT" ] || OUT=$(dirname "$BIN_DIR")/plugin
# Only a directory this script made (or an empty one) is emptied: a
# mistyped --out must never cost anyone their files.
if [ -e "$OUT" ]; then
  [ -d "$OUT" ] || die "--out '$OUT' exists and is not a directory"
  extra=$(find "$OUT" -mindepth 1 -maxdepth 1 ! -name rootfs ! -name config.json | head -n 1)
  [ -z "$extra" ] || die "--out '$OUT' holds more than a plugin (rootfs/, config.json): '$extra'; pick another directory"
fi

# 3. The rootfs, from scratch each time so nothing stale is packed.
command -v ldd >/dev/null || die "ldd not found (Debian package libc-bin)"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RFS=$OUT/rootfs
rm -rf "$RFS" "$OUT/config.json"
mkdir "$RFS"

# Every library ldd resolves, at the path it names (the loader looks them
# up there), copied as a regular file.  "not found" stops the build.
ldd_out=$(ldd "$AGENT" 2>&1) || {
  # A static binary needs nothing; anything else ldd refuses is an error.
  grep -q "not a dynamic executable" <<<"$ldd_out" ||
    die "ldd $AGENT failed: $ldd_out"
  ldd_out=
}
if grep -q "not found" <<<"$ldd_out"; then
  die "a library of $AGENT is missing: $(grep "not found" <<<"$ldd_out" | tr -s ' \t' ' ')"
fi
libs=()
while read -r a b c _; do
  if [ "$b" = "=>" ] && [[ $c == /* ]]; then
    libs+=("$c")                 # libfoo.so.1 => /lib/.../libfoo.so.1 (0x...)
  elif [[ $a == /* ]]; then
    libs+=("$a")                 # /lib64/ld-linux-x86-64.so.2 (0x...)
  fi                             # linux-vdso.so.1 (0x...): in the kernel
done <<<"$ldd_out"
for lib in "${libs[@]}"; do
  [ -f "$lib" ] || die "ldd named '$lib', which is not a file"
  mkdir -p "$RFS$(dirname "$lib")"
  cp -L "$lib" "$RFS$lib"
done
mkdir -p "$RFS/usr/bin"
cp -L "$AGENT" "$RFS/usr/bin/krakenfs-agent"
# Mount points: state (the propagated mount), config, dockerd's plugin
# socket directory, and what runc and dockerd mount into every container.
mkdir -p "$RFS/var/lib/krakenfs" "$RFS/etc/krakenfs" "$RFS/run/docker/plugins" \
  "$RFS/tmp" "$RFS/proc" "$RFS/sys" "$RFS/dev"
chmod 1777 "$RFS/tmp"
: > "$RFS/etc/hosts"
: > "$RFS/etc/resolv.conf"

cat > "$OUT/config.json" <<'EOF'
{
  "description": "KrakenFS: Docker volumes kept identical across hosts",
  "documentation": "README.md, section Managed plugin",
  "entrypoint": ["/usr/bin/krakenfs-agent"],
  "workdir": "/",
  "interface": {
    "types": ["docker.volumedriver/1.0"],
    "socket": "krakenfs.sock"
  },
  "network": { "type": "host" },
  "propagatedMount": "/var/lib/krakenfs",
  "linux": { "capabilities": ["CAP_SYS_ADMIN"] },
  "mounts": [
    {
      "name": "state",
      "description": "host directory for the journal and the volumes",
      "source": "/var/lib/krakenfs",
      "destination": "/var/lib/krakenfs",
      "type": "bind",
      "options": ["rbind", "rw"],
      "settable": ["source"]
    },
    {
      "name": "config",
      "description": "host directory with config.yaml, tls/ and api-token",
      "source": "/etc/krakenfs",
      "destination": "/etc/krakenfs",
      "type": "bind",
      "options": ["rbind", "ro"],
      "settable": ["source"]
    }
  ],
  "env": [
    {
      "name": "NODE_ID",
      "description": "this node's id; overrides sync.node_id when set",
      "settable": ["value"],
      "value": ""
    },
    {
      "name": "CLUSTER_NODES",
      "description": "id:host[:port],...; overrides sync.cluster_nodes when set",
      "settable": ["value"],
      "value": ""
    }
  ],
  "args": {
    "name": "args",
    "description": "extra krakenfs-agent options, e.g. --log-level debug",
    "settable": ["value"],
    "value": []
  }
}
EOF
echo "$PROG: assembled $OUT (agent and ${#libs[@]} libraries, $(du -sh "$RFS" | cut -f1))"
[ "$DIR_ONLY" -eq 0 ] || exit 0


# 4. Install: replace the old plugin, keeping its settings (mount sources,
# environment, args), so that an upgrade is one command.
settings=()
if [ -n "$EXISTING" ]; then
  while IFS= read -r line; do
    [ -n "$line" ] && settings+=("$line")
  done < <(dk plugin inspect --format '{{range .Settings.Mounts}}{{.Name}}.source={{.Source}}
{{end}}{{range .Settings.Env}}{{.}}
{{end}}{{if .Settings.Args}}args={{join .Settings.Args " "}}{{end}}' "$NAME")
  if [ "$WAS_ENABLED" = "true" ]; then
    echo "$PROG: disabling the enabled plugin $NAME (--force)"
    dk plugin disable --force "$NAME" >/dev/null || die "docker plugin disable $NAME failed"
  fi
  # --force only because volumes of the driver count as references; the
  # plugin is disabled, and docker unmounts the state before deleting.
  echo "$PROG: replacing the disabled plugin $NAME"
  dk plugin rm --force "$NAME" >/dev/null || die "docker plugin rm $NAME failed"
fi
dk plugin create "$NAME" "$OUT" >/dev/null || die "docker plugin create $NAME $OUT failed"
if [ "${#settings[@]}" -gt 0 ]; then
  dk plugin set "$NAME" "${settings[@]}" ||
    die "could not carry the old settings over (${settings[*]}); set them with docker plugin set $NAME"
fi
if [ "$WAS_ENABLED" = "true" ]; then
  dk plugin enable "$NAME" >/dev/null || die "docker plugin enable $NAME failed"
  echo "$PROG: created and enabled plugin $NAME, with the old settings"
else
  echo "$PROG: created plugin $NAME (disabled); next: docker plugin set / docker plugin enable $NAME"
fi
