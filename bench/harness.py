#!/usr/bin/env python3
"""Measurement and reporting helpers of the benchmark harness (bench/run.sh).

Standard library only, so it runs on the system Python. Results are JSON lines in one
file (`--results`), one object per line with a `kind`:

  meta    facts about the run (machine, versions, settings), merged together
  cell    one measured load cell: a server, a model, a protocol, a connection count
  server  memory of one server process tree (idle before load, idle after it)
  skip    a row that could not be measured, with the reason

Subcommands:
  free-port                  print a free TCP port on 127.0.0.1
  stats --pid P              print the RSS and CPU seconds of P and its descendants
  meta --results F K=V ...   record facts
  cell ...                   run one load cell (wrk for REST, the gRPC load generator for
                             gRPC) with a warm-up, and record throughput, latency, the
                             server's CPU time per request and its RSS
  server ...                 record a server's RSS at a phase (idle, after)
  skip ...                   record a row that was skipped
  report --results F ...     write the markdown section (into BENCHMARKS.md between the
                             markers, or as a file of its own)
  check FILE                 parse a written section; exit 1 if it is malformed, holds
                             no measured row, or reports errors
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import socket
import statistics
import subprocess
import sys
import time

BEGIN = "<!-- bench:begin (written by bench/run.sh; edits between these markers are replaced) -->"
END = "<!-- bench:end -->"
TICKS = os.sysconf("SC_CLK_TCK")

SCENARIOS = {
    "ceiling": "bare hyper, 200 OK (ceiling)",
    "palisade": "Palisade, full security",
    "palisade-audit-off": "Palisade, JWT + policy, audit off",
    "palisade-insecure": "Palisade, security off",
    "bentoml": "BentoML (no security)",
    "mlserver": "MLServer (no security)",
    "pytriton": "Triton via PyTriton, onnxruntime (no security)",
    "pytriton-batching": "Triton via PyTriton, onnxruntime, dynamic batching (no security)",
    "kserve": "KServe ModelServer, onnxruntime, 1 worker (no security)",
    "kserve-2w": "KServe ModelServer, onnxruntime, 2 workers (no security)",
    "bentoml-onnx": "BentoML, onnxruntime, 1 worker (no security)",
    "bentoml-onnx-2w": "BentoML, onnxruntime, 2 workers (no security)",
    "rayserve": "Ray Serve, onnxruntime, 1 replica (no security)",
}
ORDER = list(SCENARIOS)
# Rows that are Palisade itself or no server at all; every other scenario is a peer.
NOT_PEERS = {"ceiling", "palisade", "palisade-audit-off", "palisade-insecure"}
MODELS = ["ceiling", "iris-rf", "iris-lr", "iris-mlp", "iris-mlp-batched"]
RESULT_HEADER = [
    "server",
    "model",
    "protocol",
    "connections",
    "req/s",
    "p50 (µs)",
    "p99 (µs)",
    "server CPU (µs/req)",
    "vs ceiling",
    "errors",
    "runs",
    "req/s spread",
    "load (1 min)",
]


# ---------------------------------------------------------------- process statistics


def _stat(pid):
    """(ppid, cpu seconds including reaped children) of one process, or None if gone."""
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / TICKS


def _rss_kb(pid):
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(root):
    """The PIDs of root and all its live descendants."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents[int(entry)] = stat[0]
    pids, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        pids.extend(children)
        frontier.extend(children)
    return pids


def stats(root):
    """RSS (KiB) and CPU seconds of root and its descendants, and how many processes."""
    rss, cpu, alive = 0, 0.0, 0
    for pid in tree(root):
        stat = _stat(pid)
        if stat is None:
            continue
        alive += 1
        cpu += stat[1]
        rss += _rss_kb(pid)
    return {"rss_kb": rss, "cpu_s": cpu, "processes": alive}


# ---------------------------------------------------------------- recording


def append(results, obj):
    with open(results, "a") as f:
        f.write(json.dumps(obj) + "\n")


def load(results):
    rows = []
    for n, line in enumerate(pathlib.Path(results).read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                sys.exit(f"harness.py: {results}:{n}: not JSON: {err}")
    return rows


def run_wrk(args, duration, env):
    threads = max(1, min(args.connections, args.wrk_threads))
    # wrk takes whole seconds only.
    seconds = max(1, round(_seconds(duration)))
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(pathlib.Path(__file__).resolve().parent / "wrk.lua"),
        args.url,
    ]
    env = {**env, "BENCH_BODY_FILE": args.body_file or ""}
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=_seconds(duration) + 60)
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH_RESULT ")), None)
    if out.returncode != 0 or line is None:
        sys.exit(f"harness.py: wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    raw = json.loads(line.removeprefix("BENCH_RESULT "))
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "errors": sum(raw["errors"].values()),
        "error_kinds": {k: v for k, v in raw["errors"].items() if v},
        "rps": raw["requests"] / seconds if seconds else 0.0,
        "p50_us": raw["p50_us"],
        "p90_us": raw["p90_us"],
        "p99_us": raw["p99_us"],
        "max_us": raw["max_us"],
        "mean_us": raw["mean_us"],
    }


def run_loadgen(args, duration, env):
    command = [
        args.loadgen,
        "--addr",
        args.grpc_addr,
        "--model",
        args.model,
        "--connections",
        str(args.connections),
        "--duration",
        duration,
        "--warmup",
        "0s",
        "--threads",
        str(args.wrk_threads),
    ]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=_seconds(duration) + 60)
    if out.returncode != 0:
        sys.exit(f"harness.py: the gRPC load generator failed ({out.returncode}): {out.stderr.strip()}")
    raw = json.loads(out.stdout.strip().splitlines()[-1])
    # wrk counts a request that completes with a non-2xx/3xx status as an error but still
    # in its request count; here failed calls are only in `errors`.
    return {
        "requests": raw["requests"] + raw["errors"],
        "errors": raw["errors"],
        "error_kinds": raw["error_codes"],
        "rps": (raw["requests"] + raw["errors"]) / raw["duration_s"] if raw["duration_s"] else 0.0,
        "p50_us": raw["p50_us"],
        "p90_us": raw["p90_us"],
        "p99_us": raw["p99_us"],
        "max_us": raw["max_us"],
        "mean_us": raw["mean_us"],
    }


def _seconds(text):
    match = re.fullmatch(r"([0-9.]+)(ms|s|m)?", text)
    if not match:
        sys.exit(f"harness.py: `{text}` is not a duration such as 10s, 500ms or 1m")
    value = float(match.group(1))
    return value * {"ms": 1e-3, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]


def load_gate(bound, wait):
    """Waits until the 1-minute load average is below `bound` (0: no gate), at most `wait`
    seconds. Returns (seconds waited, the load average then, whether it is still at or above
    the bound: the cell then runs anyway and is marked as loaded)."""
    start = time.monotonic()
    while True:
        load1 = os.getloadavg()[0]
        waited = time.monotonic() - start
        if bound <= 0 or load1 < bound:
            return waited, load1, False
        if waited >= wait:
            return waited, load1, True
        time.sleep(min(5.0, max(0.1, wait - waited)))


def cmd_cell(args):
    env = dict(os.environ)
    runner = run_wrk if args.protocol == "rest" else run_loadgen
    waited, load_start, loaded = load_gate(args.load_gate, _seconds(args.load_wait))
    if args.load_gate > 0:
        state = f"still {load_start:.2f}, measured as loaded" if loaded else f"{load_start:.2f}"
        print(f"  load gate: waited {waited:.0f} s for the 1-minute load average below {args.load_gate:g} ({state})", flush=True)
    if _seconds(args.warmup) > 0:
        runner(args, args.warmup, env)
    before = stats(args.pid)
    measured = runner(args, args.duration, env)
    after = stats(args.pid)
    load_end = os.getloadavg()[0]
    if after["processes"] == 0:
        sys.exit(f"harness.py: the {args.scenario} server (pid {args.pid}) died during the run")
    cpu = after["cpu_s"] - before["cpu_s"]
    row = {
        "kind": "cell",
        "scenario": args.scenario,
        "model": args.model,
        "protocol": args.protocol,
        "connections": args.connections,
        "duration": args.duration,
        **measured,
        "server_cpu_s": cpu,
        "cpu_us_per_req": cpu / measured["requests"] * 1e6 if measured["requests"] else None,
        "rss_kb_under_load": after["rss_kb"],
        "load_start": load_start,
        "load_end": load_end,
        "load_gate": args.load_gate,
        "gate_waited_s": waited,
        "loaded": loaded,
    }
    append(args.results, row)
    flag = f"  ERRORS {measured['error_kinds']}" if measured["errors"] else ""
    print(
        f"  {args.scenario:<20} {args.model:<16} {args.protocol:<4} c={args.connections:<3} "
        f"{measured['rps']:>10.0f} req/s  p50 {measured['p50_us']:>8.0f} µs  p99 {measured['p99_us']:>8.0f} µs{flag}",
        flush=True,
    )


def cmd_server(args):
    s = stats(args.pid)
    if s["processes"] == 0:
        sys.exit(f"harness.py: the {args.scenario} server (pid {args.pid}) is not running")
    append(args.results, {"kind": "server", "scenario": args.scenario, "phase": args.phase, **s})


def cmd_skip(args):
    append(
        args.results,
        {"kind": "skip", "scenario": args.scenario, "what": args.what, "reason": args.reason},
    )
    print(f"  skipped: {SCENARIOS.get(args.scenario, args.scenario)}: {args.what}: {args.reason}", flush=True)


def cmd_meta(args):
    facts = {}
    for item in args.facts:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"harness.py: meta: `{item}` is not KEY=VALUE")
        facts[key] = value
    append(args.results, {"kind": "meta", **facts})


# ---------------------------------------------------------------- same answer as onnxruntime

# Iris rows the answer check sends, one per request: a setosa, versicolors and virginicas,
# among them those where the forest's votes are split (probabilities between 0.25 and 0.75).
AGREE_ROWS = [0, 57, 70, 77, 83, 106, 119, 133]
PROBABILITY_TOLERANCE = 1e-5


def _flat(value):
    if isinstance(value, list):
        return [x for v in value for x in _flat(v)]
    return [value]


def parse_answer(doc):
    """(labels, probabilities or None) from a server's JSON answer to one row.

    Understands V2 responses (`outputs`, the label output named `label` or alone, as the
    scikit-learn peers answer), `{"label": ..., "probabilities": ...}` and a bare list of labels.
    """
    if isinstance(doc, list):
        return [int(v) for v in _flat(doc)], None
    if not isinstance(doc, dict):
        raise ValueError(f"not a JSON object or list: {str(doc)[:200]}")
    if "outputs" in doc:
        outputs = {o.get("name"): o for o in doc["outputs"]}
        label = outputs.get("label") or (next(iter(outputs.values())) if len(outputs) == 1 else None)
        if label is None:
            raise ValueError(f"no `label` output among {sorted(outputs)}")
        probabilities = outputs.get("probabilities")
        return (
            [int(v) for v in _flat(label["data"])],
            [float(v) for v in _flat(probabilities["data"])] if probabilities else None,
        )
    if "label" in doc:
        probabilities = doc.get("probabilities")
        return [int(v) for v in _flat(doc["label"])], (
            [float(v) for v in _flat(probabilities)] if probabilities is not None else None
        )
    raise ValueError(f"no outputs in the answer: {json.dumps(doc)[:200]}")


def _post(url, body, token, timeout=10):
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def cmd_agree(args):
    """Sends AGREE_ROWS one by one and compares the answers with onnxruntime's reference
    outputs of the same ONNX file (and with Palisade's answers, when this run has them)."""
    iris = json.loads(pathlib.Path(args.iris).read_text())["rows"]
    expected = json.loads(pathlib.Path(args.expected).read_text())
    token = os.environ.get("BENCH_TOKEN")
    reference, reference_name = {}, None
    for row in load(args.results) if pathlib.Path(args.results).exists() else []:
        if row["kind"] == "agree" and row.get("ok") and row["scenario"].startswith("palisade"):
            reference = {int(k): v for k, v in row["answers"].items()}
            reference_name = row["scenario"]
            break
    answers, problems, max_diff = {}, [], 0.0
    for index in AGREE_ROWS:
        features = iris[index]
        if args.format == "v2":
            body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": features}]}
        else:
            body = {"input_data": [features]}
        try:
            labels, probabilities = parse_answer(_post(args.url, body, token))
        except Exception as err:  # any failure to get or read an answer is a disagreement
            problems.append(f"row {index}: no usable answer ({type(err).__name__}: {err})")
            continue
        answers[index] = {"label": labels, "probabilities": probabilities}
        want_label, want_p = expected["label"][index], expected["probabilities"][index]
        if labels != [want_label]:
            problems.append(f"row {index}: label {labels}, onnxruntime says [{want_label}]")
        if probabilities is None:
            if args.need_probabilities:
                problems.append(f"row {index}: no probabilities in the answer")
        elif len(probabilities) != len(want_p):
            problems.append(f"row {index}: {len(probabilities)} probabilities, onnxruntime gives {len(want_p)}")
        else:
            diff = max(abs(a - b) for a, b in zip(probabilities, want_p))
            max_diff = max(max_diff, diff)
            if diff > PROBABILITY_TOLERANCE:
                problems.append(f"row {index}: probabilities {probabilities}, onnxruntime {want_p}")
        theirs = reference.get(index)
        if theirs and theirs["label"] != labels:
            problems.append(f"row {index}: label {labels}, {reference_name} says {theirs['label']}")
    ok = not problems
    append(
        args.results,
        {
            "kind": "agree",
            "scenario": args.scenario,
            "rows": AGREE_ROWS,
            "ok": ok,
            "max_probability_diff": max_diff,
            "compared_probabilities": any(a["probabilities"] is not None for a in answers.values()),
            "problems": problems,
            "answers": {str(k): v for k, v in answers.items()},
        },
    )
    what = "labels and probabilities" if any(a["probabilities"] is not None for a in answers.values()) else "labels"
    if ok:
        print(
            f"  answers: {args.scenario}: {what} of iris rows {','.join(map(str, AGREE_ROWS))} equal onnxruntime's"
            f" (largest probability difference {max_diff:.1e})",
            flush=True,
        )
    else:
        print(f"harness.py: {args.scenario} answers differently from onnxruntime: {problems[0]}", file=sys.stderr)
        sys.exit(1)


# ---------------------------------------------------------------- report


def machine():
    """Facts about this machine, for the report."""
    facts = {"nproc": os.cpu_count(), "kernel": platform.release()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "Hypervisor vendor", "Thread(s) per core"):
                facts[key.strip()] = value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            facts["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    try:
        for line in pathlib.Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                facts["os"] = line.partition("=")[2].strip('"')
    except OSError:
        pass
    facts["load average at report"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return facts


def _fmt(value, digits=0):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def aggregate(cells):
    """One row per (server, model, protocol, connections): medians of the repeated cells,
    with the spread of their req/s and the load average each started at."""
    groups = {}
    for row in cells:
        groups.setdefault((row["scenario"], row["model"], row["protocol"], row["connections"]), []).append(row)
    out = []
    for runs in groups.values():
        def median(key):
            values = [r[key] for r in runs if r.get(key) is not None]
            return statistics.median(values) if values else None

        kinds = {}
        for r in runs:
            for kind, count in r.get("error_kinds", {}).items():
                kinds[kind] = kinds.get(kind, 0) + count
        loads = [r["load_start"] for r in runs if r.get("load_start") is not None]
        rps = [r["rps"] for r in runs]
        out.append(
            {
                **runs[0],
                "rps": median("rps"),
                "p50_us": median("p50_us"),
                "p99_us": median("p99_us"),
                "cpu_us_per_req": median("cpu_us_per_req"),
                "errors": sum(r["errors"] for r in runs),
                "error_kinds": kinds,
                "runs": len(runs),
                "rps_min": min(rps),
                "rps_max": max(rps),
                "load_min": min(loads) if loads else None,
                "load_max": max(loads) if loads else None,
                "loaded": sum(1 for r in runs if r.get("loaded")),
            }
        )
    return out


def _spread(row):
    if row["runs"] < 2:
        return ""
    half = (row["rps_max"] - row["rps_min"]) / 2
    share = f" (±{half / row['rps']:.0%})" if row["rps"] else ""
    return f"{_fmt(row['rps_min'])}–{_fmt(row['rps_max'])}{share}"


def _load(row):
    if row["load_min"] is None:
        return "n/a"
    text = f"{row['load_min']:.2f}" if row["load_min"] == row["load_max"] else f"{row['load_min']:.2f}–{row['load_max']:.2f}"
    if row["loaded"]:
        text += f", **loaded** ({row['loaded']} of {row['runs']})"
    return text


def peers_at(cells, at):
    """The peers' iris RF REST rows at `at` connections, the best first."""
    rows = [r for r in cells if r["scenario"] not in NOT_PEERS and r["model"] == "iris-rf" and r["protocol"] == "rest" and r["connections"] == at]
    return sorted(rows, key=lambda r: r["rps"], reverse=True)


def _cell(cells, scenario, model, protocol, connections):
    for row in cells:
        if (row["scenario"], row["model"], row["protocol"], row["connections"]) == (
            scenario,
            model,
            protocol,
            connections,
        ):
            return row
    return None


def _best(cells, scenario, model, protocol):
    rows = [r for r in cells if (r["scenario"], r["model"], r["protocol"]) == (scenario, model, protocol)]
    return max(rows, key=lambda r: r["rps"]) if rows else None


def goals(cells, servers, at, labels):
    """(goal, measured, target, verdict) rows; `at` is the saturation connection count."""
    out = []

    def ratio_row(goal, num, den, target, higher=True, fmt="{:.2f}×"):
        if num is None or den is None or not den["rps"]:
            missing = "numerator" if num is None else "denominator"
            out.append((goal, f"not measured ({missing} row missing)", target[0], "n/a"))
            return
        value = num["rps"] / den["rps"]
        met = value >= target[1] if higher else value <= target[1]
        out.append((goal, fmt.format(value), target[0], "met" if met else "**not met**"))

    sec = lambda model, proto="rest", scen="palisade": _cell(cells, scen, model, proto, at)
    peers = peers_at(cells, at)
    best = peers[0] if peers else None
    on = sec("iris-rf")
    if best and on and best["rps"]:
        out.append(
            (
                f"Palisade full security vs the best peer ({labels.get(best['scenario'], best['scenario'])}), iris RF REST, req/s at {at} connections",
                f"{on['rps'] / best['rps']:.2f}×",
                "none set (reported)",
                "n/a",
            )
        )
    else:
        missing = "Palisade full security" if not on else "peer"
        out.append(("Palisade full security vs the best peer", f"not measured ({missing} row missing)", "none set (reported)", "n/a"))
    def cost_row(what, with_, without, missing, limit):
        """The throughput scenario `with_` loses against scenario `without` (a `limit` of
        None reports the cost without a target)."""
        on, off = sec("iris-rf", scen=with_), sec("iris-rf", scen=without)
        target = "none set (reported)" if limit is None else f"≤ {limit * 100:.0f}%"
        if on and off and off["rps"]:
            cost = 1 - on["rps"] / off["rps"]
            verdict = "n/a" if limit is None else "met" if cost <= limit else "**not met**"
            out.append((f"{what} (iris RF REST, {at} connections)", f"{cost * 100:.1f}%", target, verdict))
        else:
            out.append((what, f"not measured ({missing} row missing)", target, "n/a"))

    # Issue 18's goals: JWT + policy at most 5% (audit off against security off), strict
    # audit at most 15% (full security against audit off); their sum is reported.
    cost_row("JWT + policy tax, throughput (audit off vs security off)", "palisade-audit-off", "palisade-insecure", "security-off", 0.05)
    cost_row("strict audit cost, throughput (full security vs audit off)", "palisade", "palisade-audit-off", "audit-off", 0.15)
    cost_row("whole security tax, throughput (full security vs security off)", "palisade", "palisade-insecure", "security-off", None)
    for conns in sorted({r["connections"] for r in cells}):
        on1 = _cell(cells, "palisade", "iris-rf", "rest", conns)
        off1 = _cell(cells, "palisade-insecure", "iris-rf", "rest", conns)
        if on1 and off1:
            delta = on1["p99_us"] - off1["p99_us"]
            out.append(
                (
                    f"security tax, p99 latency (iris RF REST, {conns} connection{'s' if conns > 1 else ''})",
                    f"{delta:+.0f} µs",
                    "≤ 100 µs",
                    "met" if delta <= 100 else "**not met**",
                )
            )
    if not any(r[0].startswith("security tax, p99") for r in out):
        out.append(("security tax, p99 latency", "not measured (security-off row missing)", "≤ 100 µs", "n/a"))
    ratio_row(
        f"Palisade full security vs bare hyper ceiling, iris RF REST, {at} connections",
        sec("iris-rf"),
        sec("ceiling", scen="ceiling"),
        ("≥ 50%", 0.5),
        fmt="{:.0%}",
    )
    ratio_row(
        f"gRPC vs REST, Palisade full security, iris RF, {at} connections",
        sec("iris-rf", "grpc"),
        sec("iris-rf"),
        ("≥ 1.3×", 1.3),
    )
    ratio_row(
        f"adaptive batching, Palisade full security, iris MLP, {at} connections (too small for batching to pay; issue 18's goal is measured on networks by bench/payload.sh)",
        sec("iris-mlp-batched"),
        sec("iris-mlp"),
        ("≥ 3×", 3),
    )
    idle = next((s for s in servers if s["scenario"] == "palisade" and s["phase"] == "idle"), None)
    if idle:
        mb = idle["rss_kb"] / 1024
        out.append(
            ("idle RSS, Palisade full security with the iris models loaded", f"{mb:.1f} MB", "≤ 40 MB", "met" if mb <= 40 else "**not met**")
        )
    else:
        out.append(("idle RSS, Palisade with iris loaded", "not measured", "≤ 40 MB", "n/a"))
    return out


def render(rows, command):
    meta = {}
    for row in rows:
        if row["kind"] == "meta":
            meta.update({k: v for k, v in row.items() if k != "kind"})
    cells = aggregate([r for r in rows if r["kind"] == "cell"])
    servers = [r for r in rows if r["kind"] == "server"]
    agrees = [r for r in rows if r["kind"] == "agree"]
    skips = [r for r in rows if r["kind"] == "skip"]
    conns = sorted({r["connections"] for r in cells}) or [0]
    at = max(conns)
    labels = {**SCENARIOS, **{k.removeprefix("label:"): v for k, v in meta.items() if k.startswith("label:")}}

    lines = [BEGIN, ""]
    date = meta.get("date") or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(f"Measured {date} with:")
    lines.append("")
    lines.append("```sh")
    lines.append(command)
    lines.append("```")
    lines.append("")
    m = machine()
    lines.append(
        "**Machine**: "
        + ", ".join(
            f"{k} {v}" if k in ("nproc",) else f"{k}: {v}"
            for k, v in m.items()
        )
        + "."
    )
    versions = {k.removeprefix("version:"): v for k, v in meta.items() if k.startswith("version:")}
    if versions:
        lines.append("")
        lines.append("**Versions**: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    settings = {k.removeprefix("setting:"): v for k, v in meta.items() if k.startswith("setting:")}
    if settings:
        lines.append("")
        lines.append("**Settings**: " + "; ".join(f"{k}: {v}" for k, v in settings.items()) + ".")
    lines.append("")

    lines.append("### Throughput and latency")
    lines.append("")
    lines.append("| " + " | ".join(RESULT_HEADER) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(RESULT_HEADER) - 3)) + "|")
    key = lambda r: (
        ORDER.index(r["scenario"]) if r["scenario"] in ORDER else 99,
        MODELS.index(r["model"]) if r["model"] in MODELS else 99,
        r["model"],
        r["protocol"] != "rest",
        r["connections"],
    )
    for row in sorted(cells, key=key):
        ceiling = _cell(cells, "ceiling", "ceiling", "rest", row["connections"])
        vs = f"{row['rps'] / ceiling['rps']:.0%}" if ceiling and ceiling["rps"] and row["scenario"] != "ceiling" else ""
        errors = str(row["errors"]) if not row["errors"] else f"**{row['errors']}** {row['error_kinds']}"
        lines.append(
            "| "
            + " | ".join(
                [
                    labels.get(row["scenario"], row["scenario"]),
                    row["model"],
                    row["protocol"].upper() if row["protocol"] == "rest" else "gRPC",
                    str(row["connections"]),
                    _fmt(row["rps"]),
                    _fmt(row["p50_us"]),
                    _fmt(row["p99_us"]),
                    _fmt(row["cpu_us_per_req"], 1),
                    vs,
                    errors,
                    str(row["runs"]),
                    _spread(row),
                    _load(row),
                ]
            )
            + " |"
        )
    lines.append("")

    peers = peers_at(cells, at)
    if peers:
        on = _cell(cells, "palisade", "iris-rf", "rest", at)
        lines.append(f"### Peers, best first (iris RF, REST, {at} connections)")
        lines.append("")
        lines.append("| server | req/s | p99 (µs) | server CPU (µs/req) | Palisade full security ÷ this | this ÷ the best peer |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for row in peers:
            ratio = f"{on['rps'] / row['rps']:.2f}×" if on and row["rps"] else "n/a"
            lines.append(
                f"| {labels.get(row['scenario'], row['scenario'])} | {_fmt(row['rps'])} | {_fmt(row['p99_us'])} | "
                f"{_fmt(row['cpu_us_per_req'], 1)} | {ratio} | {row['rps'] / peers[0]['rps']:.0%} |"
            )
        lines.append("")

    if agrees:
        lines.append("### Same answer as onnxruntime (checked before each server was timed)")
        lines.append("")
        lines.append("| server | iris rows | compared | largest probability difference | verdict |")
        lines.append("|---|---|---|---:|---|")
        for a in agrees:
            verdict = "same" if a["ok"] else f"**different, not timed**: {a['problems'][0]}"
            lines.append(
                f"| {labels.get(a['scenario'], a['scenario'])} | {','.join(map(str, a['rows']))} | "
                f"{'labels, probabilities' if a['compared_probabilities'] else 'labels'} | "
                f"{a['max_probability_diff']:.1e} | {verdict} |"
            )
        lines.append("")

    lines.append("### Memory")
    lines.append("")
    lines.append("| server | processes | RSS idle, before load (MB) | RSS idle, after load (MB) |")
    lines.append("|---|---:|---:|---:|")
    for scenario in sorted({s["scenario"] for s in servers}, key=lambda s: ORDER.index(s) if s in ORDER else 99):
        phase = {s["phase"]: s for s in servers if s["scenario"] == scenario}
        idle, after = phase.get("idle"), phase.get("after")
        lines.append(
            f"| {labels.get(scenario, scenario)} | {(idle or after or {}).get('processes', 'n/a')} | "
            f"{_fmt(idle['rss_kb'] / 1024, 1) if idle else 'n/a'} | {_fmt(after['rss_kb'] / 1024, 1) if after else 'n/a'} |"
        )
    lines.append("")

    lines.append(f"### Goals (ratios from this run; saturation = {at} connections)")
    lines.append("")
    lines.append("| goal | measured | target | verdict |")
    lines.append("|---|---:|---:|---|")
    for goal, measured, target, verdict in goals(cells, servers, at, labels):
        lines.append(f"| {goal} | {measured} | {target} | {verdict} |")
    lines.append("")

    if skips:
        lines.append("### Not measured in this run")
        lines.append("")
        for s in skips:
            lines.append(f"- {labels.get(s['scenario'], s['scenario'])}, {s['what']}: {s['reason']}")
        lines.append("")
    lines.append(END)
    return "\n".join(lines) + "\n"


def cmd_report(args):
    rows = load(args.results)
    section = render(rows, args.command)
    target = pathlib.Path(args.output)
    if args.standalone or not target.exists():
        target.write_text(section)
    else:
        text = target.read_text()
        if BEGIN in text and END in text:
            head, _, rest = text.partition(BEGIN)
            _, _, tail = rest.partition(END)
            text = head + section.rstrip("\n") + tail
        else:
            heading = "\n## End to end: Palisade, BentoML and MLServer under load (`bench/run.sh`)\n\n"
            text = text.rstrip("\n") + "\n" + heading + section
        target.write_text(text)
    print(f"harness.py: report written to {target}")


# ---------------------------------------------------------------- check


def cmd_check(args):
    text = pathlib.Path(args.file).read_text()
    problems = []
    if BEGIN not in text or END not in text:
        sys.exit(f"harness.py: check: {args.file}: the bench markers are missing")
    section = text.partition(BEGIN)[2].partition(END)[0]
    table = []
    header = None
    for line in section.splitlines():
        if not line.startswith("|"):
            if header is not None and table:
                break
            continue
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            if cols == RESULT_HEADER:
                header = cols
            continue
        if set("".join(cols)) <= set("-: "):
            continue
        table.append(cols)
    if header is None:
        problems.append("no throughput table (header row not found)")
    for row in table:
        if len(row) != len(RESULT_HEADER):
            problems.append(f"row has {len(row)} columns, not {len(RESULT_HEADER)}: {row}")
            continue
        cell = dict(zip(RESULT_HEADER, row))
        try:
            rps = float(cell["req/s"].replace(",", ""))
            float(cell["p50 (µs)"].replace(",", ""))
            float(cell["p99 (µs)"].replace(",", ""))
        except ValueError:
            problems.append(f"non-numeric measurement in {row}")
            continue
        if rps <= 0:
            problems.append(f"no requests served: {row}")
        if cell["errors"] != "0":
            problems.append(f"errors: {row}")
    if not table:
        problems.append("the throughput table has no rows")
    for line in section.splitlines():
        if "**different, not timed**" in line:
            problems.append(f"a server answered differently from onnxruntime: {line.split('|')[1].strip()}")
    for want in args.expect:
        scenario, _, model = want.partition(":")
        label = SCENARIOS.get(scenario, scenario)
        # Run labels add details after the name ("Palisade, full security (JWT ES256 ...)").
        if not any(r[0].startswith(label) and (not model or r[1] == model) for r in table):
            problems.append(f"expected a row for {want}")
    if problems:
        for p in problems:
            print(f"harness.py: check: {args.file}: {p}", file=sys.stderr)
        sys.exit(1)
    print(f"harness.py: check: {args.file}: {len(table)} rows, all measured without errors")


def main():
    parser = argparse.ArgumentParser(description="Benchmark harness helpers (see bench/README.md).")
    sub = parser.add_subparsers(dest="subcommand", required=True)

    sub.add_parser("free-port")

    p = sub.add_parser("stats")
    p.add_argument("--pid", type=int, required=True)

    p = sub.add_parser("meta")
    p.add_argument("--results", required=True)
    p.add_argument("facts", nargs="*")

    p = sub.add_parser("cell")
    p.add_argument("--results", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--protocol", choices=["rest", "grpc"], required=True)
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--duration", required=True)
    p.add_argument("--warmup", default="1s")
    p.add_argument("--pid", type=int, required=True, help="the server's process")
    p.add_argument("--url", help="REST: the URL wrk calls")
    p.add_argument("--body-file", help="REST: the POST body")
    p.add_argument("--grpc-addr", help="gRPC: http://HOST:PORT")
    p.add_argument("--loadgen", help="gRPC: the load generator binary")
    p.add_argument("--wrk-threads", type=int, default=2, help="load generator threads")
    p.add_argument("--load-gate", type=float, default=0.0, help="start when the 1-minute load average is below this (0: at once)")
    p.add_argument("--load-wait", default="120s", help="the longest wait for the load gate; then the cell runs, marked as loaded")

    p = sub.add_parser("agree")
    p.add_argument("--results", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--url", required=True, help="where one row is POSTed")
    p.add_argument("--format", choices=["v2", "bentoml"], default="v2", help="request body: V2 infer, or BentoML's input_data")
    p.add_argument("--expected", required=True, help="onnxruntime's outputs for the iris rows (fixtures/models/*.expected.json)")
    p.add_argument("--iris", required=True, help="the iris rows (fixtures/models/iris.json)")
    p.add_argument("--need-probabilities", action="store_true", help="the answer must carry the probabilities")

    p = sub.add_parser("server")
    p.add_argument("--results", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--phase", choices=["idle", "after"], required=True)
    p.add_argument("--pid", type=int, required=True)

    p = sub.add_parser("skip")
    p.add_argument("--results", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--what", required=True)
    p.add_argument("--reason", required=True)

    p = sub.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--command", required=True, help="the command line to reproduce the run")
    p.add_argument("--standalone", action="store_true", help="write only the section, replacing the file")

    p = sub.add_parser("check")
    p.add_argument("file")
    p.add_argument("--expect", action="append", default=[], help="SCENARIO[:MODEL] that must have a row")

    args = parser.parse_args()
    if args.subcommand == "free-port":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            print(s.getsockname()[1])
    elif args.subcommand == "stats":
        print(json.dumps(stats(args.pid)))
    elif args.subcommand == "meta":
        cmd_meta(args)
    elif args.subcommand == "cell":
        if args.protocol == "rest" and not args.url:
            parser.error("cell --protocol rest needs --url")
        if args.protocol == "grpc" and not (args.grpc_addr and args.loadgen):
            parser.error("cell --protocol grpc needs --grpc-addr and --loadgen")
        cmd_cell(args)
    elif args.subcommand == "agree":
        cmd_agree(args)
    elif args.subcommand == "server":
        cmd_server(args)
    elif args.subcommand == "skip":
        cmd_skip(args)
    elif args.subcommand == "report":
        cmd_report(args)
    elif args.subcommand == "check":
        cmd_check(args)


if __name__ == "__main__":
    main()
