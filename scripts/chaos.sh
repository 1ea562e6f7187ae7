#!/usr/bin/env bash
# The long chaos run (the test suite runs a 40-second one on 3 managers): clients write and read
# services and secrets through every manager while a nemesis kills the leader, cuts a manager's
# link, drops 30% of its packets and restarts managers; then the history is checked for
# linearizability, lost acknowledged writes and equal final states (tests/chaos.rs).
# Usage: scripts/chaos.sh [SECONDS] [MANAGERS]   (defaults: 300 s, 5 managers)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
./scripts/deps.sh
cargo build --workspace --bins --locked
MESH_CHAOS_SECS="${1:-300}" MESH_CHAOS_MANAGERS="${2:-5}" \
  cargo test --locked -p mesh-cli --test e2e chaos:: -- --nocapture
