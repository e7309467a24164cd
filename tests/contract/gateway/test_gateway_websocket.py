"""WebSocket through the gateway (issue 13 #9) with a real client (the ``websockets`` package)
against a real Streamlit-like App process: the handshake and every frame both ways under
``/apps/NAME/``, a cross-origin page refused, frames over the App's limit closed with 1009, an
idle tunnel closed, upgrades anywhere else answered 501, and the client's ``traceparent`` honoured
as on HTTP. Timing is never asserted."""

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
from kaip.telemetry.spans import FinishedSpan, Sampling, SpanRecorder

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


def test_a_websocket_handshake_honours_the_client_s_traceparent_as_http_does(
    echo_port: int,
) -> None:
    """Not tracing: the App gets the client's ``traceparent`` as sent, or none. Tracing: it is
    in the client's trace under the gateway's server span, with the client's sampled flag."""
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    spans: list[FinishedSpan] = []
    tracer = SpanRecorder(spans.append, Sampling(ratio=0.0))  # nothing sampled but by a client

    async def seen(url: str, traceparent: str | None) -> str:
        headers = {"traceparent": traceparent} if traceparent else None
        async with connect(url, proxy=None, additional_headers=headers) as ws:
            await asyncio.wait_for(ws.recv(), 20)  # the greeting
            await ws.send("traceparent?")
            answer = await asyncio.wait_for(ws.recv(), 20)
            assert isinstance(answer, str)
            return answer

    async def scenario() -> None:
        async with running([chat(echo_port)]) as (_, client):
            url = str(client.base_url).rstrip("/").replace("http", "ws") + STREAM
            assert await seen(url, given) == given
            assert await seen(url, unsampled) == unsampled
            assert await seen(url, None) == ""
            assert await seen(url, "garbage") == ""
        async with running([chat(echo_port)], tracer=tracer) as (_, client):
            url = str(client.base_url).rstrip("/").replace("http", "ws") + STREAM
            traced = await seen(url, given)
            followed = await seen(url, unsampled)
        (server,) = spans  # the sampled request's server span, ended with its tunnel
        assert traced == f"00-{server.trace_id:032x}-{server.span_id:016x}-01"
        assert server.trace_id == int(given.split("-")[1], 16)
        assert server.parent_id == int(given.split("-")[2], 16) and server.remote_parent
        _, trace_id, span_id, flags = followed.split("-")
        assert (trace_id, flags) == (unsampled.split("-")[1], "00")
        assert span_id != unsampled.split("-")[2] and int(span_id, 16)

    run(scenario())


def test_a_websocket_handshake_restarts_the_trace_as_http_does(echo_port: int) -> None:
    """Two ``traceparent`` headers are neither followed nor passed on, and a trace that
    restarts (two, or a malformed one) loses the client's ``tracestate``: tracing or not, as on
    HTTP (test_gateway_trace_context.py)."""
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    other = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    state = ("tracestate", "congo=t61rcWkgMzE")
    two = [("traceparent", given), ("traceparent", other), state]
    malformed = [("traceparent", given.upper()), state]
    spans: list[FinishedSpan] = []
    tracer = SpanRecorder(spans.append, Sampling(ratio=1.0))

    async def seen(url: str, headers: list[tuple[str, str]]) -> tuple[str, str]:
        async with connect(url, proxy=None, additional_headers=headers) as ws:
            await asyncio.wait_for(ws.recv(), 20)  # the greeting
            answers = []
            for question in ("traceparent?", "tracestate?"):
                await ws.send(question)
                answer = await asyncio.wait_for(ws.recv(), 20)
                assert isinstance(answer, str)
                answers.append(answer)
            return answers[0], answers[1]

    async def scenario() -> list[tuple[str, str]]:
        async with running([chat(echo_port)]) as (_, client):
            url = str(client.base_url).rstrip("/").replace("http", "ws") + STREAM
            assert await seen(url, [("traceparent", given), state]) == (given, state[1])
            assert await seen(url, two) == ("", "")
            assert await seen(url, malformed) == ("", "")
        async with running([chat(echo_port)], tracer=tracer) as (_, client):
            url = str(client.base_url).rstrip("/").replace("http", "ws") + STREAM
            return [await seen(url, h) for h in ([("traceparent", given), state], two, malformed)]

    followed, restarted, after_malformed = run(scenario())
    assert followed[0].split("-")[1] == given.split("-")[1] and followed[1] == state[1]
    for traceparent, tracestate in (restarted, after_malformed):
        assert traceparent.split("-")[1] not in (given.split("-")[1], other.split("-")[1])
        assert tracestate == ""
    restarted_ids = {int(restarted[0].split("-")[1], 16), int(after_malformed[0].split("-")[1], 16)}
    assert restarted_ids <= {s.trace_id for s in spans}  # the gateway's own, as root spans
    assert all(
        s.parent_id == 0 and not s.remote_parent for s in spans if s.trace_id in restarted_ids
    )
