"""Golden files for the V2 gRPC protocol, made and checked with the real tritonclient.

    python -m venv /tmp/tc && /tmp/tc/bin/pip install "tritonclient[grpc]"
    /tmp/tc/bin/python crates/protocol/tests/golden/tritonclient_grpc.py

Writes the requests tritonclient's `InferenceServerClient.infer()` would send (it builds
them with `_get_inference_request`, called here with the same arguments), serialized as
on the wire. Then, if `palisade_response_raw.bin` exists (written by
`PALISADE_UPDATE_GOLDEN=1 cargo test -p palisade-protocol --test grpc`), reads it back with
tritonclient's `InferResult.as_numpy()` and checks every output.
"""

import pathlib

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import _utils, service_pb2

HERE = pathlib.Path(__file__).parent


def request(model_name, inputs, outputs, request_id="", priority=0, timeout=None, parameters=None):
    return _utils._get_inference_request(
        model_name=model_name,
        inputs=inputs,
        model_version="",
        request_id=request_id,
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=priority,
        timeout=timeout,
        parameters=parameters,
    )


def iris_fp32():
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    outputs = [grpcclient.InferRequestedOutput("label"), grpcclient.InferRequestedOutput("probabilities")]
    return request("iris", [inp], outputs, request_id="req-1")


def mixed():
    tensors = [
        ("ids", "INT64", np.array([[1, -2], [3, 4]], dtype=np.int64)),
        ("text", "BYTES", np.array([b"hi", "h\u00e9llo".encode()], dtype=np.object_)),
        ("mask", "BOOL", np.array([True, False, True])),
        ("half", "FP16", np.array([1.5, -0.25], dtype=np.float16)),
        ("pixels", "UINT8", np.array([0, 128, 255], dtype=np.uint8)),
    ]
    inputs = []
    for name, datatype, value in tensors:
        inp = grpcclient.InferInput(name, list(value.shape), datatype)
        inp.set_data_from_numpy(value)
        inputs.append(inp)
    outputs = [grpcclient.InferRequestedOutput("probabilities", class_count=2)]
    parameters = {"temperature": 0.5, "tag": "golden", "flag": True, "n": 7}
    return request("mixed", inputs, outputs, priority=3, timeout=1000, parameters=parameters)


def check_response():
    path = HERE / "palisade_response_raw.bin"
    if not path.exists():
        print(f"{path.name} missing: skipped")
        return
    result = grpcclient.InferResult(service_pb2.ModelInferResponse.FromString(path.read_bytes()))
    expected = {
        "label": np.array([0, 2], dtype=np.int64),
        "probabilities": np.array([[0.75, 0.25, 0.0], [0.125, 0.125, 0.75]], dtype=np.float32),
        "names": np.array([b"setosa", b"virginica"], dtype=np.object_),
        "flags": np.array([True, False]),
        "half": np.array([0.5, -2.0], dtype=np.float16),
    }
    for name, want in expected.items():
        got = result.as_numpy(name)
        assert got is not None, name
        assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        assert (got == want).all(), (name, got, want)
    print(f"{path.name}: tritonclient reads all {len(expected)} outputs")


def main():
    for name, message in [("tritonclient_iris_fp32.bin", iris_fp32()), ("tritonclient_mixed.bin", mixed())]:
        (HERE / name).write_bytes(message.SerializeToString(deterministic=True))
        print(f"wrote {name}")
    check_response()


if __name__ == "__main__":
    main()
