"""The benchmark's KServe peer: KServe's Python model server with onnxruntime inside.

Run by bench/run.sh in bench/.venv-kserve:

  python bench/peers/kserve_server.py --http_port PORT --workers N

It serves `iris-rf` (fixtures/models/iris_rf_nozipmap.onnx, see iris_onnx.py) over KServe's
V2 REST routes (`POST /v2/models/iris-rf/infer`), with a `kserve.Model` subclass as KServe's
documentation writes custom predictors: a synchronous `predict` that takes an `InferRequest`
and returns an `InferResponse`. Everything else is KServe's default (its latency log line per
request included), except the listen address and gRPC (below).
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import kserve  # noqa: E402
import kserve.protocol.rest.server as rest_server  # noqa: E402
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse  # noqa: E402
from kserve.utils.utils import generate_uuid  # noqa: E402

import iris_onnx  # noqa: E402


class _LoopbackConfig(rest_server.uvicorn.Config):
    """uvicorn's Config, bound to 127.0.0.1: KServe 0.21 hard-codes 0.0.0.0 and has no option."""

    def __init__(self, *args, **kwargs):
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


rest_server.uvicorn.Config = _LoopbackConfig


class IrisRF(kserve.Model):
    """The iris RandomForest ONNX model in an onnxruntime session."""

    def __init__(self, name: str):
        super().__init__(name)
        self.session = None
        self.load()

    def load(self) -> bool:
        self.session = iris_onnx.session()
        self.ready = True
        return self.ready

    # With --workers > 1 KServe spawns the workers and pickles the models into them; an
    # onnxruntime session cannot be pickled, so each worker opens its own.
    def __getstate__(self):
        return {**self.__dict__, "session": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.load()

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        label, probabilities = iris_onnx.run(self.session, payload.inputs[0].as_numpy())
        outputs = [
            InferOutput(name=o["name"], shape=o["shape"], datatype=o["datatype"], data=o["data"])
            for o in iris_onnx.v2_outputs(label, probabilities)
        ]
        return InferResponse(model_name=self.name, infer_outputs=outputs, response_id=payload.id or generate_uuid())


if __name__ == "__main__":
    # The gRPC server would bind [::] (hard-coded); the benchmark calls REST only.
    kserve.ModelServer(enable_grpc=False).start([IrisRF("iris-rf")])
