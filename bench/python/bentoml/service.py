import bentoml
import numpy as np
import pandas as pd


@bentoml.service
class Churn:
    def __init__(self):
        self.model = bentoml.sklearn.load_model("churn:latest")

    @bentoml.api
    def predict(self, input_data: pd.DataFrame) -> np.ndarray:
        return self.model.predict(input_data)
