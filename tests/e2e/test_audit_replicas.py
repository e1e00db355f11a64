"""The audit trail across replicas, through the real binary: two `palisade serve` processes
(two replicas, each with its own home, replica id, chain and key) ship their records on
stdout; their trails are copied into one directory, as an auditor copies each pod's volume;
`palisade audit verify` and `query` read that directory; a byte changed in one replica's
trail fails the verification, naming that replica."""

import json
import pathlib
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import ROOT, build, issue_token, palisade_bin

IRIS_ROW = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}


class Replica:
    """`palisade serve` as a replica: audit records on stdout (a file here, the container's
    log stream in a cluster), its own messages on stderr."""

    def __init__(self, home, replica_id, broken_stdout=False):
        self.home = home
        self.replica_id = replica_id
        build(home, ROOT / "examples" / "iris")
        config = home / "platform.yaml"
        config.write_text(f"audit:\n  replicaId: {replica_id}\n  ship:\n    stdout: true\n")
        self.stdout_path = home / "stdout.jsonl"
        self.stderr_path = home / "stderr.log"
        command = [palisade_bin(), "--home", str(home), "serve", "--listen", "127.0.0.1:0", "--config", str(config)]
        command += ["--admin-listen", "127.0.0.1:0"]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE if broken_stdout else open(self.stdout_path, "wb"),
            stderr=open(self.stderr_path, "wb"),
        )
        if broken_stdout:
            # The collector went away: every write to stdout fails (EPIPE).
            self.proc.stdout.close()
        self.base = None
        self.admin = None
        deadline = time.monotonic() + 60
        while self.base is None:
            for line in self.stderr_path.read_text().splitlines():
                if line.startswith("palisade: admin listening on "):
                    self.admin = line.split()[4]
                if line.startswith("palisade: listening on "):
                    self.base = line.split()[3]
            if self.proc.poll() is not None:
                pytest.fail(f"palisade serve exited: {self.stderr_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail("palisade serve did not print its address on stderr within 60 s")
            time.sleep(0.05)

    def infer(self, token):
        request = urllib.request.Request(
            f"{self.base}/v2/models/iris/infer",
            data=json.dumps(IRIS_ROW).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def metric(self, name):
        with urllib.request.urlopen(f"{self.admin}/metrics", timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0, self.stderr_path.read_text()[-2000:]


def run(*args):
    return subprocess.run([palisade_bin(), *map(str, args)], capture_output=True, text=True, timeout=60)


def trail_lines(log_dir):
    segments = sorted(log_dir.glob("segment-*.jsonl"))
    return [line for path in segments for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    """Two replicas that served interleaved requests (allowed and denied), then stopped."""
    root = tmp_path_factory.mktemp("replicas")
    servers = [Replica(root / f"home-{i}", f"palisade-iris-{i}") for i in range(2)]
    try:
        tokens = [
            (issue_token(s.home, "--email", "alice@example.com"), issue_token(s.home, "--email", "bob@example.com"))
            for s in servers
        ]
        statuses = []
        for round_ in range(4):
            for server, (alice, bob) in zip(servers, tokens):
                statuses.append(server.infer(bob if round_ == 2 else alice))
                time.sleep(0.005)
        assert statuses == [200] * 4 + [403] * 2 + [200] * 2, statuses
        # Every line (genesis and four records) went to stdout, and is counted.
        for server in servers:
            deadline = time.monotonic() + 10
            while server.metric("palisade_audit_shipped_lines_total") != 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.metric("palisade_audit_shipped_lines_total") == 5
            assert server.metric("palisade_audit_ship_dropped_lines_total") == 0
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.stop()
    return servers


def test_stdout_carries_exactly_the_trail_byte_for_byte_and_nothing_else(replicas):
    for server in replicas:
        shipped = server.stdout_path.read_bytes().splitlines()
        assert shipped, server.stderr_path.read_text()[-2000:]
        records = [l for l in shipped if l.startswith(b'{"schema":"palisade.audit/v1"')]
        checkpoints = [l for l in shipped if l.startswith(b'{"schema":"palisade.audit.checkpoint/v2"')]
        assert len(records) + len(checkpoints) == len(shipped), "stdout holds audit lines only"
        assert records == trail_lines(server.home / "audit")
        assert checkpoints == (server.home / "audit" / "checkpoints.jsonl").read_bytes().splitlines()
        assert len(records) == 4
        assert {json.loads(l)["replica_id"] for l in records} == {server.replica_id}
        # The server's own messages went to stderr.
        assert "palisade: listening on " in server.stderr_path.read_text()


@pytest.fixture(scope="module")
def trails(replicas, tmp_path_factory):
    """The replicas' trails in one directory: one copied as a home (audit/ + keys/), one
    as Palisade's Kubernetes volume holds it (trail/ + keys/)."""
    root = tmp_path_factory.mktemp("trails")
    first, second = replicas
    shutil.copytree(first.home / "audit", root / "pod-0" / "audit", ignore=shutil.ignore_patterns(".lock"))
    shutil.copytree(first.home / "keys", root / "pod-0" / "keys")
    shutil.copytree(second.home / "audit", root / "pod-1" / "trail", ignore=shutil.ignore_patterns(".lock"))
    shutil.copytree(second.home / "keys", root / "pod-1" / "keys")
    return root


def test_verify_checks_each_replica_with_its_own_key(trails):
    out = run("audit", "verify", trails)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "replica palisade-iris-0 (pod-0/audit): OK" in out.stdout
    assert "replica palisade-iris-1 (pod-1/trail): OK" in out.stdout
    assert "OK: 2 replicas, 8 records, every chain intact" in out.stdout
    report = json.loads(run("audit", "verify", trails, "--output", "json").stdout)
    assert report["ok"] is True
    assert [(r["replica_id"], r["records"], r["unsigned_records"]) for r in report["replicas"]] == [
        ("palisade-iris-0", 4, 0),
        ("palisade-iris-1", 4, 0),
    ]
    assert report["replicas"][0]["key_id"] != report["replicas"][1]["key_id"]


def test_query_merges_the_replicas_by_time(trails):
    out = run("audit", "query", trails, "--output", "json")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(records) == 8
    keys = [(r["received"], r["replica_id"], r["seq"]) for r in records]
    assert keys == sorted(keys)
    assert [r["replica_id"] for r in records] == ["palisade-iris-0", "palisade-iris-1"] * 4
    denied = run("audit", "query", trails, "--decision", "deny")
    lines = denied.stdout.splitlines()
    assert len(lines) == 2 and "palisade-iris-0 #2 403" in lines[0] and "palisade-iris-1 #2 403" in lines[1], lines


def test_a_byte_changed_in_one_replica_fails_verification_naming_it(trails, tmp_path):
    tampered = tmp_path / "tampered"
    shutil.copytree(trails, tampered)
    segment = sorted((tampered / "pod-1" / "trail").glob("segment-*.jsonl"))[0]
    data = bytearray(segment.read_bytes())
    at = data.index(b'"status":403') + len(b'"status":40')
    data[at] = ord("4")
    segment.write_bytes(bytes(data))
    out = run("audit", "verify", tampered)
    assert out.returncode == 65, out.stdout + out.stderr
    assert "replica palisade-iris-0 (pod-0/audit): OK" in out.stdout
    assert "replica palisade-iris-1 (pod-1/trail): FAILED" in out.stdout
    assert "the audit trail of replica palisade-iris-1" in out.stderr and "hash mismatch" in out.stderr


def test_the_same_trail_twice_is_refused(trails, tmp_path):
    doubled = tmp_path / "doubled"
    shutil.copytree(trails, doubled)
    shutil.copytree(doubled / "pod-0", doubled / "pod-0-copy")
    out = run("audit", "verify", doubled)
    assert out.returncode == 64
    assert "the same log" in out.stderr and "pod-0-copy" in out.stderr, out.stderr


def test_the_collectors_copy_rebuilds_into_trails_that_verify_with_pinned_keys(replicas, trails, tmp_path):
    collected = tmp_path / "collector.log"
    collected.write_bytes(b"".join(server.stdout_path.read_bytes() for server in replicas))
    keys = tmp_path / "pinned"
    keys.mkdir()
    for server in replicas:
        shutil.copy(server.home / "keys" / "audit-signing.pub", keys / f"{server.replica_id}.pub")
    out = run("audit", "import", collected, "--out", tmp_path / "rebuilt")
    assert out.returncode == 0, out.stderr
    assert "replica palisade-iris-0: 4 records, 2 checkpoints" in out.stdout, out.stdout
    verified = run("audit", "verify", tmp_path / "rebuilt", "--public-key", keys)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK: 2 replicas, 8 records, every chain intact" in verified.stdout
    query = lambda d: run("audit", "query", d, "--output", "json").stdout  # noqa: E731
    assert query(tmp_path / "rebuilt") == query(trails)


def test_a_stdout_nobody_reads_costs_shipped_lines_never_records_or_responses(tmp_path):
    server = Replica(tmp_path / "home", "palisade-iris-9", broken_stdout=True)
    try:
        alice = issue_token(server.home, "--email", "alice@example.com")
        assert [server.infer(alice) for _ in range(5)] == [200] * 5
        deadline = time.monotonic() + 10
        while not server.metric("palisade_audit_ship_errors_total") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.metric("palisade_audit_ship_errors_total") > 0
        assert server.metric("palisade_audit_shipped_lines_total") == 0
        assert server.metric("palisade_audit_records_total") == 5
    finally:
        server.stop()
    assert "cannot ship audit lines to the stream; the local audit log is unaffected" in server.stderr_path.read_text()
    out = run("audit", "verify", server.home / "audit")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "records checked: 5" in out.stdout
