#!/usr/bin/env bash
# Makes the PyTorch virtualenv of the PyTorch round trip (tests/python/test_save_torch.py)
# and prints its path on the last line. torch from PyPI brings NVIDIA's CUDA libraries:
# about 3 GB to download and 5.5 GB on disk, so the virtualenv is kept between runs, outside
# the work tree: $PALISADE_TORCH_VENV, default ~/.cache/palisade-test/torch-<hash of its
# requirements>. Safe to run again: a complete virtualenv is reused. scripts/test.sh starts
# it in the background while Rust compiles; scripts/test-python.sh calls it (and then finds
# it complete).
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=tests/python/torch-requirements.txt
hash=$(sha256sum "$requirements" | cut -c1-12)
torch_venv=${PALISADE_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/palisade-test/torch-$hash}
if [ ! -x "$torch_venv/bin/python" ] || [ ! -f "$torch_venv/.complete" ]; then
  echo "== creating $torch_venv (torch from PyPI: about 3 GB to download, 5.5 GB on disk)" >&2
  rm -rf "$torch_venv"
  mkdir -p "$(dirname "$torch_venv")"
  python3 -m venv "$torch_venv"
  "$torch_venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
  touch "$torch_venv/.complete"
fi
echo "$torch_venv"
