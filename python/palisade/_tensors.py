"""Open Inference Protocol (V2) tensors: binding a caller's data to a model's inputs,
encoding requests (JSON, or Triton's binary tensor extension) and decoding responses.

Used by :class:`palisade.Client` and by :func:`palisade.save`'s check, so the check also
exercises what a caller sends.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Requests whose tensors take at least this many bytes use the binary tensor extension.
BINARY_THRESHOLD = 16 * 1024

#: V2 datatypes with a numpy equivalent (little-endian on the wire).
NUMPY = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}

#: ONNX ``TensorProto`` element types and their V2 datatypes.
ONNX_TYPES = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "BYTES",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
    16: "BF16",
}

_NON_FINITE = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, V2 datatype, shape (``-1`` for any size), and the
    class labels of a probability output."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    labels: tuple[str, ...] | None = field(default=None, compare=False)

    @classmethod
    def from_metadata(cls, entry: Mapping[str, Any]) -> TensorSpec:
        """From an entry of V2 model metadata (``inputs`` / ``outputs``)."""
        labels = (entry.get("parameters") or {}).get("labels")
        return cls(
            name=str(entry["name"]),
            datatype=str(entry["datatype"]),
            shape=tuple(int(d) for d in entry.get("shape", [])),
            labels=tuple(str(x) for x in labels) if labels else None,
        )


def is_dataframe(value: object) -> bool:
    """Whether ``value`` is a pandas DataFrame, without importing pandas."""
    return type(value).__name__ == "DataFrame" and hasattr(value, "columns") and hasattr(value, "iloc")


def _rows_shape(spec: TensorSpec, rows: int, where: str) -> tuple[int, ...]:
    """The shape of ``rows`` rows of one scalar each, for an input such as ``[-1, 1]``."""
    rest = [d for d in spec.shape[1:]]
    if any(d not in (1, -1) for d in rest):
        raise ValueError(
            f"{where}input {spec.name!r} has shape {list(spec.shape)}: a single column cannot fill it; "
            f"pass a dict {{{spec.name!r}: array}} with that shape"
        )
    return (rows, *[1 for _ in rest])


def bind_inputs(specs: Sequence[TensorSpec], data: Any, *, where: str = "") -> dict[str, np.ndarray]:
    """Maps a caller's data to the model's inputs, in the model's order, each cast to the
    input's datatype.

    ``data`` is a pandas DataFrame (one column per input, matched by name; or the whole
    frame when the model has a single tensor input that is not one of its columns), a dict
    ``{input name: array}``, or an array (the single input's tensor; for a model with one
    ``[-1, 1]`` input per column, the columns in the model's input order).
    """
    names = [s.name for s in specs]
    arrays: dict[str, Any]
    if is_dataframe(data):
        columns = [str(c) for c in data.columns]
        if len(specs) == 1 and specs[0].name not in columns:
            arrays = {specs[0].name: data.to_numpy()}
        else:
            missing = [n for n in names if n not in columns]
            if missing:
                raise ValueError(
                    f"{where}the model's inputs are {names}; the DataFrame has no column {missing[0]!r} "
                    f"(its columns: {columns})"
                )
            by_name = dict(zip(columns, data.columns))
            arrays = {}
            for spec in specs:
                column = np.asarray(data[by_name[spec.name]].to_numpy())
                arrays[spec.name] = column.reshape(_rows_shape(spec, len(column), where))
    elif isinstance(data, Mapping):
        unknown = [k for k in data if k not in names]
        if unknown:
            raise ValueError(f"{where}unknown input {unknown[0]!r}: the model's inputs are {names}")
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"{where}missing input {missing[0]!r}: the model's inputs are {names}")
        arrays = {n: _as_array(data[n]) for n in names}
    else:
        array = _as_array(data)
        if len(specs) == 1:
            arrays = {specs[0].name: array}
        elif array.ndim == 2 and array.shape[1] == len(specs):
            arrays = {
                spec.name: array[:, j].reshape(_rows_shape(spec, array.shape[0], where))
                for j, spec in enumerate(specs)
            }
        else:
            raise ValueError(
                f"{where}the model has {len(specs)} inputs {names}: pass a DataFrame with these columns, "
                f"a dict {{name: array}}, or a 2-D array with {len(specs)} columns in this order"
            )
    return {spec.name: cast(arrays[spec.name], spec, where=where) for spec in specs}


def _as_array(value: Any) -> np.ndarray:
    """An array from a numpy array, a list, a pandas object or a CPU torch tensor."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    elif hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value)


def cast(array: np.ndarray, spec: TensorSpec, *, where: str = "") -> np.ndarray:
    """``array`` as the input's datatype; refuses conversions that would change values
    (fractions or NaN into integers, numbers into strings)."""
    what = f"{where}input {spec.name!r} ({spec.datatype})"
    kind = array.dtype.kind
    if spec.datatype == "BYTES":
        if kind not in "OUS":
            raise ValueError(f"{what} takes strings; got {array.dtype} values")
        return array.astype(object)
    if spec.datatype == "BF16":
        return _as_float(array, np.dtype(np.float32), what)
    target = NUMPY.get(spec.datatype)
    if target is None:
        raise ValueError(f"{what}: unknown datatype")
    if kind in "OUS":
        raise ValueError(f"{what} takes numbers; got strings or objects ({array.dtype})")
    if target.kind == "b":
        if kind == "b":
            return array.astype(bool)
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"{what} takes booleans; got values other than 0 and 1")
        return array.astype(bool)
    if target.kind in "iu":
        if kind == "f":
            if not np.isfinite(array).all() or not (array == np.round(array)).all():
                raise ValueError(f"{what} takes integers; got fractions, NaN or infinity")
        info = np.iinfo(target)
        if array.size and kind in "iuf" and (array.min() < info.min or array.max() > info.max):
            raise ValueError(f"{what}: values out of range for {spec.datatype}")
        return array.astype(target)
    return _as_float(array, target, what)


def _as_float(array: np.ndarray, target: np.dtype, what: str) -> np.ndarray:
    try:
        return array.astype(target)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what}: cannot convert {array.dtype} values: {err}") from err


def _bf16_bytes(array: np.ndarray) -> bytes:
    """float32 values rounded to bfloat16 (nearest, ties to even), little-endian."""
    bits = np.ascontiguousarray(array, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
    return rounded.tobytes()


def _raw(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        out = bytearray()
        for item in array.reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode("utf-8")
            out += struct.pack("<I", len(data)) + data
        return bytes(out)
    if datatype == "BF16":
        return _bf16_bytes(array)
    return np.ascontiguousarray(array, dtype=NUMPY[datatype]).tobytes()


def _json_data(array: np.ndarray, datatype: str, nan_as_strings: bool) -> list[Any] | None:
    """Flat JSON values, or None when the tensor cannot travel as JSON exactly (NaN and
    infinity are the strings "NaN", "Infinity", "-Infinity" with ``nan_as_strings``)."""
    flat = array.reshape(-1)
    if datatype == "BYTES":
        out = []
        for item in flat:
            if isinstance(item, bytes):
                try:
                    out.append(item.decode("utf-8"))
                except UnicodeDecodeError:
                    return None
            else:
                out.append(str(item))
        return out
    if datatype in ("FP16", "FP32", "FP64", "BF16"):
        values = flat.astype(np.float64)
        if np.isfinite(values).all():
            if flat.dtype.itemsize < 8:  # the shortest text that reads back as the same float32
                return [float(str(v)) for v in flat]
            return values.tolist()
        if not nan_as_strings:
            return None
        return [v if np.isfinite(v) else ("NaN" if np.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
                for v in values.tolist()]
    return flat.tolist()


def encode_request(
    inputs: Mapping[str, np.ndarray],
    datatypes: Mapping[str, str],
    *,
    binary: bool | None = None,
    outputs: Sequence[str] | None = None,
    nan_as_strings: bool = False,
) -> tuple[bytes, dict[str, str]]:
    """A V2 inference request body and its headers. ``binary=None`` chooses the binary
    tensor extension for large tensors and for floats that JSON cannot carry (NaN,
    infinity, unless ``nan_as_strings`` sends them as JSON strings); answers then come
    back binary too."""
    if binary is None:
        size = sum(a.nbytes if a.dtype.kind != "O" else a.size * 16 for a in inputs.values())
        binary = size >= BINARY_THRESHOLD
    entries = []
    blobs = []
    for name, array in inputs.items():
        datatype = datatypes[name]
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        data = None if binary else _json_data(array, datatype, nan_as_strings)
        if data is None:
            binary = True
        entries.append((entry, array, datatype, data))
    body: dict[str, Any] = {"inputs": []}
    for entry, array, datatype, data in entries:
        if binary:
            raw = _raw(array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = data
        body["inputs"].append(entry)
    if outputs:
        body["outputs"] = [{"name": o} for o in outputs]
    if binary:
        body["parameters"] = {"binary_data_output": True}
    head = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if not binary:
        return head, {"Content-Type": "application/json"}
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    return head + b"".join(blobs), headers


def _parse_bytes(raw: bytes, count: int, name: str) -> np.ndarray:
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > len(raw):
            raise ValueError(f"output {name!r}: binary BYTES data ends early")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        item = raw[offset : offset + length]
        offset += length
        try:
            out[i] = item.decode("utf-8")
        except UnicodeDecodeError:
            out[i] = item
    return out


def _from_raw(raw: bytes, datatype: str, shape: Sequence[int], name: str) -> np.ndarray:
    count = int(np.prod(shape)) if shape else 1
    if datatype == "BYTES":
        return _parse_bytes(raw, count, name).reshape(shape)
    if datatype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    dtype = NUMPY.get(datatype)
    if dtype is None:
        raise ValueError(f"output {name!r}: unknown datatype {datatype}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _from_json(data: Any, datatype: str, shape: Sequence[int]) -> np.ndarray:
    if datatype == "BYTES":
        return np.array(np.asarray(data, dtype=object).reshape(-1), dtype=object).reshape(shape)
    if datatype in ("FP16", "FP32", "FP64", "BF16"):
        flat = np.asarray(data, dtype=object).reshape(-1)
        values = [(_NON_FINITE[v] if isinstance(v, str) else v) for v in flat]
        dtype = np.float32 if datatype == "BF16" else NUMPY[datatype]
        return np.asarray(values, dtype=dtype).reshape(shape)
    return np.asarray(data, dtype=NUMPY[datatype]).reshape(shape)


def decode_response(body: bytes, json_len: int | None) -> dict[str, np.ndarray]:
    """The outputs of a V2 inference response, by name, in the response's order."""
    return decode_response_and_parameters(body, json_len)[0]


def decode_response_and_parameters(
    body: bytes, json_len: int | None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The outputs of a V2 inference response (see :func:`decode_response`) and the
    response's own ``parameters`` (routing, outlier scores)."""
    head = body if json_len is None else body[:json_len]
    rest = b"" if json_len is None else body[json_len:]
    document = json.loads(head)
    outputs: dict[str, np.ndarray] = {}
    offset = 0
    for output in document.get("outputs", []):
        name, datatype, shape = output["name"], output["datatype"], output.get("shape", [])
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            outputs[name] = _from_raw(rest[offset : offset + int(size)], datatype, shape, name)
            offset += int(size)
        else:
            outputs[name] = _from_json(output.get("data", []), datatype, shape)
    return outputs, dict(document.get("parameters") or {})
