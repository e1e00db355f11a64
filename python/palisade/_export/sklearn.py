"""scikit-learn estimators and pipelines (skl2onnx), and XGBoost and LightGBM models with
the scikit-learn API (onnxmltools' converters, registered with skl2onnx so that they also
convert inside pipelines)."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._tensors import is_dataframe
from ..errors import ExportError, UnsupportedModelError
from . import MODEL_FILE, Expected, Export, require

#: ONNX opsets of the export: ai.onnx 17, ai.onnx.ml 3 (tree ensembles with their
#: opset-3 attributes), which Palisade's engines run.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}

_FRAMEWORK_NAMES = {"sklearn": "scikit-learn", "xgboost": "XGBoost", "lightgbm": "LightGBM"}


def _nested(model: Any) -> list[Any]:
    """The model and every estimator inside it (pipeline steps, column transformers,
    ensembles), from scikit-learn's ``get_params(deep=True)``."""
    found = [model]
    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    for value in params.values():
        if hasattr(value, "get_params") and not isinstance(value, type):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                candidate = item[1] if isinstance(item, tuple) and len(item) >= 2 else item
                if hasattr(candidate, "get_params") and not isinstance(candidate, type):
                    found.append(candidate)
    return found


def _root(obj: Any) -> str:
    return (type(obj).__module__ or "").split(".")[0]


def _register_boosting(model: Any) -> None:
    """Registers onnxmltools' XGBoost and LightGBM converters with skl2onnx when the model
    holds such an estimator."""
    roots = {_root(m) for m in _nested(model)}
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    if "xgboost" in roots:
        require("onnxmltools", "xgboost")
        import xgboost
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

        update_registered_converter(
            xgboost.XGBClassifier,
            "XGBoostXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            options=classifier_options,
        )
        update_registered_converter(
            xgboost.XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost
        )
    if "lightgbm" in roots:
        require("onnxmltools", "lightgbm")
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(
            lightgbm.LGBMClassifier,
            "LightGbmLGBMClassifier",
            calculate_linear_classifier_output_shapes,
            convert_lightgbm,
            options=classifier_options,
        )
        update_registered_converter(
            lightgbm.LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes, convert_lightgbm
        )


def _convertible(model: Any) -> Any:
    """A copy of the model the converters accept: XGBoost boosters trained on a DataFrame
    carry its column names, which onnxmltools refuses (it wants ``f0``, ``f1``, ...)."""
    boosters = [m for m in _nested(model) if _root(m) == "xgboost" and hasattr(m, "get_booster")]
    if not any(m.get_booster().feature_names for m in boosters):
        return model
    work = copy.deepcopy(model)
    for m in _nested(work):
        if _root(m) == "xgboost" and hasattr(m, "get_booster"):
            m.get_booster().feature_names = None
    return work


def _column_type(name: str, column: Any, precision: str) -> Any:
    """The skl2onnx input type of one DataFrame column: numbers as ``precision`` floats,
    integers and booleans as INT64, text and categories as strings."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, Int64TensorType, StringTensorType

    dtype = column.dtype
    kind = getattr(dtype, "kind", "O")
    if str(dtype) == "category" or kind in "OSU" or str(dtype) in ("string", "str"):
        return StringTensorType([None, 1])
    if kind in "iub":
        return Int64TensorType([None, 1])
    if kind == "f":
        return DoubleTensorType([None, 1]) if precision == "float64" else FloatTensorType([None, 1])
    raise ExportError(
        f"sample column {name!r} has dtype {dtype}, which has no ONNX input type: convert it to numbers "
        "or strings first (dates, for example, to their parts or to a number of days)"
    )


def _takes_columns(model: Any) -> bool:
    """Whether skl2onnx gives the model one input per column: pipelines (their first step
    concatenates the columns or selects them) and column transformers do; a bare
    estimator takes one tensor."""
    return type(model).__name__ in ("Pipeline", "ColumnTransformer", "FeatureUnion")


def _rename_inputs(onx: Any, names: list[str]) -> None:
    """Gives the graph's inputs the DataFrame's column names (skl2onnx replaces characters
    such as spaces), so callers send columns under their own names."""
    graph = onx.graph
    if len(graph.input) != len(names):
        raise ExportError(f"skl2onnx made {len(graph.input)} inputs for {len(names)} columns")
    mapping = {inp.name: new for inp, new in zip(graph.input, names) if inp.name != new}
    if not mapping:
        return
    for inp in graph.input:
        inp.name = mapping.get(inp.name, inp.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]


def _describe(model: Any) -> str:
    """``Pipeline(ColumnTransformer, LogisticRegression)``-style summary of a model."""
    name = type(model).__name__
    steps = getattr(model, "steps", None)
    if steps:
        return f"{name}({', '.join(_describe(step) for _, step in steps)})"
    return name


def _label_kind(values: np.ndarray) -> str:
    return "label" if values.dtype.kind in "iubOUS" else "value"


def _short(err: object, limit: int = 600) -> str:
    """A converter's message, cut: some print whole node attribute dictionaries."""
    text = str(err).strip()
    return text if len(text) <= limit else text[:limit] + " [...]"


def _hint(err: Exception, model: Any, sample: Any) -> str:
    """What to do about converter failures data scientists commonly hit."""
    text = str(err)
    if "missing values are string" in text:
        columns = []
        if is_dataframe(sample):
            columns = [str(c) for c in sample.columns if sample[c].dtype.kind == "O" and sample[c].isna().any()]
        where = f" (in this sample: {columns})" if columns else ""
        return (
            "Text columns with missing values (None/NaN) have no ONNX form: fill them with a string before "
            f"training and serving, e.g. df[col] = df[col].fillna('missing'){where}.\n"
        )
    if any(type(m).__name__.startswith("HistGradientBoosting") for m in _nested(model)):
        return (
            "HistGradientBoosting models convert only with a skl2onnx release that supports this "
            "scikit-learn and numpy (and protobuf<7); GradientBoosting, RandomForest, XGBoost and LightGBM "
            "convert with the pinned converters.\n"
        )
    return ""


def _check_fitted(model: Any) -> None:
    """Refuses a model that was never fitted, before a converter fails on it obscurely."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError as err:
        raise ExportError(f"this {_describe(model)} is not fitted: call fit(X, y) before palisade.save") from err
    except TypeError:  # not an estimator scikit-learn knows how to check
        pass


def _training_columns(model: Any, sample: Any) -> Any:
    """The sample with the columns the model was fitted on, in that order (scikit-learn
    records them in ``feature_names_in_`` when fitted on a DataFrame): extra columns
    would become inputs every caller must send, a missing one cannot be converted."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return sample
    names = [str(n) for n in names]
    if not is_dataframe(sample):
        if _takes_columns(model):
            raise ValueError(
                f"this {_describe(model)} was fitted on a DataFrame with columns {names}: pass the sample as a "
                "DataFrame with these columns (e.g. X_train[:20]), so the model's inputs get their names"
            )
        return sample
    by_name = {str(c): c for c in sample.columns}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(
            f"the sample has no column {missing[0]!r}: this {_describe(model)} was fitted on the columns "
            f"{names}; pass rows of the training data (its columns: {[str(c) for c in sample.columns]})"
        )
    return sample[[by_name[n] for n in names]]


def _warn_lenient_exports(model: Any) -> None:
    """Warns where the export will answer requests scikit-learn refuses: skl2onnx writes an
    ``OrdinalEncoder(handle_unknown="error")`` as a LabelEncoder that encodes every unknown
    category as -1. (A ``OneHotEncoder``'s refusal is kept: the server answers 400.)"""
    for step in _nested(model):
        if type(step).__name__ == "OrdinalEncoder" and getattr(step, "handle_unknown", None) == "error":
            warnings.warn(
                'this model has an OrdinalEncoder(handle_unknown="error"): skl2onnx exports it as a '
                "LabelEncoder that encodes a category it never saw as -1, so the served model answers "
                "requests scikit-learn refuses. To refuse them, use OneHotEncoder (unknown categories "
                'get a 400); to choose the value, use handle_unknown="use_encoded_value"',
                UserWarning,
                stacklevel=4,
            )
            return


def has_floats(sample: Any) -> bool:
    """Whether the sample has floating-point features (which a float64 export can carry
    more exactly)."""
    if is_dataframe(sample):
        return any(getattr(dtype, "kind", "") == "f" for dtype in sample.dtypes)
    return np.asarray(sample).dtype.kind not in "OSU"


def export(model: Any, sample: Any, directory: Path, framework: str, precision: str = "float32") -> Export:
    """Converts a scikit-learn, XGBoost or LightGBM model with ``precision`` float inputs
    (``float32``, or ``float64``: arithmetic in double precision, as scikit-learn computes);
    see the module docs."""
    extra = "sklearn" if framework == "sklearn" else framework
    skl2onnx = require("skl2onnx", extra)
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType
    from sklearn.base import is_classifier, is_regressor

    if framework in ("xgboost", "lightgbm") and not hasattr(model, "get_params"):
        raise UnsupportedModelError(
            f"palisade.save converts {_FRAMEWORK_NAMES[framework]} models with the scikit-learn API "
            f"(XGBClassifier/XGBRegressor, LGBMClassifier/LGBMRegressor), not a {type(model).__name__}: "
            "train with those classes, or export by hand with onnxmltools (docs/python.md)"
        )
    _check_fitted(model)
    _warn_lenient_exports(model)
    sample = _training_columns(model, sample)
    _register_boosting(model)
    work = _convertible(model)

    if is_dataframe(sample):
        if len(sample) == 0:
            raise ValueError("the sample DataFrame has no rows: pass a few rows of the training data")
        columns = [str(c) for c in sample.columns]
        types = [(str(c), _column_type(str(c), sample[c], precision)) for c in sample.columns]
        if not _takes_columns(work):
            from sklearn.compose import ColumnTransformer
            from sklearn.pipeline import Pipeline

            # A bare estimator takes one tensor: concatenate the columns in front of it.
            columns_step = ColumnTransformer([("columns", "passthrough", list(sample.columns))]).fit(sample)
            work = Pipeline([("columns", columns_step), ("model", work)])
        feed: Any = sample
    else:
        array = np.asarray(sample)
        if array.size == 0:
            raise ValueError("the sample has no rows: pass a few rows of the training data")
        columns = ["X"]
        if array.dtype.kind in "OSU" and array.ndim == 1:  # text models take one string per row
            types = [("X", StringTensorType([None]))]
        elif array.ndim != 2:
            raise ValueError(
                f"the sample has shape {array.shape}: pass rows (a 2-D array such as X[:10], or a DataFrame)"
            )
        elif array.dtype.kind in "OSU":
            types = [("X", StringTensorType([None, array.shape[1]]))]
        else:
            float_type = DoubleTensorType if precision == "float64" else FloatTensorType
            types = [("X", float_type([None, array.shape[1]]))]
        feed = array

    classifier = is_classifier(model)
    options = {id(work): {"zipmap": False}} if classifier else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            try:
                onx = skl2onnx.to_onnx(work, initial_types=types, target_opset=TARGET_OPSET, options=options)
            except (NameError, RuntimeError, ValueError) as err:
                if options is None or "zipmap" not in str(err):
                    raise
                onx = skl2onnx.to_onnx(work, initial_types=types, target_opset=TARGET_OPSET)
        except ExportError:
            raise
        except Exception as err:
            raise ExportError(
                f"skl2onnx cannot convert this {_describe(model)}: {type(err).__name__}: {_short(err)}\n"
                f"{_hint(err, model, sample)}"
                "Models skl2onnx supports: https://onnx.ai/sklearn-onnx/supported.html; otherwise export it "
                "by hand (docs/python.md, \"Exporting by hand\")"
            ) from err
    if is_dataframe(sample):
        _rename_inputs(onx, columns)
    (directory / MODEL_FILE).write_bytes(onx.SerializeToString())

    output_names = [o.name for o in onx.graph.output]
    expected: dict[str, Expected] = {}
    classes = None
    probability_output = None
    predicted = np.asarray(model.predict(sample)) if hasattr(model, "predict") else None
    if predicted is not None:
        kind = "label" if classifier else ("value" if is_regressor(model) else _label_kind(predicted))
        expected[output_names[0]] = Expected(kind, predicted, "predict")
        if classifier and len(output_names) > 1:
            try:
                probabilities = np.asarray(model.predict_proba(sample))
            except (AttributeError, NotImplementedError):
                probabilities = None
            if probabilities is not None:
                expected[output_names[1]] = Expected("probabilities", probabilities, "predict_proba")
                probability_output = output_names[1]
                classes = [str(c) for c in getattr(model, "classes_", range(probabilities.shape[1]))]
    elif hasattr(model, "transform"):
        expected[output_names[0]] = Expected("value", np.asarray(model.transform(sample)), "transform")
    name = _FRAMEWORK_NAMES.get(framework, framework)
    if framework == "sklearn" and any(_root(m) in ("xgboost", "lightgbm") for m in _nested(model)[1:]):
        name = "scikit-learn"
    return Export(
        framework=name,
        summary=_describe(model),
        feed=feed,
        expected=expected,
        classes=classes,
        probability_output=probability_output,
    )

