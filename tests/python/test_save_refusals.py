"""What palisade.save refuses, and how it says so."""

from __future__ import annotations

import numpy as np
import pytest

import palisade
from conftest import OWNER, need


def test_an_export_that_answers_differently_is_refused_with_the_reason(tmp_path):
    """A custom estimator whose predict differs from its parent's, converted with the
    parent's converter: the export computes the parent's answers."""
    need("skl2onnx")
    from skl2onnx import update_registered_converter
    from skl2onnx.operator_converters.linear_regressor import convert_sklearn_linear_regressor
    from skl2onnx.shape_calculators.linear_regressor import calculate_linear_regressor_output_shapes
    from sklearn.linear_model import LinearRegression

    class ShiftedRegression(LinearRegression):
        """Adds a business rule to the predictions: +0.5."""

        def predict(self, X):
            return super().predict(X) + 0.5

    update_registered_converter(
        ShiftedRegression, "ShiftedRegression", calculate_linear_regressor_output_shapes,
        convert_sklearn_linear_regressor,
    )
    X = np.random.default_rng(0).normal(size=(30, 3))
    model = ShiftedRegression().fit(X, X @ [1.0, 2.0, 3.0])
    home = tmp_path / "home"
    with pytest.raises(palisade.ExportMismatchError) as refused:
        palisade.save(model, X[:10], name="shifted", version="1", owners=[OWNER], home=home)
    message = str(refused.value)
    assert "answers differently from the original model" in message
    assert "output 'variable': 10 of 10 values differ from predict" in message
    assert "difference 0.5" in message
    assert refused.value.differences and "the largest at row" in refused.value.differences[0]
    assert "kept for inspection" in message
    # Nothing was stored.
    listed = palisade._binary.run(["models", "list", "--output", "json"], home=home)
    assert "shifted" not in listed


def test_a_float64_export_is_used_when_float32_changes_the_answers(tmp_path):
    """Values around 1e8: float32 cannot tell 100000001 from 100000000, so the float32
    export's predictions are off; the float64 export computes as scikit-learn does."""
    need("skl2onnx")
    from sklearn.linear_model import LinearRegression

    X = (1e8 + np.arange(40, dtype=np.float64)).reshape(-1, 1)
    model = LinearRegression().fit(X, X[:, 0] - 1e8)
    home = tmp_path / "home"
    ref = palisade.save(model, X[:10], name="large", version="1", owners=[OWNER], home=home)
    assert [s.datatype for s in ref.inputs] == ["FP64"]
    with palisade.serve(home=home) as server:
        answer = server.client(OWNER).predict("large", X)
    np.testing.assert_allclose(answer["variable"].reshape(-1), model.predict(X), atol=1e-5)


def test_other_objects_are_refused_with_what_is_supported():
    class Homemade:
        def predict(self, X):
            return X

    with pytest.raises(palisade.UnsupportedModelError) as refused:
        palisade.save(Homemade(), np.zeros((2, 2)), name="x", version="1", owners=[OWNER])
    message = str(refused.value)
    assert "Homemade" in message
    for supported in ("scikit-learn", "XGBoost", "LightGBM", "PyTorch", "palisade[sklearn]", "palisade build"):
        assert supported in message


def test_a_bad_manifest_field_names_the_field(tmp_path):
    need("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(X, [0, 1, 1, 0])
    with pytest.raises(palisade.ExportError) as refused:
        palisade.save(model, X, name="Not A DNS Label", version="1", owners=[OWNER], home=tmp_path / "home")
    assert "palisade.yaml" in str(refused.value) and "`name`" in str(refused.value)


def test_an_unfitted_model_is_refused():
    need("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(palisade.ExportError) as refused:
        palisade.save(LogisticRegression(), np.zeros((3, 2)), name="x", version="1", owners=[OWNER])
    assert "is not fitted: call fit(X, y)" in str(refused.value)


def test_a_sample_without_a_training_column_names_it(tmp_path):
    need("skl2onnx")
    pd = need("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "s": ["a", "b", "a", "b"]})
    model = Pipeline([("pre", ColumnTransformer([("s", OneHotEncoder(), ["s"])], remainder="passthrough")),
                      ("lr", LogisticRegression())]).fit(frame, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="the sample has no column 's'"):
        palisade.save(model, frame[["x"]], name="x", version="1", owners=[OWNER], home=tmp_path / "home")
    with pytest.raises(ValueError, match="pass the sample as a DataFrame"):
        palisade.save(model, frame.to_numpy(), name="x", version="1", owners=[OWNER], home=tmp_path / "home")


def test_text_with_missing_values_says_how_to_fill_it(tmp_path):
    need("skl2onnx")
    pd = need("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"city": ["paris", None, "lyon", "paris", "nice", None]})
    text = make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"), OneHotEncoder())
    model = Pipeline([("pre", ColumnTransformer([("city", text, ["city"])])),
                      ("lr", LogisticRegression())]).fit(frame, [0, 1, 0, 1, 0, 1])
    with pytest.raises(palisade.ExportError) as refused:
        palisade.save(model, frame, name="x", version="1", owners=[OWNER], home=tmp_path / "home")
    message = str(refused.value)
    assert "fillna('missing')" in message and "['city']" in message
