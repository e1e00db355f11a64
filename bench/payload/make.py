"""Inputs for bench/payload.sh: a small image model and the request bodies, all generated.

Writes into the directory given as the first argument:
  image.onnx              a 3x224x224 image classifier (a 4x4 stride-4 convolution stem with
                          16 channels, ReLU, global average pooling, a 16->10 dense layer),
                          weights from a fixed seed; small enough that the protocol's cost
                          shows next to the model's
  <case>.json             the V2 REST body (JSON tensor data)
  <case>.bin              the V2 REST body with the binary tensor extension (JSON header,
                          then the raw little-endian FP32 bytes); its header length is in
                          <case>.binlen
  <case>.f32              the raw FP32 values (for the gRPC load generator's --input-file)
  <case>.shape            the input's shape, comma-separated
  <case>.expected.json    onnxruntime's answer (Python, CPU) for the input
for the cases iris-1 (one iris row), iris-256 (256 rows) and image (one 3x224x224 image),
and, for the batching cells, mlp.onnx (a 256-2048-2048-10 ReLU network: one row reads 18 MB
of weights, a batch reads them once) with the cases mlp-1, cnn-1 (one 3x32x32 image for
fixtures/models/corpus/torch_cnn_cifar.onnx) and bert-1 (one 8-token sequence for
fixtures/models/corpus/hf_bert.onnx), JSON only.
Values are fixed by the seed, so every protocol sends the same tensor.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

out = Path(sys.argv[1])
root = Path(__file__).resolve().parents[2]
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(20261207)


def image_model() -> bytes:
    w1 = rng.normal(0, 0.1, (16, 3, 4, 4)).astype(np.float32)
    b1 = rng.normal(0, 0.1, (16,)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (16, 10)).astype(np.float32)
    b2 = rng.normal(0, 0.1, (10,)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("GlobalAveragePool", ["r1"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "image",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def mlp_model() -> bytes:
    sizes = [256, 2048, 2048, 10]
    inits, nodes, last = [], [], "x"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        w = rng.normal(0, (2.0 / a) ** 0.5, (a, b)).astype(np.float32)
        bias = rng.normal(0, 0.01, (b,)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        nodes.append(helper.make_node("Gemm", [last, f"w{i}", f"b{i}"], [f"g{i}"]))
        last = f"g{i}"
        if b != sizes[-1]:
            nodes.append(helper.make_node("Relu", [last], [f"r{i}"]))
            last = f"r{i}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_json(name: str, feeds: dict) -> None:
    inputs = [
        {"name": n, "shape": list(v.shape), "datatype": "INT64" if v.dtype == np.int64 else "FP32", "data": v.ravel().tolist()}
        for n, v in feeds.items()
    ]
    (out / f"{name}.json").write_text(json.dumps({"inputs": inputs}))


def write_case(name: str, model: Path, input_name: str, x: np.ndarray) -> None:
    x = x.astype(np.float32)
    tensor = {"name": input_name, "shape": list(x.shape), "datatype": "FP32"}
    (out / f"{name}.json").write_text(json.dumps({"inputs": [dict(tensor, data=x.ravel().tolist())]}))
    header = json.dumps({"inputs": [dict(tensor, parameters={"binary_data_size": x.nbytes})]}).encode()
    (out / f"{name}.bin").write_bytes(header + x.tobytes())
    (out / f"{name}.binlen").write_text(str(len(header)))
    (out / f"{name}.f32").write_bytes(x.astype("<f4").tobytes())
    (out / f"{name}.shape").write_text(",".join(map(str, x.shape)))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    answers = session.run(None, {input_name: x})
    names = [o.name for o in session.get_outputs()]
    (out / f"{name}.expected.json").write_text(
        json.dumps({n: np.asarray(a).ravel().tolist() for n, a in zip(names, answers)})
    )


(out / "image.onnx").write_bytes(image_model())
iris = root / "fixtures/models/iris_lr_nozipmap.onnx"
row = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
write_case("iris-1", iris, "X", row)
rows = np.round(rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], (256, 4)), 1)
write_case("iris-256", iris, "X", rows)
# Pixel values as an 8-bit image scaled to [0, 1], rounded as a client would send them.
image = np.round(rng.integers(0, 256, (1, 3, 224, 224)) / 255.0, 4)
write_case("image", out / "image.onnx", "x", image)

(out / "mlp.onnx").write_bytes(mlp_model())
write_json("mlp-1", {"x": rng.normal(0, 1, (1, 256)).astype(np.float32)})
write_json("cnn-1", {"x": np.round(rng.normal(0, 1, (1, 3, 32, 32)), 4).astype(np.float32)})
ids = rng.integers(1, 120, (1, 8)).astype(np.int64)
write_json("bert-1", {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
