"""Promote from the portal in headless Chromium: a deployer may; a viewer, another origin may not.

A real ``kaip up`` rolls the Model ``echo`` (owner e2e) out to a canary that waits at a manual
pause, under a steady load. Tokens come from the real CLI (``kaip token create``). A viewer's
session clicks Promote and reads a refusal naming the role it needs; a page served from another
origin (another port of 127.0.0.1, so the ``SameSite=Strict`` cookie still goes with it) posts
the promote form of a deployer's session, CSRF token included, and is refused by the Origin
check; the rollout has not moved. Then the deployer's session clicks Promote and the canary is
promoted, with the deployer named in the rollout's verdicts. With ``KAIP_SCREENSHOTS=DIR`` the
test also saves a screenshot of each portal page there (how ``docs/portal/`` was made).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from local_platform import Load, LocalPlatform, model_spec, wait_for
from playwright import sync_api as playwright
from test_control_browser import BROWSER_MS, CHROMIUM, browser_args

pytestmark = pytest.mark.slow
STEPS = "[{weight: 10, pause: {}}, {weight: 100, pauseSeconds: 1}]"
EVIL = """<!doctype html><title>a page elsewhere</title>
<form id="f" method="post" action="{action}"><input name="csrf" value="{csrf}"></form>
<script>document.getElementById("f").submit()</script>"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium")
    local = LocalPlatform(tmp_path_factory.mktemp("portal-actions"))
    local.up(local.write_spec(model_spec(steps=STEPS, min_requests=3)))
    try:
        wait_for(lambda: local.resource("echo")["ready"], "echo to be ready")
        yield local
    finally:
        local.down()


def make_token(platform: LocalPlatform, *args: str) -> str:
    made = platform.cli("token", "create", *args)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


class EvilPage:
    """Another origin: an HTTP server on another port that serves one auto-posting form."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_only_a_deployer_promotes_from_the_portal(platform: LocalPlatform) -> None:
    deployer = make_token(platform, "--role", "deployer", "--owner", "e2e", "--name", "dana")
    viewer = make_token(platform, "--role", "viewer", "--name", "vic")
    load = Load(f"{platform.url}/v2/models/echo/infer", workers=2, pause=0.05).start()
    shots = os.environ.get("KAIP_SCREENSHOTS")
    try:
        platform.write_spec(model_spec(steps=STEPS, min_requests=3, timeout_seconds=31))
        deployed = platform.cli("deploy", "spec")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        canary = platform.resource("echo")["canary"]
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=browser_args(),
                timeout=BROWSER_MS,
            )
            try:
                refuse_viewer(platform, browser, viewer, shots)
                promote_as_deployer(platform, browser, deployer, canary, shots)
            finally:
                browser.close()
    finally:
        load.stop()
    assert deployer not in platform.log.read_text() and viewer not in platform.log.read_text()


def log_in(platform: LocalPlatform, browser: playwright.Browser, token: str) -> playwright.Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(BROWSER_MS)
    page = context.new_page()
    page.goto(f"{platform.admin_url}/login")
    page.fill("#token", token)
    page.click("#token ~ p button[type=submit]")
    page.wait_for_url(f"{platform.admin_url}/")
    return page


def refuse_viewer(
    platform: LocalPlatform, browser: playwright.Browser, token: str, shots: str | None
) -> None:
    page = log_in(platform, browser, token)
    page.goto(f"{platform.admin_url}/resources/echo")
    page.wait_for_selector('#live [data-rollout="running"][data-step="1"]')
    page.click("#actions button[value=promote]")
    alert = page.get_by_role("alert").inner_text()
    assert "vic (portal session) (viewer) may not promote the rollout of Model echo" in alert
    assert "needs the deployer role" in alert
    if shots:
        page.screenshot(path=str(Path(shots) / "refused.png"))
    rollout = platform.resource("echo")["rollout"]
    assert (rollout["step"], rollout["paused"]) == (1, True)
    page.context.close()


def promote_as_deployer(
    platform: LocalPlatform,
    browser: playwright.Browser,
    token: str,
    canary: str,
    shots: str | None,
) -> None:
    page = log_in(platform, browser, token)
    if shots:
        page.screenshot(path=str(Path(shots) / "catalog.png"))
    page.goto(f"{platform.admin_url}/resources/echo")
    page.wait_for_selector('#live [data-rollout="running"][data-step="1"]')
    if shots:
        page.screenshot(path=str(Path(shots) / "resource.png"), full_page=True)
    csrf = page.get_attribute("#actions form[action$='/promote'] input[name=csrf]", "value")
    assert csrf

    evil = EvilPage(EVIL.format(action=f"{platform.admin_url}/resources/echo/promote", csrf=csrf))
    try:
        other = page.context.new_page()
        with other.expect_response(f"{platform.admin_url}/resources/echo/promote") as answer:
            other.goto(evil.url)
        assert answer.value.status == 403
        assert "takes requests from its own pages only" in answer.value.text()
    finally:
        evil.close()
    rollout = platform.resource("echo")["rollout"]
    assert (rollout["step"], rollout["paused"]) == (1, True), "another origin moved the rollout"

    page.click("#actions button[value=promote]")
    assert "released by dana (portal session)" in page.get_by_role("status").inner_text()
    wait_for(lambda: platform.resource("echo")["stable"] == canary, "the canary to be promoted")
    reasons = [v["reason"] for r in platform.rollouts("echo") for v in r["verdicts"]]
    assert any("released by dana (portal session)" in reason for reason in reasons), reasons
    if shots:
        page.goto(f"{platform.admin_url}/delivery")
        page.screenshot(path=str(Path(shots) / "delivery.png"), full_page=True)
    page.context.close()
