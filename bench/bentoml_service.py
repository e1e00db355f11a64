"""The benchmark's BentoML service: the iris models trained by bench/train.py, one API each.

Served by bench/run.sh with `bentoml serve bentoml_service:Iris` and BentoML's defaults
(BentoML 1.4, the `@bentoml.service` API). A request is `{"input_data": [[5.1, 3.5, 1.4, 0.2]]}`
on `POST /predict_rf`, `/predict_lr` or `/predict_mlp`; the answer is the predicted labels.
"""

import bentoml
import numpy as np


@bentoml.service
class Iris:
    """RandomForest-100, LogisticRegression and MLP classifiers on iris."""

    def __init__(self) -> None:
        self.rf = bentoml.sklearn.load_model("iris_rf:latest")
        self.lr = bentoml.sklearn.load_model("iris_lr:latest")
        self.mlp = bentoml.sklearn.load_model("iris_mlp:latest")

    @bentoml.api
    def predict_rf(self, input_data: np.ndarray) -> np.ndarray:
        return self.rf.predict(input_data)

    @bentoml.api
    def predict_lr(self, input_data: np.ndarray) -> np.ndarray:
        return self.lr.predict(input_data)

    @bentoml.api
    def predict_mlp(self, input_data: np.ndarray) -> np.ndarray:
        return self.mlp.predict(input_data)
