#!/usr/bin/env bash
# Install every Debian package KrakenFS needs to build, test and benchmark.
# Idempotent: packages already present are left alone and apt is not run.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libsqlite3-dev sqlite3
  libyaml-dev
  libssl-dev openssl
  libmicrohttpd-dev
  libjansson-dev
  libcmocka-dev
  jq procps psmisc curl chromium docker.io busybox-static
  # partitions between agents on 127.0.0.x (test_peer_liveness.sh)
  iptables
  # ip, ss and tc (tests/e2e namespaces, deploy.sh's port check); unshare,
  # nsenter and setsid; systemd-analyze for the unit's test.
  iproute2 util-linux systemd coreutils
  # mkfs.xfs for the test of clones on a reflink filesystem (a loop image);
  # mkfs.ext4 for the bit-rot test's loop image.
  xfsprogs e2fsprogs
  # The nemesis suite (tests/chaos): clocks skewed with libfaketime, and
  # its writer's file operations in perl (Digest::SHA).
  faketime perl
  # A minimal Debian 12 root booted with systemd as PID 1, for the test of
  # the service under a real systemd (tests/integration/test_systemd.sh).
  mmdebstrap systemd-container
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (sudo $0) to install them" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
