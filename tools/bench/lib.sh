# Helpers shared by the one-node benchmarks (local.sh, journal.sh), sourced
# after T (a private temporary directory) is set.

# bench_config NAME PORT: an agent config under $T/NAME with one volume,
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
