#!/usr/bin/env bash
# Tests the `palisade` wheel as users get it: builds it (the debug profile, reusing
# target/debug), installs it into a fresh virtualenv with its converter extras and the
# frameworks of tests/python/requirements.txt, and runs tests/python with that virtualenv's
# Python (the installed package and the binary the wheel put on its PATH, not the source
# tree). Then, as a separate step, the PyTorch round trip in a virtualenv of its own.
#
# The PyTorch virtualenv is 5.5 GB (torch from PyPI brings NVIDIA's CUDA libraries) and
# takes about 2.5 minutes to install, so it is kept between runs, outside the work tree:
# $PALISADE_TORCH_VENV, default ~/.cache/palisade-test/torch-<hash of its requirements>;
# the wheel is reinstalled into it every run. PALISADE_TEST_TORCH=0 skips that step.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

echo "== building the wheel (debug profile)"
scripts/build-wheel.sh
wheel=$(ls target/wheels/palisade-*.whl)

venv=$PWD/.venv/python-test
echo "== installing $wheel into a fresh $venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "$wheel[sklearn,xgboost,lightgbm,pandas]" -r tests/python/requirements.txt
"$venv/bin/pip" check

echo "== Python SDK tests (tests/python, against the installed wheel)"
# From tests/python, so that nothing of the source tree is importable.
(cd tests/python && PALISADE_TEST_REQUIRE_ALL=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider \
  --ignore test_save_torch.py .)

echo "== the Python pages of the docs, run as written with the installed wheel (tests/e2e/test_docs.py -k sdk)"
PALISADE_BIN="$PWD/target/debug/palisade" .venv/e2e/bin/pytest -q -p no:cacheprovider tests/e2e/test_docs.py -k sdk_session

if [ "${PALISADE_TEST_TORCH:-1}" = 0 ]; then
  echo "== PyTorch round trip skipped (PALISADE_TEST_TORCH=0)"
else
  requirements=tests/python/torch-requirements.txt
  hash=$(sha256sum "$requirements" | cut -c1-12)
  torch_venv=${PALISADE_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/palisade-test/torch-$hash}
  if [ ! -x "$torch_venv/bin/python" ] || [ ! -f "$torch_venv/.complete" ]; then
    echo "== creating $torch_venv (torch from PyPI: about 3 GB to download, 5.5 GB on disk)"
    rm -rf "$torch_venv"
    mkdir -p "$(dirname "$torch_venv")"
    python3 -m venv "$torch_venv"
    "$torch_venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    touch "$torch_venv/.complete"
  fi
  "$torch_venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$wheel"
  echo "== PyTorch round trip (tests/python/test_save_torch.py, $torch_venv)"
  (cd tests/python && PALISADE_TEST_REQUIRE_ALL=1 "$torch_venv/bin/python" -m pytest -q -p no:cacheprovider \
    test_save_torch.py)
fi
echo "== Python wheel tests passed in $((SECONDS - started)) s; $(du -sh "$venv" | cut -f1) in $venv"
