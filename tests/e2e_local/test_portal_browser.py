"""The portal in headless Chromium against a real ``kaip up``: log in, see the catalog, a resource.

The browser starts at the traffic port's ``/``, which sends it to the portal on the control port;
the portal sends it to its login form; the token from ``.kaip/admin.token`` typed there opens a
session, and the catalog lists the quickstart-like Model with its owner, its revision at 100 %,
its health and the requests the gateway counted for it. The session cookie is ``HttpOnly``
(the page's own script cannot read it) and ``SameSite=Strict``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from local_platform import INFER_BODY, LocalPlatform, model_spec, wait_for
from playwright import sync_api as playwright
from test_control_browser import BROWSER_MS, CHROMIUM, browser_args

pytestmark = pytest.mark.slow
REQUESTS = 5


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium")
    local = LocalPlatform(tmp_path_factory.mktemp("portal"))
    local.up(local.write_spec(model_spec()))
    try:
        wait_for(lambda: local.resource("echo")["ready"], "echo to be ready")
        for _ in range(REQUESTS):
            answer = httpx.post(
                f"{local.url}/v2/models/echo/infer", json=INFER_BODY, timeout=60, trust_env=False
            )
            assert answer.status_code == 200, answer.text
        yield local
    finally:
        local.down()


def test_a_browser_logs_in_and_sees_the_catalog(platform: LocalPlatform) -> None:
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=browser_args(), timeout=BROWSER_MS
        )
        try:
            context = browser.new_context()
            context.set_default_timeout(BROWSER_MS)
            page = context.new_page()
            page.goto(f"{platform.url}/")  # the traffic port's root: on to the portal
            assert page.url == f"{platform.admin_url}/login"
            page.fill("#token", "not the token")
            page.click("button[type=submit]")
            assert page.get_by_role("alert").inner_text().startswith("That is not this run's")

            page.fill("#token", platform.token)
            page.click("button[type=submit]")
            page.wait_for_url(f"{platform.admin_url}/")
            row = page.locator("tr", has=page.locator("a", has_text="echo"))
            cells = [c.strip() for c in row.locator("td").all_inner_texts()]
            print("\ncatalog row:", cells)
            assert cells[1:3] == ["Model", "e2e"]
            assert cells[3] == f"rev {platform.resource('echo')['stable']}: 100 %"
            assert cells[4] == "ready"
            assert int(cells[6]) >= REQUESTS
            assert cells[9] == "0.0 %"

            [cookie] = [c for c in context.cookies() if c["name"] == "kaip_portal"]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert "kaip_portal" not in page.evaluate("document.cookie")

            row.locator("a").click()
            page.wait_for_url(f"{platform.admin_url}/resources/echo")
            assert page.locator("h1").inner_text() == "Model echo"
            assert page.locator("h2", has_text="Replicas").count() == 1

            page.click("text=Log out")
            page.wait_for_url(f"{platform.admin_url}/login")
            page.goto(f"{platform.admin_url}/")
            assert page.url == f"{platform.admin_url}/login"
        finally:
            browser.close()
