"""The web console in a real browser (Debian's chromium, driven by playwright) against a real
`palisade serve` and a real OpenID provider (npm `oidc-provider`, tests/idp): sign in through
the provider's own login page, see only one's own models, sign out. Every request the console's
pages make is recorded: none may leave the server. Screenshots of each page go to
artifacts/console/ (not committed)."""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import ROOT, Server, build, issue_token

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "artifacts" / "console"

ALLOW_CAROL = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-carol
  namespace: default
spec:
  selector:
    matchLabels:
      team: data-science
  rules:
  - when:
    - key: request.auth.claims[email]
      values: [carol@example.com]
"""

BOB_MODEL = """name: iris-bob
version: "1.0.0"
owners:
  - bob@example.com
model:
  path: model.onnx
  format: onnx
"""


def free_port():
    """A port free now on 127.0.0.1: the IdP must know the console's redirect URI before the
    server starts, so the server's port is chosen first."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class IdP:
    """tests/idp/idp.mjs with the console's client and two people: alice (owner of iris) and
    bob (owner of iris-bob)."""

    def __init__(self, redirect):
        if not (ROOT / "tests" / "idp" / "node_modules").exists():
            pytest.fail("tests/idp/node_modules is missing: run scripts/install-test-deps.sh")
        self.proc = subprocess.Popen(
            [
                "node",
                str(ROOT / "tests" / "idp" / "idp.mjs"),
                "--console-redirect",
                redirect,
                "--user",
                "alice:alice@example.com:data-science",
                "--user",
                "bob:bob@example.com",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.info = json.loads(self.proc.stdout.readline())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    home = tmp_path_factory.mktemp("console-home")
    build(home, ROOT / "examples" / "iris")
    bob = tmp_path_factory.mktemp("bob-model")
    shutil.copy(ROOT / "examples" / "iris" / "model.onnx", bob / "model.onnx")
    (bob / "palisade.yaml").write_text(BOB_MODEL)
    build(home, bob)
    port = free_port()
    redirect = f"http://127.0.0.1:{port}/console/callback"
    idp = IdP(redirect)
    secret = home / "console-secret"
    secret.write_text("palisade-console-secret\n")
    config = home / "platform.yaml"
    config.write_text(
        "console:\n"
        "  oidc:\n"
        f"    issuer: {idp.info['issuer']}\n"
        "    clientId: palisade-console\n"
        f"    clientSecretFile: {secret}\n"
        f"    redirectUri: {redirect}\n"
        "    scopes: [openid, email, groups]\n"
    )
    policies = home / "policies"
    policies.mkdir()
    (policies / "allow-carol.yaml").write_text(ALLOW_CAROL)
    server = Server(home, ["--config", str(config), "--policy-dir", str(policies)], listen=f"127.0.0.1:{port}")
    yield server, idp
    server.stop()
    idp.stop()


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: scripts/test.sh installs Debian's chromium package")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class Recorder:
    """Every request of a page, with the page it was made from; requests off loopback are
    refused (the IdP's login page names a web font; nothing may leave the machine)."""

    def __init__(self, page, base):
        self.base = base
        self.made = []
        self.csp_violations = []
        page.on("request", lambda r: self.made.append((page.url, r.resource_type, r.url)))
        page.on("console", lambda m: "Content Security Policy" in m.text and self.csp_violations.append(m.text))
        page.route("**/*", lambda route: route.continue_() if urlparse(route.request.url).hostname == "127.0.0.1" else route.abort())

    def from_console(self):
        """Requests made by console pages for what they show (scripts, styles, calls)."""
        return [(kind, url) for page, kind, url in self.made if page.startswith(self.base + "/console") and kind != "document"]


def sign_in(page, server, login):
    page.goto(f"{server.base}/console/")
    page.wait_for_url(f"{server.base}/console/signin")
    page.click("#oidc")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    # oidc-provider's consent page, then back through the callback to the console.
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{server.base}/console/")


def infer(server, token, model="iris"):
    """The status of an iris prediction with this token."""
    body = json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})
    request = urllib.request.Request(
        f"{server.base}/v2/models/{model}/infer",
        data=body.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_sign_in_see_only_ones_own_models_and_sign_out(console, browser):
    server, _ = console
    context = browser.new_context()
    page = context.new_page()
    recorder = Recorder(page, server.base)

    page.goto(f"{server.base}/console/")
    page.wait_for_url(f"{server.base}/console/signin")
    page.locator("#oidc").wait_for()
    shot(page, "signin")

    sign_in(page, server, "alice")
    page.locator("#models").wait_for(timeout=30_000)
    assert page.locator("#who").inner_text() == "alice@example.com"
    shot(page, "models")
    rows = page.locator("#models tbody tr")
    assert [rows.nth(i).get_attribute("data-model") for i in range(rows.count())] == ["iris"]
    assert "iris-bob" not in page.content()
    assert "sha256:" in page.locator("#models").inner_text()

    page.click("#models a")
    page.wait_for_url(f"{server.base}/console/models/iris")
    page.locator("#model-name").wait_for()
    assert page.locator("#model-name").inner_text() == "iris"
    shown = page.locator("main").inner_text()
    assert "output_probability" in shown and "FP32" in shown, shown
    shot(page, "model")

    # Try it, with alice's own token, through the data plane: refused, because the
    # platform's ALLOW policy for carol applies and admits only carol (owners included).
    alice = issue_token(server.home, "--email", "alice@example.com")
    page.fill("#try-token", alice)
    page.click("#try button[type=submit]")
    expect(page.locator("#try-result")).to_contain_text("HTTP 403")

    # Who can call it: its owner, and carol through the platform's policy; bob? No.
    page.locator("#access").wait_for()
    policy = page.locator("tr[data-policy='default/allow-carol']")
    expect(policy).to_contain_text("ALLOW")
    expect(policy).to_contain_text("carol@example.com")
    page.fill("#check-claims", '{"email": "bob@example.com"}')
    page.click("#check button[type=submit]")
    # (Waits go through locators: the page's CSP refuses playwright's evaluated functions.)
    result = page.locator("#check-result")
    expect(result).to_have_text(re.compile(r"^Refused \(403\)"))
    page.fill("#check-claims", '{"email": "carol@example.com"}')
    page.click("#check button[type=submit]")
    expect(result).to_have_text(re.compile(r"^Allowed.*allow-carol"))
    shot(page, "access")

    # Change access: dave may call iris once alice applies it, not after a dry run only.
    dave = issue_token(server.home, "--email", "dave@example.com")
    assert infer(server, dave) == 403
    expect(page.locator("#change-emails")).to_have_value("alice@example.com")
    # Built from the form: people, and the one path and method they may call.
    page.fill("#change-emails", "alice@example.com, dave@example.com")
    page.fill("#change-paths", "/v2/models/iris/infer")
    page.fill("#change-methods", "post")
    yaml = page.locator("#change-yaml")
    expect(yaml).to_have_value(re.compile("dave@example.com"))
    expect(yaml).to_have_value(re.compile(r'paths: \["/v2/models/iris/infer"\]'))
    expect(yaml).to_have_value(re.compile(r'methods: \["POST"\]'))
    page.click("#change-dry-run")
    change = page.locator("#change-result")
    expect(change).to_contain_text("Dry run of default/iris-callers (nothing changed)")
    expect(change.locator("#impact")).to_contain_text("gains")
    expect(change.locator("#impact")).to_contain_text("dave@example.com")
    # A new policy: every line of its YAML is added.
    expect(change.locator("#change-diff .diff-added").first).to_be_visible()
    expect(change.locator("#change-diff .diff-removed")).to_have_count(0)
    shot(page, "change-dry-run")
    assert infer(server, dave) == 403
    page.click("#change-apply")
    expect(change).to_contain_text("Applied default/iris-callers (created)")
    shot(page, "change-applied")
    assert infer(server, dave) == 200
    page.reload()
    expect(page.locator("tr[data-policy='default/iris-callers']")).to_contain_text("dave@example.com")

    # Changing it again: the dry run shows the one line that changes, old and new.
    page.fill("#change-emails", "alice@example.com, dave@example.com, erin@example.com")
    page.fill("#change-paths", "/v2/models/iris/infer")
    page.fill("#change-methods", "POST")
    page.click("#change-dry-run")
    diff = page.locator("#change-diff")
    expect(diff.locator(".diff-removed")).to_have_count(1)
    expect(diff.locator(".diff-added")).to_have_count(1)
    expect(diff.locator(".diff-removed")).to_contain_text('values: ["alice@example.com", "dave@example.com"]')
    expect(diff.locator(".diff-added")).to_contain_text("erin@example.com")
    expect(change.locator("#impact")).to_contain_text("gains erin@example.com")
    shot(page, "change-diff")
    # A service account of the built-in issuer becomes a rule on its request principal.
    page.fill("#change-accounts", "default/nightly-batch")
    expect(yaml).to_have_value(re.compile(r"requestPrincipals: \[\"https?://[^\"]+/system:serviceaccount:default:nightly-batch\"\]"))

    # Alice's policy admits alice too: "try it" now gets an answer.
    page.fill("#try-token", alice)
    page.click("#try button[type=submit]")
    expect(page.locator("#try-result")).to_contain_text("HTTP 200")
    expect(page.locator("#try-result")).to_contain_text("output_probability")
    shot(page, "try-it")

    # The audit page finds dave's requests: refused twice, then served.
    page.click("nav a[href='/console/audit']")
    page.wait_for_url(f"{server.base}/console/audit")
    page.fill("#audit-caller", "dave@example.com")
    page.click("#audit-filter button[type=submit]")
    rows = page.locator("#audit tbody tr")
    expect(rows).to_have_count(3)  # alice's own calls are not dave's
    expect(rows.nth(0)).to_contain_text("200")
    expect(rows.nth(0)).to_contain_text("allow")
    expect(rows.nth(1)).to_contain_text("403")
    # Requests over time: the filtered records (dave's) per bucket, allowed and refused.
    chart = page.locator("#chart-audit")
    expect(chart).to_be_visible()
    expect(chart.locator("rect.bar.allowed")).to_have_count(1)
    assert chart.locator("rect.bar.refused").count() >= 1
    shot(page, "audit")

    # One record opened: all its fields, and the hash chain verified at it. The writer signs
    # a checkpoint within 10 s of a record, so "pending" may come first.
    deadline = time.monotonic() + 30
    while True:
        rows.nth(0).locator("button[data-seq]").click()
        verify = page.locator("#audit-verify")
        expect(verify).to_contain_text(re.compile("verified|pending"))
        if verify.inner_text().startswith("verified"):
            break
        assert time.monotonic() < deadline, verify.inner_text()
        time.sleep(1)
    record = page.locator("#audit-record")
    expect(record).to_contain_text("dave@example.com")
    expect(record).to_contain_text("prev_hash")
    assert "covers it" in verify.inner_text()
    shot(page, "audit-record")
    exported = page.request.get(server.base + page.locator("#audit-export").get_attribute("href"))
    lines = [json.loads(line) for line in exported.text().splitlines()]
    assert [r["status"] for r in lines] == [200, 403, 403]
    assert all(r["email"] == "dave@example.com" for r in lines)

    # Deleting the policy: a dry run (every line removed, dave loses access), then for real.
    page.goto(f"{server.base}/console/models/iris")
    page.locator("button[data-delete='default/iris-callers']").click()
    deletion = page.locator("#delete-result")
    expect(deletion).to_contain_text("Dry run of deleting default/iris-callers (nothing changed)")
    expect(deletion.locator("#delete-diff .diff-added")).to_have_count(0)
    expect(deletion.locator("#delete-diff .diff-removed").first).to_contain_text("apiVersion")
    expect(deletion.locator("#impact")).to_contain_text("loses")
    expect(deletion.locator("#impact")).to_contain_text("dave@example.com")
    shot(page, "delete-dry-run")
    assert infer(server, dave) == 200
    # Alice loses access too (the platform's ALLOW for carol remains): she confirms.
    page.check("#delete-owners")
    page.click("#delete-confirm")
    expect(deletion).to_contain_text("Deleted default/iris-callers")
    assert infer(server, dave) == 403
    page.reload()
    expect(page.locator("tr[data-policy='default/iris-callers']")).to_have_count(0)
    shot(page, "delete-done")

    # Bob's model, asked for by URL, is not there for alice.
    response = page.goto(f"{server.base}/console/models/iris-bob")
    assert response.status == 404
    response = page.request.get(f"{server.base}/console/api/models/iris-bob")
    assert response.status == 404

    page.goto(f"{server.base}/console/")
    page.locator("#signout").click()
    page.wait_for_url(f"{server.base}/console/signin")
    page.goto(f"{server.base}/console/")
    page.wait_for_url(f"{server.base}/console/signin")
    assert page.request.get(f"{server.base}/console/api/me").status == 401

    made = recorder.from_console()
    assert made, "the console's pages loaded nothing"
    elsewhere = [url for _, url in made if urlparse(url).netloc != server.host_port]
    assert not elsewhere, f"a console page fetched from elsewhere: {elsewhere}"
    assert not recorder.csp_violations, recorder.csp_violations
    context.close()


def test_bob_sees_his_model_not_alices(console, browser):
    server, _ = console
    context = browser.new_context()
    page = context.new_page()
    Recorder(page, server.base)
    sign_in(page, server, "bob")
    page.locator("#models").wait_for(timeout=30_000)
    rows = page.locator("#models tbody tr")
    assert [rows.nth(i).get_attribute("data-model") for i in range(rows.count())] == ["iris-bob"]
    assert page.request.get(f"{server.base}/console/api/models/iris").status == 404
    context.close()


def test_session_cookie_and_headers(console, browser):
    server, _ = console
    context = browser.new_context()
    page = context.new_page()
    Recorder(page, server.base)
    sign_in(page, server, "alice")
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["palisade_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/console"
    response = page.request.get(f"{server.base}/console/")
    csp = response.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "default-src 'self'" in csp
    # A change without the CSRF token is refused, even with the session cookie.
    assert page.request.post(f"{server.base}/console/logout").status == 403
    assert page.request.get(f"{server.base}/console/api/me").status == 200
    context.close()


def test_a_sign_in_answer_counts_once_and_only_in_the_browser_that_asked(console, browser):
    """The identity provider's redirect (code and state) replayed: in another browser it lacks
    the sign-in cookie; in the same browser its state is used up. Neither gets a session."""
    server, _ = console
    context = browser.new_context()
    page = context.new_page()
    Recorder(page, server.base)
    callbacks = []
    page.on("request", lambda r: r.url.startswith(f"{server.base}/console/callback") and callbacks.append(r.url))
    sign_in(page, server, "alice")
    assert len(callbacks) == 1 and "code=" in callbacks[0] and "state=" in callbacks[0]

    thief = browser.new_context()
    other = thief.new_page()
    Recorder(other, server.base)
    other.goto(callbacks[0])
    assert other.url == f"{server.base}/console/signin?error=refused"
    assert other.locator("#error").inner_text().startswith("The sign-in was refused")
    assert "palisade_console" not in {c["name"] for c in thief.cookies()}
    shot(other, "signin-refused")
    thief.close()

    again = context.new_page()
    Recorder(again, server.base)
    again.goto(callbacks[0])
    assert again.url == f"{server.base}/console/signin?error=refused"
    context.close()


def test_health_page_charts_the_last_hour(console, browser):
    """The server samples its metrics every 10 s from the start: once a sample holds a
    refusal on alice's model, the health page draws its three charts and the model's
    refusals by reason (bob's model stays hidden)."""
    server, _ = console
    context = browser.new_context()
    page = context.new_page()
    recorder = Recorder(page, server.base)
    sign_in(page, server, "alice")
    # A refusal on iris (a token that is not one: 401) and one on bob's model, which
    # alice must not see.
    assert infer(server, "not-a-token") == 401
    assert infer(server, "not-a-token", model="iris-bob") == 401

    def refused_on_iris():
        points = page.request.get(f"{server.base}/console/api/health").json()["points"]
        return any(reason.startswith("401 ") for p in points for reason in p["by_model"].get("iris", {}))

    deadline = time.monotonic() + 30
    while not refused_on_iris():
        assert time.monotonic() < deadline, "no health sample with the refusal within 30 s"
        time.sleep(1)
    page.click("nav a[href='/console/health']")
    page.wait_for_url(f"{server.base}/console/health")
    for chart in ["#chart-rps", "#chart-latency", "#chart-refused"]:
        expect(page.locator(chart)).to_be_visible()
    expect(page.locator("#chart-refused").locator("xpath=..").locator("ul.legend")).to_contain_text("401 malformed")
    iris = page.locator(".model-refusals[data-model='iris']")
    expect(iris.locator("svg.chart")).to_be_visible()
    expect(iris.locator("ul.legend")).to_contain_text("401 malformed")
    expect(page.locator(".model-refusals[data-model='iris-bob']")).to_have_count(0)
    shot(page, "health")
    assert not recorder.csp_violations, recorder.csp_violations
    context.close()


def test_a_flood_of_sign_ins_from_one_address_does_not_push_out_anothers(console, browser):
    """Pending sign-ins are bounded in total (1000) and per client address (16): a client at
    127.0.0.2 starting sign-ins without end only ever pushes out its own, so alice's sign-in,
    started from 127.0.0.1 before the flood, still finishes."""
    import http.client

    server, _ = console
    context = browser.new_context()
    page = context.new_page()
    Recorder(page, server.base)
    page.goto(f"{server.base}/console/")
    page.wait_for_url(f"{server.base}/console/signin")
    page.click("#oidc")
    page.locator("input[name=login]").wait_for()

    host, port = server.host_port.rsplit(":", 1)
    flood = http.client.HTTPConnection(host, int(port), timeout=30, source_address=("127.0.0.2", 0))
    started = time.monotonic()
    for _ in range(1100):
        flood.request("GET", "/console/login")
        response = flood.getresponse()
        response.read()
        assert response.status == 303
        assert "/console/signin" not in response.getheader("location"), response.getheader("location")
    flood.close()
    print(f"1100 sign-ins started from 127.0.0.2 in {time.monotonic() - started:.1f} s")

    page.fill("input[name=login]", "alice")
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.get_by_role("button", name="Continue").click()
    # Back at the console: signed in, or sent to the sign-in page because the sign-in was lost.
    page.wait_for_url(re.compile(r"/console/(signin\?error=\w+)?$"))
    assert page.url == f"{server.base}/console/", page.url
    page.locator("#models").wait_for(timeout=30_000)
    context.close()
