"""The unmodified third-party client `tritonclient[grpc]` from PyPI against Palisade's
gRPC service, on the same port as REST (HTTP/2 cleartext on loopback)."""

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


@pytest.fixture
def client(server):
    return grpcclient.InferenceServerClient(url=server.host_port)


def metadata(server):
    # gRPC metadata keys are lower-case.
    return {"authorization": f"Bearer {server.token}"}


def test_health_and_metadata(client, server):
    # Health methods are public, as over REST; the rest needs the token.
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris", headers=metadata(server))
    assert client.is_model_ready("iris", "1.0.0", headers=metadata(server))
    assert not client.is_model_ready("no-such-model", headers=metadata(server))
    assert client.get_server_metadata(headers=metadata(server)).name == "palisade"
    model = client.get_model_metadata("iris", headers=metadata(server), as_json=True)
    assert model["inputs"] == [{"name": "X", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert [o["name"] for o in model["outputs"]] == ["output_label", "output_probability"]


def test_infer_all_rows_matches_onnxruntime(client, server, iris):
    rows, expected = iris
    x = np.array(rows, dtype=np.float32)
    inp = grpcclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    outputs = [grpcclient.InferRequestedOutput("output_label"), grpcclient.InferRequestedOutput("output_probability")]
    result = client.infer("iris", [inp], outputs=outputs, request_id="g-1", headers=metadata(server))
    assert result.get_response().id == "g-1"
    assert result.as_numpy("output_label").tolist() == expected["label"]
    np.testing.assert_allclose(result.as_numpy("output_probability"), expected["probabilities"], atol=1e-5)


def test_same_answer_as_rest(client, server, iris):
    import tritonclient.http as httpclient

    rows, _ = iris
    x = np.array(rows[:7], dtype=np.float32)
    g_in = grpcclient.InferInput("X", list(x.shape), "FP32")
    g_in.set_data_from_numpy(x)
    h_in = httpclient.InferInput("X", list(x.shape), "FP32")
    h_in.set_data_from_numpy(x)
    over_grpc = client.infer("iris", [g_in], headers=metadata(server)).as_numpy("output_probability")
    over_rest = (
        httpclient.InferenceServerClient(url=server.host_port)
        .infer("iris", [h_in], headers=server.auth)
        .as_numpy("output_probability")
    )
    assert over_grpc.tobytes() == over_rest.tobytes(), "bit-identical over both protocols"


def test_errors_carry_grpc_codes(client, server):
    ok = grpcclient.InferInput("X", [1, 4], "FP32")
    ok.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("iris", [ok])
    assert err.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as err:
        client.infer("iris", [ok], headers={"authorization": "Bearer not-a-token"})
    assert err.value.status() == "StatusCode.UNAUTHENTICATED"

    bad = grpcclient.InferInput("X", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("iris", [bad], headers=metadata(server))
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "shape [1, 3] does not match" in err.value.message()

    with pytest.raises(InferenceServerException) as err:
        client.infer("no-such-model", [ok], headers=metadata(server))
    assert err.value.status() == "StatusCode.NOT_FOUND"


def test_strangers_are_denied(client, server):
    from conftest import issue_token

    stranger = issue_token(server.home, "--email", "mallory@evil.example")
    ok = grpcclient.InferInput("X", [1, 4], "FP32")
    ok.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("iris", [ok], headers={"authorization": f"Bearer {stranger}"})
    assert err.value.status() == "StatusCode.PERMISSION_DENIED"
    assert "RBAC: access denied" in err.value.message()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    from conftest import ROOT, Server, build

    home = tmp_path_factory.mktemp("tls-home")
    build(home, ROOT / "examples" / "iris")
    srv = Server(home, extra_args=["--tls"])
    yield srv
    srv.stop()


def test_grpc_over_tls_with_alpn_h2(tls_server):
    # The self-signed localhost certificate Palisade generated in its home.
    ca = (tls_server.home / "tls" / "localhost.pem").read_bytes()
    host_port = tls_server.base.removeprefix("https://").replace("127.0.0.1", "localhost")
    client = grpcclient.InferenceServerClient(url=host_port, ssl=True, creds=grpc.ssl_channel_credentials(ca))
    x = grpcclient.InferInput("X", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
    result = client.infer("iris", [x], headers={"authorization": f"Bearer {tls_server.token}"})
    assert result.as_numpy("output_label").tolist() == [0]
    # A client that does not trust the certificate gets no answer at all.
    untrusting = grpcclient.InferenceServerClient(url=host_port, ssl=True)
    with pytest.raises(InferenceServerException) as err:
        untrusting.infer("iris", [x], headers={"authorization": f"Bearer {tls_server.token}"}, client_timeout=5)
    assert err.value.status() == "StatusCode.UNAVAILABLE"
