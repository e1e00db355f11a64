"""Inference graphs and traffic splits served by the real binary, called by unmodified
third-party clients: tritonclient (HTTP and gRPC) and SeldonClient (REST and gRPC) get the
answers onnxruntime computes on the component models, and the audit trail links every hop
to the caller's request id.

The store holds the iris classifiers (fixtures/models/iris_*_nozipmap.onnx), the scaler and
the classifier trained on scaled rows (fixtures/models/graphs/, fixtures/graphs.py), and
three graphs built with `palisade build`: `ensemble` (AVERAGE_COMBINER over three models),
`pipeline` (scaler, RENAME, classifier) and `canary` (a traffic split with a shadow).
"""

import json
import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import FIXTURES, ROOT, Server, audit_records, build, run_client

OWNER = "owners: [alice@example.com]\n"


def manifest(name, body):
    return f'name: {name}\nversion: "1.0.0"\n{OWNER}{body}'


GRAPHS = {
    "ensemble": "graph:\n  name: mean\n  type: COMBINER\n  implementation: AVERAGE_COMBINER\n  children:\n"
    "    - {name: lr, model: iris-lr}\n    - {name: rf, model: iris-rf}\n    - {name: mlp, model: iris-mlp}\n",
    "pipeline": "graph:\n  name: scale\n  type: TRANSFORMER\n  model: scaler\n  children:\n"
    "    - name: rename\n      implementation: RENAME\n      parameters: [{name: scaled, value: X}]\n"
    "      children:\n        - {name: classify, model: scaled-lr}\n",
    "bandit": "graph:\n  name: bandit\n  implementation: EPSILON_GREEDY\n  children:\n"
    "    - {name: lr, model: iris-lr}\n    - {name: rf, model: iris-rf}\n",
    "canary": "traffic: [{model: iris-lr, weight: 1}, {model: iris-mlp, weight: 0}]\nshadow: {model: iris-rf, percent: 100}\n",
}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    home = tmp_path_factory.mktemp("graphs-home")
    src = tmp_path_factory.mktemp("graphs-src")
    components = [
        ("iris-lr", FIXTURES / "iris_lr_nozipmap.onnx"),
        ("iris-rf", FIXTURES / "iris_rf_nozipmap.onnx"),
        ("iris-mlp", FIXTURES / "iris_mlp_nozipmap.onnx"),
        ("scaler", FIXTURES / "graphs" / "scaler.onnx"),
        ("scaled-lr", FIXTURES / "graphs" / "scaled_lr.onnx"),
    ]
    for name, onnx in components:
        (src / name).mkdir()
        shutil.copy(onnx, src / name / "model.onnx")
        (src / name / "palisade.yaml").write_text(manifest(name, "model: {path: model.onnx, format: onnx}\n"))
        build(home, src / name)
    for name, body in GRAPHS.items():
        (src / name).mkdir()
        (src / name / "palisade.yaml").write_text(manifest(name, body))
        build(home, src / name)
    srv = Server(home)
    yield srv
    srv.stop()


def rows():
    return np.array(json.loads((FIXTURES / "iris.json").read_text())["rows"], dtype=np.float32)


def reference(name):
    return json.loads((FIXTURES / f"{name}.expected.json").read_text())


def mean_probabilities():
    return np.mean([reference(m)["probabilities"] for m in ["iris_lr_nozipmap", "iris_rf_nozipmap", "iris_mlp_nozipmap"]], axis=0)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_http_gets_onnxruntimes_answers_through_graphs(graphs, binary):
    client = httpclient.InferenceServerClient(url=graphs.host_port)
    assert client.is_model_ready("ensemble", headers=graphs.auth)
    meta = client.get_model_metadata("ensemble", headers=graphs.auth)
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    x = rows()
    inp = httpclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = [httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
    result = client.infer("ensemble", [inp], outputs=out, request_id="g-1", headers=graphs.auth)
    np.testing.assert_allclose(result.as_numpy("probabilities"), mean_probabilities(), atol=1e-5)

    expected = json.loads((FIXTURES / "graphs" / "expected.json").read_text())
    result = client.infer("pipeline", [inp], headers=graphs.auth)
    assert result.as_numpy("label").tolist() == expected["label"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], atol=1e-5)

    result = client.infer("canary", [inp], headers=graphs.auth)
    assert result.get_response()["parameters"]["routing"] == {"traffic": "iris-lr"}
    assert result.as_numpy("label").tolist() == reference("iris_lr_nozipmap")["label"]


def test_tritonclient_grpc_gets_onnxruntimes_answers_through_graphs(graphs):
    client = grpcclient.InferenceServerClient(url=graphs.host_port)
    headers = {"authorization": f"Bearer {graphs.token}"}
    x = rows()
    inp = grpcclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("ensemble", [inp], headers=headers)
    np.testing.assert_allclose(result.as_numpy("probabilities"), mean_probabilities(), atol=1e-5)
    result = client.infer("canary", [inp], headers=headers)
    routing = result.get_response(as_json=True)["parameters"]["routing"]["string_param"]
    assert json.loads(routing) == {"traffic": "iris-lr"}


def test_seldon_client_gets_the_graphs_answer_and_route(graphs):
    x = rows()[:5].tolist()
    calls = [
        {"gateway": "istio", "transport": transport, "namespace": "default", "payload_type": "ndarray",
         "deployment": deployment, "rows": x, "token": graphs.token}
        for transport in ["rest", "grpc"]
        for deployment in ["ensemble", "canary"]
    ]
    results = run_client("seldon", "seldon_calls.py", {"endpoint": graphs.host_port, "calls": calls})
    for call, result in zip(calls, results):
        assert result["success"], result["msg"]
        data = result["response"]["data"]
        if call["deployment"] == "ensemble":
            np.testing.assert_allclose(data["ndarray"], mean_probabilities()[:5], atol=1e-5)
        else:
            meta = result["response"]["meta"]
            assert meta["routing"] == {"traffic": 0}, meta
            assert meta["requestPath"]["traffic"] == "iris-lr", meta
            assert meta["puid"]


def test_seldon_clients_feedback_reaches_the_bandit_only_from_the_caller(graphs):
    from conftest import issue_token

    bob = issue_token(graphs.home, "--email", "bob@example.com")
    x = rows()[:1].tolist()
    calls = [
        {"gateway": "istio", "transport": transport, "namespace": "default", "payload_type": "ndarray",
         "deployment": "bandit", "rows": x, "token": graphs.token, "feedback": {"reward": 1.0, "token": token}}
        for transport in ["rest", "grpc"]
        for token in [None, bob]
    ]
    results = run_client("seldon", "seldon_calls.py", {"endpoint": graphs.host_port, "calls": calls})
    for call, result in zip(calls, results):
        assert result["success"], result["msg"]
        assert "bandit" in result["response"]["meta"]["routing"]
        feedback = result["feedback"]
        if call["feedback"]["token"] is None:
            assert feedback["success"], feedback["msg"]
        else:
            # Another caller's feedback is refused (403 over REST, PERMISSION_DENIED over gRPC).
            assert not feedback["success"], feedback
            assert "403" in feedback["msg"] or "PERMISSION_DENIED" in feedback["msg"] or "RBAC" in feedback["msg"], feedback


def test_every_hop_is_audited_under_the_callers_request_id(graphs):
    import urllib.request

    body = json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})
    request = urllib.request.Request(f"{graphs.base}/v2/models/canary/infer", data=body.encode(), headers=graphs.auth, method="POST")
    with urllib.request.urlopen(request) as response:
        request_id = response.headers["x-request-id"]
        assert response.headers["x-palisade-route"] == "traffic=iris-lr"
    import time

    deadline = time.monotonic() + 10
    while True:
        hops = [r for r in audit_records(graphs.home) if r.get("parent_request_id") == request_id]
        if {h["node"] for h in hops} >= {"iris-lr", "shadow"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    by_node = {h["node"]: h for h in hops}
    assert by_node["iris-lr"]["model"]["name"] == "iris-lr" and by_node["iris-lr"]["status"] == 200
    assert by_node["shadow"]["model"]["name"] == "iris-rf"
    assert by_node["iris-lr"]["request_principal"].endswith("/alice@example.com")
