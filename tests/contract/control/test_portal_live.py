"""Live rollout state over Server-Sent Events, and the vendored scripts that consume it.

A real control port with an App (a ``sleep`` process); a client holds
``/resources/web/events`` open (a plain socket reading the chunked body as it comes) while the
App is deployed again with a changed spec (a rollout starts) and the rollout is aborted: each
change arrives on the open stream as an ``event: rollout`` whose HTML says so (the promote and
abort buttons come apart, as ``event: actions``, only for a session); nothing is asked twice.
The resource page loads htmx and its SSE extension from ``/static/`` (byte for byte the files
named in ``static/README.md``) under a policy that allows those scripts and that stream only;
the login page still allows no script. At most ``MAX_STREAMS`` streams are open at once.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from control_harness import CANARY_APP, RunningControl, deploy_spec, running_control

from kaip.portal.live import MAX_STREAMS, STATIC_DIR, VENDORED


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControl]:
    root = tmp_path_factory.mktemp("live")
    with running_control(root / ".kaip") as running:
        running.spec = root / "spec"  # type: ignore[attr-defined]
        deploy(running, 300)
        yield running


def deploy(control: RunningControl, seconds: int) -> None:
    spec: Path = control.spec  # type: ignore[attr-defined]
    deploy_spec(control, spec, CANARY_APP.format(owner="team-live", seconds=seconds))


def events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) of each Server-Sent Event read from ``lines``; comments skipped."""
    name, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def test_each_rollout_change_arrives_on_the_open_stream(control: RunningControl) -> None:
    with open_stream(control) as sock:
        assert sock.status == 200
        everything = events(body_lines(sock))
        first = dict([next(everything), next(everything)])
        assert 'data-rollout="none"' in first["rollout"]
        assert first["actions"] == ""  # no rollout, and a bearer has no session to act with
        stream = (data for name, data in everything if name == "rollout")

        deploy(control, 301)  # a changed spec: a canary rollout starts
        started = next(stream)
        assert 'data-rollout="running"' in started
        status = httpx.get(
            control.url + "/_kaip/status", headers=control.headers, trust_env=False
        ).json()
        (web,) = status["resources"]
        assert web["canary"] and f'data-to="{web["canary"]}"' in started
        assert "step <strong>1 of 2</strong> at 10 %" in started

        aborted = httpx.post(
            control.url + "/_kaip/rollouts/web/abort",
            json={},
            headers=control.headers,
            trust_env=False,
            timeout=60,
        )
        assert aborted.status_code == 200, aborted.text
        for data in stream:  # canary numbers may change first; then the end
            if 'data-rollout="none"' in data:
                break


def test_the_resource_page_loads_the_vendored_scripts_only(control: RunningControl) -> None:
    page = httpx.get(control.url + "/resources/web", headers=control.headers, trust_env=False)
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe-eval" not in policy and "default-src 'none'" in policy
    assert page.headers.get_list("content-security-policy") == [policy]  # one policy, not two
    assert 'sse-connect="/resources/web/events"' in page.text
    for name, digest in VENDORED.items():
        assert f'<script src="/static/{name}" defer></script>' in page.text
        served = httpx.get(control.url + f"/static/{name}", trust_env=False)
        assert served.status_code == 200
        assert served.headers["content-type"].startswith("text/javascript")
        assert hashlib.sha256(served.content).hexdigest() == digest
        assert digest in (STATIC_DIR / "README.md").read_text()
    assert httpx.get(control.url + "/static/README.md", trust_env=False).status_code == 404
    login = httpx.get(control.url + "/login", trust_env=False)
    assert "script-src" not in login.headers["content-security-policy"]


def test_streams_need_a_credential_a_resource_and_a_free_slot(control: RunningControl) -> None:
    anonymous = httpx.get(control.url + "/resources/web/events", trust_env=False)
    assert anonymous.status_code == 401
    missing = httpx.get(
        control.url + "/resources/nope/events", headers=control.headers, trust_env=False
    )
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    opened = [open_stream(control) for _ in range(MAX_STREAMS)]
    try:
        busy = httpx.get(
            control.url + "/resources/web/events",
            headers=control.headers,
            trust_env=False,
            timeout=60,
        )
        assert busy.status_code == 503 and "event streams are open" in busy.text
    finally:
        for sock in opened:
            sock.close()
    for _ in range(100):  # the server notices the streams went and gives their slots back
        again = open_stream(control)
        again.close()
        if again.status == 200:
            break
        time.sleep(0.1)
    assert again.status == 200


class Stream(socket.socket):
    status = 0


def body_lines(sock: Stream) -> Iterator[str]:
    """The lines of a chunked response body, read from ``sock`` as they come."""
    reader = sock.makefile("rb")
    while reader.readline() not in (b"\r\n", b""):  # the rest of the head
        pass
    pending = b""
    while True:
        size = int(reader.readline().split(b";")[0], 16)
        if size == 0:
            return
        pending += reader.read(size)
        reader.readline()  # the chunk's CRLF
        *lines, pending = pending.split(b"\n")
        yield from (line.decode() for line in lines)


def open_stream(control: RunningControl) -> Stream:
    """A raw HTTP/1.1 request for the stream, its status line read and the socket kept open."""
    sock = Stream(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", control.port))
    request = (
        "GET /resources/web/events HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{control.port}\r\n"
        f"Authorization: {control.headers['Authorization']}\r\n\r\n"
    )
    sock.sendall(request.encode())
    status_line = b""
    while not status_line.endswith(b"\r\n"):
        status_line += sock.recv(1)
    sock.status = int(status_line.split()[1])
    return sock
