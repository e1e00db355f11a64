"""Per-caller rate limits on the real binary, called with curl: the platform's
`limits.rate` answers a burst past the budget with 429 and `Retry-After`, another caller
keeps its own budget, and the refusal is in the audit trail and on the metrics port."""

import json
import subprocess

import pytest

from conftest import ROOT, Server, audit_records, build, issue_token

ROW = json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    home = tmp_path_factory.mktemp("ratelimit")
    build(home, ROOT / "examples" / "iris")
    config = home / "platform.yaml"
    config.write_text("limits:\n  rate: {requestsPerSecond: 0.01, burst: 2}\n")
    srv = Server(home, ["--config", str(config), "--admin-listen", "127.0.0.1:0"])
    yield srv
    srv.stop()


def curl(url, token, body=None):
    """Status, headers (lower-case names) and body of one curl call."""
    args = ["curl", "-s", "-i", "-H", f"Authorization: Bearer {token}", url]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", body]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=30).stdout
    head, _, payload = out.partition("\n\n")  # text mode: curl's CRLFs read as newlines
    lines = head.splitlines()
    headers = dict((k.strip().lower(), v.strip()) for k, _, v in (l.partition(":") for l in lines[1:]))
    return int(lines[0].split()[1]), headers, payload


def test_a_burst_past_the_budget_is_429_with_retry_after(limited):
    url = f"{limited.base}/v2/models/iris/infer"
    answers = [curl(url, limited.token, ROW) for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 429], answers[-1]
    status, headers, payload = answers[2]
    assert 99 <= int(headers["retry-after"]) <= 100
    assert "rate limit" in json.loads(payload)["error"]

    other = issue_token(limited.home, "--email", "alice@example.com", "--subject", "alice-batch-job")
    assert curl(url, other, ROW)[0] == 200, "another principal has its own bucket"

    refused = [r for r in audit_records(limited.home) if r.get("rate_limit")]
    assert len(refused) == 1
    assert refused[0]["status"] == 429
    assert refused[0]["rate_limit"] == {"budget": "requests", "retry_after_s": int(headers["retry-after"])}

    metrics = subprocess.run(["curl", "-s", f"{limited.admin}/metrics"], check=True, capture_output=True, text=True).stdout
    assert 'palisade_rate_limited_total{endpoint="v2_infer",model="iris"} 1' in metrics
