"""Palisade for Python: save a trained model as a secured, audited API and call it.

- :func:`save` converts a scikit-learn, XGBoost, LightGBM or PyTorch model to ONNX, checks
  the export through Palisade on sample rows, and stores it as a bundle.
- :func:`serve` runs ``palisade serve`` (the binary this wheel installs) on a free port.
- :class:`Client` calls served models with a token, returning numpy arrays.

The ``palisade`` command itself comes with this package: ``palisade --help``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from ._binary import find_palisade_bin
from .client import Client, ModelInfo, OutlierScores, ServiceAccountToken
from .errors import (
    ApiError,
    AuthenticationError,
    CommandError,
    DriftUnavailableError,
    ExplanationsUnavailableError,
    OutliersUnavailableError,
    ExportError,
    ExportMismatchError,
    NotFoundError,
    PalisadeError,
    PermissionDeniedError,
    UnsupportedModelError,
)
from ._save import BundleRef, save
from ._serve import Server, serve

try:
    __version__ = _version("palisade")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BundleRef",
    "Client",
    "CommandError",
    "DriftUnavailableError",
    "ExplanationsUnavailableError",
    "OutliersUnavailableError",
    "OutlierScores",
    "ExportError",
    "ExportMismatchError",
    "ModelInfo",
    "NotFoundError",
    "PalisadeError",
    "PermissionDeniedError",
    "Server",
    "ServiceAccountToken",
    "UnsupportedModelError",
    "find_palisade_bin",
    "save",
    "serve",
]
