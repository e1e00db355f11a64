#!/usr/bin/env bash
# Builds the `palisade` wheel: the palisade binary (crates/cli) and the Python package
# (python/palisade) in one wheel, with maturin (`bindings = "bin"`, python/pyproject.toml).
#
#   scripts/build-wheel.sh            the debug profile, reusing target/debug (what CI tests;
#                                     nearly free after `cargo build -p palisade-cli`)
#   scripts/build-wheel.sh --release  the wheel users install: release profile, stripped
#                                     (about 15 minutes on 2 cores)
#
# The wheel lands in target/wheels/. maturin comes from PyPI into .venv/build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0

MATURIN=maturin==1.16.0
venv=.venv/build
if [ ! -x "$venv/bin/maturin" ] || [ "$("$venv/bin/maturin" --version)" != "maturin ${MATURIN#maturin==}" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$MATURIN"
fi

case "${1:-}" in
  "") profile=(--profile dev) ;;
  --release) profile=(--release --strip) ;;
  *) echo "usage: scripts/build-wheel.sh [--release]" >&2; exit 64 ;;
esac
rm -f target/wheels/palisade-*.whl
(cd python && "../$venv/bin/maturin" build --locked "${profile[@]}" --out ../target/wheels)
ls target/wheels/palisade-*.whl
