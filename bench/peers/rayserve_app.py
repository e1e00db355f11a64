"""The benchmark's Ray Serve peer: one deployment, one replica, onnxruntime inside.

Run by bench/run.sh in bench/.venv-rayserve:

  python bench/peers/rayserve_app.py --port PORT --temp-dir DIR

It starts a local Ray instance on 127.0.0.1 (no dashboard, usage statistics off), Serve's
HTTP proxy on 127.0.0.1:PORT, and a deployment that runs fixtures/models/iris_rf_nozipmap.onnx
(see iris_onnx.py) at `POST /v2/models/iris-rf/infer`. Ray Serve has no Open Inference
Protocol of its own, so the deployment reads the V2 JSON body and answers in V2 JSON as a
user would write it. It prints `rayserve: listening on http://127.0.0.1:PORT` once the
application is running, then serves until it is stopped.
"""

import argparse
import os
import pathlib
import signal
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
# Before Ray is imported: no usage report leaves the machine.
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import ray  # noqa: E402
from ray import serve  # noqa: E402
from starlette.requests import Request  # noqa: E402

import iris_onnx  # noqa: E402


@serve.deployment(num_replicas=1)
class IrisRF:
    """The iris RandomForest ONNX model in an onnxruntime session."""

    def __init__(self) -> None:
        self.session = iris_onnx.session()

    async def __call__(self, request: Request) -> dict:
        body = await request.json()
        tensor = body["inputs"][0]
        label, probabilities = iris_onnx.run(self.session, tensor["data"])
        return {"model_name": "iris-rf", "outputs": iris_onnx.v2_outputs(label, probabilities)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--temp-dir", required=True, help="Ray's session directory (short path)")
    args = parser.parse_args()
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=str(pathlib.Path(args.temp_dir).resolve()),
        runtime_env={"env_vars": {"PYTHONPATH": str(pathlib.Path(__file__).resolve().parent)}},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(IrisRF.bind(), name="iris", route_prefix="/v2/models/iris-rf/infer")
    print(f"rayserve: listening on http://127.0.0.1:{args.port}", flush=True)
    # SIGTERM ends the application and the local Ray instance in order.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
