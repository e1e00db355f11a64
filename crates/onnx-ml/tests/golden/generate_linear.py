#!/usr/bin/env python3
"""Write linear_random.json: random LinearClassifier, LinearRegressor and Normalizer
nodes with onnxruntime's outputs, for tests/linear_golden.rs.

Run with the fixtures virtualenv (numpy, onnx, onnxruntime; see fixtures/generate.sh):

    .venv/fixtures/bin/python crates/onnx-ml/tests/golden/generate_linear.py

Every model is run twice by onnxruntime (CPU, one thread): on a batch of rows, and on
its first row alone, because onnxruntime's SGEMM sums a lone row in another order.
Coefficient counts cover both of MLAS's paths and its K blocking (up to 1100 features),
every post-transform, int and string labels, binary classifiers, regressors with and
without intercepts, and Normalizer on float, double, int64 and int32 inputs with zero,
negative and NaN rows. f32 values are stored as bit patterns (u32), f64 ones as u64.

Cases where onnxruntime writes uninitialized memory are not generated (a binary
LinearClassifier with PROBIT). Cases where Palisade knowingly differs by a few ulps
carry "tolerance": SOFTMAX over five or more scores, where onnxruntime uses MLAS's
vectorized softmax.
"""

import json
import pathlib
import random

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

OUT = pathlib.Path(__file__).resolve().parent / "linear_random.json"
SEED = 20250107
TRANSFORMS = ["NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT"]
FEATURES = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 130, 300, 1100]
TYPES = {"float": (TensorProto.FLOAT, np.float32), "double": (TensorProto.DOUBLE, np.float64),
         "int64": (TensorProto.INT64, np.int64), "int32": (TensorProto.INT32, np.int32)}


def bits(values):
    return [int(v) for v in np.asarray(values, dtype=np.float32).reshape(-1).view(np.uint32)]


def session(node, inputs, outputs):
    graph = helper.make_graph([node], "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def rows(rng, n_rows, n_features, post):
    x = np.array([[rng.uniform(-3, 3) for _ in range(n_features)] for _ in range(n_rows)], dtype=np.float32)
    if post == "PROBIT":
        x *= np.float32(0.1)
    for r in range(n_rows):
        if rng.random() < 0.1:
            x[r, rng.randrange(n_features)] = np.nan
        if rng.random() < 0.1:
            x[r, :] = 0.0
    return x


def linear_case(rng, op):
    n_features = rng.choice(FEATURES)
    post = rng.choice(TRANSFORMS)
    if op == "LinearClassifier":
        n_targets = rng.choice([1, 1, 2, 2, 3, 4, 5, 6, 8, 17])
        if n_targets == 1 and post == "PROBIT":
            post = "LOGISTIC"
    else:
        n_targets = rng.choice([1, 1, 2, 3, 5, 6, 17])
    if n_features > 100:
        n_targets = min(n_targets, 3)
    scale = 0.05 / max(1, n_features) ** 0.5 if post == "PROBIT" else 1.0
    coefficients = [round(rng.gauss(0, 1) * scale, 5) for _ in range(n_targets * n_features)]
    intercepts = [round(rng.uniform(0.3, 0.7) if post == "PROBIT" else rng.gauss(0, 1), 5)
                  for _ in range(n_targets)]
    attrs = dict(coefficients=coefficients, post_transform=post)
    case = {"op": op, "post_transform": post, "n_features": n_features,
            "coefficients": bits(coefficients)}
    strings = False
    if op == "LinearClassifier":
        attrs["intercepts"] = intercepts
        attrs["multi_class"] = rng.choice([0, 1])
        n_labels = 2 if n_targets == 1 else n_targets
        strings = rng.random() < 0.3
        labels = [f"c{i}" for i in range(n_labels)] if strings else [7 * i - 3 for i in range(n_labels)]
        attrs["classlabels_strings" if strings else "classlabels_ints"] = labels
        case.update(intercepts=bits(intercepts), class_labels=labels, strings=strings)
        outputs = [helper.make_tensor_value_info("Y", TensorProto.STRING if strings else TensorProto.INT64, [None]),
                   helper.make_tensor_value_info("Z", TensorProto.FLOAT, [None, None])]
    else:
        with_intercepts = rng.random() < 0.7
        attrs["targets"] = n_targets
        if with_intercepts:
            attrs["intercepts"] = intercepts
        case.update(targets=n_targets, intercepts=bits(intercepts) if with_intercepts else [])
        outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, None])]
    node = helper.make_node(op, ["X"], [o.name for o in outputs], domain="ai.onnx.ml", **attrs)
    sess = session(node, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n_features])], outputs)
    x = rows(rng, rng.choice([2] if n_features > 100 else [2, 3, 7, 24]), n_features, post)
    case["rows"] = bits(x)
    for key, batch in (("batch", x), ("single", x[:1])):
        result = sess.run(None, {"X": batch})
        if op == "LinearClassifier":
            labels = case["class_labels"]
            case[f"{key}_labels"] = [labels.index(v if not strings else str(v)) for v in result[0].tolist()]
        case[f"{key}_scores"] = bits(result[-1])
    if post == "SOFTMAX" and n_targets >= 5:
        case["tolerance"] = 1e-6
    return case


def normalizer_case(rng):
    norm = rng.choice(["MAX", "L1", "L2"])
    dtype = rng.choice(["float", "float", "double", "int64", "int32"])
    n_columns = rng.choice([1, 2, 3, 4, 7])
    n_rows = rng.choice([1, 3, 9])
    proto_type, np_type = TYPES[dtype]
    if dtype in ("int64", "int32"):
        x = np.array([[rng.randint(-20000, 20000) for _ in range(n_columns)] for _ in range(n_rows)], dtype=np_type)
    else:
        x = np.array([[rng.uniform(-5, 5) for _ in range(n_columns)] for _ in range(n_rows)], dtype=np_type)
        for r in range(n_rows):
            if rng.random() < 0.15:
                x[r, rng.randrange(n_columns)] = np.nan
    for r in range(n_rows):
        p = rng.random()
        if p < 0.1:
            x[r, :] = 0
        elif p < 0.25:
            x[r, :] = -abs(x[r, :])
    node = helper.make_node("Normalizer", ["X"], ["Y"], domain="ai.onnx.ml", norm=norm)
    sess = session(node, [helper.make_tensor_value_info("X", proto_type, [None, n_columns])],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n_columns])])
    (y,) = sess.run(None, {"X": x})
    if dtype == "float":
        values = bits(x)
    elif dtype == "double":
        values = [int(v) for v in x.reshape(-1).view(np.uint64)]
    else:
        values = [int(v) for v in x.reshape(-1)]
    return {"op": "Normalizer", "norm": norm, "dtype": dtype, "n_columns": n_columns,
            "rows": values, "expected": bits(y)}


def main():
    rng = random.Random(SEED)
    cases = []
    for k in range(150):
        kind = k % 3
        if kind == 0:
            cases.append(linear_case(rng, "LinearClassifier"))
        elif kind == 1:
            cases.append(linear_case(rng, "LinearRegressor"))
        else:
            cases.append(normalizer_case(rng))
    meta = {"onnxruntime": ort.__version__, "seed": SEED, "cases": cases}
    OUT.write_text(json.dumps(meta, separators=(",", ":")) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
