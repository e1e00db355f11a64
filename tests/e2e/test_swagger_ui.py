"""Swagger UI at /docs in a real headless Chromium (Debian's package): load the page, run
"Try it out" on the iris model, and check that nothing is fetched from outside the server."""

import json
import os
import shutil
from urllib.parse import urlparse

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# As root in a container, and on a machine with no outside network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: scripts/test.sh installs Debian's chromium package")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def test_try_it_out_on_iris(server, browser):
    page = browser.new_page()
    hosts = set()
    page.on("request", lambda req: hosts.add(urlparse(req.url).netloc))
    page.goto(f"{server.base}/docs", wait_until="networkidle")

    operation = page.locator("#operations-iris-infer_iris")
    operation.wait_for(timeout=30_000)

    # Authorize with a bearer token, as a user pasting one from their identity provider.
    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.locator("#auth-bearer-value").fill(server.token)
    dialog.get_by_role("button", name="Apply credentials").click()
    dialog.get_by_role("button", name="Close").click()

    operation.locator(".opblock-summary").first.click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()

    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=30_000)
    assert status.inner_text().strip() == "200"
    body = operation.locator(".live-responses-table tbody .response-col_description pre").first.inner_text()
    reply = json.loads(body)
    assert reply["model_name"] == "iris"
    assert [o["name"] for o in reply["outputs"]] == ["output_label", "output_probability"]
    assert hosts == {server.host_port}, f"the docs page fetched from elsewhere: {hosts}"
    page.close()


def test_docs_list_every_endpoint(server, browser):
    page = browser.new_page()
    page.goto(f"{server.base}/docs/", wait_until="networkidle")
    page.locator("#operations-iris-infer_iris").wait_for(timeout=30_000)
    text = page.locator("section.swagger-ui").inner_text()
    for path in ["/v2/models/iris/infer", "/v2/models/iris/versions/{version}/infer", "/v2/health/ready"]:
        assert path in text
    page.close()
