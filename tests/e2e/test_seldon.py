"""The unmodified SeldonClient from PyPI (seldon-core==1.19.0, its own Python >= 3.12
virtualenv .venv/seldon) against the real binary serving the iris example: the istio and
ambassador gateway modes over REST (with and without a namespace) and gRPC (the
`seldon.protos.Seldon` service), ndarray and tensor payloads. Predictions equal
onnxruntime's; 401 and 403 reach the caller in the client's own result (`success` false,
the server's message in the Seldon status it returns), for every transport.

Driven by tests/e2e/clients/seldon_calls.py in one batch per test.
"""

import numpy as np
import pytest

from conftest import issue_token, run_client

ROWS = 5


@pytest.fixture(scope="module")
def tokens(server):
    return {"alice": server.token, "bob": issue_token(server.home, "--email", "bob@example.com")}


def call_seldon(server, calls):
    return run_client("seldon", "seldon_calls.py", {"endpoint": server.host_port, "calls": calls})


def probabilities(response):
    data = response["data"]
    if "ndarray" in data:
        return data["ndarray"]
    shape = data["tensor"]["shape"]
    values = data["tensor"]["values"]
    return np.array(values).reshape(shape).tolist()


MODES = [
    (gateway, transport, namespace, payload)
    for gateway in ["istio", "ambassador"]
    for transport in ["rest", "grpc"]
    for namespace in [None, "default"]
    for payload in ["ndarray", "tensor"]
]


def test_every_gateway_mode_predicts_like_onnxruntime(server, iris, tokens):
    rows, expected = iris
    calls = [
        {
            "gateway": gateway,
            "transport": transport,
            "namespace": namespace,
            "payload_type": payload,
            "deployment": "iris",
            "rows": rows[:ROWS],
            "token": tokens["alice"],
        }
        for gateway, transport, namespace, payload in MODES
    ]
    for mode, result in zip(MODES, call_seldon(server, calls)):
        assert result["success"], (mode, result)
        response = result["response"]
        np.testing.assert_allclose(probabilities(response), expected["probabilities"][:ROWS], atol=1e-5, err_msg=str(mode))
        assert response["meta"]["requestPath"] == {"iris": "1.0.0"}, mode
        assert response["data"]["names"] == ["0", "1", "2"], mode


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_401_403_and_404_reach_the_caller_with_the_servers_message(server, iris, tokens, transport):
    rows, _ = iris
    call = {"transport": transport, "deployment": "iris", "rows": rows[:1], "payload_type": "ndarray"}
    anonymous, bob, unknown, elsewhere = call_seldon(
        server,
        [
            {**call, "token": None},
            {**call, "token": tokens["bob"]},
            {**call, "token": tokens["alice"], "deployment": "nothere"},
            {**call, "token": tokens["alice"], "namespace": "team"},
        ],
    )
    for result in (anonymous, bob, unknown, elsewhere):
        assert not result["success"], result
    if transport == "rest":
        # The client keeps the HTTP status in `msg` and the server's Seldon status body.
        for result, code, reason, text in [
            (anonymous, 401, "UNAUTHORIZED", "authentication required: send a bearer token"),
            (bob, 403, "UNAUTHORIZED", "RBAC: access denied"),
            (unknown, 404, "NOT_FOUND", "model `nothere` not found"),
            (elsewhere, 404, "NOT_FOUND", "not found in namespace `team`"),
        ]:
            assert result["msg"].startswith(f"{code}:"), result
            status = result["response"]["status"]
            assert (status["code"], status["reason"], status["status"]) == (code, reason, "FAILURE"), result
            assert text in status["info"], result
    else:
        # The gRPC error's text, status and details, in `msg`.
        for result, code, text in [
            (anonymous, "UNAUTHENTICATED", "authentication required: send a bearer token"),
            (bob, "PERMISSION_DENIED", "RBAC: access denied"),
            (unknown, "NOT_FOUND", "model `nothere` not found"),
            (elsewhere, "NOT_FOUND", "not found in namespace `team`"),
        ]:
            assert code in result["msg"] and text in result["msg"], result
