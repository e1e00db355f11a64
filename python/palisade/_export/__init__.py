"""Converters from a framework's model object to ONNX, chosen by the object's type.

Each converter writes ``model.onnx`` (and any external data) into a directory and returns
an :class:`Export`: what the original model answers on the sample, so that the ONNX
model's answers through Palisade can be compared with it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, UnsupportedModelError

#: The ONNX file every converter writes.
MODEL_FILE = "model.onnx"


@dataclass
class Expected:
    """What the original model answered for one ONNX output: ``kind`` is ``label``
    (compared exactly), ``probabilities`` or ``value`` (compared within a tolerance)."""

    kind: str
    values: np.ndarray
    source: str  # the method that computed it, for messages: "predict", "predict_proba", "forward"


@dataclass
class Export:
    """An exported model."""

    framework: str
    summary: str
    #: The sample in a form :func:`palisade._tensors.bind_inputs` maps to the ONNX inputs.
    feed: Any
    #: ONNX output name -> what the original model answered.
    expected: dict[str, Expected]
    #: Class labels of the probability output, in column order.
    classes: list[str] | None = None
    probability_output: str | None = None
    #: Files written besides model.onnx (external data).
    extra_files: list[str] = field(default_factory=list)


SUPPORTED = """palisade.save converts:
  - scikit-learn estimators and pipelines            pip install 'palisade[sklearn]'
  - XGBoost XGBClassifier, XGBRegressor              pip install 'palisade[xgboost]'
  - LightGBM LGBMClassifier, LGBMRegressor           pip install 'palisade[lightgbm]'
  - PyTorch modules (torch.nn.Module)                pip install 'palisade[torch]'
Other models: export them to ONNX yourself (tf2onnx for TensorFlow and Keras, the framework's
own exporter otherwise), write palisade.yaml next to the .onnx file and run
`palisade build DIR`; see docs/python.md, "Exporting by hand"."""

_FRAMEWORKS = {"sklearn": "sklearn", "xgboost": "boosting", "lightgbm": "boosting", "torch": "torch"}


def framework_of(model: Any) -> str | None:
    """The framework a model object comes from, by the modules of its type and its bases
    (so a module defined in a notebook that subclasses ``torch.nn.Module`` is PyTorch)."""
    for cls in type(model).__mro__:
        root = (cls.__module__ or "").split(".")[0]
        if root in _FRAMEWORKS:
            return root
    return None


def require(module: str, extra: str) -> Any:
    """Imports a converter, or says which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ExportError(
            f"converting this model needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'palisade[{extra}]' ({err})"
        ) from err


def precisions(model: Any, sample: Any) -> list[str]:
    """The float precisions to try, in order: float32 (what ONNX converters and most
    serving stacks use), then for scikit-learn, XGBoost and LightGBM models with float
    features float64, which computes as scikit-learn does (a scaler in float32 before a
    tree can send a row to the other side of a split)."""
    framework = framework_of(model)
    if framework is None:
        kind = f"{type(model).__module__}.{type(model).__qualname__}"
        raise UnsupportedModelError(f"palisade.save cannot convert a {kind}.\n{SUPPORTED}")
    if framework == "torch":
        return ["float32"]
    from . import sklearn as converter

    return ["float32", "float64"] if converter.has_floats(sample) else ["float32"]


def export(model: Any, sample: Any, directory: Path, classes: list[str] | None, precision: str) -> Export:
    """Converts ``model`` to ``directory/model.onnx`` with its framework's converter."""
    framework = framework_of(model)
    if framework == "torch":
        from . import torch as converter

        return converter.export(model, sample, directory, classes)
    from . import sklearn as converter_sklearn

    return converter_sklearn.export(model, sample, directory, str(framework), precision)
