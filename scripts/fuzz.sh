#!/usr/bin/env bash
# The long fuzz runs (the test suite runs each for a short fixed time): the compose round trip
# (parse, print, parse) over many generated projects. Usage: scripts/fuzz.sh [CASES] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-100000}"
seed="${2:-$(date +%s)}"
echo "[fuzz] compose round trip: $cases cases, seed $seed"
MESH_FUZZ_CASES="$cases" MESH_FUZZ_SEED="$seed" \
  cargo test -q -p mesh-compose --lib random_projects_print_and_read_back_the_same -- --nocapture
