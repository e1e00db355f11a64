"""Every floating-point datatype end to end: FP16, FP64 and BF16 networks (exported with
torch.onnx.export's defaults, fixtures/corpus.py) built by the real `palisade build`,
served by `palisade serve`, called with the unmodified tritonclient over REST (JSON and
the binary extension) and gRPC, and compared with onnxruntime's recorded answers. Also NaN
and infinities as JSON strings, and a model's own body limit (`limits.maxBodyBytes`).

onnxruntime's library comes from this venv's onnxruntime wheel (scripts/install-test-deps.sh
installs it): BF16 runs on onnxruntime, and `palisade build` compares the engines.
"""

import json
import pathlib
import shutil
import urllib.error
import urllib.request

import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import FIXTURES, Server, palisade_bin

import subprocess

CORPUS = FIXTURES / "corpus"
MODELS = {"torch_mlp_fp16": "FP16", "torch_mlp_fp64": "FP64", "torch_mlp_bf16": "BF16"}
NUMPY = {"FP16": np.float16, "FP64": np.float64, "BF16": ml_dtypes.bfloat16}


def onnxruntime_library():
    import onnxruntime

    capi = pathlib.Path(onnxruntime.__file__).parent / "capi"
    found = sorted(capi.glob("libonnxruntime.so*"))
    if not found:
        pytest.fail(f"no libonnxruntime.so in {capi}: scripts/install-test-deps.sh installs the wheel")
    return str(found[-1])


def model_dir(root, fixture, name, extra=""):
    d = root / name
    d.mkdir()
    shutil.copy(CORPUS / f"{fixture}.onnx", d / f"{fixture}.onnx")
    data = CORPUS / f"{fixture}.onnx.data"
    if data.exists():
        shutil.copy(data, d / data.name)
    (d / "palisade.yaml").write_text(
        f'name: {name}\nversion: "1.0.0"\nowners: [alice@example.com]\n'
        f"model:\n  path: {fixture}.onnx\n  format: onnx\n{extra}"
    )
    return d


def build(home, d, env):
    out = subprocess.run(
        [palisade_bin(), "--home", str(home), "build", "--output", "json", str(d)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import os

    env = {**os.environ, "PALISADE_ONNXRUNTIME_LIB": onnxruntime_library()}
    root = tmp_path_factory.mktemp("models")
    home = tmp_path_factory.mktemp("home")
    built = {}
    for fixture in MODELS:
        built[fixture] = build(home, model_dir(root, fixture, fixture.replace("_", "-")), env)
    built["imputer"] = build(home, model_dir(root, "imputer_logreg", "imputer"), env)
    build(home, model_dir(root, "torch_mlp", "mlp-small-bodies", "limits: {maxBodyBytes: 2048}\n"), env)
    build(home, model_dir(root, "torch_mlp", "mlp"), env)
    srv = Server(
        home, ["--admin-listen", "127.0.0.1:0"], env={"PALISADE_ONNXRUNTIME_LIB": env["PALISADE_ONNXRUNTIME_LIB"]}
    )
    yield srv, built
    srv.stop()


def fixture_batch(fixture):
    """The recorded batch of 7 rows: inputs, expected outputs."""
    doc = json.loads((CORPUS / f"{fixture}.json").read_text())
    batch = next(b for b in doc["batches"] if b["size"] == 7)
    start, width = batch["start"], 8
    x = np.array(doc["pool"]["x"][start * width : (start + 7) * width], dtype=np.float64).reshape(7, width)
    (name, expected), = batch["outputs"].items()
    return x, name, np.array(expected["data"], dtype=np.float64).reshape(expected["shape"])


def test_build_reports_engines(served):
    srv, built = served
    show = subprocess.run(
        [palisade_bin(), "--home", str(srv.home), "models", "show", "torch-mlp-bf16", "--output", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(show.stdout)["engine"] == "onnxruntime"
    with urllib.request.urlopen(srv.admin + "/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert 'palisade_model_engine{engine="onnxruntime",model="torch-mlp-bf16",version="1.0.0"} 1' in metrics, metrics
    assert 'palisade_model_engine{engine="tract",model="torch-mlp-fp16",version="1.0.0"} 1' in metrics
    assert built["torch_mlp_fp16"]["engine"] == "tract"
    assert built["torch_mlp_fp64"]["engine"] == "tract"
    assert built["torch_mlp_fp16"]["selfTest"]["comparedEngines"] is True
    assert built["torch_mlp_bf16"]["engine"] == "onnxruntime"
    assert any("bfloat16" in note for note in built["torch_mlp_bf16"]["notes"])


@pytest.mark.parametrize("fixture", list(MODELS))
@pytest.mark.parametrize("transport", ["json", "binary", "grpc"])
def test_floating_point_types_match_onnxruntime(served, fixture, transport):
    srv, _ = served
    datatype = MODELS[fixture]
    x, output, expected = fixture_batch(fixture)
    name = fixture.replace("_", "-")
    meta = httpclient.InferenceServerClient(url=srv.host_port).get_model_metadata(name, headers=srv.auth)
    assert meta["inputs"][0]["datatype"] == datatype
    assert meta["parameters"]["engine"] == ("onnxruntime" if datatype == "BF16" else "tract")
    values = x.astype(NUMPY[datatype])
    if datatype == "BF16" and transport == "json":
        # tritonclient sends BF16 only in binary; the V2 JSON form carries numbers.
        body = {"inputs": [{"name": "x", "shape": list(values.shape), "datatype": "BF16",
                            "data": values.astype(np.float32).reshape(-1).tolist()}]}
        status, answer = post(srv, f"/v2/models/{name}/infer", body)
        assert status == 200, answer
        (out,) = answer["outputs"]
        assert out["datatype"] == "BF16"
        got = np.array(out["data"], dtype=np.float64).reshape(out["shape"])
        np.testing.assert_allclose(got, expected, atol=1e-2, rtol=1e-2)
        return
    if transport == "grpc":
        client = grpcclient.InferenceServerClient(url=srv.host_port)
        inp = grpcclient.InferInput("x", list(values.shape), datatype)
        inp.set_data_from_numpy(values)
        metadata = {"authorization": f"Bearer {srv.token}"}
        result = client.infer(name, [inp], outputs=[grpcclient.InferRequestedOutput(output)], headers=metadata)
    else:
        binary = transport == "binary"
        client = httpclient.InferenceServerClient(url=srv.host_port)
        inp = httpclient.InferInput("x", list(values.shape), datatype)
        inp.set_data_from_numpy(values, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput(output, binary_data=binary)]
        result = client.infer(name, [inp], outputs=outputs, headers=srv.auth)
    got = result.as_numpy(output)
    assert got.dtype == NUMPY[datatype]
    tolerance = {"FP16": 2e-3, "BF16": 1e-2, "FP64": 1e-12}[datatype]
    np.testing.assert_allclose(got.astype(np.float64), expected, atol=tolerance, rtol=tolerance)


def post(srv, path, body):
    req = urllib.request.Request(
        srv.base + path,
        data=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers={**srv.auth, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_nan_and_infinity_as_json_strings(served):
    srv, _ = served
    doc = json.loads((CORPUS / "imputer_logreg.json").read_text())
    pool = doc["pool"]["X"]
    row = next(r for r in range(doc["rows"]) if any(v is None for v in pool[r * 4 : r * 4 + 4]))
    values = ["NaN" if v is None else v for v in pool[row * 4 : row * 4 + 4]]
    body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": values}]}
    status, answer = post(srv, "/v2/models/imputer/infer", body)
    assert status == 200, answer
    expected = doc["per_row"][row]
    for out in answer["outputs"]:
        np.testing.assert_allclose(out["data"], expected[out["name"]]["data"], atol=1e-5)
    # A model whose inputs do not allow NaN refuses them, naming the element.
    body = {"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP64", "data": ["Infinity"] + [0.0] * 7}]}
    status, answer = post(srv, "/v2/models/torch-mlp-fp64/infer", body)
    assert status == 400 and "NaN or infinite" in answer["error"], answer
    # Only the three spellings stand for numbers.
    body["inputs"][0]["data"][0] = "inf"
    status, answer = post(srv, "/v2/models/torch-mlp-fp64/infer", body)
    assert status == 400 and '"NaN"' in answer["error"], answer


def test_a_model_sets_its_own_body_limit(served):
    srv, _ = served
    rows = 40
    body = {"inputs": [{"name": "x", "shape": [rows, 8], "datatype": "FP32", "data": [0.125] * (rows * 8)}]}
    assert len(json.dumps(body)) > 2048
    status, answer = post(srv, "/v2/models/mlp-small-bodies/infer", body)
    assert status == 413, answer
    status, answer = post(srv, "/v2/models/mlp/infer", body)
    assert status == 200, answer
    small = {"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", "data": [0.125] * 8}]}
    assert post(srv, "/v2/models/mlp-small-bodies/infer", small)[0] == 200
