#!/usr/bin/env bash
# Checks a built meshd .deb: the files it must hold (with their modes), its conffile and
# maintainer scripts, and `systemd-analyze verify` of the unit it ships. The unit is verified
# as packaged, except that ExecStart points at the package's own meshd, extracted to a temporary
# folder (systemd-analyze checks that the command exists and is executable), so the check does
# not depend on what is installed in /usr/bin.
# Usage: packaging/check.sh [PATH.deb]   (default: the newest target/debian/meshd_*.deb)
set -euo pipefail
cd "$(dirname "$0")/.."

deb=${1:-$(ls -t target/debian/meshd_*.deb 2>/dev/null | head -1)}
[ -n "$deb" ] && [ -f "$deb" ] || { echo "check: no .deb (build it with cargo deb -p meshd)" >&2; exit 1; }
fail() { echo "check: $deb: $*" >&2; exit 1; }

listing=$(dpkg -c "$deb")
want() { # MODE PATH: the path is in the package with that mode, owned by root
  grep -qE "^$1 (root/root|0/0) +[0-9]+ [0-9-]+ [0-9:]+ \\.$2\$" <<<"$listing" ||
    fail "lacks .$2 ($1, owned by root); it holds:"$'\n'"$listing"
}
want -rwxr-xr-x /usr/bin/meshd
want -rwxr-xr-x /usr/bin/meshctl
want -rw-r--r-- /lib/systemd/system/meshd.service
want -rw-r--r-- /etc/default/meshd
want -rw-r--r-- /usr/share/doc/meshd/README.md
want -rw-r--r-- /usr/share/doc/meshd/install.md
want -rw-r--r-- /usr/share/doc/meshd/copyright

grep -qx /etc/default/meshd <(dpkg-deb --info "$deb" conffiles) || fail "/etc/default/meshd is not a conffile"
for s in postinst prerm postrm; do
  dpkg-deb --info "$deb" "$s" >/dev/null 2>&1 || fail "lacks its $s script"
done
depends=$(dpkg-deb --field "$deb" Depends)
grep -q 'docker.io | docker-ce' <<<"$depends" || fail "Depends lacks docker.io | docker-ce: $depends"
grep -q 'iproute2' <<<"$depends" || fail "Depends lacks iproute2: $depends"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/root"
"$tmp/root/usr/bin/meshd" --version >/dev/null || fail "its meshd does not run"
"$tmp/root/usr/bin/meshctl" --version >/dev/null || fail "its meshctl does not run"
mkdir "$tmp/unit"
sed "s|^ExecStart=/usr/bin/meshd|ExecStart=$tmp/root/usr/bin/meshd|" \
  "$tmp/root/lib/systemd/system/meshd.service" >"$tmp/unit/meshd.service"
grep -q "^ExecStart=$tmp/root/usr/bin/meshd\$" "$tmp/unit/meshd.service" || fail "the unit has no ExecStart=/usr/bin/meshd"
# verify exits 0 on warnings (an unknown key, a bad value ignored): any output is a failure.
if ! out=$(systemd-analyze verify --man=no "$tmp/unit/meshd.service" 2>&1) || [ -n "$out" ]; then
  fail "systemd-analyze verify refuses meshd.service:"$'\n'"$out"
fi
echo "check: $deb holds meshd, meshctl, the unit, the defaults and the docs; systemd-analyze verify accepts the unit"
