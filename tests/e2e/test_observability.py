"""Monitoring and logs: the Prometheus exposition passes `promtool check metrics` (Debian's
prometheus package), and JSON logs never contain tokens or payloads."""

import json
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import ROOT, Server, build

MARKER = 8765.4321  # a value that only ever appears in a request payload


def post(server, path, body, token):
    req = urllib.request.Request(server.base + path, data=body)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    home = tmp_path_factory.mktemp("obs-home")
    build(home, ROOT / "examples" / "iris")
    server = Server(
        home,
        ["--admin-listen", "127.0.0.1:0", "--log-format", "json"],
        env={"PALISADE_LOG": "debug"},
    )
    body = json.dumps(
        {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [MARKER, 3.5, 1.4, 0.2]}]}
    ).encode()
    assert post(server, "/v2/models/iris/infer", body, server.token) == 200
    assert post(server, "/v2/models/iris/infer", body, "not.a.token-SECRET") == 401
    assert post(server, "/v2/models/iris/infer", b'{"inputs": "garbage-8765"}', server.token) == 400
    assert post(server, "/v2/models/nope/infer", body, server.token) == 404
    yield server
    server.stop()


def test_metrics_pass_promtool(observed):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: scripts/install-test-deps.sh installs Debian's prometheus package")
    assert observed.admin, "the admin port address was printed"
    with urllib.request.urlopen(observed.admin + "/metrics", timeout=10) as resp:
        text = resp.read()
    assert b'palisade_requests_total{code="200",model="iris"} 1' in text
    # Refusals on a model route carry the model: the 401 (bad token) and the 400.
    assert b'palisade_requests_total{code="401",model="iris"} 1' in text
    assert b'palisade_requests_total{code="400",model="iris"} 1' in text
    # A model that is not served is counted under "-", so the label stays bounded.
    assert b'palisade_requests_total{code="404",model="-"} 1' in text
    assert b'palisade_models_served 1' in text
    assert b'palisade_model_loads_total{result="loaded"} 1' in text
    assert b"palisade_authn_failures_total" in text
    assert b"palisade_audit_fsync_seconds_bucket" in text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_json_logs_hold_no_tokens_or_payloads(observed):
    observed.stop()
    log = (observed.home / "server.log").read_text()
    lines = [l for l in log.splitlines() if l.strip()]
    assert len(lines) > 5
    for line in lines:
        json.loads(line)  # every line is JSON
    assert observed.token not in log
    assert observed.token.split(".")[1] not in log, "not even the token's payload part"
    assert "SECRET" not in log
    assert str(MARKER) not in log
    assert "garbage-8765" not in log
    assert any('"request_id"' in l for l in lines), "request ids are logged"
