#!/usr/bin/env bash
# Installs what Palisade's tests need on a fresh machine, from the registries only:
# Debian's chromium (Swagger UI browser test), prometheus (promtool), wrk (benchmark smoke),
# skopeo, umoci and docker-registry (container image tests), a Python virtualenv with the third-party
# clients (tritonclient, playwright driving that chromium, pytest) and onnxruntime (the second
# engine's library, which the Rust tests load from .venv/e2e), one virtualenv each for the
# KServe SDK and Seldon's client (their protobuf pins clash with tritonclient's and each
# other's; seldon-core needs Python >= 3.12), one for kubernetes-validate, one for moto's S3
# server (the audit archive tests), and the npm oidc-provider
# test identity provider.
# Safe to run again; a client virtualenv is reinstalled only when its requirements change.
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
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)          # image tests: skopeo inspect oci:DIR, docker://
command -v umoci >/dev/null 2>&1 || missing+=(umoci)            # image tests: umoci unpack
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry) # image push test (a registry on loopback)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The package starts a registry on :5000 where systemd runs; the tests start their own.
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null 2>&1; then
    as_root systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
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

# A Python >= 3.12 for seldon-core: pyenv's (this image kind ships 3.12 and 3.13), else a
# python3 that is new enough, else Debian's python3.13 where the release packages it.
python_312() {
  local candidate
  for candidate in "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/3.1[2-9]*/bin/python3 \
      "$(command -v python3.13 || true)" "$(command -v python3.12 || true)" "$(command -v python3 || true)"; do
    if [ -x "$candidate" ] && "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  if apt-cache show python3.13-venv >/dev/null 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3.13 python3.13-venv >&2
    command -v python3.13; return
  fi
  echo "error: seldon-core needs Python >= 3.12: none found (pyenv, python3.13, Debian's python3.13)" >&2
  exit 1
}

# One virtualenv per client, pinned by its requirements file; pip runs only when the file
# changed since the last install (its hash is kept in the virtualenv).
client_venv() { # NAME PYTHON REQUIREMENTS
  local dir=".venv/$1" python=$2 requirements=$3 want
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
    return
  fi
  echo "== installing $requirements into $dir"
  [ -x "$dir/bin/python" ] || "$python" -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" > "$dir/.requirements.sha256"
}
client_venv kserve python3 tests/e2e/clients/kserve-requirements.txt
# kubernetes-validate: rendered manifests and the CRD checked offline (tests/e2e/test_kubernetes.py).
client_venv kubernetes python3 tests/e2e/clients/kubernetes-requirements.txt
seldon_python=$(python_312)
client_venv seldon "$seldon_python" tests/e2e/clients/seldon-requirements.txt
# moto in server mode: the S3-compatible store the audit archive tests start on loopback
# (crates/archive, crates/server and crates/cli tests; PALISADE_REQUIRE_S3 makes them fail without it).
client_venv s3 python3 tests/e2e/clients/s3-requirements.txt
# MLServer: the upstream gateway test, and docs/upstream.md's walkthrough (tests/e2e/test_docs.py).
client_venv mlserver python3 tests/e2e-upstream/requirements.txt

echo "== installing the test identity provider (npm oidc-provider)"
npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error

if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
