"""A hostile page in headless Chromium cannot deploy, promote, abort or read ``kaip up``'s state.

The page is an App's (``fixtures/attacker_app.py``), served through the gateway twice: on the
traffic port's own origin (an App next to the control port: same host, another port, and its
``Set-Cookie`` reaches the control port) and on ``evil.example`` (another site; Chromium maps the
name to 127.0.0.1). Its script tries simple ``text/plain`` POSTs, JSON with credentials, reads
and form posts against the control port while a rollout is in progress. A third page sits on
``evil.example`` *at the control port* itself, as after DNS rebinding, and reads its own origin.

Every answer the control port gave is recorded from the browser's side: each was a refusal
(401, 403 or 421), the page could read none of them, and afterwards nothing has changed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_platform import FIXTURES, LocalPlatform, model_spec, wait_for
from playwright import sync_api as playwright

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_MS = 180_000  # how long a browser step may take before the test fails (a loaded machine)
SLOW_STEPS = "[{weight: 10, pauseSeconds: 600}, {weight: 100}]"
APP = """\
---
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {name: web}
spec:
  owner: e2e
  command: [python, attacker_app.py]
"""
EVIL_APP = """\
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {name: evil}
spec:
  owner: attacker
  command: [python, -c, "import pathlib; pathlib.Path('pwned').touch()"]
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium")
    local = LocalPlatform(tmp_path_factory.mktemp("browser"))
    spec = local.write_spec(model_spec(steps=SLOW_STEPS) + APP)
    shutil.copy(FIXTURES / "attacker_app.py", local.spec_dir / "attacker_app.py")
    local.up(spec)
    try:
        local.write_spec(model_spec(entrypoint="model:HealthyV2", steps=SLOW_STEPS) + APP)
        assert local.cli("deploy", str(spec)).returncode == 0
        wait_for(lambda: local.resource("echo")["rollout"] is not None, "the rollout to start")
        yield local
    finally:
        local.down()


def browser_args() -> list[str]:
    return [
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP evil.example 127.0.0.1",
    ]  # fmt: skip


def snapshot(platform: LocalPlatform) -> dict[str, Any]:
    """What an attack could change: resources, revisions, the rollout, the event log."""
    echo = platform.resource("echo")
    return {
        "resources": sorted(r["name"] for r in platform.status()["resources"]),
        "echo": (echo["stable"], echo["canary"], echo["rollout"]["step"]),
        "rollouts": [(r["id"], r["status"]) for r in platform.rollouts("echo")],
        "events": platform.admin("GET", "/_kaip/events").json()["events"],
    }


def test_a_hostile_page_can_neither_change_nor_read_kaip_up(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    (evil_dir / "kaip.yaml").write_text(EVIL_APP)
    before = snapshot(platform)
    gateway_port = platform.url.rsplit(":", 1)[1]
    admin_port = platform.admin_url.rsplit(":", 1)[1]
    pages = {
        "an App on the traffic port": f"{platform.url}/apps/web/",
        "another site": f"http://evil.example:{gateway_port}/apps/web/",
    }
    seen: list[tuple[str, str, int, str]] = []  # (page, request, status, cookie sent)
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=browser_args(), timeout=BROWSER_MS
        )
        try:
            context = browser.new_context()
            context.set_default_timeout(BROWSER_MS)
            page = context.new_page()
            for label, url in pages.items():

                def record(response: Any, label: str = label) -> None:
                    if response.url.startswith(
                        (platform.admin_url, f"http://evil.example:{admin_port}")
                    ):
                        cookie = response.request.all_headers().get("cookie", "")
                        request = f"{response.request.method} {response.url}"
                        seen.append((label, request, response.status, cookie))

                page.on("response", record)
                page.goto(f"{url}?control={platform.admin_url}&spec={evil_dir}")
                page.wait_for_function("document.title === 'done'")
                results: dict[str, str] = page.evaluate("window.results")
                # A form post's answer may be reported after the page says done (a loaded
                # machine): let the browser's events run until the six have come, or time out.
                deadline = time.monotonic() + BROWSER_MS / 1000
                while len([s for s in seen if s[0] == label]) < 6 and time.monotonic() < deadline:
                    page.wait_for_timeout(100)
                page.remove_listener("response", record)
                print(f"\n{label}:")
                for attack, outcome in results.items():
                    print(f"  {attack}: {outcome}")
                    assert outcome.startswith(("blocked", "sent, answer unreadable", "form")), (
                        attack,
                        outcome,
                    )
            planted = [c for c in context.cookies() if c["name"] == "kaip_session"]
            assert planted, "the App's Set-Cookie was not stored"

            # A top-level visit carries the App's cookie to the control port: still 401.
            answer = page.goto(f"{platform.admin_url}/_kaip/status")
            assert answer is not None
            assert "kaip_session=planted-by-an-app" in answer.request.all_headers()["cookie"]
            assert answer.status == 401
            assert "resources" not in page.content()

            # DNS rebinding: a page served from evil.example at the control port's own port.
            rebound = page.goto(f"http://evil.example:{admin_port}/_kaip/events")
            assert rebound is not None and rebound.status == 421
            same_origin = page.evaluate(
                "fetch('/_kaip/status').then(async r => r.status + ' ' + await r.text())"
            )
            assert same_origin.startswith("421 ") and "resources" not in same_origin
        finally:
            browser.close()
    for label, request, status, cookie in seen:
        print(f"control port: {label}: {request} -> {status} (cookie: {cookie or 'none'})")
    # The simple and form POSTs reach the port (the browser reports no answer to a request it
    # stopped at CORS: the JSON ones and the reads, which the page could not read either).
    for label in pages:
        assert len([s for s in seen if s[0] == label]) == 6, "the attacks never reached the port"
    assert {status for _, _, status, _ in seen} <= {401, 403, 421}
    assert any(cookie for _, _, _, cookie in seen), "the App's cookie never reached the port"
    assert not (evil_dir / "pwned").exists()
    assert snapshot(platform) == before
