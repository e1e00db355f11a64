#!/usr/bin/env bash
# Issue 16's walk-through, measured: a fresh virtualenv, `pip install palisade[sklearn]`
# (the wheel in target/wheels, built by scripts/build-wheel.sh, plus scikit-learn and
# pandas), then the five lines of bench/python/walkthrough.py against a fresh home.
# Prints the install time and the five lines' time separately. pip's cache is used as is:
# say whether it was warm when quoting the install time.
set -euo pipefail
cd "$(dirname "$0")/../.."
wheel=$(ls target/wheels/palisade-*.whl)
work=$(mktemp -d /tmp/palisade-walkthrough-XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
started=$SECONDS
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "$wheel[sklearn]" scikit-learn==1.9.1 pandas==3.1.1
echo "install: $((SECONDS - started)) s ($(du -sh "$work/venv" | cut -f1) virtualenv, $(du -h "$wheel" | cut -f1) wheel)"
PALISADE_HOME=$work/home "$work/venv/bin/python" -W ignore bench/python/walkthrough.py
