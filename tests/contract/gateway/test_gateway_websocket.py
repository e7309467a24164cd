"""WebSocket through the gateway (issue 13 #9) with a real client (the ``websockets`` package)
against a real Streamlit-like App process: the handshake and every frame both ways under
``/apps/NAME/``, a cross-origin page refused, frames over the App's limit closed with 1009, an
idle tunnel closed, and upgrades anywhere else answered 501. Timing is never asserted."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_harness import backend, run, running
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kaip.local.gateway import Route

ECHO_APP = Path(__file__).parents[2] / "e2e_local" / "fixtures" / "ws_echo_app.py"
STREAM = "/apps/chat/_stcore/stream"


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(ECHO_APP)], env={**os.environ, "PORT": str(port)}
    )
    try:
        for _ in range(300):
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False).status_code
                    == 200
                ):
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the echo App exited"
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def chat(port: int) -> Route:
    return Route("app", "chat", {"r1": 100}, (backend("chat-1", "r1", port),))


def test_an_app_websocket_greets_and_echoes_text_and_binary_through_its_prefix(
    echo_port: int,
) -> None:
    async def scenario() -> None:
        async with running([chat(echo_port)]) as (gateway, client):
            url = str(client.base_url).rstrip("/")
            page = await client.get("/apps/chat/")
            assert page.status_code == 200 and "Streamlit-like" in page.text
            origin = url  # the page came from the gateway: same host and port
            async with connect(url.replace("http", "ws") + STREAM, origin=origin, proxy=None) as ws:
                hello = await asyncio.wait_for(ws.recv(), 20)
                assert hello == f"hello /_stcore/stream prefix=/apps/chat origin={origin}"
                await ws.send("hi")
                assert await asyncio.wait_for(ws.recv(), 20) == "echo: hi"
                blob = os.urandom(300 * 1024)  # several reads and writes each way
                await ws.send(blob)
                assert await asyncio.wait_for(ws.recv(), 20) == blob
            assert gateway.take_stats("chat")["r1"].requests == 2  # the page and the WebSocket

    run(scenario())


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1"])
def test_a_page_of_another_origin_cannot_open_the_apps_websocket(
    echo_port: int, origin: str
) -> None:
    async def scenario() -> None:
        async with running([chat(echo_port)]) as (_, client):
            url = str(client.base_url).rstrip("/").replace("http", "ws") + STREAM
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, origin=origin, proxy=None):  # type: ignore[arg-type]
                    pass
            assert refused.value.response.status_code == 403
            assert b"same host and port" in refused.value.response.body

    run(scenario())


def test_a_frame_over_the_apps_limit_closes_the_websocket_with_1009(echo_port: int) -> None:
    async def scenario() -> None:
        async with running([chat(echo_port)], app_max_request_bytes=4096) as (_, client):
            url = str(client.base_url).rstrip("/").replace("http", "ws") + STREAM
            async with connect(url, proxy=None, compression=None) as ws:
                await asyncio.wait_for(ws.recv(), 20)
                await ws.send(b"x" * 4096)  # at the limit: passes
                assert await asyncio.wait_for(ws.recv(), 20) == b"x" * 4096
                await ws.send(b"x" * 4097)
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 20)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

    run(scenario())


def test_an_idle_websocket_is_closed_and_upgrades_elsewhere_get_501(echo_port: int) -> None:
    async def scenario() -> None:
        async with running([chat(echo_port)], websocket_idle_s=0.5) as (_, client):
            url = str(client.base_url).rstrip("/").replace("http", "ws") + STREAM
            async with connect(url, proxy=None, ping_interval=None) as ws:
                await asyncio.wait_for(ws.recv(), 20)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 20)  # nothing comes: the gateway closes
            upgrade = {"Connection": "Upgrade", "Upgrade": "websocket"}
            elsewhere = await client.get("/v2/models/chat/ready", headers=upgrade)
            assert elsewhere.status_code == 501 and "/apps/NAME/" in elsewhere.json()["error"]

    run(scenario())
