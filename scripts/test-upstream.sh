#!/usr/bin/env bash
# The upstream gateway test (tests/e2e-upstream): a real MLServer serving a scikit-learn iris
# model, behind the real `palisade serve`. Installs its own dependencies (.venv/mlserver) so
# the main suite (scripts/test.sh) does not need MLServer. CI runs it after the main suite.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

scripts/install-upstream-deps.sh

echo "== palisade binary"
cargo build --locked -p palisade-cli
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

echo "== upstream gateway tests (tests/e2e-upstream, MLServer)"
tests_started=$SECONDS
PALISADE_BIN="$target_dir/debug/palisade" .venv/mlserver/bin/pytest -q -p no:cacheprovider tests/e2e-upstream
echo "== upstream gateway tests passed in $((SECONDS - tests_started)) s ($((SECONDS - started)) s with setup)"
