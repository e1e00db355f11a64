"""palisade.save round trips for scikit-learn: each model is saved (exported, checked
through Palisade, built), served with security on, called through Client with a token, and
its answers compared with the original model's."""

from __future__ import annotations

import time

import numpy as np
import pytest

import palisade
from conftest import OWNER, assert_same_classification, need


def tabular(n=240, seed=0):
    """A customer table with numeric, integer and string columns, and a target."""
    pd = need("pandas")
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, n),
            "income": rng.lognormal(10, 0.5, n),
            "city": rng.choice(["paris", "lyon", "nice", "lille"], n),
            "plan": rng.choice(["basic", "pro"], n),
            "visits": rng.integers(0, 10, n),
        }
    )
    y = np.where((frame.age > 40) ^ (frame.city == "nice") ^ (frame.visits > 6), "churn", "stay")
    return frame, y


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Three scikit-learn models saved into one home and served; the originals and data."""
    need("skl2onnx")
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    home = tmp_path_factory.mktemp("home")
    frame, y = tabular()
    pipeline = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["age", "income"]),
                        ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                        # scikit-learn's default (handle_unknown="error"): palisade build's
                        # self-test must feed it known categories.
                        ("plan", OneHotEncoder(), ["plan"]),
                        ("int", OneHotEncoder(), ["visits"]),
                    ]
                ),
            ),
            ("lr", LogisticRegression(max_iter=1000)),
        ]
    ).fit(frame, y)
    X, target = load_iris(return_X_y=True, as_frame=True)
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, target)
    logistic = LogisticRegression(max_iter=1000).fit(X.to_numpy(), target)

    refs = {
        "churn": palisade.save(
            pipeline, frame[:20], name="churn", version="1.0.0", owners=[OWNER], home=home,
            description="churn model", labels={"team": "retention"},
        ),
        "iris-forest": palisade.save(forest, X[:30], name="iris-forest", version="1", owners=[OWNER], home=home),
        "iris-logistic": palisade.save(
            logistic, X.to_numpy()[:30], name="iris-logistic", version="1", owners=[OWNER], home=home
        ),
    }
    with palisade.serve(home=home) as server:
        yield {
            "server": server,
            "client": server.client(OWNER),
            "refs": refs,
            "pipeline": (pipeline, frame),
            "forest": (forest, X),
            "logistic": (logistic, X.to_numpy()),
        }


def test_column_transformer_pipeline_round_trip(served):
    pipeline, frame = served["pipeline"]
    ref = served["refs"]["churn"]
    assert str(ref) == "churn:1.0.0"
    assert [s.name for s in ref.inputs] == ["age", "income", "city", "plan", "visits"]
    assert [s.datatype for s in ref.inputs] == ["FP32", "FP32", "BYTES", "BYTES", "INT64"]
    probabilities = next(s for s in ref.outputs if s.name == "probabilities")
    assert probabilities.labels == ("churn", "stay")
    rows = frame.copy()
    rows.loc[3, "city"] = "marseille"  # a category never seen in training
    answer = served["client"].predict("churn", rows)
    assert_same_classification(answer, pipeline, rows)


def test_an_unknown_category_for_a_strict_encoder_is_a_400_naming_it(served):
    """`plan` and `visits` use scikit-learn's default OneHotEncoder (handle_unknown="error"):
    a category it never saw is refused as scikit-learn refuses it, with a 400 that names the
    input, the row and the value, and never answered."""
    pipeline, frame = served["pipeline"]
    rows = frame[:4].copy()
    rows.loc[2, "plan"] = "premium"
    with pytest.raises(ValueError):
        pipeline.predict(rows)
    with pytest.raises(palisade.ApiError) as caught:
        served["client"].predict("churn", rows)
    err = caught.value
    assert err.status == 400, err
    assert err.message.startswith('input `plan`, row 2: unknown category "premium"'), err.message
    assert err.request_id
    rows = frame[:2].copy()
    rows.loc[1, "visits"] = 42
    with pytest.raises(palisade.ApiError) as caught:
        served["client"].predict("churn", rows)
    assert caught.value.status == 400
    assert caught.value.message.startswith("input `visits`, row 1: unknown category 42"), caught.value.message
    # Known categories still get their answers.
    assert_same_classification(served["client"].predict("churn", frame[:4]), pipeline, frame[:4])


def test_an_ordinal_encoder_that_refuses_unknowns_is_warned_about(tmp_path):
    """skl2onnx exports OrdinalEncoder(handle_unknown="error") as -1 for unknown categories:
    save says so, and the served model answers as warned."""
    need("skl2onnx")
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder, StandardScaler

    frame, y = tabular()
    model = Pipeline(
        [
            ("pre", ColumnTransformer([("num", StandardScaler(), ["age"]), ("cat", OrdinalEncoder(), ["city"])])),
            ("lr", LogisticRegression(max_iter=1000)),
        ]
    ).fit(frame[["age", "city"]], y)
    with pytest.warns(UserWarning, match=r'OrdinalEncoder\(handle_unknown="error"\).*-1'):
        palisade.save(model, frame[["age", "city"]][:20], name="ordinal", version="1", owners=[OWNER],
                      home=tmp_path / "home")


def test_columns_are_matched_by_name_not_position(served):
    pipeline, frame = served["pipeline"]
    shuffled = frame[["visits", "plan", "city", "income", "age"]]
    answer = served["client"].predict("churn", shuffled[:25])
    assert_same_classification(answer, pipeline, frame[:25])


def test_random_forest_round_trip(served):
    forest, X = served["forest"]
    answer = served["client"].predict("iris-forest", X)  # one input per column, named as in the frame
    assert_same_classification(answer, forest, X)
    ref = served["refs"]["iris-forest"]
    assert ref.inputs[0].name == "sepal length (cm)"


def test_logistic_regression_round_trip(served):
    logistic, X = served["logistic"]
    answer = served["client"].predict("iris-logistic", X)
    assert_same_classification(answer, logistic, X)


def test_large_requests_use_binary_tensors_with_the_same_answers(served):
    logistic, X = served["logistic"]
    rows = np.tile(X, (40, 1))  # 6000 rows: past the binary threshold
    client = served["client"]
    binary = client.predict("iris-logistic", rows)
    as_json = client.predict("iris-logistic", rows, binary=False)
    np.testing.assert_array_equal(binary["label"], as_json["label"])
    np.testing.assert_array_equal(binary["probabilities"], as_json["probabilities"])
    assert_same_classification(binary, logistic, rows)


def test_manifest_written_by_save(served, tmp_path):
    """The manifest save writes: inputs from the columns, class labels, the description,
    the extra manifest fields; path= keeps the directory."""
    from sklearn.linear_model import LogisticRegression

    pd = need("pandas")
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = LogisticRegression().fit(frame, ["no", "yes", "yes", "no"])
    ref = palisade.save(
        model, frame, name="kept", version="2", owners=[OWNER, "group:risk"], path=tmp_path / "kept",
        home=served["server"].home, description="kept on disk", background=frame[:2],
    )
    assert ref.path == str(tmp_path / "kept")
    text = (tmp_path / "kept" / "palisade.yaml").read_text()
    assert 'name: "kept"' in text and 'version: "2"' in text
    assert 'owners: ["alice@example.com", "group:risk"]' in text
    assert 'description: "kept on disk"' in text
    assert '"labels": ["no", "yes"]' in text
    assert (tmp_path / "kept" / "model.onnx").is_file()
    assert (tmp_path / "kept" / "background.csv").read_text().splitlines()[0] == "a,b"
    assert [s.name for s in ref.inputs] == ["a", "b"]


def test_models_lists_every_served_model(served):
    infos = {m.name: m for m in served["client"].models()}
    assert {"churn", "iris-forest", "iris-logistic"} <= set(infos)
    assert [s.name for s in infos["churn"].inputs] == ["age", "income", "city", "plan", "visits"]


def test_a_bare_estimator_on_a_mixed_float64_frame(served):
    """float64, integer and boolean columns into a RandomForest (no ColumnTransformer):
    one input per column, typed by its dtype; extra sample columns are dropped and the
    order is the training order."""
    from sklearn.ensemble import RandomForestClassifier

    pd = need("pandas")
    rng = np.random.default_rng(5)
    n = 300
    frame = pd.DataFrame({
        "amount": rng.lognormal(3, 1, n),          # float64
        "items": rng.integers(1, 20, n),           # int64
        "returning": rng.random(n) > 0.4,          # bool
        "score": rng.normal(0, 1, n),              # float64
    })
    y = np.where((frame.amount > 30) & frame.returning | (frame.score > 1.2), "fraud", "ok")
    model = RandomForestClassifier(n_estimators=25, random_state=0).fit(frame, y)
    sample = frame[:40].assign(note="not a feature")[["score", "note", "amount", "returning", "items"]]
    ref = palisade.save(model, sample, name="fraud", version="1", owners=[OWNER], home=served["server"].home)
    assert [(s.name, s.datatype) for s in ref.inputs] == [
        ("amount", "FP32"), ("items", "INT64"), ("returning", "INT64"), ("score", "FP32")]
    # The running server picks the new bundle up from the store (it watches it every second).
    client = served["client"]
    deadline = time.monotonic() + 20
    while True:
        try:
            answer = client.predict("fraud", frame)
            break
        except palisade.NotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert_same_classification(answer, model, frame)
