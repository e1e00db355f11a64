#!/usr/bin/env bash
# Installs what Palisade's tests need on a fresh machine, from the registries only:
# Debian's chromium (Swagger UI browser test), prometheus (promtool) and wrk (benchmark smoke), a Python virtualenv with the third-party
# clients (tritonclient, playwright driving that chromium, pytest) and onnxruntime (the second
# engine's library, which the Rust tests load from .venv/e2e), and the npm oidc-provider test
# identity provider. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: installing $* needs root" >&2; exit 1; fi
}

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)      # Swagger UI browser test
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)    # promtool check metrics
command -v wrk >/dev/null 2>&1 || missing+=(wrk)                # benchmark harness smoke (bench/run.sh)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

venv=.venv/e2e
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
# onnxruntime's shared library (onnxruntime/capi/libonnxruntime.so.*), Palisade's second
# engine: the Rust tests load it from this venv and fail without it.
"$venv/bin/pip" install --quiet --disable-pip-version-check onnxruntime==1.32.0

echo "== installing the test identity provider (npm oidc-provider)"
npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error

if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
