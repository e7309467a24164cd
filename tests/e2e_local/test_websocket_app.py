"""A Streamlit-like App's WebSocket through a real ``kaip up`` (issue 13 #9, must-show): the
page and the WebSocket under ``/apps/chat/``, with a real client (the ``websockets`` package);
a page of another origin is refused. Timing is never asserted."""

from __future__ import annotations

import shutil

import httpx
import pytest
from local_platform import FIXTURES, LocalPlatform
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

pytestmark = pytest.mark.slow

APP = """\
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {name: chat}
spec:
  owner: e2e
  command: [python, ws_echo_app.py]
"""


def test_a_streamlit_like_app_talks_websocket_through_the_gateway(platform: LocalPlatform) -> None:
    spec = platform.write_spec(APP)
    shutil.copy(FIXTURES / "ws_echo_app.py", platform.spec_dir / "ws_echo_app.py")
    platform.up(spec)
    page = httpx.get(f"{platform.url}/apps/chat/", timeout=30, trust_env=False)
    assert page.status_code == 200 and "Streamlit-like" in page.text
    url = platform.url.replace("http://", "ws://") + "/apps/chat/_stcore/stream"
    with connect(url, origin=Origin(platform.url), proxy=None, open_timeout=30) as ws:
        assert ws.recv(timeout=30) == (
            f"hello /_stcore/stream prefix=/apps/chat origin={platform.url}"
        )
        for text in ("hi", "second", "x" * 100_000):
            ws.send(text)
            assert ws.recv(timeout=30) == f"echo: {text}"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=30) == b"\x00\x01binary"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin=Origin("http://evil.example"), proxy=None, open_timeout=30)
    assert refused.value.response.status_code == 403
