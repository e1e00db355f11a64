#!/usr/bin/env bash
# Runs every Palisade test on a fresh machine: installs the test dependencies, checks
# formatting and lints, runs the Rust tests, then the end-to-end tests with real
# third-party clients (tritonclient, the KServe SDK and SeldonClient from their own
# virtualenvs, headless Chromium) against the real binary, the Python wheel and SDK from a
# fresh virtualenv, and a
# few-second smoke run of the benchmark harness so it cannot rot (not a benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
# A test run builds once: incremental caches would only add gigabytes to the target dir.
export CARGO_INCREMENTAL=0
# The audit archive tests need moto's S3 server (.venv/s3, installed below): here a missing
# server fails them instead of skipping.
export PALISADE_REQUIRE_S3=1
# Each step's heading says when it started, so a slow CI run shows where its time went.
step() { echo "== $* (at $((SECONDS - started)) s)"; }

scripts/install-test-deps.sh

# The PyTorch virtualenv (3 GB from PyPI) downloads while Rust compiles; test-python.sh
# waits for it below.
if [ "${PALISADE_TEST_TORCH:-1}" != 0 ]; then
  mkdir -p target
  scripts/install-torch-venv.sh > target/install-torch-venv.log 2>&1 &
  torch_install=$!
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "cargo nextest (unit, property, integration tests)"
cargo nextest run --locked --workspace --no-fail-fast

step "fuzz targets build (fuzz/)"
cargo check --locked --manifest-path fuzz/Cargo.toml --bins

step "end-to-end tests (tests/e2e)"
cargo build --locked -p palisade-cli
PALISADE_BIN="$PWD/target/debug/palisade" .venv/e2e/bin/pytest -q tests/e2e

step "the palisade wheel (scripts/test-python.sh: built from target/debug, tested from a fresh venv; PyTorch as its own step)"
if [ -n "${torch_install:-}" ] && ! wait "$torch_install"; then
  cat target/install-torch-venv.log >&2
  exit 1
fi
scripts/test-python.sh

step "benchmark harness smoke (bench/run.sh --smoke: Palisade only, 1 s cells)"
bench/run.sh --smoke


step "upstream gateway (a separate step: real MLServer in its own venv)"
scripts/test-upstream.sh

echo "== all tests passed in $((SECONDS - started)) s; build output on disk: $(du -sh target fuzz/target 2>/dev/null | awk '{print $1}' | paste -sd+)"
