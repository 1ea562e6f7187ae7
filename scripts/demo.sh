#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts a 4-node lab (3 managers, 1 worker) and shows what meshd can do:
# a service published on every node, names resolved inside a task, HAProxy over all nodes.
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

# A service publishing a port: every node answers on 8080, also the nodes with no task.
HTTPD='mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www'
# The lab's test image, as every node pulls it from the lab registry.
IMAGE=198.18.0.5:5000/meshd/busybox
step meshctl lab exec n1 -- meshctl service create --name web --replicas 2 -p 8080:80 $IMAGE sh -c "'$HTTPD'"
$meshctl lab exec n1 -- meshctl service create --name web --replicas 2 -p 8080:80 $IMAGE sh -c "$HTTPD"
step meshctl lab exec n1 -- meshctl service ls; $meshctl lab exec n1 -- meshctl service ls
# Any manager answers; the tasks run on two of the four nodes.
step meshctl lab exec n2 -- meshctl service ps web; $meshctl lab exec n2 -- meshctl service ps web
# Each answer is the hostname (container id) of the task that served it.
for i in 1 2 3 4; do
  addr=$(ip netns exec mesh-n$i ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
  step "meshctl lab exec client -- curl -s http://$addr:8080/   # mesh-n$i, 3 times"
  for _ in 1 2 3; do
    # The first request may come while the node's maps are still being written.
    $meshctl lab exec client -- curl -s --retry 5 --retry-connrefused --retry-delay 1 -m 2 "http://$addr:8080/"
  done
done

# East-west: an overlay network, a service on it and a client task that finds it by name.
step meshctl lab exec n1 -- meshctl network create -d overlay front
$meshctl lab exec n1 -- meshctl network create -d overlay front
step meshctl lab exec n1 -- meshctl service create --name api --network front --replicas 3 $IMAGE sh -c "'$HTTPD'"
$meshctl lab exec n1 -- meshctl service create --name api --network front --replicas 3 $IMAGE sh -c "$HTTPD"
step meshctl lab exec n1 -- meshctl service create --name shell --network front $IMAGE sleep 1000000
$meshctl lab exec n1 -- meshctl service create --name shell --network front $IMAGE sleep 1000000
# Each node has its own Docker engine: find the one running the shell's task.
for i in 1 2 3 4; do
  engine=unix:///var/lib/meshd-lab/mesh/n$i/docker.sock
  shell=$(docker -H "$engine" ps -q --filter 'name=^shell\.' | head -1)
  [ -n "$shell" ] && break
done
d="docker -H $engine"
sleep 1
step "$d exec $shell nslookup api          # the VIP"; $d exec "$shell" nslookup api
step "$d exec $shell nslookup tasks.api    # every task"; $d exec "$shell" nslookup tasks.api
step "$d exec $shell wget -qO- http://api/ # balanced over the tasks, 4 times"
for _ in 1 2 3 4; do $d exec "$shell" timeout 3 wget -qO- http://api/; done

# HAProxy in the client pointing at every node: it needs no change when tasks move.
cfg=$(mktemp /tmp/meshd-demo-haproxy.XXXXXX.cfg)
{
  printf 'global\n    maxconn 64\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n'
  printf 'frontend mesh\n    bind 127.0.0.1:18080\n    default_backend nodes\nbackend nodes\n    balance roundrobin\n'
  for i in 1 2 3 4; do
    addr=$(ip netns exec mesh-n$i ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
    printf '    server n%s %s:8080 check inter 500\n' "$i" "$addr"
  done
} >"$cfg"
step "cat $cfg"; cat "$cfg"
ip netns exec mesh-client haproxy -db -f "$cfg" >/dev/null 2>&1 &
haproxy_pid=$!
trap 'kill $haproxy_pid 2>/dev/null; rm -f "$cfg"' EXIT
sleep 1
step "meshctl lab exec client -- curl -s http://127.0.0.1:18080/   # 4 times"
for _ in 1 2 3 4; do $meshctl lab exec client -- curl -s -m 2 http://127.0.0.1:18080/; done
step meshctl lab exec n1 -- meshctl service scale web=4; $meshctl lab exec n1 -- meshctl service scale web=4
step "meshctl lab exec client -- curl -s http://127.0.0.1:18080/   # 8 times, same HAProxy"
for _ in 1 2 3 4 5 6 7 8; do $meshctl lab exec client -- curl -s -m 2 http://127.0.0.1:18080/; done

# Counters per service and node, kept by the eBPF programs.
step meshctl lab exec n1 -- meshctl mesh stats; $meshctl lab exec n1 -- meshctl mesh stats

printf '\nThe lab is up. Try: %s lab exec n2 -- meshctl service publish 9090:80 api; %s lab exec n1 -- meshctl node update --availability drain mesh-n4; %s lab stop --kill n2; %s lab down\n' "$meshctl" "$meshctl" "$meshctl" "$meshctl"
