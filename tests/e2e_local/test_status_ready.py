"""``kaip status`` says ready only once ``kaip up`` has applied its specs: its control API answers
while the first apply still resolves artifacts (a registry's versions, a remote file it pins),
and a status of no resources then is not "ready" (``kaip up --detach`` and every script waiting
on it would go on before anything serves)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from local_platform import (
    FIXTURES,
    INFER_BODY,
    LocalPlatform,
    https_server,
    model_spec,
    wait_for,
)

pytestmark = pytest.mark.slow


class HeldArtifact:
    """The fixture's model.py over HTTPS on loopback, each answer held until :attr:`release`."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.release = threading.Event()
        self.url = ""


@pytest.fixture
def held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldArtifact]:
    body = (FIXTURES / "models" / "model.py").read_bytes()
    artifact = HeldArtifact()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            artifact.asked.set()
            artifact.release.wait(120)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with https_server(Handler, tmp_path, monkeypatch) as base:
        artifact.url = f"{base}/model.py"
        try:
            yield artifact
        finally:
            artifact.release.set()


def test_status_is_not_ready_while_kaip_up_still_applies_its_specs(
    platform: LocalPlatform, held: HeldArtifact
) -> None:
    text = model_spec(strategy="replace").replace("uri: model.py", f"uri: '{held.url}'")
    spec = platform.write_spec(text)
    started: list[BaseException] = []

    def up() -> None:
        try:
            platform.up(spec)
        except BaseException as exc:  # reported by the test below
            started.append(exc)

    starting = threading.Thread(target=up, daemon=True)
    starting.start()
    try:
        # kaip up pins the remote artifact in its first apply: it asks, and is kept waiting.
        assert held.asked.wait(120), "kaip up never asked for its remote artifact"
        run = json.loads((platform.workdir / ".kaip" / "run.json").read_text())
        token = (platform.workdir / ".kaip" / "admin.token").read_text().strip()
        answer = httpx.get(f"{run['admin_url']}/api/v1/status", trust_env=False, timeout=60,
                           headers={"Authorization": f"Bearer {token}"}).json()  # fmt: skip
        assert answer["resources"] == [] and answer["ready"] is False, answer
    finally:
        held.release.set()
        starting.join(180)
    assert not started, started
    wait_for(lambda: platform.resource("echo")["ready"], "echo to serve")
    served = httpx.post(f"{platform.url}/v2/models/echo/infer", json=INFER_BODY, trust_env=False,
                        timeout=60)  # fmt: skip
    assert served.status_code == 200, served.text
