#!/usr/bin/env bash
# Installs what the upstream gateway test (tests/e2e-upstream) needs: a Python virtualenv
# at .venv/mlserver with MLServer, its scikit-learn runtime and pytest, from PyPI only.
# Kept apart from scripts/install-test-deps.sh so the main suite does not need MLServer.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

venv=.venv/mlserver
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  python3 -m venv "$venv"
fi
echo "== installing MLServer and scikit-learn into $venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir -r tests/e2e-upstream/requirements.txt
echo "== upstream test dependencies ready in $((SECONDS - started)) s"
