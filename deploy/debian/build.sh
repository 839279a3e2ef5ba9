#!/usr/bin/env bash
# Builds the Debian package into target/debian/:
#
#   bash deploy/debian/build.sh                 # the dist profile (what a release ships)
#   bash deploy/debian/build.sh --profile dev --no-build   # the test binary (CI)
#
# Needs cargo-deb (`cargo install --locked cargo-deb`). The completions and man pages
# come from the binary itself (`gantry completions`, `gantry man`).
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=dist
build=1
extra=()
while (($#)); do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --fast) extra+=(--fast); shift ;;
    *) echo "usage: $0 [--profile PROFILE] [--no-build] [--fast]" >&2; exit 2 ;;
  esac
done
dir=$profile
[ "$profile" = dev ] && dir=debug
target=${CARGO_TARGET_DIR:-target}
((build)) && cargo build --locked --profile "$profile" -p gantry
bin="$target/$dir/gantry"
[ -x "$bin" ] || { echo "no binary at $bin; build it or drop --no-build" >&2; exit 1; }

assets="$target/deb-assets"
rm -rf "$assets"
mkdir -p "$assets/completions" "$assets/man"
"$bin" completions bash >"$assets/completions/gantry"
"$bin" completions zsh >"$assets/completions/_gantry"
"$bin" completions fish >"$assets/completions/gantry.fish"
"$bin" man --out "$assets/man"
gzip -9n "$assets"/man/*.1

cargo deb -p gantry --no-build --profile "$profile" --output "$target/debian/" "${extra[@]}"
