# Helpers shared by the benchmarks (local.sh, journal.sh, versions.sh),
# sourced from the top of the tree.

# bench_prepare BIN_DIR: installs what is missing (as root) and builds;
# sets BIN (BIN_DIR, default build/bin built first, as an absolute path)
# and WRITER (kraken-bench-writer of this tree).
bench_prepare() {
  local bin=$1
  [ "$(id -u)" -ne 0 ] || tools/install-deps.sh >/dev/null
  if [ -z "$bin" ]; then
    tools/build.sh build >/dev/null
    bin=build/bin
  fi
  BIN=$(cd "$bin" && pwd)
  WRITER=$PWD/build/bin/kraken-bench-writer
  [ -x "$WRITER" ] || tools/build.sh build >/dev/null
}

# bench_config NAME PORT (T set: a private temporary directory): an
# agent config under $T/NAME with one volume,
# "bench"; the peer port is PORT and the API port PORT + 1.
bench_config() {
  mkdir -p "$T/$1/volumes/bench"
  cat > "$T/$1/config.yaml" <<YAML
log:
  level: info
sync:
  node_id: bench
  listen_address: "127.0.0.1"
  p2p_port: $2
volume:
  root_path: "$T/$1/volumes"
journal:
  path: "$T/$1/journal.db"
api:
  listen: "127.0.0.1:$(($2 + 1))"
  token_file: "$T/$1/api-token"
plugin:
  socket: "$T/$1/krakenfs.sock"
YAML
}
