#!/usr/bin/env python3
"""Per-call instruction counts of the functions of a graph hop, from two callgrind runs of
the same bench binary (a short and a long one), so that set-up cancels:

    per call = (inclusive Ir, long run - short run) / (calls, long run - short run)

Usage (see BENCHMARKS.md, "What a hop repeats"):
    B=$(cargo bench -p palisade-server --bench graph_hops --no-run 2>&1 | sed -n 's/.*(\\(.*graph_hops-[0-9a-f]*\\)).*/\\1/p')
    for t in 15 45; do valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file=mean.$t.out \\
        "$B" --bench mean --profile-time $t; done
    bench/callgrind_per_call.py mean.15.out mean.45.out

Functions named after the two files replace the default list (a graph hop's), e.g.
    bench/callgrind_per_call.py if.2.out if.6.out palisade_explain::isolation_forest::IsolationForest::score_samples
"""
import re
import subprocess
import sys

FUNCTIONS = [
    "palisade_server::graphs::Caller::of",
    "palisade_server::graphs::Hops::new",
    "palisade_server::graphs::Hops::authorize",
    "palisade_server::graphs::Hops::record",
    "palisade_server::metrics::Metrics::observe_hop",
    "palisade_server::layers::audit::caller_fields",
    "palisade_server::layers::audit::model_info",
    "palisade_server::layers::audit::authz_of",
    "palisade_policy::eval::PolicySet::evaluate",
    "palisade_server::metrics::Metrics::observe_decision",
    "palisade_server::graphs::run::{{closure}}",
    "graph_hops::bench::{{closure}}::{{closure}}",
]
CALL = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+> +(\S+?)(?: \[[^\]]*\])? \(([\d,]+)x\)")


def calls(path):
    """Inclusive Ir and calls per function, summed over its callers."""
    tree = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--tree=calling", "--threshold=100", path],
        capture_output=True, text=True, check=True,
    ).stdout
    found = {}
    for line in tree.splitlines():
        m = CALL.match(line)
        if m:
            name = m.group(2).split(":", 1)[-1]
            ir, n = found.get(name, (0, 0))
            found[name] = (ir + int(m.group(1).replace(",", "")), n + int(m.group(3).replace(",", "")))
    return found


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    short, long = calls(sys.argv[1]), calls(sys.argv[2])
    for name in sys.argv[3:] or FUNCTIONS:
        (ir0, n0), (ir1, n1) = short.get(name, (0, 0)), long.get(name, (0, 0))
        if n1 > n0:
            print(f"{name:60s} calls {n0:5d} -> {n1:5d}  per call {(ir1 - ir0) / (n1 - n0):9.0f}")


if __name__ == "__main__":
    main()
