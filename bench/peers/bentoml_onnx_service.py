"""The benchmark's BentoML peer with onnxruntime inside (BentoML 1.4, `@bentoml.service`).

Served by bench/run.sh in bench/.venv-bentoml:

  BENCH_WORKERS=N bentoml serve bentoml_onnx_service:IrisOnnx --working-dir bench/peers

It runs fixtures/models/iris_rf_nozipmap.onnx (see iris_onnx.py) in one onnxruntime session
per worker. A request is `{"input_data": [[5.1, 3.5, 1.4, 0.2]]}` on `POST /predict_rf`;
the answer is `{"label": [...], "probabilities": [[...]]}`. BENCH_WORKERS (default 1) is
BentoML's `workers` setting; everything else is BentoML's default.
"""

import os

import bentoml
import numpy as np

import iris_onnx


@bentoml.service(workers=int(os.environ.get("BENCH_WORKERS", "1")))
class IrisOnnx:
    """The iris RandomForest ONNX model in an onnxruntime session."""

    def __init__(self) -> None:
        self.session = iris_onnx.session()

    @bentoml.api
    def predict_rf(self, input_data: np.ndarray) -> dict:
        label, probabilities = iris_onnx.run(self.session, input_data)
        return {"label": label.tolist(), "probabilities": probabilities.tolist()}
