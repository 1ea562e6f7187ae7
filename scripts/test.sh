#!/usr/bin/env bash
# Runs every test: installs what is missing, checks formatting and lints, then the unit tests and
# the end-to-end tests (which build their own labs; they need root and dockerd).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
./scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
