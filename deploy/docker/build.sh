#!/usr/bin/env bash
# Builds the container image from a gantry binary (default: the dist build):
#
#   bash deploy/docker/build.sh [--binary PATH] [--tag gantry:VERSION]
#
# The binary links glibc dynamically (NVML is opened at run time, which a static
# binary cannot do), so the libraries it links are copied from this machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

binary=target/dist/gantry
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
tag="gantry:$version"
while (($#)); do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    *) echo "usage: $0 [--binary PATH] [--tag NAME:TAG]" >&2; exit 2 ;;
  esac
done
[ -x "$binary" ] || { echo "no binary at $binary (cargo build --profile dist -p gantry)" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/bin" "$root/etc/ssl/certs" "$root/tmp" "$ctx/data"
chmod 1777 "$root/tmp"
cp "$binary" "$root/usr/bin/gantry"
# The dynamic loader and every library ldd resolves, at the same paths.
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\ngantry:x:10001:10001:gantry:/var/lib/gantry:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\ngantry:x:10001:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
cp deploy/docker/Dockerfile "$ctx/"

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
created=$(date -u -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)" +%Y-%m-%dT%H:%M:%SZ)
DOCKER_BUILDKIT=0 docker build --quiet -t "$tag" \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg CREATED="$created" "$ctx"
echo "built $tag"
