#!/usr/bin/env bash
# Checks a built gantry .deb the way an admin meets it: lintian (no errors), dpkg -i,
# `gantry version`, the files and the user, `systemd-analyze verify` of both units,
# nothing started or enabled, then dpkg --purge leaving nothing but the data dir.
# Root only (it installs into this machine); one run at a time machine-wide.
#
#   bash deploy/debian/test.sh target/debian/gantry_*.deb
set -euo pipefail
deb=$(realpath "$1")
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { printf '== %s\n' "$*"; }

# Two test runs (several checkouts on one machine) must not install at once.
exec 9>/tmp/gantry-deb-test.lock
flock --timeout 600 9

step "lintian"
lintian --fail-on error --suppress-tags initial-upload-closes-no-bugs "$deb"

# Leftovers of an interrupted earlier run.
dpkg --purge gantry >/dev/null 2>&1 || true
data_existed=0
[ -d /var/lib/gantry ] && data_existed=1

step "dpkg -i"
dpkg -i "$deb"
trap 'dpkg --purge gantry >/dev/null 2>&1 || true' EXIT
files=$(dpkg -L gantry)

step "gantry version"
/usr/bin/gantry version
/usr/bin/gantry version --json | grep -q '"schema_version"' || fail "gantry version --json"

step "files, user, data dir"
getent passwd gantry >/dev/null || fail "no gantry user"
[ "$(stat -c %U:%a /var/lib/gantry)" = gantry:750 ] || fail "/var/lib/gantry is $(stat -c %U:%a /var/lib/gantry)"
for f in /etc/gantry/server.toml /etc/gantry/agent.toml; do
  grep -qx "$f" /var/lib/dpkg/info/gantry.conffiles || fail "$f is not a conffile"
  [ "$(stat -c %U:%G:%a "$f")" = root:gantry:640 ] || fail "$f is $(stat -c %U:%G:%a "$f")"
done
unit_dir=$(dirname "$(dpkg -L gantry | grep '/gantry-server.service$')")
for f in /usr/share/bash-completion/completions/gantry /usr/share/man/man1/gantry.1.gz \
         /usr/share/man/man1/gantry-server.1.gz "$unit_dir/gantry-server.service" "$unit_dir/gantry-agent.service"; do
  [ -f "$f" ] || fail "$f is missing"
done
# The packaged config parses, and the server would run from it.
/usr/bin/gantry server --config /etc/gantry/server.toml --print-config | grep -q '^data_dir = "/var/lib/gantry"' \
  || fail "server.toml does not give the data dir"

step "systemd-analyze verify"
# The agent's unit needs the docker group and unit to exist to verify cleanly.
verify_dir=$(mktemp -d)
cp "$unit_dir/gantry-server.service" "$unit_dir/gantry-agent.service" "$verify_dir/"
if ! systemctl cat docker.service >/dev/null 2>&1; then
  printf '[Unit]\nDescription=stand-in for verify\n[Service]\nExecStart=/bin/true\n' >"$verify_dir/docker.service"
fi
out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no \
        "$verify_dir/gantry-server.service" "$verify_dir/gantry-agent.service" 2>&1) || { echo "$out"; fail "verify failed"; }
# verify exits 0 on some warnings; any line naming our units is a finding.
if echo "$out" | grep -E 'gantry-(server|agent)\.service' | grep -v 'Failed to load credential'; then
  fail "systemd-analyze verify reported the lines above"
fi
rm -rf "$verify_dir"

step "nothing started or enabled"
if [ -d /run/systemd/system ]; then
  ! systemctl is-active --quiet gantry-server || fail "gantry-server was started"
  ! systemctl is-enabled --quiet gantry-server || fail "gantry-server was enabled"
fi
for wants in /etc/systemd/system/multi-user.target.wants/gantry-server.service \
             /etc/systemd/system/multi-user.target.wants/gantry-agent.service; do
  [ ! -e "$wants" ] || fail "$wants exists: a unit was enabled"
done

step "dpkg --purge"
touch /var/lib/gantry/keep-me
dpkg --purge gantry
trap - EXIT
left=""
while read -r f; do
  case "$f" in /var/lib/gantry*|/.|/usr|/usr/*/|/etc) continue ;; esac
  if [ -f "$f" ] || [ -L "$f" ]; then left="$left $f"; fi
done <<<"$files"
[ -z "$left" ] || fail "files left after purge:$left"
[ ! -e /etc/gantry ] || fail "/etc/gantry left after purge: $(ls -A /etc/gantry)"
[ -f /var/lib/gantry/keep-me ] || fail "purge removed the data dir"
((data_existed)) || rm -rf /var/lib/gantry
echo "deb OK"
