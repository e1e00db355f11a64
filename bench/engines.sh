#!/usr/bin/env bash
# tract against onnxruntime, and Palisade's onnxruntime engine against onnxruntime alone, in
# one run (crates/runtime/benches/engines.rs), printed as a table of latencies and ratios.
# Also times `palisade build`'s self-test on the small CNN and on a 100 MB network, which
# this script exports first when the fixture venv (.venv/fixtures, fixtures/generate.sh)
# has PyTorch. Needs the onnxruntime library: PALISADE_ONNXRUNTIME_LIB, or the wheel in
# .venv/e2e (scripts/install-test-deps.sh) or .venv/fixtures.
#
#   bench/engines.sh            # ~15 min for the release build on 2 cores, then ~3 min
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

work=bench/.work/engines
mkdir -p "$work"
if [ -x .venv/fixtures/bin/python ] && [ ! -f "$work/large/palisade.yaml" ]; then
  echo "== exporting a 100 MB network for the self-test timing ($work/large)"
  mkdir -p "$work/large"
  (cd "$work/large" && ../../../../.venv/fixtures/bin/python - <<'PY'
import torch

torch.manual_seed(0)
# About 25 million float32 parameters: a 100 MB model.
model = torch.nn.Sequential(
    torch.nn.Linear(2048, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 10)
).eval()
batch = torch.export.Dim("batch", min=1, max=1024)
torch.onnx.export(model, (torch.randn(2, 2048),), "model.onnx", input_names=["x"], dynamic_shapes=({0: batch},))
PY
  ) 2>/dev/null
  printf 'name: large\nversion: "1"\nowners: [a@example.com]\nmodel: {path: model.onnx, format: onnx}\n' > "$work/large/palisade.yaml"
fi
if [ -f "$work/large/palisade.yaml" ]; then
  export BENCH_SELFTEST_MODEL="$PWD/$work/large"
fi

rm -rf target/criterion/iris_rf target/criterion/cnn_cifar target/criterion/selftest
cargo bench -p palisade-runtime --bench engines 2>&1 | tee bench/.work/engines/bench.log | grep -E "^(onnxruntime|selftest/|overhead/)|time:" || true

python3 - <<'PY'
import json, pathlib

root = pathlib.Path("target/criterion")

def mean_ns(group, engine, rows):
    path = root / group / f"{engine}_{rows}" / "new" / "estimates.json"
    return json.loads(path.read_text())["median"]["point_estimate"]

def fmt(ns):
    return f"{ns / 1000:.1f} µs" if ns < 1e6 else f"{ns / 1e6:.2f} ms"

print()
print("| model | rows | tract | Palisade on onnxruntime | onnxruntime alone | tract / onnxruntime | Palisade-onnxruntime / onnxruntime |")
print("|---|---|---|---|---|---|---|")
for group, label in [("iris_rf", "iris RandomForest-100"), ("cnn_cifar", "CNN 3x32x32")]:
    for rows in (1, 32):
        t, p, o = (mean_ns(group, e, rows) for e in ("tract", "palisade-onnxruntime", "onnxruntime"))
        print(f"| {label} | {rows} | {fmt(t)} | {fmt(p)} | {fmt(o)} | {t / o:.2f}x | {p / o:.3f}x |")
print()
print("| batch of 32, rows/s | tract | Palisade on onnxruntime | onnxruntime alone |")
print("|---|---|---|---|")
for group, label in [("iris_rf", "iris RandomForest-100"), ("cnn_cifar", "CNN 3x32x32")]:
    t, p, o = (32 / (mean_ns(group, e, 32) / 1e9) for e in ("tract", "palisade-onnxruntime", "onnxruntime"))
    print(f"| {label} | {t:,.0f} | {p:,.0f} | {o:,.0f} |")
print()
for line in pathlib.Path("bench/.work/engines/bench.log").read_text().splitlines():
    if line.startswith("overhead/"):
        print("Palisade on onnxruntime / onnxruntime alone, interleaved:", line.removeprefix("overhead/"))
print()
for path in sorted((root / "selftest").glob("*_build/new/estimates.json")):
    name = path.parts[-3].removesuffix("_build")
    print(f"self-test {name}: {fmt(json.loads(path.read_text())['median']['point_estimate'])} per build (both engines, compared)")
PY
