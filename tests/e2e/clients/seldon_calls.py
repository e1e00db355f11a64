"""Drives the unmodified SeldonClient (seldon-core==1.19.0, in .venv/seldon) against a
running Palisade and reports what it returned, as JSON on stdout.

Reads {"endpoint": "host:port", "calls": [...]} on stdin. Each call is {"gateway",
"transport": "rest" | "grpc", "deployment", "namespace": str | null, "payload_type":
"ndarray" | "tensor", "rows", "token": str | null, and optionally "feedback": {"reward",
"token"}}; the answer is a list of {"success", "msg", "response"} (the client's own result
object, with the response as a dict), with "feedback": {"success", "msg", "response"} when
asked: the reward sent with seldon_core's own feedback functions for the transport (the
`SeldonClient.feedback` method takes no headers, so no token), naming the answer's puid. Run by tests/e2e/test_seldon.py; seldon-core needs Python >= 3.12
and its own virtualenv.
"""

import json
import sys

import numpy as np
from seldon_core.seldon_client import SeldonClient


def run(call, endpoint):
    client = SeldonClient(
        gateway=call.get("gateway", "istio"),
        transport=call["transport"],
        namespace=call.get("namespace"),
        deployment_name=call["deployment"],
        payload_type=call.get("payload_type", "ndarray"),
        gateway_endpoint=endpoint,
        client_return_type="dict",
    )
    # Lower case: gRPC metadata keys must be (the grpc library refuses "Authorization").
    headers = {"authorization": f"Bearer {call['token']}"} if call.get("token") else None
    result = client.predict(data=np.array(call["rows"], dtype=np.float64), headers=headers)
    response = result.response
    if response is not None and not isinstance(response, dict):
        from google.protobuf.json_format import MessageToDict

        response = MessageToDict(response)
    answer = {"success": result.success, "msg": result.msg, "response": response}
    if call.get("feedback") is not None and response is not None:
        answer["feedback"] = feedback(call, endpoint, response)
    return answer


def feedback(call, endpoint, response):
    from seldon_core.seldon_client import grpc_feedback_gateway, rest_feedback_gateway

    send = rest_feedback_gateway if call["transport"] == "rest" else grpc_feedback_gateway
    token = call["feedback"].get("token") or call.get("token")
    raw = {"response": {"meta": {"puid": response["meta"]["puid"]}}, "reward": call["feedback"]["reward"]}
    result = send(
        raw_request=raw,
        deployment_name=call["deployment"],
        namespace=call.get("namespace"),
        gateway_endpoint=endpoint,
        headers={"authorization": f"Bearer {token}"},
        client_return_type="dict",
    )
    body = result.response
    if body is not None and not isinstance(body, dict):
        from google.protobuf.json_format import MessageToDict

        body = MessageToDict(body)
    return {"success": result.success, "msg": result.msg, "response": body}


def main():
    spec = json.load(sys.stdin)
    json.dump([run(call, spec["endpoint"]) for call in spec["calls"]], sys.stdout)


if __name__ == "__main__":
    main()
