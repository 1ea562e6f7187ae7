#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts a 3-node lab and shows what meshd can do.
# The lab stays up for you to explore; `./target/debug/meshctl lab down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
./scripts/deps.sh
cargo build --bins --locked
meshctl=./target/debug/meshctl
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step meshctl lab down; $meshctl lab down
step meshctl lab up --nodes 3; $meshctl lab up --nodes 3
step meshctl lab exec client -- ping -c1 198.18.0.13
$meshctl lab exec client -- ping -c1 -W2 198.18.0.13

printf '\nThe lab is up. Try: %s lab exec n1 -- ip addr; %s lab down\n' "$meshctl" "$meshctl"
