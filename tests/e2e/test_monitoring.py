"""Monitoring end to end through the real binary (docs/monitoring.md): `palisade build` with
`monitoring:` from fixtures/monitoring, outlier scores read by unmodified tritonclient (HTTP
and gRPC) against scipy's Mahalanobis distances, the audit trail carrying them, and the
drift endpoint: scipy's ks_2samp p-values, owners only."""

import json
import shutil

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import ROOT, Server, audit_records, build, issue_token

MONITORING = ROOT / "fixtures" / "monitoring"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("monitoring-home")
    src = home / "src"
    src.mkdir()
    shutil.copy(ROOT / "fixtures/models/iris_lr_nozipmap.onnx", src / "model.onnx")
    shutil.copy(MONITORING / "reference.csv", src / "reference.csv")
    (src / "palisade.yaml").write_text(
        'name: watched\nversion: "1"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n'
        "monitoring:\n  outliers: {method: mahalanobis, reference: reference.csv}\n"
        "  drift: {reference: reference.csv, window: 60}\n"
    )
    build(home, src)
    server = Server(home)
    yield server, home
    server.stop()


def oracle():
    return json.loads((MONITORING / "oracle.json").read_text())


def probes_input(module, probes):
    x = module.InferInput("X", list(probes.shape), "FP32")
    x.set_data_from_numpy(probes)
    return x


def test_tritonclient_http_and_grpc_read_the_scores(served):
    server, home = served
    o = oracle()
    probes = np.array(o["probes"], dtype=np.float32)
    want = np.array(o["mahalanobis"])

    client = httpclient.InferenceServerClient(server.host_port)
    result = client.infer("watched", [probes_input(httpclient, probes)], headers=server.auth)
    parameters = result.get_response()["parameters"]
    np.testing.assert_allclose(parameters["outlier_score"], want, rtol=1e-6, atol=1e-6)
    assert parameters["is_outlier"] == [bool(d > o["mahalanobis_threshold_q99"]) for d in want]

    # gRPC on the same port: the lists travel as JSON in string parameters.
    client = grpcclient.InferenceServerClient(server.host_port)
    headers = {"authorization": f"Bearer {server.token}"}  # gRPC metadata keys are lower-case
    result = client.infer("watched", [probes_input(grpcclient, probes)], headers=headers)
    parameters = result.get_response().parameters
    np.testing.assert_allclose(json.loads(parameters["outlier_score"].string_param), want, rtol=1e-6, atol=1e-6)

    scored = [r for r in audit_records(home) if r.get("outliers")]
    assert len(scored) == 2 and all(r["outliers"]["rows"] == len(probes) for r in scored), scored


def test_drift_reports_scipy_p_values_to_owners_only(served):
    server, home = served
    o = oracle()
    shifted = np.array(o["window_shifted"], dtype=np.float32)
    client = httpclient.InferenceServerClient(server.host_port)
    client.infer("watched", [probes_input(httpclient, shifted)], headers=server.auth)
    reply = requests.get(server.base + "/v2/models/watched/drift", headers=server.auth, timeout=30)
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert report["window_rows"] == 60 and report["drift"] is True
    got = [f["p_value"] for f in report["features"]]
    want = [k["p_value"] for k in o["ks_shifted"]]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300)

    stranger = issue_token(home, "--email", "bob@example.com")
    headers = {"Authorization": f"Bearer {stranger}"}
    assert requests.get(server.base + "/v2/models/watched/drift", headers=headers, timeout=30).status_code == 403
    assert requests.get(server.base + "/v2/models/watched/drift", timeout=30).status_code == 401
