#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts a 4-node lab (3 managers, 1 worker) and shows what meshd can do:
# a replicated service of the lab's test image, its tasks spread across the nodes.
# The lab stays up for you to explore; `./target/debug/meshctl lab down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
./scripts/deps.sh
cargo build --bins --locked
meshctl=./target/debug/meshctl
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step meshctl lab down; $meshctl lab down
step meshctl lab up --nodes 4 --managers 3; $meshctl lab up --nodes 4 --managers 3
# lab up made one swarm: init on n1, n2 and n3 joined as managers, n4 as a worker.
step meshctl lab exec n1 -- meshctl node ls; $meshctl lab exec n1 -- meshctl node ls
step meshctl lab exec n2 -- meshctl swarm join-token worker
$meshctl lab exec n2 -- meshctl swarm join-token worker
step meshctl lab exec client -- ping -c1 198.18.0.13
$meshctl lab exec client -- ping -c1 -W2 198.18.0.13

# A service: three replicas of the lab's test image (lab up built meshd/busybox), as containers on the nodes.
step meshctl lab exec n1 -- meshctl service create --name web --replicas 3 meshd/busybox httpd -f -p 80
$meshctl lab exec n1 -- meshctl service create --name web --replicas 3 meshd/busybox httpd -f -p 80
step meshctl lab exec n1 -- meshctl service ls; $meshctl lab exec n1 -- meshctl service ls
# Any manager answers; the tasks run on different nodes.
step meshctl lab exec n2 -- meshctl service ps web; $meshctl lab exec n2 -- meshctl service ps web

printf '\nThe lab is up. Try: %s lab exec n2 -- meshctl service scale web=5; %s lab exec n1 -- meshctl node update --availability drain mesh-n4; %s lab stop --kill n1; %s lab down\n' "$meshctl" "$meshctl" "$meshctl" "$meshctl"
