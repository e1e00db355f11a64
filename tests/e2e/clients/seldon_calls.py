"""Drives the unmodified SeldonClient (seldon-core==1.19.0, in .venv/seldon) against a
running Palisade and reports what it returned, as JSON on stdout.

Reads {"endpoint": "host:port", "calls": [...]} on stdin. Each call is {"gateway",
"transport": "rest" | "grpc", "deployment", "namespace": str | null, "payload_type":
"ndarray" | "tensor", "rows", "token": str | null}; the
answer is a list of {"success", "msg", "response"} (the client's own result object, with
the response as a dict). Run by tests/e2e/test_seldon.py; seldon-core needs Python >= 3.12
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
    return {"success": result.success, "msg": result.msg, "response": response}


def main():
    spec = json.load(sys.stdin)
    json.dump([run(call, spec["endpoint"]) for call in spec["calls"]], sys.stdout)


if __name__ == "__main__":
    main()
