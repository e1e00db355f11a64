#!/usr/bin/env bash
# Issue 16's walk-through, measured, side by side with BentoML's documented quickstart for
# the same fitted model (bench/python/fit.py), one after the other, each in a fresh
# virtualenv with its install timed apart from the walk-through:
#
#   palisade  `pip install palisade[sklearn]` (the wheel in target/wheels, built by
#             scripts/build-wheel.sh, plus scikit-learn and pandas), then the five lines of
#             bench/python/walkthrough.py against a fresh home.
#   bentoml   `pip install` of bench/requirements-bentoml.txt's bentoml plus scikit-learn and
#             pandas, then bench/python/bentoml/walkthrough.py: bentoml.sklearn.save_model,
#             bench/python/bentoml/service.py under `bentoml serve` (loopback, a free port),
#             and a bentoml.SyncHTTPClient call, against a fresh BENTOML_HOME.
#
#   bench/python/walkthrough.sh [palisade|bentoml|both]    (default both)
#
# Prints, per side, the install time, the walk-through's time, and its lines: Python typed
# in the notebook (between the `# ---` markers), service files, shell commands. pip's cache
# is used as is: say whether it was warm when quoting install times.
set -euo pipefail
cd "$(dirname "$0")/../.."
which=${1:-both}
case "$which" in palisade | bentoml | both) ;; *) echo "usage: $0 [palisade|bentoml|both]" >&2; exit 64 ;; esac
work=$(mktemp -d /tmp/palisade-walkthrough-XXXXXX)
trap 'rm -rf "$work"' EXIT
pin() { grep -E "^$1==" bench/requirements-bentoml.txt; }

# Lines of Python between `# --- NAME` and `# --- end` markers, blank lines and comments excluded.
marked_lines() {
  awk '/^ *# --- end/{on=0} on && !/^ *(#|$)/{n++} /^ *# --- /&&!/--- end/{on=1} END{print n+0}' "$1"
}
code_lines() { grep -cvE '^\s*(#|$)' "$1"; }

if [ "$which" != bentoml ]; then
  wheel=$(ls target/wheels/palisade-*.whl)
  echo "== Palisade ($(basename "$wheel"))"
  python3 -m venv "$work/palisade"
  started=$SECONDS
  "$work/palisade/bin/pip" install --quiet --disable-pip-version-check "$wheel[sklearn]" scikit-learn==1.9.1 pandas==3.1.1
  echo "install: $((SECONDS - started)) s ($(du -sh "$work/palisade" | cut -f1) virtualenv, $(du -h "$wheel" | cut -f1) wheel)"
  PALISADE_HOME=$work/palisade-home "$work/palisade/bin/python" -W ignore bench/python/walkthrough.py
  echo "lines: $(marked_lines bench/python/walkthrough.py) of Python, 0 service files, 0 shell commands"
fi

if [ "$which" != palisade ]; then
  echo "== BentoML ($(pin bentoml))"
  python3 -m venv "$work/bentoml"
  started=$SECONDS
  "$work/bentoml/bin/pip" install --quiet --disable-pip-version-check "$(pin bentoml)" "$(pin scikit-learn)" pandas==3.1.1
  echo "install: $((SECONDS - started)) s ($(du -sh "$work/bentoml" | cut -f1) virtualenv)"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  BENTOML_HOME=$work/bentoml-home BENTOML_DO_NOT_TRACK=true \
    "$work/bentoml/bin/python" -W ignore bench/python/bentoml/walkthrough.py "$port"
  echo "lines: $(marked_lines bench/python/bentoml/walkthrough.py) of Python in the notebook, $(code_lines bench/python/bentoml/service.py) in service.py, 1 shell command (bentoml serve service:Churn)"
fi
