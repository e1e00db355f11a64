#!/usr/bin/env bash
# Builds the static `palisade` binary that `palisade image build --binary` puts in a FROM
# scratch image: the gnu target with glibc linked in (`-C target-feature=+crt-static`), so
# the image needs no libc, no loader and no shell. With `--target`, RUSTFLAGS apply to the
# binary only, not to build scripts and proc-macros, and the output has its own directory:
#   target/x86_64-unknown-linux-gnu/release/palisade
# Symbol names are kept (backtraces), debug info is not.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${PALISADE_STATIC_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}
export CARGO_INCREMENTAL=0
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_PROFILE_RELEASE_STRIP=debuginfo
cargo build --release --locked -p palisade-cli --bin palisade --target "$target"
binary="target/$target/release/palisade"
if readelf -l "$binary" | grep -q 'Requesting program interpreter'; then
  echo "error: $binary is dynamically linked" >&2
  exit 1
fi
echo "$binary"
