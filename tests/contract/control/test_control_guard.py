"""The control port's guard, driven over real sockets: Host, Origin, credential, media type, size.

Issue 11 #1: a page anywhere could POST ``text/plain`` to the admin API (no preflight) and have
``kaip up`` run a command, and a page on a rebound name could read its state. Every request now
needs this run's token, a loopback (or allowed) Host, its own Origin if any, and a JSON body.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from control_harness import TOKEN, RunningControl, running_control

READS = [
    "/_kaip/status",
    "/_kaip/events",
    "/_kaip/rollouts/echo",
    "/_kaip/openapi.json",
    "/_kaip/cost",
]
CHANGES = [
    "/_kaip/deploy",
    "/_kaip/rollouts/echo/promote",
    "/_kaip/rollouts/echo/abort",
    "/_kaip/profile/echo",
]


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControl]:
    state_dir = tmp_path_factory.mktemp("control") / ".kaip"
    with running_control(state_dir, allowed_hosts=frozenset({"kaip.internal"})) as running:
        yield running


def call(control: RunningControl, method: str, path: str, **kwargs: object) -> httpx.Response:
    headers = {**control.headers, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.request(
        method, control.url + path, headers=headers, timeout=60, trust_env=False, **kwargs
    )  # type: ignore[arg-type]


def test_every_route_refuses_a_request_without_the_token(control: RunningControl) -> None:
    for method, path in [("GET", p) for p in READS] + [("POST", p) for p in CHANGES]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            answer = httpx.request(
                method, control.url + path, headers=headers, json={}, trust_env=False
            )
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert "the control API needs a credential" in answer.json()["error"]
            assert answer.headers["www-authenticate"] == 'Bearer realm="kaip"'
    assert call(control, "GET", "/_kaip/status").status_code == 200


def test_a_cookie_is_not_a_credential(control: RunningControl) -> None:
    """Apps on the traffic port share the host, so their Set-Cookie reaches this port."""
    jar = {"session": TOKEN, "kaip_admin": TOKEN, "Authorization": f"Bearer {TOKEN}"}
    answer = httpx.get(control.url + "/_kaip/status", cookies=jar, trust_env=False)
    assert answer.status_code == 401


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8081", "127.0.0.1.nip.io", "localhost.", ""]
)
def test_a_host_that_is_not_a_loopback_or_allowed_name_gets_421(
    control: RunningControl, host: str
) -> None:
    """DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 sends its own name."""
    answer = call(control, "GET", "/_kaip/events", headers={"Host": host})
    assert answer.status_code == 421, answer.text
    assert "--allowed-host" in answer.json()["error"]
    assert "events" not in answer.json()


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST", "kaip.internal"])
def test_loopback_names_and_allowed_hosts_pass_with_or_without_a_port(
    control: RunningControl, name: str
) -> None:
    for host in (name, f"{name}:{control.port}", f"{name}:9999"):
        answer = call(control, "GET", "/_kaip/status", headers={"Host": host})
        assert answer.status_code == 200, (host, answer.text)


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "null", "http://127.0.0.1:8080", "http://localhost:1", "file://"],
)
def test_an_origin_other_than_the_control_port_itself_gets_403(
    control: RunningControl, origin: str
) -> None:
    """An App on the traffic port (same host, other port) is another origin too."""
    for method, path in (("GET", "/_kaip/status"), ("POST", "/_kaip/deploy")):
        answer = call(
            control, method, path, headers={"Origin": origin}, json={"paths": ["/nowhere"]}
        )
        assert answer.status_code == 403, (origin, answer.text)
        assert origin in answer.json()["error"]


def test_the_control_ports_own_origin_passes(control: RunningControl) -> None:
    for origin in (control.url, f"http://localhost:{control.port}"):
        host = origin.removeprefix("http://")
        answer = call(control, "GET", "/_kaip/status", headers={"Origin": origin, "Host": host})
        assert answer.status_code == 200, answer.text


def test_a_cross_site_fetch_without_origin_gets_403(control: RunningControl) -> None:
    answer = call(control, "GET", "/_kaip/status", headers={"Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 403


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_changes_take_json_bodies_only(control: RunningControl, content_type: str | None) -> None:
    """The issue's reproduction: a simple cross-site POST (text/plain, no preflight)."""
    headers = {"Content-Type": content_type} if content_type else {}
    for path in CHANGES:
        answer = call(control, "POST", path, headers=headers, content=b'{"paths": ["/tmp"]}')
        assert answer.status_code == 415, (path, content_type, answer.text)
        assert "application/json" in answer.json()["error"]


def test_bodies_over_one_mib_are_refused_however_they_are_sent(control: RunningControl) -> None:
    big = b'{"paths": ["' + b"x" * (1 << 20) + b'"]}'
    answer = call(
        control, "POST", "/_kaip/deploy", content=big,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert answer.status_code == 413, answer.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"paths": ["'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"]}'

    answer = call(
        control, "POST", "/_kaip/deploy", content=chunks(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert answer.status_code == 413, answer.text


def test_headers_are_bounded(control: RunningControl) -> None:
    with socket.create_connection(("127.0.0.1", control.port), timeout=10) as sock:
        sock.sendall(b"GET /_kaip/status HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        try:
            for _ in range(64):  # 4 MiB of one header, sent until the server gives up on it
                sock.sendall(b"a" * 65536)
        except OSError:
            pass  # the server closed the connection: refused
        reply = sock.recv(4096)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4"), reply[:100]


def test_bad_bodies_are_400_with_the_field_named(control: RunningControl) -> None:
    cases = [
        (b"not json", "the request body is wrong"),
        (b'{"paths": []}', "paths"),
        (b'{"paths": ["a"], "extra": 1}', "extra"),
        (b'{"paths": ["a"], "commit": {"sha": "zz", "committed_at": 1}}', "commit.sha"),
    ]
    for body, named in cases:
        answer = call(
            control, "POST", "/_kaip/deploy", content=body,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert answer.status_code == 400, (body, answer.text)
        assert named in answer.json()["error"]


def test_answers_are_not_cached_sniffed_or_framed(control: RunningControl) -> None:
    for answer in (call(control, "GET", "/_kaip/status"), httpx.get(control.url + "/_kaip/x")):
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"


def test_an_invalid_spec_deployed_through_the_api_is_422_with_its_problems(
    control: RunningControl, tmp_path: Path
) -> None:
    laughs = Path(__file__).parents[2] / "spec_corpus" / "bad" / "billion-laughs.yaml"
    answer = call(control, "POST", "/_kaip/deploy", json={"paths": [str(laughs)]})
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["problems"]
    assert problem.startswith(f"{laughs}:12:10: the file holds more than 100,000 values")
    assert call(control, "GET", "/_kaip/status").json()["resources"] == []


def test_unknown_routes_and_nothing_running_answer_json(control: RunningControl) -> None:
    assert call(control, "GET", "/_kaip/nope").json() == {"error": "GET /_kaip/nope: Not Found"}
    answer = call(control, "POST", "/_kaip/rollouts/echo/promote", json={})
    assert answer.status_code == 409
    assert answer.json() == {"error": "no Model or App named 'echo' runs here"}
