"""The unmodified KServe SDK from PyPI (kserve==0.21.0, its own virtualenv .venv/kserve)
against the real binary serving the iris example: REST V1 (`/v1/models/...`), REST V2 with
JSON and with the binary tensor extension, and gRPC. Predictions equal onnxruntime's; 401
and 403 reach the caller as the SDK's own error carrying the server's message; a body whose
`model_name` disagrees with the route is refused and audited against the route's model.

The SDK is driven by tests/e2e/clients/kserve_calls.py in one batch per test (kserve and
tritonclient pin clashing protobufs, so they cannot share this virtualenv).
"""

import numpy as np
import pytest

from conftest import audit_records, issue_token, run_client

ROWS = 5


@pytest.fixture(scope="module")
def tokens(server):
    return {"alice": server.token, "bob": issue_token(server.home, "--email", "bob@example.com")}


def call_kserve(server, calls):
    return run_client("kserve", "kserve_calls.py", {"base": server.base, "grpc": server.host_port, "calls": calls})


def ok(result):
    assert "ok" in result, result
    return result["ok"]


def error(result):
    assert "error" in result, result
    return result["error"]


def test_rest_v2_json_and_binary_and_grpc_predict_like_onnxruntime(server, iris, tokens):
    rows, expected = iris
    alice = tokens["alice"]
    infer = {"op": "infer", "model": "iris", "rows": rows[:ROWS], "token": alice, "id": "k-1"}
    results = call_kserve(
        server,
        [
            {"api": "v2", "op": "live"},
            {"api": "v2", "op": "ready"},
            {"api": "v2", "op": "model_ready", "model": "iris", "token": alice},
            {"api": "v2", **infer, "binary": False},
            {"api": "v2", **infer, "binary": True},
            {"api": "grpc", "op": "live"},
            {"api": "grpc", "op": "ready"},
            {"api": "grpc", "op": "model_ready", "model": "iris", "token": alice},
            {"api": "grpc", **infer, "binary": False},
            {"api": "grpc", **infer, "binary": True},
        ],
    )
    assert [ok(r) for r in results[:3]] == [True, True, True]
    assert [ok(r) for r in results[5:8]] == [True, True, True]
    for result in results[3:5] + results[8:]:
        answer = ok(result)
        assert answer["model_name"] == "iris"
        assert answer["id"] == "k-1"
        assert answer["outputs"]["output_label"] == expected["label"][:ROWS]
        np.testing.assert_allclose(answer["outputs"]["output_probability"], expected["probabilities"][:ROWS], atol=1e-5)


def test_rest_v1_predicts_like_onnxruntime(server, iris, tokens):
    rows, expected = iris
    alice = tokens["alice"]
    by_name = [{"X": row} for row in rows[:ROWS]]
    results = call_kserve(
        server,
        [
            {"api": "v1", "op": "live"},
            {"api": "v1", "op": "model_ready", "model": "iris", "token": alice},
            {"api": "v1", "op": "infer", "model": "iris", "token": alice, "body": {"instances": rows[:ROWS]}},
            {"api": "v1", "op": "infer", "model": "iris", "token": alice, "body": {"instances": by_name}},
            {"api": "v1", "op": "infer", "model": "iris", "token": alice, "body": {"inputs": rows[:ROWS]}},
            {"api": "v1", "op": "explain", "model": "iris", "token": alice, "body": {"instances": rows[:1]}},
        ],
    )
    assert ok(results[0]) is True
    assert ok(results[1]) is True
    for result in results[2:5]:
        predictions = ok(result)["predictions"]
        assert [p["output_label"] for p in predictions] == expected["label"][:ROWS]
        np.testing.assert_allclose(
            [p["output_probability"] for p in predictions], expected["probabilities"][:ROWS], atol=1e-5
        )
    explain = error(results[5])
    assert explain["status"] == 501
    assert "has no explainer" in explain["message"]


@pytest.mark.parametrize("api", ["v1", "v2", "grpc"])
def test_401_and_403_reach_the_caller_with_the_servers_message(server, iris, tokens, api):
    rows, _ = iris
    call = {"api": api, "op": "infer", "model": "iris", "rows": rows[:1], "body": {"instances": rows[:1]}}
    anonymous, bad, bob, unknown = call_kserve(
        server,
        [
            {**call, "token": None},
            {**call, "token": "not-a-token"},
            {**call, "token": tokens["bob"]},
            {**call, "token": tokens["alice"], "model": "nothere", "body_model_name": "nothere"},
        ],
    )
    if api == "grpc":
        assert (error(anonymous)["status"], error(anonymous)["message"]) == (
            "UNAUTHENTICATED",
            "authentication required: send a bearer token",
        )
        assert error(bad)["status"] == "UNAUTHENTICATED"
        assert (error(bob)["status"], error(bob)["message"]) == ("PERMISSION_DENIED", "RBAC: access denied")
        assert error(unknown)["status"] == "NOT_FOUND"
        return
    # The REST SDK raises httpx.HTTPStatusError with the server's `error` in its message.
    for result, status, text in [
        (anonymous, 401, "authentication required: send a bearer token"),
        (bad, 401, "authentication failed"),
        (bob, 403, "RBAC: access denied"),
        (unknown, 404, "model `nothere` not found"),
    ]:
        err = error(result)
        assert err["type"] == "HTTPStatusError", err
        assert err["status"] == status, err
        assert text in err["message"], err


def test_model_ready_and_health_with_and_without_a_token(server, tokens):
    results = call_kserve(
        server,
        [
            {"api": "v1", "op": "model_ready", "model": "iris", "token": None},
            {"api": "v1", "op": "model_ready", "model": "iris", "token": tokens["bob"]},
            # V2: the SDK turns any refusal into False (it reads only the status).
            {"api": "v2", "op": "model_ready", "model": "iris", "token": None},
            {"api": "grpc", "op": "model_ready", "model": "iris", "token": None},
        ],
    )
    assert error(results[0])["status"] == 401 and "authentication required" in error(results[0])["message"]
    assert error(results[1])["status"] == 403 and "RBAC: access denied" in error(results[1])["message"]
    assert ok(results[2]) is False
    assert error(results[3])["status"] == "UNAUTHENTICATED"


def test_a_disagreeing_model_name_is_refused_and_audited_as_the_routes_model(server, iris, tokens):
    rows, _ = iris
    (result,) = call_kserve(
        server,
        [
            {
                "api": "v2",
                "op": "infer",
                "model": "iris",
                "body_model_name": "secret",
                "rows": rows[:1],
                "token": tokens["alice"],
            }
        ],
    )
    err = error(result)
    assert err["status"] == 400
    assert "model_name `secret` is not the route's model `iris`" in err["message"], err
    (record,) = audit_records(server.home, "--request-id", err["request_id"])
    assert record["model"]["name"] == "iris"
    assert record["status"] == 400
    assert record["path"] == "/v2/models/iris/infer"
