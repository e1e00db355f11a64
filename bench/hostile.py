#!/usr/bin/env python3
"""The hostile-load figures of docs/limits.md, measured against a release binary.

Usage: bench/hostile.py [--palisade target/release/palisade]

Runs, each against its own server on 127.0.0.1 (a second client uses 127.0.0.2):
  1. memory: 48 concurrent valid 15 MiB requests under --max-inflight-bytes 256MiB; the
     server's peak RSS growth (VmHWM) and the statuses;
  2. one address: the server under a 4,096 descriptor limit (prlimit), 6,000 connections
     from 127.0.0.2 (silent, trickling, idle after a 401), then 40 fresh requests from
     127.0.0.1, each timed;
  3. timeouts: how long a silent, a slowloris and a silent TLS connection stay open;
  4. a hung key server: the latency of a request whose issuer's JWKS endpoint never answers.
Prints a Markdown table. Python's standard library only; all traffic on loopback, bounded.
"""

import argparse
import json
import os
import pathlib
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROW = b'{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}'


def home_with_iris(palisade, base):
    src = base / "src"
    src.mkdir(parents=True)
    shutil.copy(ROOT / "fixtures/models/iris_lr_nozipmap.onnx", src / "model.onnx")
    (src / "palisade.yaml").write_text(
        'name: iris\nversion: "1.0.0"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n'
    )
    home = base / "home"
    subprocess.run([palisade, "--home", str(home), "build", str(src)], check=True, capture_output=True)
    token = subprocess.run(
        [palisade, "--home", str(home), "token", "issue", "--email", "alice@example.com", "--ttl", "1h"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    return home, token


class Server:
    def __init__(self, palisade, home, extra=(), nofile=None):
        cmd = [palisade, "--home", str(home), "serve", "--listen", "127.0.0.1:0", *extra]
        if nofile:
            cmd = ["prlimit", f"--nofile={nofile}:{nofile}", "--", *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.proc.stdout:
            if line.startswith("palisade: listening on "):
                url = line.split()[3]
                host, port = url.split("://")[1].split(":")
                self.addr = (host, int(port))
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.pid = self.proc.pid if not nofile else self._child_pid()

    def _child_pid(self):
        # prlimit execs the server, so the pid is the same.
        return self.proc.pid

    def peak_rss_mib(self):
        for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def request(addr, token, body, source="127.0.0.1", timeout=120):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(addr)
    head = (
        f"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    s.sendall(head + body)
    reply = b""
    while b"\r\n" not in reply:
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    s.close()
    try:
        return int(reply.split()[1])
    except (IndexError, ValueError):
        return None


def memory(palisade, base):
    home, token = home_with_iris(palisade, base / "memory")
    server = Server(palisade, home, ["--max-inflight-bytes", str(256 << 20)])
    request(server.addr, token, ROW)
    before = server.peak_rss_mib()
    rows = (15 << 20) // 16
    data = ",".join(["5.1,3.5,1.4,0.2"] * rows)
    body = (
        '{"inputs":[{"name":"X","shape":[%d,4],"datatype":"FP32","data":[%s]}],"outputs":[{"name":"label"}]}'
        % (rows, data)
    ).encode()
    statuses = [None] * 48
    def one(i):
        statuses[i] = request(server.addr, token, body)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(48)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    grown = server.peak_rss_mib() - before
    server.stop()
    counts = {s: statuses.count(s) for s in set(statuses)}
    return f"48 x {len(body) / (1 << 20):.1f} MiB, budget 256 MiB", f"peak RSS +{grown:.0f} MiB; statuses {counts}; {took:.1f} s"


def one_address(palisade, base):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    home, token = home_with_iris(palisade, base / "flood")
    server = Server(palisade, home, nofile=4096)
    held = []
    for i in range(6000):
        s = socket.socket()
        s.setblocking(True)
        s.settimeout(2)
        try:
            s.bind(("127.0.0.2", 0))
            s.connect(server.addr)
            if i % 3 == 1:
                s.send(b"GET /v2/models/iris HTTP/1.1\r\nHost: x\r\n")
            elif i % 3 == 2:
                s.send(b"GET /v2/models/iris HTTP/1.1\r\nHost: x\r\n\r\n")
        except OSError:
            pass
        held.append(s)
    times = []
    served = 0
    for _ in range(40):
        started = time.monotonic()
        try:
            status = request(server.addr, token, ROW, timeout=3)
        except OSError:
            status = None
        took = time.monotonic() - started
        if status == 200 and took < 3:
            served += 1
            times.append(took)
    for s in held:
        s.close()
    server.stop()
    times.sort()
    p50 = times[len(times) // 2] * 1000 if times else float("nan")
    return "6,000 connections from one address, descriptor limit 4,096", f"{served}/40 fresh requests from another address served within 3 s (median {p50:.1f} ms)"


def closed_after(addr, send=b"", trickle=b"", limit=20):
    s = socket.create_connection(addr)
    s.settimeout(0.25)
    if send:
        s.sendall(send)
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            if trickle:
                s.sendall(trickle)
            if s.recv(1024) == b"":
                return time.monotonic() - started
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def timeouts(palisade, base):
    home, _ = home_with_iris(palisade, base / "timeouts")
    plain = Server(palisade, home)
    tls_home, _ = home_with_iris(palisade, base / "timeouts-tls")
    tls = Server(palisade, tls_home, ["--tls"])
    results = {}
    def run(name, *args, **kwargs):
        results[name] = closed_after(*args, **kwargs)
    jobs = [
        threading.Thread(target=run, args=("silent", plain.addr)),
        threading.Thread(target=run, args=("slowloris", plain.addr), kwargs={"send": b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n", "trickle": b"X-A: b\r\n"}),
        threading.Thread(target=run, args=("silent TLS", tls.addr)),
    ]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    plain.stop()
    tls.stop()
    return "silent / slowloris / silent TLS (header-read timeout 10 s)", ", ".join(
        f"{k} closed after {v:.1f} s" if v else f"{k} still open" for k, v in results.items()
    )


def hung_idp(palisade, base):
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    held = []
    threading.Thread(target=lambda: [held.append(hang.accept()) for _ in iter(int, 1)], daemon=True).start()
    home, _ = home_with_iris(palisade, base / "idp")
    config = base / "idp" / "platform.yaml"
    config.write_text(
        "authentication:\n  jwtRules:\n    - issuer: https://idp.hung.example\n"
        f"      jwksUri: http://127.0.0.1:{hang.getsockname()[1]}/jwks\n      timeout: 5s\n"
    )
    server = Server(palisade, home, ["--config", str(config)])
    # A syntactically valid token of that issuer; its signature is never reached.
    import base64
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    now = int(time.time())
    token = f'{enc({"alg": "ES256", "kid": "k1"})}.{enc({"iss": "https://idp.hung.example", "sub": "s", "iat": now, "exp": now + 300})}.{"A" * 86}'
    latencies = []
    for _ in range(3):
        started = time.monotonic()
        status = request(server.addr, token, ROW)
        latencies.append((status, time.monotonic() - started))
    server.stop()
    return "a token whose issuer's JWKS endpoint hangs", ", ".join(f"{s} in {t:.2f} s" for s, t in latencies)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--palisade", default=str(ROOT / "target/release/palisade"))
    args = parser.parse_args()
    base = pathlib.Path(tempfile.mkdtemp(prefix="palisade-hostile."))
    rows = []
    try:
        for measure in (memory, one_address, timeouts, hung_idp):
            print(f"== {measure.__name__}", file=sys.stderr)
            rows.append(measure(args.palisade, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("| attack | result |\n|---|---|")
    for what, result in rows:
        print(f"| {what} | {result} |")


if __name__ == "__main__":
    main()
