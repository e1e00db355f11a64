"""Authorization end to end: the seed platform's Istio policies, unchanged, against tokens
from the real OpenID provider; and owner self-service with the `palisade policy` CLI."""

import json
import shutil
import subprocess

import pytest

from conftest import ROOT, Server, build, gateway_config, issue_token, palisade_bin
from test_oidc import IdP, SEED_ISSUER, SEED_REQUEST_AUTHENTICATION, call

# The seed's AuthorizationPolicy, exactly as it was applied with Istio.
SEED_AUTHORIZATION_POLICY = """kind: AuthorizationPolicy
apiVersion: security.istio.io/v1beta1
metadata:
  name: allow-to-example-model
  namespace: example-model
spec:
  action: ALLOW
  rules:
    - when:
        - key: "request.auth.claims[email]"
          values:
            - person_a@company.com
            - person_b@company.com
            - service_account_a@company.com
    - to:
        - operation:
            ports:
              - "443"
"""

MANIFEST = """name: iris
version: "1.0.0"
namespace: example-model
owners: [data-scientist@company.com]
model:
  path: model.onnx
  format: onnx
"""


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    idp = IdP(SEED_ISSUER)
    home = tmp_path_factory.mktemp("authz-home")
    policies = home / "policies-platform"
    policies.mkdir()
    (policies / "request-authentication.yaml").write_text(
        SEED_REQUEST_AUTHENTICATION.replace(
            "https://idp.local/auth/realms/ML/.well-known/jwks.json", idp.info["jwks_uri"]
        )
    )
    (policies / "authorization-policy.yaml").write_text(SEED_AUTHORIZATION_POLICY)
    model = home / "model"
    model.mkdir()
    shutil.copy(ROOT / "examples" / "iris" / "model.onnx", model / "model.onnx")
    (model / "palisade.yaml").write_text(MANIFEST)
    build(home, model)
    server = Server(home, ["--policy-dir", str(policies), *gateway_config(home)])
    yield server, idp, home
    server.stop()
    idp.stop()


def test_allowed_emails_get_predictions(seeded):
    server, idp, _ = seeded
    status, _, body = call(server, idp.token("ml-person-a"))
    assert status == 200, body
    assert body["outputs"][0]["data"] == [0]


def test_other_emails_are_denied(seeded):
    server, idp, _ = seeded
    status, _, body = call(server, idp.token("ml-person-c"))
    assert status == 403
    assert body == {"error": "RBAC: access denied"}
    status, _, _ = call(server, idp.token("ml-rs256"))
    assert status == 403, "a token without an email claim"


def test_no_token_is_401(seeded):
    server, _, _ = seeded
    assert call(server, None)[0] == 401


def palisade(*args, token=None, server=None):
    env = None
    cmd = [palisade_bin(), "policy", *args]
    if server:
        cmd += ["--server", server.base]
    if token:
        cmd += ["--auth-token", token]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def test_owner_self_service_with_the_cli(seeded, tmp_path):
    server, idp, home = seeded
    owner = issue_token(home, "--email", "data-scientist@company.com")
    person_c = idp.token("ml-person-c")
    assert call(server, person_c)[0] == 403

    explained = palisade("explain", "iris", token=owner, server=server)
    assert explained.returncode == 0, explained.stderr
    assert "example-model/allow-to-example-model" in explained.stdout
    assert "person_a@company.com" in explained.stdout

    check = palisade("check", "--model", "iris", "--token", person_c, token=owner, server=server)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "DENY" in check.stdout

    policy = tmp_path / "marketing.yaml"
    policy.write_text(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: marketing-analysts, namespace: example-model}\n"
        "spec:\n  rules:\n  - when:\n    - key: request.auth.claims[groups]\n      values: [marketing]\n"
    )
    stranger = issue_token(home, "--email", "stranger@company.com")
    refused = palisade("apply", "-f", str(policy), token=stranger, server=server)
    assert refused.returncode == 64, refused.stderr
    assert "you own no model in namespace" in refused.stderr

    applied = palisade("apply", "-f", str(policy), token=owner, server=server)
    assert applied.returncode == 0, applied.stderr
    assert "example-model/marketing-analysts created" in applied.stdout
    # The impact before the change: the model it selects, who gains access (the platform's
    # ALLOW policy already keeps the owner out, so no owner loses anything here).
    assert "example-model/marketing-analysts selects example-model/iris:" in applied.stdout, applied.stdout
    assert "gains access: group:marketing" in applied.stdout, applied.stdout
    assert call(server, person_c)[0] == 200, "person_c is in the marketing group"
    check = palisade("check", "--model", "iris", "--claims", json.dumps({"groups": ["marketing"]}), token=owner, server=server)
    assert check.returncode == 0 and "ALLOW" in check.stdout, check.stdout

    listed = palisade("list", "--output", "json", token=owner, server=server)
    names = {p["name"]: p["source"] for p in json.loads(listed.stdout)["policies"]}
    assert names == {"allow-to-example-model": "platform", "marketing-analysts": "owner"}

    deleted = palisade("delete", "example-model/marketing-analysts", token=owner, server=server)
    assert deleted.returncode == 0, deleted.stderr
    assert call(server, person_c)[0] == 403
