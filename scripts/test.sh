#!/usr/bin/env bash
# Runs every test: installs what is missing, checks formatting, lints, layout rules (file sizes,
# unused dependencies), then the unit tests and the end-to-end tests (which build their own
# labs; they need root and dockerd).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
./scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
./scripts/check-size.sh
cargo machete
# The e2e tests run the lab's meshd and meshctl from the target directory: build every binary.
cargo build --workspace --bins --locked
# The Debian package from the debug binaries just built (no second build; `--fast`: light
# compression), then what it holds and its unit (packaging/check.sh). Release: docs/install.md.
cargo deb -p meshd --no-build --profile dev --fast --quiet --output target/debian/meshd-ci.deb
./packaging/check.sh target/debian/meshd-ci.deb
cargo test --workspace --locked "$@"
