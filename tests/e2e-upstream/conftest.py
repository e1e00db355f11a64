"""Fixtures for the upstream gateway test: a real MLServer serving a scikit-learn iris model
trained here, and a real `palisade serve` in front of it.

Palisade is started with tests/e2e's `Server` helper (loaded from its file, so both suites
keep their own conftest). Runs from .venv/mlserver (scripts/test-upstream.sh).
"""

import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

_spec = importlib.util.spec_from_file_location("palisade_e2e", ROOT / "tests" / "e2e" / "conftest.py")
palisade_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(palisade_e2e)
Server = palisade_e2e.Server
issue_token = palisade_e2e.issue_token
palisade_bin = palisade_e2e.palisade_bin

MLSERVER = pathlib.Path(sys.executable).parent / "mlserver"
MODEL = "iris"
MODEL_VERSION = "v1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_iris(path):
    """A LogisticRegression on scikit-learn's bundled iris data (no download), fixed seed."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000, random_state=0).fit(X, y)
    joblib.dump(model, path)
    return model


def get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


class MLServer:
    """A running `mlserver start`: V2 REST on `http`, Prometheus metrics on `metrics`."""

    def __init__(self, root):
        self.root = root
        model_dir = root / MODEL
        model_dir.mkdir(parents=True)
        self.model = train_iris(model_dir / "model.joblib")
        (model_dir / "model-settings.json").write_text(json.dumps({
            "name": MODEL,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": MODEL_VERSION},
        }))
        self.http_port, grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        (root / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1",
            "http_port": self.http_port,
            "grpc_port": grpc_port,
            "metrics_port": self.metrics_port,
            "debug": False,
        }))
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.log = open(root / "mlserver.log", "w")
        self.proc = subprocess.Popen(
            [str(MLSERVER), "start", str(root)], cwd=root, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        ready = f"{self.base}/v2/models/{MODEL}/versions/{MODEL_VERSION}/ready"
        while True:
            if self.proc.poll() is not None:
                self.log.close()
                pytest.fail(f"mlserver exited ({self.proc.returncode}): {(root / 'mlserver.log').read_text()[-3000:]}")
            try:
                if get(ready)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"mlserver not ready within 120 s: {(root / 'mlserver.log').read_text()[-3000:]}")
            time.sleep(0.5)

    def infer_requests(self):
        """Requests that reached MLServer's infer endpoints, whatever their outcome
        (`rest_server_requests_total` on the metrics port)."""
        _, body = get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith("rest_server_requests_total{") and "/infer" in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def mlserver(tmp_path_factory):
    server = MLServer(tmp_path_factory.mktemp("mlserver"))
    yield server
    server.stop()


GATEWAY_MANIFEST = """\
# iris, served by MLServer; Palisade is the secure front door.
name: iris-gateway
version: "1"
owners: [alice@example.com]
model:
  format: upstream
  upstream:
    url: {url}
    model: {model}
    version: "{version}"
    timeout: 10s
    pool: {{maxIdlePerHost: 8, idleTimeout: 30s}}
  inputs:
    - {{name: X, datatype: FP32, shape: [-1, 4]}}
  outputs:
    - {{name: predict, datatype: INT64, shape: [-1, 1]}}
    - {{name: predict_proba, datatype: FP64, shape: [-1, 3]}}
"""


@pytest.fixture(scope="session")
def gateway(tmp_path_factory, mlserver):
    """`palisade serve` with one upstream model pointing at the MLServer above."""
    home = tmp_path_factory.mktemp("home")
    model_dir = tmp_path_factory.mktemp("gateway-model")
    (model_dir / "palisade.yaml").write_text(
        GATEWAY_MANIFEST.format(url=mlserver.base, model=MODEL, version=MODEL_VERSION)
    )
    out = subprocess.run(
        [palisade_bin(), "--home", str(home), "build", str(model_dir)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    # MLServer listens on 127.0.0.1, which the platform must allow by name.
    config = home / "platform.yaml"
    config.write_text('upstream:\n  allowedHosts: ["127.0.0.1"]\n')
    server = Server(home, extra_args=("--config", str(config)))
    yield server
    server.stop()
