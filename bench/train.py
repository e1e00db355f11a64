#!/usr/bin/env python3
"""Train the benchmark's iris models for a peer server, with the fixtures' seed.

Runs inside a peer's virtualenv (bench/.venv-bentoml or bench/.venv-mlserver), started
by bench/run.sh. The estimators and their settings are the ones fixtures/generate.py
trains and exports with skl2onnx for Palisade (random_state 0, same hyperparameters), so
the peers and Palisade serve the same models. Before saving, every model's labels for the
150 iris rows are compared with the labels the ONNX export gives
(fixtures/models/<name>_nozipmap.expected.json); a difference is an error.

  --framework mlserver --out DIR   writes DIR/<model>/model.joblib and model-settings.json
  --framework bentoml              saves iris_rf, iris_lr, iris_mlp with
                                   bentoml.sklearn.save_model into $BENTOML_HOME
"""

import argparse
import json
import pathlib
import sys

import numpy as np
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "models"
SEED = 0  # fixtures/generate.py


def estimators():
    """(model name served by the peers, fixture name, estimator), as in fixtures/generate.py."""
    return [
        ("iris-rf", "iris_rf", RandomForestClassifier(n_estimators=100, random_state=SEED)),
        ("iris-lr", "iris_lr", LogisticRegression(max_iter=1000, random_state=SEED)),
        ("iris-mlp", "iris_mlp", MLPClassifier(hidden_layer_sizes=(16,), max_iter=3000, random_state=SEED)),
    ]


def train():
    """Fitted models, checked against the ONNX exports' labels."""
    iris = load_iris()
    rows = iris.data.astype(np.float32)
    models = []
    for name, fixture, model in estimators():
        model.fit(iris.data, iris.target)
        expected = json.loads((FIXTURES / f"{fixture}_nozipmap.expected.json").read_text())["label"]
        got = [int(v) for v in model.predict(rows)]
        differ = sum(1 for a, b in zip(got, expected) if a != b)
        if differ:
            sys.exit(
                f"train.py: {name}: {differ} of 150 labels differ from {fixture}_nozipmap.onnx; "
                "the peer's scikit-learn does not reproduce the fixture model (check the pins)"
            )
        models.append((name, fixture, model))
    return models


def save_mlserver(models, out):
    import joblib

    for name, _, model in models:
        directory = out / name
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, directory / "model.joblib")
        settings = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "1"},
        }
        (directory / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")


def save_bentoml(models):
    import bentoml

    for _, fixture, model in models:
        bentoml.sklearn.save_model(fixture, model)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=["mlserver", "bentoml"], required=True)
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()
    models = train()
    if args.framework == "mlserver":
        if args.out is None:
            parser.error("--out is required with --framework mlserver")
        save_mlserver(models, args.out)
    else:
        save_bentoml(models)
    import sklearn

    print(f"train.py: {len(models)} models saved for {args.framework} (scikit-learn {sklearn.__version__})")


if __name__ == "__main__":
    main()
