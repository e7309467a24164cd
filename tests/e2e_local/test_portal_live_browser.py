"""The resource page follows a rollout live in headless Chromium: no reload, no polling.

A real ``kaip up`` serves the Model ``echo`` under a steady load. The browser logs in and opens
``/resources/echo``; then the spec changes and ``kaip deploy`` starts a canary that waits at a
manual pause at 10 %, ``kaip rollout promote`` releases it to 50 % (paused again), a second
promote releases it to 100 %, and it is promoted. The page shows each of those states as it
happens, pushed over its one event stream (htmx's SSE extension, served by kaip, allowed by the
page's Content-Security-Policy), while the page itself is never loaded again (a value the test
puts in ``window`` is still there at the end) and asks the server for nothing but that stream.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from local_platform import Load, LocalPlatform, model_spec, wait_for
from playwright import sync_api as playwright
from test_control_browser import BROWSER_MS, CHROMIUM, browser_args

pytestmark = pytest.mark.slow
STEPS = "[{weight: 10, pause: {}}, {weight: 50, pause: {}}, {weight: 100, pauseSeconds: 1}]"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium")
    local = LocalPlatform(tmp_path_factory.mktemp("portal-live"))
    local.up(local.write_spec(model_spec(steps=STEPS, min_requests=3)))
    try:
        wait_for(lambda: local.resource("echo")["ready"], "echo to be ready")
        yield local
    finally:
        local.down()


def test_the_canary_steps_advance_on_the_page_without_a_reload(platform: LocalPlatform) -> None:
    load = Load(f"{platform.url}/v2/models/echo/infer", workers=2, pause=0.05).start()
    try:
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=browser_args(),
                timeout=BROWSER_MS,
            )
            try:
                follow(platform, browser)
            finally:
                browser.close()
    finally:
        load.stop()


def follow(platform: LocalPlatform, browser: playwright.Browser) -> None:
    context = browser.new_context()
    context.set_default_timeout(BROWSER_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("requestfailed", lambda r: problems.append(f"{r.url}: {r.failure}"))
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.url}: {r.status}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    page.goto(f"{platform.admin_url}/login")
    page.fill("#token", platform.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{platform.admin_url}/")
    page.goto(f"{platform.admin_url}/resources/echo")
    page.wait_for_selector('#live [data-rollout="none"]')
    page.evaluate("window.kaipTestMark = 'still the same page'")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))

    platform.write_spec(model_spec(steps=STEPS, min_requests=3, timeout_seconds=31))
    deployed = platform.cli("deploy", "spec")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    page.wait_for_selector('#live [data-rollout="running"][data-step="1"]')
    assert "paused" in page.inner_text("#live")
    canary = platform.resource("echo")["canary"]
    assert page.get_attribute("#live [data-rollout]", "data-to") == canary

    promoted = platform.cli("rollout", "promote", "echo")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    page.wait_for_selector('#live [data-rollout="running"][data-step="2"]')
    assert "at 50 %" in page.inner_text("#live")
    promoted = platform.cli("rollout", "promote", "echo")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    page.wait_for_selector('#live [data-rollout="none"]')
    wait_for(lambda: platform.resource("echo")["stable"] == canary, "the canary to be stable")
    assert f"stable rev {canary}" in page.inner_text("#live")

    assert page.evaluate("window.kaipTestMark") == "still the same page"
    assert set(requests) <= {f"{platform.admin_url}/resources/echo/events"}, requests
    assert not problems, problems
