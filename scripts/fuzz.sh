#!/usr/bin/env bash
# The long fuzz runs (the test suite runs each for a short fixed number of cases): the compose
# round trip (parse, print, parse) over generated projects; the spec parsers (ports,
# constraints, units, mounts) and join tokens over noise; the DNS responder over random and
# damaged messages; the API frame decoder over random and damaged frames. None may panic; what
# parses must print back the same; what does not must say why.
# Usage: scripts/fuzz.sh [CASES] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-100000}"
seed="${2:-$(date +%s)}"
export MESH_FUZZ_CASES="$cases" MESH_FUZZ_SEED="$seed"
run() {
  echo "[fuzz] $1: $cases cases, seed $seed"
  shift
  cargo test -q "$@" -- --nocapture
}
run "compose round trip" -p mesh-compose --lib random_projects_print_and_read_back_the_same
run "spec parsers" -p mesh-cluster --lib _round_trip
run "join tokens" -p mesh-cluster --lib random_and_damaged_tokens_parse_or_say_why
run "DNS responder" -p mesh-dns --lib random_and_damaged_requests_never_panic_and_replies_parse
run "API frames" -p mesh-api --lib random_and_damaged_frames_decode_or_are_refused
