#!/usr/bin/env python3
"""Regenerate ort_random.json: random tree ensembles and onnxruntime's outputs for them.

Run with the fixtures virtualenv (it has onnx and onnxruntime):

    .venv/fixtures/bin/python crates/onnx-ml/tests/golden/generate.py

Each case is a TreeEnsembleClassifier or TreeEnsembleRegressor node with random
structure (contiguous trees, true children shared with the false subtree now and
then), every branch mode, missing-value tracking, every post-transform and aggregate,
base values, and input rows that include NaN and values equal to thresholds. All f32
values are stored as their bit patterns (u32), so the Rust test compares exactly.

Cases where onnxruntime leaves an output uninitialized or deliberately differs from
Palisade (see palisade-onnx-ml's crate docs) are not generated: 2-class models with
PROBIT, or with a single base value unless one class id carries every weight.
"""

import json
import pathlib
import random

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

OUT = pathlib.Path(__file__).resolve().parent / "ort_random.json"
SEED = 20240611
MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
TRANSFORMS = ["NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT"]
AGGREGATES = ["SUM", "AVERAGE", "MIN", "MAX"]
N_FEATURES = 4
N_ROWS = 24
GRID = [-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0]


def bits(values):
    return [int(v) for v in np.asarray(values, dtype=np.float32).view(np.uint32)]


def random_trees(rng, n_columns, weight_every_leaf, mode_pool):
    nodes = {k: [] for k in ["treeids", "nodeids", "featureids", "values", "modes", "truenodeids",
                             "falsenodeids", "missing"]}
    leaves = {k: [] for k in ["treeids", "nodeids", "ids", "weights"]}
    for tree in range(rng.randint(1, 12)):
        # A random binary tree, ids in preorder; children as [false, true] or None.
        children = []

        def build(depth):
            me = len(children)
            children.append(None)
            if depth < 6 and rng.random() < 0.65 - 0.08 * depth:
                children[me] = [build(depth + 1), build(depth + 1)]
            return me

        build(0)

        def subtree(v):
            out = [v]
            if children[v]:
                out += subtree(children[v][0]) + subtree(children[v][1])
            return out

        # Now and then a true child is redirected into the false subtree (a DAG, as
        # LightGBM exports produce). The former true subtree is then dropped: onnxruntime
        # attaches the weights of unreachable leaves to the wrong node.
        for v, c in enumerate(children):
            if c and rng.random() < 0.1:
                c[1] = rng.choice(subtree(c[0]))
        reachable = sorted(set(subtree(0)))
        renumber = {old: new for new, old in enumerate(reachable)}
        children = [
            [renumber[c[0]], renumber[c[1]]] if c else None
            for c in (children[old] for old in reachable)
        ]
        for i, c in enumerate(children):
            nodes["treeids"].append(tree)
            nodes["nodeids"].append(i)
            nodes["featureids"].append(rng.randrange(N_FEATURES))
            nodes["values"].append(rng.choice(GRID) if rng.random() < 0.7 else rng.uniform(-1, 1))
            nodes["missing"].append(1 if rng.random() < 0.3 else 0)
            if c:
                nodes["modes"].append(rng.choice(mode_pool))
                nodes["falsenodeids"].append(c[0])
                nodes["truenodeids"].append(c[1])
                continue
            nodes["modes"].append("LEAF")
            nodes["truenodeids"].append(0)
            nodes["falsenodeids"].append(0)
            n_weights = rng.choice([1, 1, 1, 2, 3]) if weight_every_leaf else rng.choice([0, 1, 1, 2])
            for _ in range(n_weights):
                leaves["treeids"].append(tree)
                leaves["nodeids"].append(i)
                leaves["ids"].append(rng.randrange(n_columns))
                leaves["weights"].append(round(rng.uniform(-1, 1.5), 3))
    return nodes, leaves


def attributes(nodes, leaves, prefix):
    a = dict(
        nodes_treeids=nodes["treeids"], nodes_nodeids=nodes["nodeids"], nodes_featureids=nodes["featureids"],
        nodes_values=nodes["values"], nodes_modes=nodes["modes"], nodes_truenodeids=nodes["truenodeids"],
        nodes_falsenodeids=nodes["falsenodeids"], nodes_missing_value_tracks_true=nodes["missing"],
        nodes_hitrates=[1.0] * len(nodes["treeids"]),
    )
    a[f"{prefix}_treeids"] = leaves["treeids"]
    a[f"{prefix}_nodeids"] = leaves["nodeids"]
    a[f"{prefix}_ids"] = leaves["ids"]
    a[f"{prefix}_weights"] = leaves["weights"]
    return a


def run(op, attrs, x, label_type):
    inp = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, N_FEATURES])
    if op == "TreeEnsembleClassifier":
        outs = [helper.make_tensor_value_info("Y", label_type, [None]),
                helper.make_tensor_value_info("Z", TensorProto.FLOAT, [None, None])]
    else:
        outs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, None])]
    node = helper.make_node(op, ["X"], [o.name for o in outs], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph([node], "g", [inp], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x})


def rows(rng):
    x = np.empty((N_ROWS, N_FEATURES), dtype=np.float32)
    for r in range(N_ROWS):
        for f in range(N_FEATURES):
            p = rng.random()
            x[r, f] = np.nan if p < 0.1 else (rng.choice(GRID) if p < 0.5 else rng.uniform(-1.2, 1.2))
    return x


def main():
    rng = random.Random(SEED)
    cases = []
    for k in range(60):
        x = rows(rng)
        mode_pool = [rng.choice(MODES)] if rng.random() < 0.5 else MODES
        transform = rng.choice(TRANSFORMS)
        if k % 2 == 0:
            n_classes = rng.choice([2, 2, 3, 4])
            strings = rng.random() < 0.3
            base_kind = rng.choice(["none", "full", "one"])
            if n_classes == 2 and transform == "PROBIT":
                transform = "LOGISTIC"
            nodes, leaves = random_trees(rng, n_classes, base_kind == "none" and n_classes > 2, mode_pool)
            if not leaves["ids"]:
                continue
            single_id = len(set(leaves["ids"])) == 1
            if base_kind == "one" and not (n_classes == 2 and single_id):
                base_kind = "full"
            base = {"none": [], "full": [round(rng.uniform(-0.5, 0.5), 3) for _ in range(n_classes)],
                    "one": [round(rng.uniform(-0.5, 0.5), 3)]}[base_kind]
            attrs = attributes(nodes, leaves, "class")
            if strings:
                labels = [f"class{c}" for c in range(n_classes)]
                attrs["classlabels_strings"] = labels
            else:
                labels = [0, 1] if n_classes == 2 else [10 * (c + 1) for c in range(n_classes)]
                attrs["classlabels_int64s"] = labels
            if base:
                attrs["base_values"] = base
            attrs["post_transform"] = transform
            y, z = run("TreeEnsembleClassifier", attrs, x,
                       TensorProto.STRING if strings else TensorProto.INT64)
            label_index = [labels.index(v if not strings else str(v)) for v in y.tolist()]
            case = {"op": "classifier", "class_labels": labels, "strings": strings,
                    "expected_labels": label_index, "expected_scores": bits(z.reshape(-1))}
        else:
            n_targets = rng.choice([1, 1, 2, 3])
            aggregate = rng.choice(AGGREGATES)
            base = [round(rng.uniform(-0.5, 0.5), 3) for _ in range(n_targets)] if rng.random() < 0.5 else []
            nodes, leaves = random_trees(rng, n_targets, False, mode_pool)
            if not leaves["ids"]:
                continue
            attrs = attributes(nodes, leaves, "target")
            attrs.update(n_targets=n_targets, aggregate_function=aggregate, post_transform=transform)
            if base:
                attrs["base_values"] = base
            (y,) = run("TreeEnsembleRegressor", attrs, x, None)
            case = {"op": "regressor", "n_targets": n_targets, "aggregate_function": aggregate,
                    "expected_values": bits(y.reshape(-1))}
        case.update(
            post_transform=transform,
            base_values=bits(base),
            nodes_treeids=nodes["treeids"], nodes_nodeids=nodes["nodeids"],
            nodes_featureids=nodes["featureids"], nodes_values=bits(nodes["values"]),
            nodes_modes=nodes["modes"], nodes_truenodeids=nodes["truenodeids"],
            nodes_falsenodeids=nodes["falsenodeids"], nodes_missing_value_tracks_true=nodes["missing"],
            leaf_treeids=leaves["treeids"], leaf_nodeids=leaves["nodeids"], leaf_ids=leaves["ids"],
            leaf_weights=bits(leaves["weights"]),
            n_features=N_FEATURES, rows=bits(x.reshape(-1)),
        )
        cases.append(case)
    meta = {"onnxruntime": ort.__version__, "seed": SEED, "cases": cases}
    OUT.write_text(json.dumps(meta, separators=(",", ":")) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
