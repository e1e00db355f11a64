#!/usr/bin/env bash
# The container image end to end: builds the static palisade (scripts/build-static.sh, a
# release build of its own, ~15-25 min from cold on 2 cores), then runs
# crates/cli/tests/image.rs with the test that is ignored otherwise: the image unpacked by
# umoci serves a prediction from its own root filesystem (chroot as uid 65532 when run as
# root, else `unshare -r chroot`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
binary=$(scripts/build-static.sh | tail -n 1)
PALISADE_STATIC_BINARY="$PWD/$binary" cargo nextest run --locked -p palisade-cli --test image --run-ignored all
