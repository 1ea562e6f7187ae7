#!/usr/bin/env bash
# The benchmark, in one command (as root): installs what is missing, builds release binaries,
# runs every scenario on its own lab (prefix `bench`, underlay 198.18.200.0/24) and writes
# bench/results/<UTC time>.json, its chart bench/results/<UTC time>.svg, bench/results/latest.md
# and the README's chart bench/chart.svg. Extra arguments go to mesh-bench (`bench/run.sh
# --help`). See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
echo "[bench] building release binaries (meshd's DNS is user space: release matters)" >&2
cargo build --release --locked -p meshd -p mesh-cli -p mesh-bench
exec target/release/mesh-bench --meshctl target/release/meshctl \
  --server target/release/mesh-bench-server "$@"
