"""The OpenAPI document describes the API exactly: schemathesis (`--checks all`), with a
token, against the real server's `/openapi.json`, reports no failure.

Schema-valid requests must be accepted, schema-violating ones refused, every status and
body documented. Two parts of the contract cannot be written in JSON Schema (a tensor's
`data` holds as many elements as its `shape` multiplies to; `inputs` names each of the
model's inputs once); `schemathesis_hooks.py` makes positive cases obey them and says why.
The stateful phase is left out: the data plane has no resources that link operations.
Bounded: a fixed seed and a fixed number of examples per operation.
"""

import os
import pathlib
import shutil
import subprocess
import sys

from conftest import ROOT


def test_schemathesis_finds_nothing(server):
    exe = pathlib.Path(sys.executable).parent / "schemathesis"
    assert exe.exists() or shutil.which("schemathesis"), "schemathesis is missing: run scripts/install-test-deps.sh"
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        "PYTHONPATH": str(ROOT / "tests" / "e2e"),
        "PALISADE_SCHEMATHESIS_BASE": server.base,
        "PALISADE_SCHEMATHESIS_TOKEN": server.token,
    }
    result = subprocess.run(
        [
            str(exe if exe.exists() else "schemathesis"),
            "run",
            f"{server.base}/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "60",
            "--seed",
            "20261207",
            "-H",
            f"Authorization: Bearer {server.token}",
        ],
        env=env,
        cwd=ROOT / "tests" / "e2e",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout, result.stdout[-3000:]
