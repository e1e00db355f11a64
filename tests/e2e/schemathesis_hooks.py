"""Schemathesis hooks for Palisade's OpenAPI document (tests/e2e/test_openapi.py).

JSON Schema cannot say that a tensor's `data` holds as many elements as its `shape`
multiplies to, which dimensions the model fixes, that `inputs` names each of the model's
inputs exactly once and `outputs` each output at most once, nor that a `model_version` in the
body is the version the path serves (the schema's descriptions say all four, and the server
answers 400 when a request breaks them). For *positive* cases only (schema-valid requests, which the server
must accept), this hook makes each generated request obey those rules, using the model's own
metadata: the first tensor (and requested output) of each name is kept, dynamic dimensions take a small batch size
drawn from the generated shape, and the generated elements are repeated or cut to the right
count. Negative cases are never touched, so nothing that should be refused is made
acceptable.
"""

import json
import os
import urllib.request

import schemathesis

_SIGNATURES = {}


def _signature(base, model):
    """The model's inputs from `GET /v2/models/{model}` (name -> shape with -1)."""
    if model not in _SIGNATURES:
        req = urllib.request.Request(f"{base}/v2/models/{model}")
        req.add_header("Authorization", f"Bearer {os.environ['PALISADE_SCHEMATHESIS_TOKEN']}")
        with urllib.request.urlopen(req, timeout=10) as res:
            meta = json.load(res)
        _SIGNATURES[model] = {i["name"]: i["shape"] for i in meta["inputs"]}
    return _SIGNATURES[model]


def _flatten(data):
    out = []
    for item in data:
        if isinstance(item, list):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def _fit(values, count, filler):
    """`values` repeated or cut to exactly `count` elements."""
    if count == 0:
        return []
    if not values:
        values = [filler]
    return [values[i % len(values)] for i in range(count)]


def _shape_for(model_shape, drawn):
    shape = []
    for i, dim in enumerate(model_shape):
        if dim >= 0:
            shape.append(dim)
        else:
            pick = drawn[i] if i < len(drawn) and isinstance(drawn[i], int) else 1
            shape.append(1 + pick % 3)
    return shape


def _product(shape):
    n = 1
    for d in shape:
        n *= d
    return n


@schemathesis.hook
def map_case(ctx, case):
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return case
    path = case.operation.path
    base = os.environ["PALISADE_SCHEMATHESIS_BASE"]
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "v2" and parts[1] == "models" and parts[-1] == "infer":
        signature = _signature(base, parts[2])
        seen = set()
        kept = []
        for tensor in case.body.get("inputs") or []:
            if isinstance(tensor, dict) and tensor.get("name") not in seen:
                seen.add(tensor.get("name"))
                kept.append(tensor)
        case.body["inputs"] = kept
        # `model_version`, when given, must be the version the path serves (the route
        # chooses the model; the body may only agree with it).
        version = case.body.get("model_version")
        if isinstance(version, str) and version:
            path_version = (case.path_parameters or {}).get("version")
            if path_version:
                case.body["model_version"] = path_version
            else:
                del case.body["model_version"]
        if isinstance(case.body.get("outputs"), list):
            named = set()
            wanted = []
            for output in case.body["outputs"]:
                if isinstance(output, dict) and output.get("name") not in named:
                    named.add(output.get("name"))
                    wanted.append(output)
            case.body["outputs"] = wanted
        for tensor in kept:
            model_shape = signature.get(tensor.get("name"))
            if model_shape is None or not isinstance(tensor.get("data"), list):
                continue
            shape = _shape_for(model_shape, tensor.get("shape") or [])
            flat = _flatten(tensor["data"])
            tensor["shape"] = shape
            tensor["data"] = _fit(flat, _product(shape), 0)
    elif parts[0] == "seldon" and len(parts) >= 5:
        # /seldon/{namespace}/{model}/api/v1.0/predictions or /seldon/{model}/api/v1.0/predictions
        model = parts[2] if len(parts) == 6 else parts[1]
        data = case.body.get("data") or {}
        tensor = data.get("tensor")
        if isinstance(tensor, dict) and isinstance(tensor.get("values"), list):
            (model_shape,) = _signature(base, model).values()
            shape = _shape_for(model_shape, tensor.get("shape") or [])
            tensor["shape"] = shape
            tensor["values"] = _fit(tensor["values"], _product(shape), 0)
    return case
