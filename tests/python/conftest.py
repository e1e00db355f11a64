"""Tests of the `palisade` wheel: the SDK (save, Client, serve) and the binary it ships.

scripts/test-python.sh builds the wheel, installs it into a fresh virtualenv and runs these
tests with that virtualenv's Python, so `import palisade` is the installed package and the
binary is the one the wheel put on the virtualenv's PATH (tests/python/test_wheel.py checks
both). Nothing here reaches the network except servers on 127.0.0.1.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import sys

import numpy as np
import pytest

import palisade

#: Set by scripts/test-python.sh: a converter that cannot be imported fails the test
#: instead of skipping it.
REQUIRE_ALL = os.environ.get("PALISADE_TEST_REQUIRE_ALL") == "1"

OWNER = "alice@example.com"


def need(module: str):
    """Imports a framework or converter; skips the test without it (fails in CI)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if REQUIRE_ALL:
            pytest.fail(f"{module} is not installed in the test virtualenv: {err}")
        pytest.skip(f"{module} is not installed")


def pytest_report_header(config):
    return [f"palisade {palisade.__version__} from {pathlib.Path(palisade.__file__).parent}",
            f"binary {palisade.find_palisade_bin()}", f"python {sys.executable}"]


@pytest.fixture
def home(tmp_path):
    """A fresh Palisade home."""
    return tmp_path / "home"


def assert_same_classification(answer, model, X, *, label="label", proba="probabilities"):
    """Labels identical to model.predict, probabilities within 1e-5 of predict_proba."""
    want_labels = np.asarray(model.predict(X))
    got_labels = answer[label].reshape(-1)
    if want_labels.dtype.kind in "OUS":
        assert [str(v) for v in got_labels] == [str(v) for v in want_labels]
    else:
        np.testing.assert_array_equal(got_labels.astype(np.int64), want_labels.astype(np.int64))
    np.testing.assert_allclose(answer[proba], model.predict_proba(X), rtol=0, atol=1e-5)
