"""Single sign-on against a real OpenID provider (npm `oidc-provider`, tests/idp).

The seed platform's RequestAuthentication is loaded as written, except that its jwksUri
points at the local IdP (whose issuer is the seed's `https://idp.local/auth/realms/ML`);
the platform config names its namespace, `api`, a gateway namespace.
"""

import base64
import json
import os
import pathlib
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import ROOT, Server, build, gateway_config

SEED_ISSUER = "https://idp.local/auth/realms/ML"
IRIS_ROW = json.dumps(
    {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
).encode()

SEED_REQUEST_AUTHENTICATION = """kind: RequestAuthentication
apiVersion: security.istio.io/v1beta1
metadata:
  name: enforce-jwt-for-apis
  namespace: api
spec:
  jwtRules:
    - audiences:
        - ml
      fromHeaders:
        - name: Authorization
          prefix: "Bearer "
      issuer: "https://idp.local/auth/realms/ML"
      jwksUri: "https://idp.local/auth/realms/ML/.well-known/jwks.json"
"""

# These tests are about authentication. Every authenticated caller may call the model, so
# that a refusal here can only come from authentication.
ALLOW_AUTHENTICATED = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: any-authenticated-caller
  namespace: default
spec:
  rules:
    - from:
        - source:
            requestPrincipals: ["*"]
"""


class IdP:
    """The test identity provider as a subprocess."""

    def __init__(self, issuer):
        if not (ROOT / "tests" / "idp" / "node_modules").exists():
            pytest.fail("tests/idp/node_modules is missing: run scripts/install-test-deps.sh")
        self.proc = subprocess.Popen(
            ["node", str(ROOT / "tests" / "idp" / "idp.mjs"), "--issuer", issuer],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            pytest.fail("the test IdP did not start")
        self.info = json.loads(line)
        self.url = self.info["url"]

    def token(self, client, resource=None, ttl=None):
        form = {"grant_type": "client_credentials"}
        if resource:
            form["resource"] = resource
        if ttl:
            form["ttl"] = str(ttl)
        req = urllib.request.Request(self.info["token_endpoint"], data=urllib.parse.urlencode(form).encode())
        basic = base64.b64encode(f"{client}:{client}-secret".encode()).decode()
        req.add_header("Authorization", f"Basic {basic}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)["access_token"]

    def post(self, path):
        with urllib.request.urlopen(urllib.request.Request(self.url + path, data=b""), timeout=10) as resp:
            return json.load(resp)

    def jwks_fetches(self):
        with urllib.request.urlopen(self.url + "/test/jwks-fetches", timeout=10) as resp:
            return json.load(resp)["count"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)


def call(server, token, body=IRIS_ROW, path="/v2/models/iris/infer"):
    req = urllib.request.Request(server.base + path, data=body)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, json.load(resp)
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, err.headers, json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return err.code, err.headers, {"text": raw.decode(errors="replace")}


def header(token):
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))


@pytest.fixture(scope="module")
def idp():
    idp = IdP(SEED_ISSUER)
    yield idp
    idp.stop()


@pytest.fixture(scope="module")
def sso(tmp_path_factory, idp):
    """Palisade trusting the IdP through the seed's RequestAuthentication."""
    home = tmp_path_factory.mktemp("sso-home")
    policies = home / "policies"
    policies.mkdir()
    seed = SEED_REQUEST_AUTHENTICATION.replace(
        "https://idp.local/auth/realms/ML/.well-known/jwks.json", idp.info["jwks_uri"]
    )
    assert seed.count(idp.info["jwks_uri"]) == 1
    (policies / "request-authentication.yaml").write_text(seed)
    (policies / "allow-authenticated.yaml").write_text(ALLOW_AUTHENTICATED)
    build(home, ROOT / "examples" / "iris")
    # A short skew makes expiry observable within the test's time budget.
    server = Server(home, ["--policy-dir", str(policies), *gateway_config(home, "  clockSkew: 1s\n")])
    yield server
    server.stop()


def test_rs256_and_es256_tokens_are_accepted(sso, idp):
    for client, alg in [("ml-rs256", "RS256"), ("ml-es256", "ES256")]:
        token = idp.token(client)
        assert header(token)["alg"] == alg
        status, headers, body = call(sso, token)
        assert status == 200, body
        assert "x-request-id" in headers
        assert body["outputs"][0]["data"] == [0]


def test_no_token_is_401(sso):
    status, headers, _ = call(sso, None)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="palisade"'


def test_tampered_token_is_401(sso, idp):
    token = idp.token("ml-rs256")
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    status, headers, _ = call(sso, f"{head}.{forged}.{sig}")
    assert status == 401
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]


def test_expired_token_is_401(sso, idp):
    token = idp.token("ml-rs256", ttl=1)
    assert call(sso, token)[0] == 200
    time.sleep(3)
    status, headers, body = call(sso, token)
    assert status == 401, body
    assert "expired" in headers["WWW-Authenticate"]


def test_token_from_another_issuer_is_401(sso):
    other = IdP("http://127.0.0.1:1/some/other/realm")
    try:
        status, _, body = call(sso, other.token("ml-rs256"))
        assert status == 401, body
        assert "issuer is not trusted" in body["error"]
    finally:
        other.stop()


def test_audience_mismatch_is_403(sso, idp):
    token = idp.token("ml-rs256", resource="urn:other")
    status, _, body = call(sso, token)
    assert status == 403, body
    assert "audience" in body["error"]


def test_unknown_kids_do_not_cause_a_fetch_storm(sso, idp):
    token = idp.token("ml-es256")
    assert call(sso, token)[0] == 200
    before = idp.jwks_fetches()
    head, payload, sig = token.split(".")
    for i in range(25):
        h = header(token)
        h["kid"] = f"made-up-{i}"
        forged_head = base64.urlsafe_b64encode(json.dumps(h).encode()).decode().rstrip("=")
        assert call(sso, f"{forged_head}.{payload}.{sig}")[0] == 401
    assert idp.jwks_fetches() - before <= 1


def test_key_rotation_and_outage(tmp_path_factory):
    """Rotation at the IdP is picked up through the unknown-kid refetch; then, with the IdP
    stopped, tokens issued before keep working from the cached keys."""
    idp = IdP(SEED_ISSUER)
    home = tmp_path_factory.mktemp("rotation-home")
    policies = home / "policies"
    policies.mkdir()
    (policies / "ra.yaml").write_text(
        SEED_REQUEST_AUTHENTICATION.replace(
            "https://idp.local/auth/realms/ML/.well-known/jwks.json", idp.info["jwks_uri"]
        )
    )
    (policies / "allow.yaml").write_text(ALLOW_AUTHENTICATED)
    build(home, ROOT / "examples" / "iris")
    server = Server(home, ["--policy-dir", str(policies), *gateway_config(home)])
    try:
        old = idp.token("ml-rs256")
        assert call(server, old)[0] == 200
        rotated = idp.post("/test/rotate?kty=RSA")["kid"]
        new = idp.token("ml-rs256")
        assert header(new)["kid"] == rotated
        assert call(server, new)[0] == 200, "the new key was fetched without a restart"
        unused = idp.token("ml-rs256")
        idp.stop()
        assert call(server, old)[0] == 200
        assert call(server, unused)[0] == 200, "a never-seen token verifies with the cached keys"
    finally:
        server.stop()
        idp.stop()


def test_jwks_that_never_loaded_fails_closed(tmp_path_factory):
    idp = IdP(SEED_ISSUER)
    home = tmp_path_factory.mktemp("closed-home")
    policies = home / "policies"
    policies.mkdir()
    dead = "http://127.0.0.1:9/jwks"
    (policies / "ra.yaml").write_text(
        SEED_REQUEST_AUTHENTICATION.replace("https://idp.local/auth/realms/ML/.well-known/jwks.json", dead)
    )
    (policies / "allow.yaml").write_text(ALLOW_AUTHENTICATED)
    build(home, ROOT / "examples" / "iris")
    server = Server(home, ["--policy-dir", str(policies), *gateway_config(home)])
    try:
        status, _, body = call(server, idp.token("ml-rs256"))
        assert status == 401, body
        assert "unavailable" in body["error"]
    finally:
        server.stop()
        idp.stop()
