"""``palisade.save``: a trained model to a checked, versioned Palisade bundle."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _binary, _export, _tensors
from .errors import CommandError, ExportError, ExportMismatchError


@dataclass(frozen=True)
class BundleRef:
    """A stored bundle: ``str(ref)`` is ``NAME:VERSION``, what ``palisade models show``
    and ``Client.predict(name, ..., version=...)`` take."""

    name: str
    version: str
    namespace: str
    digest: str
    engine: str | None
    inputs: tuple[_tensors.TensorSpec, ...]
    outputs: tuple[_tensors.TensorSpec, ...]
    #: The Palisade home it is stored in (None: the binary's default).
    home: str | None
    #: The model directory written (model.onnx, palisade.yaml), when ``path`` was given.
    path: str | None

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")


def _yaml_key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) else json.dumps(key)


def _yaml(value: Any, indent: int = 0) -> list[str]:
    """YAML lines for a mapping: nested mappings as blocks, everything else in JSON's
    syntax (which YAML reads as is, strings always quoted)."""
    pad = "  " * indent
    lines = []
    for key, item in value.items():
        if isinstance(item, Mapping) and item:
            lines.append(f"{pad}{_yaml_key(str(key))}:")
            lines += _yaml(item, indent + 1)
        elif isinstance(item, (list, tuple)) and item and all(isinstance(x, Mapping) for x in item):
            lines.append(f"{pad}{_yaml_key(str(key))}:")
            lines += [f"{pad}  - {json.dumps(x, default=str)}" for x in item]
        else:
            lines.append(f"{pad}{_yaml_key(str(key))}: {json.dumps(item, default=str)}")
    return lines


def _onnx_specs(path: Path) -> tuple[list[_tensors.TensorSpec], list[_tensors.TensorSpec]]:
    """The graph's inputs and outputs, as V2 specs (``-1`` for dimensions without a size)."""
    onnx = _export.require("onnx", "sklearn")
    proto = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in proto.graph.initializer}

    def spec(value: Any) -> _tensors.TensorSpec:
        tensor = value.type.tensor_type
        datatype = _tensors.ONNX_TYPES.get(tensor.elem_type)
        if datatype is None:
            raise ExportError(f"the exported model's `{value.name}` has ONNX element type {tensor.elem_type}, "
                              "which Palisade does not serve")
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        return _tensors.TensorSpec(value.name, datatype, shape)

    inputs = [spec(v) for v in proto.graph.input if v.name not in initializers]
    outputs = [spec(v) for v in proto.graph.output]
    return inputs, outputs


def _manifest(
    name: str,
    version: str,
    owners: Sequence[str],
    export: _export.Export,
    outputs: list[_tensors.TensorSpec],
    extra: dict[str, Any],
) -> str:
    doc: dict[str, Any] = {"name": name, "version": version}
    if "namespace" in extra:
        doc["namespace"] = extra.pop("namespace")
    doc["description"] = extra.pop("description", f"{export.framework} {export.summary}, saved with palisade.save")
    if "labels" in extra:
        doc["labels"] = extra.pop("labels")
    doc["owners"] = list(owners)
    model: dict[str, Any] = {"path": _export.MODEL_FILE, "format": "onnx"}
    user_model = dict(extra.pop("model", {}) or {})
    for fixed in ("path", "format"):
        if fixed in user_model:
            raise ValueError(f"model.{fixed} is written by palisade.save; leave it out of model=...")
    model.update(user_model)
    if export.classes and export.probability_output and "outputs" not in model:
        declared = []
        for spec in outputs:
            entry: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}
            if spec.name == export.probability_output:
                entry["labels"] = export.classes
            declared.append(entry)
        if all(spec.shape for spec in outputs):
            model["outputs"] = declared
    doc["model"] = model
    doc.update(extra)
    header = f"# Written by palisade.save: {export.framework} {export.summary}, exported to ONNX.\n"
    return header + "\n".join(_yaml(doc)) + "\n"


def _write_rows(directory: Path, stem: str, rows: Any, sample: Any) -> str:
    """Background or reference rows: a CSV with the columns' names for a DataFrame (as
    `explainer.background` reads them), else a ``.npy`` array."""
    if _tensors.is_dataframe(rows):
        if _tensors.is_dataframe(sample) and list(rows.columns) != list(sample.columns):
            raise ValueError(f"{stem} rows must have the sample's columns {list(sample.columns)}")
        file = f"{stem}.csv"
        rows.to_csv(directory / file, index=False)
        return file
    file = f"{stem}.npy"
    np.save(directory / file, _tensors._as_array(rows), allow_pickle=False)
    return file


def _short(err: object, limit: int = 600) -> str:
    text = str(err).strip()
    return text if len(text) <= limit else text[:limit] + " [...]"


def _labels(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "iufb":
        return values.astype(np.float64).reshape(-1)
    return np.array(
        [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values.reshape(-1)], dtype=object
    )


def compare(
    expected: Mapping[str, _export.Expected], answered: Mapping[str, np.ndarray], atol: float, rtol: float
) -> list[str]:
    """One line per output whose answer differs from the original model's."""
    problems = []
    for name, want in expected.items():
        if name not in answered:
            problems.append(f"output {name!r}: missing from Palisade's answer (it has {sorted(answered)})")
            continue
        got, ref = answered[name], want.values
        if got.size != ref.size:
            problems.append(
                f"output {name!r}: Palisade answered shape {list(got.shape)}, {want.source} {list(ref.shape)}"
            )
            continue
        rows = ref.shape[0] if ref.ndim else 1
        per_row = max(ref.size // max(rows, 1), 1)
        if want.kind == "label":
            a, b = _labels(got), _labels(ref)
            if a.dtype != b.dtype:
                a, b = _labels(got.astype(str)), _labels(ref.astype(str))
            bad = np.flatnonzero(a != b)
            if bad.size:
                i = int(bad[0])
                problems.append(
                    f"output {name!r}: {bad.size} of {ref.size} labels differ from {want.source}; first at row "
                    f"{i // per_row}: Palisade {a[i]!r}, {want.source} {b[i]!r}"
                )
            continue
        a = got.reshape(-1).astype(np.float64)
        b = ref.reshape(-1).astype(np.float64)
        both_nan = np.isnan(a) & np.isnan(b)
        with np.errstate(invalid="ignore"):
            error = np.abs(a - b)
            bad = np.flatnonzero(~((error <= atol + rtol * np.abs(b)) | both_nan))
        if bad.size:
            worst = int(bad[np.nanargmax(np.where(np.isnan(error[bad]), np.inf, error[bad]))])
            problems.append(
                f"output {name!r}: {bad.size} of {ref.size} values differ from {want.source} by more than "
                f"{atol:g} + {rtol:g}*|value|; the largest at row {worst // per_row}: Palisade {a[worst]:.9g}, "
                f"{want.source} {b[worst]:.9g} (difference {error[worst]:.3g})"
            )
    return problems


def _predict(directory: Path, request: bytes, home: str | os.PathLike[str] | None) -> dict[str, np.ndarray]:
    """Runs the model directory through Palisade (``palisade predict DIR``): the engine
    ``palisade build`` chooses, after its self-test."""
    with tempfile.NamedTemporaryFile(prefix="palisade-request-", suffix=".json") as file:
        file.write(request)
        file.flush()
        out = _binary.run(["predict", str(directory), "--input", file.name], home=home)
    return _tensors.decode_response(out.encode("utf-8"), None)


def _build(directory: Path, home: str | os.PathLike[str] | None, kept: str | None) -> BundleRef:
    out = json.loads(_binary.run(["build", str(directory), "--output", "json"], home=home))
    return BundleRef(
        name=out["name"],
        version=out["version"],
        namespace=out.get("namespace", "default"),
        digest=out["digest"],
        engine=out.get("engine"),
        inputs=tuple(_tensors.TensorSpec.from_metadata(_v2_spec(s)) for s in out.get("inputs", [])),
        outputs=tuple(_tensors.TensorSpec.from_metadata(_v2_spec(s)) for s in out.get("outputs", [])),
        home=os.fspath(home) if home is not None else None,
        path=kept,
    )


def _model_files(directory: Path) -> dict[str, bytes]:
    """The files an export writes (model.onnx, its external data, palisade.yaml)."""
    return {
        p.name: p.read_bytes()
        for p in directory.iterdir()
        if p.is_file() and (p.name.startswith(_export.MODEL_FILE) or p.name == "palisade.yaml")
    }


def _restore(directory: Path, files: dict[str, bytes]) -> None:
    """Puts an earlier attempt's files back, so the directory holds the export reported."""
    for old in _model_files(directory):
        (directory / old).unlink()
    for name, data in files.items():
        (directory / name).write_bytes(data)


def _v2_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A signature entry of ``palisade build --output json`` in V2 metadata's form."""
    entry = dict(spec)
    if spec.get("labels"):
        entry["parameters"] = {"labels": spec["labels"]}
    return entry


def save(
    model: Any,
    sample: Any,
    *,
    name: str,
    version: str,
    owners: Sequence[str],
    path: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
    classes: Sequence[Any] | None = None,
    background: Any = None,
    reference: Any = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    **manifest: Any,
) -> BundleRef:
    """Converts a trained model to ONNX, checks the export through Palisade, and stores it
    as a bundle (``palisade build``). Returns the bundle's reference.

    - ``model``: a scikit-learn estimator or pipeline, an XGBoost or LightGBM model with the
      scikit-learn API, or a PyTorch module; the converter is chosen by its type.
    - ``sample``: a few rows of real inputs (a DataFrame, whose columns become the model's
      inputs; an array; for PyTorch a tensor or a tuple of tensors). The export is run
      through Palisade on these rows and compared with the model's own ``predict`` /
      ``predict_proba`` / ``forward``: labels must be identical, numbers within
      ``atol + rtol * |value|``. Float features travel as float32; when that changes the
      answers (scikit-learn computes in float64: a scaler before a tree, large values), a
      float64 export is tried. If the answers still differ,
      :class:`~palisade.errors.ExportMismatchError` says which output differs, where, and
      by how much, and nothing is stored.
    - ``name``, ``version``, ``owners`` and any other keyword (``namespace``,
      ``description``, ``labels``, ``audit``, ``limits``, ``batching``, ``model``) go into
      ``palisade.yaml`` (docs/manifest.md). Class labels are written for classifiers
      (PyTorch: pass ``classes=[...]`` for the output of shape ``[rows, len(classes)]``).
    - ``path``: the directory to write the model and ``palisade.yaml`` into, kept
      (default: a temporary directory, removed once built).
    - ``background`` / ``reference``: rows kept beside the model in ``path``
      (``background.csv`` for a DataFrame, else ``background.npy``), for explanations
      (name the file in ``explainer={"type": "KernelShap", "background": "background.npy"}``)
      and outlier detection.
    - ``home``: the Palisade home (default: ``$PALISADE_HOME``, else ``~/.palisade``).
    """
    if not isinstance(owners, (list, tuple)) or not owners or not all(isinstance(o, str) for o in owners):
        raise ValueError("owners must be a non-empty list of emails, group:NAME or serviceaccount:NS/NAME")
    if (background is not None or reference is not None) and path is None:
        raise ValueError(
            "background and reference rows are written beside the model: pass path=DIR to keep them "
            "(name them in explainer= to build an explainer, docs/explain.md)"
        )
    if path is not None:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        for old in [*directory.glob(_export.MODEL_FILE + "*"), directory / "palisade.yaml"]:
            if old.is_file():
                old.unlink()
    else:
        directory = Path(tempfile.mkdtemp(prefix=f"palisade-save-{name}-"))
    keep = False  # a failed export's directory is kept for inspection
    try:
        # Written first: the export's check runs palisade.yaml, whose explainer: may name them.
        if background is not None:
            _write_rows(directory, "background", background, sample)
        if reference is not None:
            _write_rows(directory, "reference", reference, sample)
        attempts: list[tuple[str, _export.Export, list[str], dict[str, bytes]]] = []
        why_not = ""  # why a later precision could not be checked
        for precision in _export.precisions(model, sample):
            try:
                export = _export.export(
                    model, sample, directory, list(classes) if classes is not None else None, precision
                )
            except ExportError as err:
                if attempts:  # no float64 export: report the float32 one's difference
                    why_not = f"\nA {precision} export was tried too, but the converter failed: {_short(err)}"
                    break
                raise
            inputs, outputs = _onnx_specs(directory / _export.MODEL_FILE)
            (directory / "palisade.yaml").write_text(
                _manifest(str(name), str(version), owners, export, outputs, dict(manifest))
            )
            arrays = _tensors.bind_inputs(inputs, export.feed, where="sample: ")
            datatypes = {spec.name: spec.datatype for spec in inputs}
            request, _ = _tensors.encode_request(arrays, datatypes, binary=False, nan_as_strings=True)
            keep = True
            try:
                answered = _predict(directory, request, home)
            except CommandError as err:
                if attempts:  # the float32 export ran; report its difference
                    why_not = (f"\nA {precision} export was tried too, but Palisade does not run it: "
                               f"{_short(err.stderr)}")
                    break
                raise
            problems = compare(export.expected, answered, atol, rtol)
            attempts.append((precision, export, problems, _model_files(directory)))
            if not problems:
                break
        precision, export, problems, files = attempts[0] if attempts[-1][2] else attempts[-1]
        if attempts[-1][0] != precision or why_not:
            _restore(directory, files)  # the directory holds the export that is reported
        if problems:
            also = why_not
            if len(attempts) > 1 and attempts[1][2]:
                also = f"\nA {attempts[1][0]} export differs too:\n  - " + "\n  - ".join(attempts[1][2])
            raise ExportMismatchError(
                f"the ONNX export of this {export.framework} {export.summary} answers differently from the "
                f"original model on the sample, so it was not stored:\n  - " + "\n  - ".join(problems) + also +
                "\nPalisade ran the exported model itself; the difference comes from the conversion. Common "
                "causes: float32 rounding (a value very close to a tree's split can go the other way), an "
                "estimator option or a custom estimator the converter does not reproduce. Check the rows named "
                "above; if the difference is acceptable, pass a larger atol=/rtol= to palisade.save.",
                problems,
            )
        ref = _build(directory, home, os.fspath(directory) if path is not None else None)
        keep = False
        return ref
    except CommandError as err:
        where = "" if path is not None else f" (the model directory is kept for inspection: {directory})"
        raise ExportError(f"Palisade refused the exported model{where}: {err.stderr.strip()}") from err
    except ExportMismatchError as err:
        if path is None:
            err.args = (f"{err.args[0]}\n(the model directory is kept for inspection: {directory})",)
        raise
    finally:
        if path is None and not keep:
            shutil.rmtree(directory, ignore_errors=True)
