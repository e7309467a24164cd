"""The portal on the control port, over real sockets: login, session cookie, escaping, refusals.

The catalog and resource pages need a principal: without one they send the browser to
``/login``; the login form turns this run's token into an ``HttpOnly; SameSite=Strict`` session
cookie. That cookie opens the pages only: the admin API under ``/_kaip/`` still answers 401 to
it, so a cookie alone changes nothing. A resource whose owner is a ``<script>`` tag is shown as
text.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from control_harness import TOKEN, RunningControl, running_control

HOSTILE_OWNER = "<script>alert(1)</script>"
APP = f"""\
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {{name: web}}
spec:
  owner: '{HOSTILE_OWNER}'
  command: [python, -c, "import time; time.sleep(120)"]
"""


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControl]:
    root = tmp_path_factory.mktemp("portal")
    (root / "spec").mkdir()
    (root / "spec" / "kaip.yaml").write_text(APP)
    with running_control(root / ".kaip") as running:
        answer = httpx.post(
            running.url + "/_kaip/deploy",
            json={"paths": [str(root / "spec")]},
            headers=running.headers,
            timeout=60,
            trust_env=False,
        )
        assert answer.status_code == 200, answer.text
        yield running


@contextmanager
def logged_in(control: RunningControl) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=control.url, trust_env=False, timeout=60) as client:
        answer = client.post("/login", data={"token": TOKEN}, headers={"Origin": control.url})
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/"
        yield client


def test_pages_send_a_browser_without_a_session_to_the_login_form(
    control: RunningControl,
) -> None:
    for path in ("/", "/resources/web"):
        answer = httpx.get(control.url + path, trust_env=False)
        assert answer.status_code == 303, (path, answer.text)
        assert answer.headers["location"] == "/login"
        assert "web" not in answer.text
    form = httpx.get(control.url + "/login", trust_env=False)
    assert form.status_code == 200
    assert 'name="token"' in form.text and "admin.token" in form.text
    assert "script-src" not in form.headers["content-security-policy"]
    assert "default-src 'none'" in form.headers["content-security-policy"]


def test_a_wrong_token_opens_no_session(control: RunningControl) -> None:
    answer = httpx.post(control.url + "/login", data={"token": "wrong"}, trust_env=False)
    assert answer.status_code == 401
    assert "set-cookie" not in answer.headers
    assert "That is not this run" in answer.text


def test_the_session_cookie_is_httponly_strict_and_opens_the_catalog(
    control: RunningControl,
) -> None:
    with logged_in(control) as client:
        cookie = client.cookies.jar
        [session] = [c for c in cookie if c.name == "kaip_portal"]
        assert session.value != TOKEN and len(session.value) >= 40
        assert session.path == "/"
        assert session.has_nonstandard_attr("HttpOnly")
        assert session.get_nonstandard_attr("SameSite", "").lower() == "strict"
        catalog = client.get("/")
        assert catalog.status_code == 200
        assert '<a href="/resources/web">web</a>' in catalog.text
        assert "<td>App</td>" in catalog.text
        page = client.get("/resources/web")
        assert page.status_code == 200
        assert "App web" in page.text and "No rollouts yet" in page.text
        assert client.get("/resources/nope").status_code == 404


def test_a_hostile_owner_is_shown_as_text(control: RunningControl) -> None:
    with logged_in(control) as client:
        for path in ("/", "/resources/web"):
            text = client.get(path).text
            assert HOSTILE_OWNER not in text, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, path


def test_a_session_cookie_alone_never_reaches_the_admin_api(control: RunningControl) -> None:
    with logged_in(control) as client:
        assert client.get("/").status_code == 200
        for method, path in (("GET", "/_kaip/status"), ("POST", "/_kaip/rollouts/web/abort")):
            answer = client.request(method, path, json={}, headers={"Origin": control.url})
            assert answer.status_code == 401, (method, path, answer.text)


def test_another_origin_can_neither_log_in_nor_log_out(control: RunningControl) -> None:
    answer = httpx.post(
        control.url + "/login",
        data={"token": TOKEN},
        headers={"Origin": "http://127.0.0.1:8080"},
        trust_env=False,
    )
    assert answer.status_code == 403 and "set-cookie" not in answer.headers
    with logged_in(control) as client:
        foreign = client.post("/logout", data={}, headers={"Origin": "http://localhost:8080"})
        assert foreign.status_code == 403
        no_csrf = client.post("/logout", data={"csrf": "guess"})
        assert no_csrf.status_code == 403
        assert client.get("/").status_code == 200  # still logged in
        csrf = client.get("/").text.split('name="csrf" value="')[1].split('"')[0]
        out = client.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert client.get("/").status_code == 303


def test_a_bearer_token_reads_the_pages_too(control: RunningControl) -> None:
    answer = httpx.get(control.url + "/", headers=control.headers, trust_env=False)
    assert answer.status_code == 200 and "Catalog" in answer.text


def test_a_foreign_host_gets_421_on_the_portal_too(control: RunningControl) -> None:
    answer = httpx.get(control.url + "/login", headers={"Host": "evil.example"}, trust_env=False)
    assert answer.status_code == 421
