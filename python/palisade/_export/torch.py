"""PyTorch modules: ``torch.onnx.export`` (the dynamo exporter, torch's default) with a
dynamic batch dimension on every input."""

from __future__ import annotations

import contextlib
import inspect
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError
from . import MODEL_FILE, Expected, Export, require


def _input_names(module: Any, count: int) -> list[str]:
    """The names of ``forward``'s first ``count`` parameters (``x``, ...), which become the
    ONNX inputs' names."""
    try:
        params = [
            p.name
            for p in inspect.signature(module.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) >= count:
        return params[:count]
    return [f"input_{i}" for i in range(count)]


def _tensors(torch: Any, module: Any, sample: Any) -> list[Any]:
    """The sample as a list of tensors, numpy floats cast to the module's float type."""
    items = list(sample) if isinstance(sample, (tuple, list)) else [sample]
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    tensors = []
    for item in items:
        if not isinstance(item, torch.Tensor):
            array = np.asarray(item.to_numpy() if hasattr(item, "to_numpy") else item)
            item = torch.from_numpy(np.ascontiguousarray(array))
        if item.is_floating_point() and item.dtype != dtype:
            item = item.to(dtype)
        if item.dim() == 0:
            raise ValueError("the sample must have a batch dimension: pass a few rows, such as X[:8]")
        tensors.append(item)
    return tensors


def _outputs(torch: Any, answer: Any) -> list[tuple[str, Any]]:
    if isinstance(answer, torch.Tensor):
        return [("output", answer)]
    if isinstance(answer, dict):
        return [(str(k), v) for k, v in answer.items()]
    if isinstance(answer, (tuple, list)):
        return [(f"output_{i}", v) for i, v in enumerate(answer)]
    raise ExportError(f"forward returned a {type(answer).__name__}: palisade.save exports modules that return tensors")


def export(model: Any, sample: Any, directory: Path, classes: list[str] | None) -> Export:
    """Exports a ``torch.nn.Module``; see the module docs."""
    torch = require("torch", "torch")
    require("onnxscript", "torch")
    was_training = model.training
    model.eval()
    try:
        inputs = _tensors(torch, model, sample)
        names = _input_names(model, len(inputs))
        with torch.no_grad():
            answer = model(*inputs)
        outputs = _outputs(torch, answer)
        # The exporter specializes a dimension of size 1: give it two rows at least.
        example = tuple(t if t.shape[0] > 1 else torch.cat([t, t]) for t in inputs)
        batch = torch.export.Dim("batch")
        path = directory / MODEL_FILE
        captured = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured):
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    model,
                    example,
                    str(path),
                    input_names=names,
                    output_names=[name for name, _ in outputs],
                    dynamic_shapes=tuple({0: batch} for _ in inputs),
                    dynamo=True,
                    verbose=False,
                )
            except Exception as err:
                raise ExportError(
                    f"torch.onnx.export cannot export this {type(model).__name__}: {type(err).__name__}: {err}\n"
                    f"{captured.getvalue()[-2000:]}"
                ) from err
    finally:
        model.train(was_training)

    expected: dict[str, Expected] = {}
    probability_output = None
    for name, value in outputs:
        values = value.detach().cpu().numpy()
        kind = "label" if values.dtype.kind in "iub" else "value"
        expected[name] = Expected(kind, values, "forward")
    if classes is not None:
        fitting = [n for n, v in outputs if v.dim() == 2 and v.shape[1] == len(classes)]
        if len(fitting) != 1:
            raise ValueError(
                f"classes= names {len(classes)} classes, but the module has no single output of shape "
                f"[rows, {len(classes)}] to give them to"
            )
        probability_output = fitting[0]
    extra = sorted(p.name for p in directory.iterdir() if p.name.startswith(MODEL_FILE + "."))
    return Export(
        framework="PyTorch",
        summary=type(model).__name__,
        feed=dict(zip(names, (t.detach().cpu().numpy() for t in inputs))),
        expected=expected,
        classes=[str(c) for c in classes] if classes is not None else None,
        probability_output=probability_output,
        extra_files=extra,
    )
