"""Drives the unmodified KServe SDK (kserve==0.21.0, in .venv/kserve) against a running
Palisade and reports what the SDK returned or raised, as JSON on stdout.

Reads {"base": "http://host:port", "grpc": "host:port", "calls": [...]} on stdin. Each call
is {"api": "v1" | "v2" | "grpc", "op": ..., "token": str | null, "model": str, ...}; the
answer is a list with {"ok": value} or {"error": {"type", "message", "status"}} per call.
Run by tests/e2e/test_kserve.py; kserve and tritonclient cannot share a virtualenv.
"""

import asyncio
import json
import sys

import grpc
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig


def rest_headers(token):
    return {"Authorization": f"Bearer {token}"} if token else None


def grpc_metadata(token):
    return (("authorization", f"Bearer {token}"),) if token else None


def infer_request(call):
    x = np.array(call["rows"], dtype=np.float32)
    inp = InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=call.get("binary", False))
    return InferRequest(
        model_name=call.get("body_model_name", call["model"]),
        infer_inputs=[inp],
        request_id=call.get("id"),
    )


def outputs(response):
    return {o.name: o.as_numpy().tolist() for o in response.outputs}


async def rest(call, base):
    client = InferenceRESTClient(RESTConfig(protocol=call["api"], retries=0, timeout=30))
    headers = rest_headers(call.get("token"))
    op = call["op"]
    try:
        if op == "live":
            return await client.is_server_live(base, headers=headers)
        if op == "ready":
            return await client.is_server_ready(base, headers=headers)
        if op == "model_ready":
            return await client.is_model_ready(base, call["model"], headers=headers)
        if op == "explain":
            return await client.explain(base, call["model"], call["body"], headers=headers)
        if op == "infer" and call["api"] == "v1":
            return await client.infer(base, call["body"], model_name=call["model"], headers=headers)
        if op == "infer":
            response = await client.infer(base, infer_request(call), model_name=call["model"], headers=headers)
            return {"id": response.id, "model_name": response.model_name, "outputs": outputs(response)}
        raise ValueError(f"unknown op {op}")
    finally:
        await client.close()


async def over_grpc(call, target):
    client = InferenceGRPCClient(target, retries=0, timeout=30)
    metadata = grpc_metadata(call.get("token"))
    op = call["op"]
    try:
        if op == "live":
            return await client.is_server_live(headers=metadata)
        if op == "ready":
            return await client.is_server_ready(headers=metadata)
        if op == "model_ready":
            return await client.is_model_ready(call["model"], headers=metadata)
        if op == "infer":
            response = await client.infer(infer_request(call), headers=metadata)
            return {"id": response.id, "model_name": response.model_name, "outputs": outputs(response)}
        raise ValueError(f"unknown op {op}")
    finally:
        await client.close()


async def run(call, spec):
    try:
        if call["api"] == "grpc":
            value = await over_grpc(call, spec["grpc"])
        else:
            value = await rest(call, spec["base"])
        return {"ok": value}
    except httpx.HTTPStatusError as err:
        return {
            "error": {
                "type": type(err).__name__,
                "message": str(err),
                "status": err.response.status_code,
                "request_id": err.response.headers.get("x-request-id"),
            }
        }
    except grpc.RpcError as err:
        return {"error": {"type": type(err).__name__, "message": err.details(), "status": err.code().name}}
    except Exception as err:  # what else the SDK raises, reported rather than hidden
        return {"error": {"type": type(err).__name__, "message": str(err), "status": None}}


async def main():
    spec = json.load(sys.stdin)
    results = [await run(call, spec) for call in spec["calls"]]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
