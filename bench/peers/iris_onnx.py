"""The iris RF ONNX model in onnxruntime, as every onnxruntime peer of the benchmark runs it.

Imported by the peer servers in this directory, each inside its own virtualenv (onnxruntime
and numpy only). The file is the one Palisade's benchmark rows serve,
fixtures/models/iris_rf_nozipmap.onnx: input `X` (FP32 [N, 4]), outputs `label` (INT64 [N])
and `probabilities` (FP32 [N, 3]).

One intra-op and one inter-op thread per session: on one row of a 100-tree forest, more
threads only spin against the server's own workers and the load generator on a 2-core machine.
"""

import os
import pathlib

import numpy as np
import onnxruntime as ort

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
MODEL = pathlib.Path(os.environ.get("BENCH_ONNX_MODEL", ROOT / "fixtures" / "models" / "iris_rf_nozipmap.onnx"))
INPUT = "X"
OUTPUTS = ["label", "probabilities"]


def session():
    """An onnxruntime session of the model on the CPU."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])


def run(sess, rows):
    """(label INT64 [N], probabilities FP32 [N, 3]) for rows, FP32 [N, 4]."""
    label, probabilities = sess.run(OUTPUTS, {INPUT: np.asarray(rows, dtype=np.float32).reshape(-1, 4)})
    return label, probabilities


def v2_outputs(label, probabilities):
    """The `outputs` of an Open Inference Protocol V2 response for these results."""
    return [
        {"name": "label", "datatype": "INT64", "shape": list(label.shape), "data": label.tolist()},
        {
            "name": "probabilities",
            "datatype": "FP32",
            "shape": list(probabilities.shape),
            "data": probabilities.reshape(-1).tolist(),
        },
    ]
