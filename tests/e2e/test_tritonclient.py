"""The unmodified third-party client `tritonclient[http]` from PyPI against Palisade."""

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


@pytest.fixture
def client(server):
    return httpclient.InferenceServerClient(url=server.host_port)


def test_health_and_metadata(client, server):
    # Health probes are public by design; everything else needs the token.
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris", headers=server.auth)
    assert client.is_model_ready("iris", "1.0.0", headers=server.auth)
    assert not client.is_model_ready("no-such-model", headers=server.auth)
    meta = client.get_server_metadata(headers=server.auth)
    assert meta["name"] == "palisade"
    model = client.get_model_metadata("iris", headers=server.auth)
    assert model["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in model["outputs"]] == ["output_label", "output_probability"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_all_rows_matches_onnxruntime(client, server, iris, binary):
    rows, expected = iris
    x = np.array(rows, dtype=np.float32)
    inp = httpclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("output_label", binary_data=binary),
        httpclient.InferRequestedOutput("output_probability", binary_data=binary),
    ]
    result = client.infer("iris", [inp], outputs=outputs, request_id="tc-1", headers=server.auth)
    assert result.get_response()["id"] == "tc-1"
    assert result.as_numpy("output_label").tolist() == expected["label"]
    np.testing.assert_allclose(result.as_numpy("output_probability"), expected["probabilities"], atol=1e-5)


def test_default_outputs_and_version(client, server, iris):
    rows, expected = iris
    x = np.array(rows[:3], dtype=np.float32)
    inp = httpclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("iris", [inp], model_version="1.0.0", headers=server.auth)
    assert result.as_numpy("output_label").tolist() == expected["label"][:3]


def test_errors_reach_the_client(client, server):
    bad = httpclient.InferInput("X", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("iris", [bad], headers=server.auth)
    assert err.value.status() == "400"
    assert "shape [1, 3] does not match" in err.value.message()

    wrong_type = httpclient.InferInput("X", [1, 4], "FP64")
    wrong_type.set_data_from_numpy(np.zeros((1, 4), dtype=np.float64))
    with pytest.raises(InferenceServerException) as err:
        client.infer("iris", [wrong_type], headers=server.auth)
    assert err.value.status() == "400"

    ok = httpclient.InferInput("X", [1, 4], "FP32")
    ok.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("no-such-model", [ok], headers=server.auth)
    assert err.value.status() == "404"

    with pytest.raises(InferenceServerException) as err:
        client.infer("iris", [ok])
    assert err.value.status() == "401"
    with pytest.raises(InferenceServerException) as err:
        client.infer("iris", [ok], headers={"Authorization": "Bearer not-a-token"})
    assert err.value.status() == "401"
