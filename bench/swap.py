#!/usr/bin/env python3
"""A new version while serving, under load: how long until requests that name no version
get it, and whether any request fails during the swap.

    bench/swap.py [--bin target/release/palisade] [--connections 8] [--seconds 6]

Serves examples/iris 1.0.0 from a scratch home on a free loopback port, keeps
`--connections` keep-alive clients sending V2 infer requests without a version, builds
2.0.0 (the same model, another version) after a third of the run, and reports: requests
and their statuses, the time from the end of `palisade build` to the first answer from
2.0.0, and the last answer from 1.0.0 after it. Standard library only; loopback only.
"""

import argparse
import http.client
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BODY = json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=str(ROOT / "target" / "release" / "palisade"))
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()

    scratch = pathlib.Path(tempfile.mkdtemp(prefix="palisade-swap-"))
    env = dict(os.environ, PALISADE_HOME=str(scratch / "home"))
    run = lambda *a: subprocess.run([args.bin, *a], env=env, check=True, capture_output=True, text=True)
    run("build", str(ROOT / "examples" / "iris"))
    v2 = scratch / "iris-2"
    shutil.copytree(ROOT / "examples" / "iris", v2)
    manifest = v2 / "palisade.yaml"
    manifest.write_text(manifest.read_text().replace('version: "1.0.0"', 'version: "2.0.0"'))
    token = run("token", "issue", "--email", "alice@example.com").stdout.strip()

    port = free_port()
    server = subprocess.Popen(
        [args.bin, "serve", "--listen", f"127.0.0.1:{port}"], env=env,
        stdout=subprocess.DEVNULL, stderr=open(scratch / "serve.log", "w"),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"the server did not start: {(scratch / 'serve.log').read_text()[-2000:]}")
                time.sleep(0.1)

        answers = []  # (time, status, version)
        lock = threading.Lock()
        stop = time.monotonic() + args.seconds

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            mine = []
            while time.monotonic() < stop:
                try:
                    conn.request("POST", "/v2/models/iris/infer", BODY, headers)
                    response = conn.getresponse()
                    data = response.read()
                    version = json.loads(data).get("model_version") if response.status == 200 else None
                    mine.append((time.monotonic(), response.status, version))
                except (OSError, http.client.HTTPException) as err:
                    mine.append((time.monotonic(), f"error: {err}", None))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            with lock:
                answers.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(args.connections)]
        for t in threads:
            t.start()
        time.sleep(args.seconds / 3)
        build_started = time.monotonic()
        run("build", str(v2))
        built = time.monotonic()
        for t in threads:
            t.join()
    finally:
        server.terminate()
        server.wait(timeout=30)

    statuses = {}
    for _, status, _ in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    first_v2 = min((t for t, s, v in answers if v == "2.0.0"), default=None)
    last_v1 = max((t for t, s, v in answers if v == "1.0.0"), default=None)
    report = {
        "connections": args.connections,
        "seconds": args.seconds,
        "requests": len(answers),
        "statuses": statuses,
        "failed": sum(n for s, n in statuses.items() if s != "200"),
        "build_seconds": round(built - build_started, 3),
        "first_2_0_0_after_build_s": None if first_v2 is None else round(first_v2 - built, 3),
        "last_1_0_0_after_build_s": None if last_v1 is None else round(last_v1 - built, 3),
    }
    print(json.dumps(report, indent=2))
    shutil.rmtree(scratch, ignore_errors=True)
    ok = report["failed"] == 0 and first_v2 is not None and first_v2 - built <= 5
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
