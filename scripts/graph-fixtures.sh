#!/usr/bin/env bash
# Regenerate the inference-graph fixtures (fixtures/models/graphs/) with onnxruntime's
# references. A small pinned virtualenv (.venv/graphfx, no torch) from PyPI; nothing else is
# downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv/graphfx
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet numpy==2.3.5 scikit-learn==1.9.1 skl2onnx==1.20.0 onnx==1.23.2 onnxruntime==1.32.0 'protobuf<7'
"$venv/bin/python" fixtures/graphs.py
