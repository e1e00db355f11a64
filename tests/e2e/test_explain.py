"""Explanations end to end through the real binary: `palisade build` with `explainer:`
(TreeShap on a random forest classifier and a gradient-boosting regressor, KernelShap on a
logistic regression), `POST .../explain` and its KServe and Seldon aliases against shap's
oracle values, and authorization on the explain path of its own: a policy that allows
`infer` does not allow `explain`."""

import json
import math
import shutil
import subprocess

import pytest
import requests

from conftest import ROOT, Server, audit_records, build, issue_token

EXPLAIN = ROOT / "fixtures" / "explain"
OWNER = "owners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n"

# Allows person_a to infer with `guarded` (the wine forest again), and nothing else.
INFER_ONLY = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: infer-only
  namespace: default
spec:
  action: ALLOW
  selector:
    matchLabels:
      palisade.dev/model: guarded
  rules:
    - to:
        - operation:
            methods: ["POST"]
            paths: ["/v2/models/guarded/infer"]
      when:
        - key: "request.auth.claims[email]"
          values: ["person_a@company.com"]
"""


def oracle(name):
    return json.loads((EXPLAIN / f"{name}.json").read_text())


def complete(o):
    """The oracle's rows without missing values (JSON carries no NaN), with their indices."""
    return [(i, r) for i, r in enumerate(o["rows"]) if None not in r]


def model_dir(home, name, onnx, kind, background):
    d = home / f"src-{name}"
    d.mkdir()
    shutil.copy(onnx, d / "model.onnx")
    (d / "background.csv").write_text(background)
    (d / "palisade.yaml").write_text(
        f'name: {name}\nversion: "1"\n{OWNER}explainer:\n  type: {kind}\n  background: background.csv\n'
    )
    return d


def csv(o):
    n = o["n_features"]
    lines = [",".join(f"f{i}" for i in range(n))]
    lines += [",".join(repr(v) for v in row) for row in o["background"]]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("explain-home")
    for name, fixture in [("wine", "wine_rf"), ("diabetes", "diabetes_gb"), ("guarded", "wine_rf")]:
        build(home, model_dir(home, name, EXPLAIN / f"{fixture}.onnx", "TreeShap", csv(oracle(fixture))))
    iris_bg = "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n7.7,3.0,6.1,2.3\n"
    build(home, model_dir(home, "iris", ROOT / "fixtures/models/iris_lr_nozipmap.onnx", "KernelShap", iris_bg))
    policies = home / "policies"
    policies.mkdir()
    (policies / "infer-only.yaml").write_text(INFER_ONLY)
    server = Server(home, ["--policy-dir", str(policies)])
    yield server, home
    server.stop()


def v2_body(rows):
    return {"inputs": [{"name": "X", "shape": [len(rows), len(rows[0])], "datatype": "FP32", "data": sum(rows, [])}]}


def post(server, path, body, token=None):
    headers = {"Authorization": f"Bearer {token or server.token}"} if token != "" else {}
    return requests.post(server.base + path, json=body, headers=headers, timeout=60)


@pytest.mark.parametrize("name,fixture", [("diabetes", "diabetes_gb")])
def test_tree_shap_matches_shap_and_adds_up(served, name, fixture):
    server, _ = served
    o = oracle(fixture)
    rows = complete(o)
    reply = post(server, f"/v2/models/{name}/explain", v2_body([r for _, r in rows]))
    assert reply.status_code == 200, reply.text
    e = reply.json()
    assert e["meta"]["name"] == "TreeShap"
    shap_values, expected = e["data"]["shap_values"], e["data"]["expected_value"]
    assert len(shap_values) == len(o["shap_values"]) == 1, "one matrix for a regressor"
    for k, matrix in enumerate(shap_values):
        assert abs(expected[k] - o["expected_value"][k]) < 1e-6
        for (index, _), got in zip(rows, matrix):
            for j, value in enumerate(got):
                assert abs(value - o["shap_values"][k][index][j]) < 1e-6
            margin = e["data"]["raw"]["raw_prediction"][rows.index((index, _))][k]
            assert abs(expected[k] + math.fsum(got) - margin) < 1e-6


def test_classifier_through_curl_and_the_aliases(served):
    server, _ = served
    o = oracle("wine_rf")
    rows = complete(o)
    body = json.dumps(v2_body([r for _, r in rows]))
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", "-H", f"Authorization: Bearer {server.token}", "-H", "Content-Type: application/json",
         "--data-binary", body, server.base + "/v2/models/wine/explain"],
        check=True, capture_output=True, text=True,
    )
    e = json.loads(out.stdout)
    assert len(e["data"]["shap_values"]) == 3, "one matrix per class"
    worst = max(
        abs(e["data"]["shap_values"][k][r][j] - o["shap_values"][k][index][j])
        for k in range(3) for r, (index, row) in enumerate(rows) for j in range(len(row))
    )
    assert worst < 1e-6, worst
    kserve = post(server, "/v1/models/wine:explain", {"instances": [r for _, r in rows]})
    assert kserve.status_code == 200, kserve.text
    assert kserve.json()["data"]["shap_values"] == e["data"]["shap_values"]
    seldon = post(server, "/seldon/wine/api/v1.0/explain", {"data": {"ndarray": [r for _, r in rows]}})
    assert seldon.status_code == 200, seldon.text
    assert seldon.json()["data"]["shap_values"] == e["data"]["shap_values"]


def test_kernel_shap_is_exact_and_adds_up(served):
    server, _ = served
    x = [[5.9, 3.0, 5.1, 1.8]]
    e = post(server, "/v2/models/iris/explain", v2_body(x)).json()
    assert e["meta"]["name"] == "KernelShap" and e["meta"]["params"]["exact"] is True
    probabilities = post(server, "/v2/models/iris/infer", v2_body(x)).json()["outputs"][1]["data"]
    for k in range(3):
        total = e["data"]["expected_value"][k] + math.fsum(e["data"]["shap_values"][k][0])
        assert abs(total - probabilities[k]) < 1e-6


def test_infer_is_not_explain(served):
    server, home = served
    person_a = issue_token(home, "--email", "person_a@company.com")
    rows = [r for _, r in complete(oracle("wine_rf"))][:1]
    assert post(server, "/v2/models/guarded/infer", v2_body(rows), person_a).status_code == 200
    for path in ["/v2/models/guarded/explain", "/v2/models/guarded/versions/1/explain", "/v2/models/guarded/%65xplain"]:
        reply = post(server, path, v2_body(rows), person_a)
        assert reply.status_code == 403, (path, reply.text)
    assert post(server, "/v1/models/guarded:explain", {"instances": rows}, person_a).status_code == 403
    assert post(server, "/seldon/guarded/api/v1.0/explain", {"data": {"ndarray": rows}}, person_a).status_code == 403
    for path in ["/v2/models/guarded%2Fexplain", "/v2/models/guarded/explain%00", "/v2/models/guarded/infer%2F..%2Fexplain"]:
        reply = post(server, path, v2_body(rows), person_a)
        assert reply.status_code in (400, 403, 404), (path, reply.status_code)
        assert "shap_values" not in reply.text
    # The explicit policy replaced the owner default for guarded; no token is 401.
    assert post(server, "/v2/models/guarded/explain", v2_body(rows)).status_code == 403
    assert post(server, "/v2/models/guarded/explain", v2_body(rows), "").status_code == 401
    # diabetes has no policy: its owner may explain, a stranger may not.
    stranger = issue_token(home, "--email", "stranger@company.com")
    assert post(server, "/v2/models/diabetes/explain", v2_body([[0.0] * 10]), stranger).status_code == 403
    records = [r for r in audit_records(home) if (r.get("path") or "").endswith("explain")]
    assert {r["status"] for r in records} >= {200, 401, 403}
