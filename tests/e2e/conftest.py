"""Shared fixtures: a real `palisade serve` on an ephemeral loopback port.

The binary comes from $PALISADE_BIN (scripts/test.sh sets it) or target/debug/palisade.
"""

import json
import os
import pathlib
import queue
import subprocess
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "models"


def palisade_bin():
    path = os.environ.get("PALISADE_BIN") or str(ROOT / "target" / "debug" / "palisade")
    if not os.path.exists(path):
        pytest.fail(f"palisade binary not found at {path}: run `cargo build` or set PALISADE_BIN")
    return path


class Server:
    """A running `palisade serve`; `base` is its URL, `host_port` its address, `token` a
    developer token for alice@example.com (the example model's owner)."""

    def __init__(self, home, extra_args=(), env=None, listen="127.0.0.1:0"):
        self.home = home
        self.log = open(home / "server.log", "w")
        self.proc = subprocess.Popen(
            [palisade_bin(), "--home", str(home), "serve", "--listen", listen, *extra_args],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, **(env or {})},
        )
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout], daemon=True).start()
        self.base = None
        self.admin = None
        deadline = time.monotonic() + 60
        while self.base is None:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    self.log.close()
                    pytest.fail(f"palisade serve exited ({self.proc.returncode}): {(home / 'server.log').read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail("palisade serve did not print its address within 60 s")
                continue
            if line.startswith("palisade: admin listening on "):
                self.admin = line.split()[4]
            if line.startswith("palisade: listening on "):
                self.base = line.split()[3]
        self.host_port = self.base.removeprefix("http://")
        self.token = issue_token(home, "--email", "alice@example.com")

    @property
    def auth(self):
        """Fresh headers for each call: tritonclient adds its own keys to the dict it gets."""
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def gateway_config(home, extra=""):
    """A platform config naming `api` a gateway namespace, where the seed platform's
    RequestAuthentication sits (Istio's ingress gateway ran there), so its rules guard every
    model as they did. Returns the `--config` arguments."""
    config = home / "platform.yaml"
    config.write_text(f"authentication:\n  gatewayNamespaces: [api]\n{extra}")
    return ["--config", str(config)]


def issue_token(home, *args):
    """A token from the home's built-in issuer (`palisade token issue`)."""
    out = subprocess.run(
        [palisade_bin(), "--home", str(home), "token", "issue", *args], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def build(home, model_dir):
    subprocess.run([palisade_bin(), "--home", str(home), "build", str(model_dir)], check=True, capture_output=True)


def run_client(venv, script, spec):
    """Runs a client driver (tests/e2e/clients/SCRIPT) with the Python of .venv/VENV, which
    scripts/install-test-deps.sh makes (clients whose dependencies clash with tritonclient's
    live in their own virtualenvs). Sends SPEC as JSON, returns the JSON it prints."""
    python = ROOT / ".venv" / venv / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run scripts/install-test-deps.sh")
    result = subprocess.run(
        [str(python), str(ROOT / "tests" / "e2e" / "clients" / script)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def audit_records(home, *args):
    """Audit records of the server's home (`palisade audit query ... --output json`)."""
    out = subprocess.run(
        [palisade_bin(), "--home", str(home), "audit", "query", *args, "--output", "json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """Serves the shipped iris example, as the README's first command does."""
    home = tmp_path_factory.mktemp("home")
    build(home, ROOT / "examples" / "iris")
    srv = Server(home)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def iris():
    """The 150 iris rows and onnxruntime's outputs for the example model."""
    rows = json.loads((FIXTURES / "iris.json").read_text())["rows"]
    expected = json.loads((FIXTURES / "iris_rf.expected.json").read_text())
    return rows, expected
