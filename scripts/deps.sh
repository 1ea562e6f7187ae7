#!/usr/bin/env bash
# Installs what meshd needs from Debian's packages when it is missing, mounts bpffs, and starts
# dockerd when its socket does not answer. Safe to run any number of times.
set -euo pipefail

PACKAGES=(
  clang-19 llvm-19 libbpf-dev bpftool     # build and inspect the eBPF programs
  iproute2 ethtool procps psmisc iputils-ping curl  # namespaces, links, the lab
  docker.io                               # tasks are containers (an engine per lab node)
  docker-registry skopeo                  # the lab registry, and pushing images to it
  redis-server                            # the lab's database image (meshd/redis)
  busybox-static                          # the FROM-scratch test image
  iperf3 haproxy dnsutils tcpdump socat wrk dnsperf unbound iptables nftables  # tests and bench
  systemd                                 # systemd-analyze verify of the packaged unit
)

log() { printf '[deps] %s\n' "$*" >&2; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian enables the unbound, docker-registry and redis-server services on install; the
  # bench starts its own unbound, and the lab its own registry (in its namespace) and database.
  for unit in unbound docker-registry redis-server; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$unit" 2>/dev/null; then
      systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
  done
fi

# cargo-machete: the test script checks for unused dependencies with it.
if ! command -v cargo-machete >/dev/null; then
  log "installing cargo-machete (crates.io)"
  cargo install --locked --quiet cargo-machete
fi

# cargo-deb: the test script builds the Debian package with it. Pinned: its `--profile dev`
# (the test script packages the debug binaries) is announced to become an error in a later one.
if ! command -v cargo-deb >/dev/null; then
  log "installing cargo-deb (crates.io)"
  cargo install --locked --quiet cargo-deb --version 3.8.0
fi

# bpffs: meshd pins maps and links under /sys/fs/bpf/meshd.
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  log "mounting bpffs on /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi

# dockerd: start it when its socket does not answer, then wait until it does.
docker_ok() { timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if ! docker_ok; then
  if [ -S /var/run/docker.sock ] && pgrep -x dockerd >/dev/null; then
    log "dockerd is running but not answering yet; waiting"
  else
    log "starting dockerd (log: /var/log/meshd-dockerd.log)"
    rm -f /var/run/docker.pid
    setsid dockerd >/var/log/meshd-dockerd.log 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 120); do docker_ok && break; sleep 0.5; done
  docker_ok || { log "dockerd did not answer within 60s; see /var/log/meshd-dockerd.log"; exit 1; }
fi
log "ready: $(clang-19 --version | head -1); docker $(docker version --format '{{.Server.Version}}')"
