"""The benchmark's Triton peer: Triton Inference Server through PyTriton, onnxruntime inside.

Run by bench/run.sh in bench/.venv-pytriton:

  python bench/peers/pytriton_server.py --http-port P --grpc-port G --metrics-port M [--dynamic-batching]

nvidia-pytriton ships the tritonserver binary and runs it with its Python backend; the model
`iris-rf` is a Python callable that runs fixtures/models/iris_rf_nozipmap.onnx in onnxruntime
(see iris_onnx.py). Input `X` is FP32 [batch, 4]; outputs `label` (INT64 [batch, 1]) and
`probabilities` (FP32 [batch, 3]), over Triton's V2 HTTP routes
(`POST /v2/models/iris-rf/infer`). Every listener is on 127.0.0.1.

Without --dynamic-batching the model takes batches (max_batch_size 64) but has no dynamic
batcher, so each request runs alone; with it, Triton's dynamic batcher (PyTriton's default
settings: no queue delay) gathers queued requests into one call, up to 64 rows.
It prints `pytriton: listening on http://127.0.0.1:P` once the model is ready, then serves.
"""

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from pytriton.decorators import batch  # noqa: E402
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # noqa: E402
from pytriton.triton import Triton, TritonConfig  # noqa: E402

import iris_onnx  # noqa: E402

MAX_BATCH = 64


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--workspace", help="PyTriton's workspace (model store); a temporary one by default")
    parser.add_argument("--dynamic-batching", action="store_true")
    args = parser.parse_args()

    session = iris_onnx.session()

    @batch
    def infer(X):
        label, probabilities = iris_onnx.run(session, X)
        return {"label": label.reshape(-1, 1), "probabilities": probabilities}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
    )
    batcher = DynamicBatcher() if args.dynamic_batching else None
    with Triton(config=config, workspace=args.workspace) as triton:
        triton.bind(
            model_name="iris-rf",
            infer_func=infer,
            inputs=[Tensor(name="X", dtype=np.float32, shape=(4,))],
            outputs=[
                Tensor(name="label", dtype=np.int64, shape=(1,)),
                Tensor(name="probabilities", dtype=np.float32, shape=(3,)),
            ],
            config=ModelConfig(batching=True, max_batch_size=MAX_BATCH, batcher=batcher),
        )
        triton.run()
        print(f"pytriton: listening on http://127.0.0.1:{args.http_port}", flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
