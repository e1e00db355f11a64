"""`palisade serve --traffic FILE`: Palisade's router in front of a ModelDeployment's
variants, as `palisade k8s render` deploys it, with real processes on loopback.

Three variant servers (v1 and v2 share the traffic 90/10, v3 is the shadow) and a router,
each its own `palisade serve` with its own home, all with workload certificates from one
built-in CA (as the pods get from the CA Secret) and one token issuer (as the pods trust
the organisation's): the built-in issuer's keys are copied into every home, which stands
in for the issuers' ConfigMap. The router calls the variants over mutual TLS with the
caller's token, so each variant authenticates, authorizes and audits the same caller.
"""

import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml

from conftest import ROOT, Server, audit_records as records, build, issue_token, palisade_bin

ROW = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
REQUESTS = 60


def post(base, path, token, body=ROW, cafile=None):
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("router")
    ca = root / "ca-home"
    subprocess.run([palisade_bin(), "--home", str(ca), "ca", "init"], check=True, capture_output=True)
    issuer = root / "issuer-home"
    alice = issue_token(issuer, "--email", "alice@example.com")
    mallory = issue_token(issuer, "--email", "mallory@example.com")

    def home(name):
        path = root / name
        build(path, ROOT / "examples" / "iris")
        shutil.copytree(ca / "ca", path / "ca")
        shutil.copytree(issuer / "identity", path / "identity")
        return path

    servers = {}
    try:
        for variant in ["v1", "v2", "v3"]:
            servers[variant] = Server(home(variant), ["--workload-identity", "payments/fraud"])
        traffic = {
            "variants": [
                {"name": "v1", "url": servers["v1"].base, "traffic": 90, "shadow": False},
                {"name": "v2", "url": servers["v2"].base, "traffic": 10, "shadow": False},
                {"name": "v3", "url": servers["v3"].base, "traffic": 0, "shadow": True},
            ]
        }
        router_home = home("router")
        (router_home / "traffic.yaml").write_text(yaml.safe_dump(traffic))
        # The variants listen on loopback, which the router refuses to call unless allowed.
        (router_home / "platform.yaml").write_text('upstream:\n  allowedHosts: ["127.0.0.1"]\n')
        servers["router"] = Server(
            router_home,
            [
                "--workload-identity",
                "payments/fraud",
                "--traffic",
                str(router_home / "traffic.yaml"),
                "--config",
                str(router_home / "platform.yaml"),
            ],
        )
        yield servers, alice, mallory, str(ca / "ca" / "ca.pem")
    finally:
        for server in servers.values():
            server.stop()


def test_the_router_splits_traffic_and_each_variant_sees_the_caller(deployment):
    servers, alice, _, cafile = deployment
    router = servers["router"]
    assert router.base.startswith("https://")
    arms = []
    for _ in range(REQUESTS):
        status, body = post(router.base, "/v2/models/iris/infer", alice, cafile=cafile)
        assert status == 200, body
        assert body["model_name"] == "iris"
        assert body["model_version"] == "traffic"
        arms.append(body["parameters"]["routing"]["traffic"])
    # Each arm's answer came from that variant: its own trail has exactly the requests the
    # router sent it, made by alice (her token was sent on and verified there).
    for variant in ["v1", "v2"]:
        seen = [r for r in records(servers[variant].home) if r.get("path") == "/v2/models/iris/infer"]
        routed = arms.count(f"iris:{variant}")
        assert len(seen) == routed, (variant, len(seen), routed, arms[:3])
        for record in seen:
            assert record["email"] == "alice@example.com", record
            assert record["authz"]["decision"] == "allow", record
            assert record["status"] == 200, record
            # Called by the router, over mutual TLS, with its workload identity.
            assert record["peer_identity"] == "spiffe://cluster.local/ns/payments/sa/fraud", record
    assert set(arms) <= {"iris:v1", "iris:v2"}, arms
    assert arms.count("iris:v1") > arms.count("iris:v2"), arms


def test_the_shadow_gets_a_copy_and_the_caller_never_sees_it(deployment):
    servers, alice, _, cafile = deployment
    status, body = post(servers["router"].base, "/v2/models/iris/infer", alice, cafile=cafile)
    assert status == 200
    assert body["parameters"]["routing"]["traffic"] in ("iris:v1", "iris:v2")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        shadowed = [r for r in records(servers["v3"].home) if r.get("path") == "/v2/models/iris/infer"]
        if shadowed:
            break
        time.sleep(0.2)
    assert shadowed, "the shadow variant never got a copy"


def test_a_caller_the_variants_refuse_is_refused_through_the_router(deployment):
    """mallory is not an owner of iris: the router refuses her before any variant is
    called; anonymous callers get 401; neither reaches a variant's trail."""
    servers, _, mallory, cafile = deployment
    before = {v: len(records(servers[v].home)) for v in ["v1", "v2"]}
    assert post(servers["router"].base, "/v2/models/iris/infer", mallory, cafile=cafile)[0] == 403
    assert post(servers["router"].base, "/v2/models/iris/infer", None, cafile=cafile)[0] == 401
    assert {v: len(records(servers[v].home)) for v in ["v1", "v2"]} == before


def test_a_variant_called_without_the_callers_token_refuses(deployment):
    """What the router's forwarded token is for: the variant itself accepts nobody
    without one, even over mutual TLS from the router's own identity."""
    servers, _, _, cafile = deployment
    status, _ = post(servers["v1"].base, "/v2/models/iris/infer", None, cafile=cafile)
    assert status == 401


def test_a_variant_can_be_pinned_by_its_version(deployment):
    servers, alice, _, cafile = deployment
    before = len(records(servers["v2"].home))
    status, body = post(servers["router"].base, "/v2/models/iris/versions/v2/infer", alice, cafile=cafile)
    assert status == 200, body
    assert body["model_version"] == "v2"
    assert len(records(servers["v2"].home)) == before + 1


def test_a_bad_traffic_file_is_refused_with_the_field(tmp_path):
    home = tmp_path / "home"
    build(home, ROOT / "examples" / "iris")
    bad = tmp_path / "traffic.yaml"
    bad.write_text(
        "variants:\n- {name: v1, url: 'https://a.example:8080', traffic: 90}\n- {name: v2, url: 'https://b.example:8080', traffic: 20}\n"
    )
    result = subprocess.run(
        [palisade_bin(), "--home", str(home), "serve", "--listen", "127.0.0.1:0", "--traffic", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "variants[].traffic" in result.stderr and "sum to 100, not 110" in result.stderr, result.stderr


def test_grpc_and_seldon_callers_are_routed_with_their_token_sent_on(deployment):
    """The same split for the other protocols a caller may speak to the router (the router
    always calls the variants over V2 REST): tritonclient over gRPC with TLS, and Seldon
    v1 REST. Each reaches a variant as alice."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    servers, alice, _, cafile = deployment
    router = servers["router"]
    before = {v: len(records(servers[v].home)) for v in ["v1", "v2"]}
    client = grpcclient.InferenceServerClient(
        url=router.host_port.removeprefix("https://"), ssl=True, root_certificates=cafile
    )
    x = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    inp = grpcclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("iris", [inp], headers={"authorization": f"Bearer {alice}"})
    routing = json.loads(result.get_response(as_json=True)["parameters"]["routing"]["string_param"])
    assert routing["traffic"] in ("iris:v1", "iris:v2")
    with pytest.raises(Exception, match="403|PERMISSION_DENIED|denied"):
        client.infer("iris", [inp], headers={"authorization": f"Bearer {deployment[2]}"})

    status, body = post(
        router.base, "/seldon/default/iris/api/v1.0/predictions", alice, {"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}}, cafile
    )
    assert status == 200, body
    after = {v: records(servers[v].home)[before[v]:] for v in ["v1", "v2"]}
    new = [r for v in after.values() for r in v]
    assert len(new) == 2, new
    assert all(r["email"] == "alice@example.com" and r["status"] == 200 for r in new), new


def test_a_router_from_a_graph_image_serves_the_graph_it_was_built_for(tmp_path):
    """An image of a graph carries the models the graph names (each its name's latest):
    the router picks the one no other bundle serves through."""
    home = tmp_path / "home"
    for name in ["iris-a", "iris-b"]:
        src = tmp_path / name
        shutil.copytree(ROOT / "examples" / "iris", src)
        manifest = (src / "palisade.yaml").read_text().replace("name: iris", f"name: {name}", 1)
        (src / "palisade.yaml").write_text(manifest)
        build(home, src)
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "palisade.yaml").write_text(
        'name: canary\nversion: "1.0.0"\nowners: [alice@example.com]\n'
        "traffic:\n  - {model: iris-a, weight: 50}\n  - {model: iris-b, weight: 50}\n"
    )
    build(home, canary)
    traffic = tmp_path / "traffic.yaml"
    traffic.write_text(
        "variants:\n- {name: v1, url: 'http://127.0.0.1:9', traffic: 100}\n"
    )
    (tmp_path / "platform.yaml").write_text('upstream:\n  allowedHosts: ["127.0.0.1"]\n')
    server = Server(home, ["--traffic", str(traffic), "--config", str(tmp_path / "platform.yaml")])
    try:
        request = urllib.request.Request(
            f"{server.base}/v2/models/canary", headers={"Authorization": f"Bearer {server.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            metadata = json.loads(response.read())
        assert metadata["name"] == "canary"
        assert sorted(metadata["versions"]) == ["traffic", "v1"], metadata
        # The components are not served by the router: only the split and its variants.
        request = urllib.request.Request(
            f"{server.base}/v2/models/iris-a", headers={"Authorization": f"Bearer {server.token}"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 404
    finally:
        server.stop()


def test_a_router_from_an_image_of_a_split_over_its_own_versions(tmp_path):
    """iris:2.0.0 is a traffic split over iris:1.0.0 (a canary of its own versions): the
    model is not a component of itself, so the router serves iris."""
    home = tmp_path / "home"
    build(home, ROOT / "examples" / "iris")
    split = tmp_path / "split"
    split.mkdir()
    (split / "palisade.yaml").write_text(
        'name: iris\nversion: "2.0.0"\nowners: [alice@example.com]\n'
        "traffic:\n  - {model: 'iris:1.0.0', weight: 100}\n"
    )
    build(home, split)
    traffic = tmp_path / "traffic.yaml"
    traffic.write_text("variants:\n- {name: v1, url: 'http://127.0.0.1:9', traffic: 100}\n")
    (tmp_path / "platform.yaml").write_text('upstream:\n  allowedHosts: ["127.0.0.1"]\n')
    server = Server(home, ["--traffic", str(traffic), "--config", str(tmp_path / "platform.yaml")])
    try:
        request = urllib.request.Request(
            f"{server.base}/v2/models/iris", headers={"Authorization": f"Bearer {server.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            metadata = json.loads(response.read())
        assert sorted(metadata["versions"]) == ["traffic", "v1"], metadata
    finally:
        server.stop()
