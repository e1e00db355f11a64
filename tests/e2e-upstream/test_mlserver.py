"""Palisade in front of a real MLServer (Open Inference Protocol V2 over HTTP).

The caller talks to Palisade only. An authorized token gets MLServer's predictions; an
unauthorized one gets 403 and MLServer is never called (its own request counters do not
move); both requests are in Palisade's audit trail with their status and request id.
"""

import json
import subprocess
import urllib.error
import urllib.request

import numpy as np
from conftest import issue_token, palisade_bin

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5], [5.9, 3.0, 4.2, 1.5]]


def infer(gateway, token, rows=ROWS, outputs=None):
    body = {"inputs": [{"name": "X", "shape": [len(rows), 4], "datatype": "FP32", "data": rows}]}
    if outputs:
        body["outputs"] = [{"name": name} for name in outputs]
    request = urllib.request.Request(
        f"{gateway.base}/v2/models/iris-gateway/infer",
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Bearer {token}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["x-request-id"], json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers["x-request-id"], json.loads(err.read())


def audit_records(home):
    out = subprocess.run(
        [palisade_bin(), "--home", str(home), "audit", "query", "--output", "json"],
        capture_output=True, text=True, check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_authorized_token_gets_mlservers_predictions(gateway, mlserver):
    before = mlserver.infer_requests()
    status, request_id, body = infer(gateway, gateway.token)
    assert status == 200, body
    assert request_id
    assert body["model_name"] == "iris-gateway"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict"]["shape"] == [3, 1]
    # The same answers scikit-learn gives for the model MLServer loaded, on the same FP32 rows.
    rows = np.asarray(ROWS, dtype=np.float32)
    assert outputs["predict"]["data"] == [int(c) for c in mlserver.model.predict(rows)]
    expected = mlserver.model.predict_proba(rows).ravel().tolist()
    assert outputs["predict_proba"]["shape"] == [3, 3]
    assert max(abs(a - b) for a, b in zip(outputs["predict_proba"]["data"], expected)) < 1e-12
    assert mlserver.infer_requests() == before + 1

    # Asking for one output returns just that one.
    status, _, body = infer(gateway, gateway.token, outputs=["predict"])
    assert status == 200 and [o["name"] for o in body["outputs"]] == ["predict"]


def test_unauthorized_token_is_refused_without_calling_mlserver(gateway, mlserver):
    before = mlserver.infer_requests()
    stranger = issue_token(gateway.home, "--email", "mallory@example.com")
    status, request_id, body = infer(gateway, stranger)
    assert status == 403, body
    assert body == {"error": "RBAC: access denied"}
    assert mlserver.infer_requests() == before, "MLServer was called for a refused request"

    # Malformed input is refused at the gateway too, against the declared signature.
    status, _, body = infer(gateway, gateway.token, rows=[[1.0, 2.0, 3.0]])
    assert status == 400, body
    assert mlserver.infer_requests() == before


def test_both_are_audited_with_status_and_request_id(gateway, mlserver):
    _, allowed_id, _ = infer(gateway, gateway.token)
    stranger = issue_token(gateway.home, "--email", "mallory@example.com")
    _, denied_id, _ = infer(gateway, stranger)
    records = {r.get("request_id"): r for r in audit_records(gateway.home)}
    allowed, denied = records[allowed_id], records[denied_id]
    assert allowed["status"] == 200
    assert allowed["model"]["name"] == "iris-gateway"
    assert allowed["authz"]["decision"] == "allow"
    assert allowed["email"] == "alice@example.com"
    assert denied["status"] == 403
    assert denied["authz"]["decision"] == "deny"
    assert denied["email"] == "mallory@example.com"
    verify = subprocess.run([palisade_bin(), "--home", str(gateway.home), "audit", "verify"], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_model_metadata_and_readiness_come_from_the_gateway(gateway):
    request = urllib.request.Request(
        f"{gateway.base}/v2/models/iris-gateway", headers={"Authorization": f"Bearer {gateway.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        metadata = json.loads(response.read())
    assert metadata["platform"] == "upstream"
    assert [o["name"] for o in metadata["outputs"]] == ["predict", "predict_proba"]
    request = urllib.request.Request(
        f"{gateway.base}/v2/models/iris-gateway/ready", headers={"Authorization": f"Bearer {gateway.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_mlserver_down_is_a_502_and_audited(gateway, mlserver):
    """Runs last: it stops MLServer."""
    mlserver.stop()
    status, request_id, body = infer(gateway, gateway.token)
    assert status == 502, body
    assert body["error"].startswith("the upstream model server could not be reached")
    assert "127.0.0.1" not in body["error"]
    records = {r.get("request_id"): r for r in audit_records(gateway.home)}
    assert records[request_id]["status"] == 502
