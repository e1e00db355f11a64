"""palisade.save round trips for XGBoost and LightGBM (scikit-learn API, onnxmltools'
converters), served and called through Client."""

from __future__ import annotations

import numpy as np
import pytest

import palisade
from conftest import OWNER, assert_same_classification, need


def data(n=300, seed=1):
    """Three classes from six features, with some noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    score = X[:, 0] + 0.5 * X[:, 1] * X[:, 2] - X[:, 3] + 0.3 * rng.normal(size=n)
    y = np.digitize(score, [-0.7, 0.7])
    return X, y


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    need("onnxmltools")
    xgboost = need("xgboost")
    lightgbm = need("lightgbm")
    pd = need("pandas")
    home = tmp_path_factory.mktemp("home")
    X, y = data()
    frame = pd.DataFrame(X, columns=[f"feature_{i}" for i in range(X.shape[1])])
    xgb = xgboost.XGBClassifier(n_estimators=40, max_depth=4, learning_rate=0.3, random_state=0).fit(frame, y)
    lgbm = lightgbm.LGBMClassifier(n_estimators=40, num_leaves=15, random_state=0, verbose=-1).fit(X, y)
    palisade.save(xgb, frame[:40], name="xgb", version="1", owners=[OWNER], home=home)
    palisade.save(lgbm, X[:40], name="lgbm", version="1", owners=[OWNER], home=home)
    with palisade.serve(home=home) as server:
        yield server.client(OWNER), xgb, lgbm, X, frame


def test_xgboost_round_trip(served):
    client, xgb, _, _, frame = served
    assert_same_classification(client.predict("xgb", frame), xgb, frame)


def test_lightgbm_round_trip(served):
    client, _, lgbm, X, _ = served
    assert_same_classification(client.predict("lgbm", X), lgbm, X)


def test_xgboost_regressor_inside_a_pipeline(tmp_path):
    """XGBoost as a pipeline step (its converter registered with skl2onnx), with missing
    values imputed in front of it."""
    need("onnxmltools")
    xgboost = need("xgboost")
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    X, _ = data()
    target = X[:, 0] * 2.0 - X[:, 1]
    X[::7, 2] = np.nan
    model = make_pipeline(SimpleImputer(), xgboost.XGBRegressor(n_estimators=30, max_depth=3)).fit(X, target)
    home = tmp_path / "home"
    ref = palisade.save(model, X[:50], name="xgb-reg", version="1", owners=[OWNER], home=home)
    with palisade.serve(home=home) as server:
        answer = server.client(OWNER).predict("xgb-reg", X)
    (name,) = [s.name for s in ref.outputs]
    np.testing.assert_allclose(answer[name].reshape(-1), model.predict(X), rtol=1e-5, atol=1e-5)
