"""Replicas that die mid-exchange: the client sees another replica's whole answer, never a cut one.

Two ways a replica's death used to reach clients, each found by SIGKILL drills on ``kaip up``:
a replica killed between writing its response head and its body left the client with a head and
no body (the gateway had passed the head on, so the request could not be retried); and a request
retried after a response timeout chose from the routes as they were when it arrived, often tens of
seconds earlier, so a replica restarted meanwhile on a new port was unknown to it while replicas
that had died since were still tried (a 504 though a replica was ready). The dying replica here is
a real socket server on 127.0.0.1 that answers each request with a head announcing a body and
then closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace

import pytest
from gateway_harness import backend, hanging_replica, model, run, running


@dataclass
class Dying:
    port: int = 0
    requests: int = 0


@asynccontextmanager
async def dies_after_the_head() -> AsyncIterator[Dying]:
    """A replica that sends ``200`` and a ``content-length`` and closes before the body."""
    seen = Dying()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        await reader.readexactly(length)
        seen.requests += 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
        writer.write(b"content-length: 64\r\n\r\n")
        await writer.drain()
        writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    seen.port = server.sockets[0].getsockname()[1]
    try:
        yield seen
    finally:
        server.close()


def test_a_replica_dying_between_head_and_body_is_retried_on_another(
    spawn_backend,  # type: ignore[no-untyped-def]
) -> None:
    live = spawn_backend("L")

    async def scenario() -> None:
        async with dies_after_the_head() as dying:
            route = model(
                "m", {"r1": 100}, backend("D", "r1", dying.port), backend("L", "r1", live.port)
            )
            async with running([route]) as (gateway, client):
                sent = 0
                while dying.requests < 2 and sent < 60:
                    answer = await asyncio.wait_for(client.post("/v2/models/m/infer"), 15)
                    assert (answer.status_code, answer.json()["replica"]) == (200, "L")
                    sent += 1
                assert dying.requests >= 1, "no request ever went to the dying replica"
                stats = gateway.take_stats("m")["r1"]  # a retried attempt is not a request
                assert (stats.requests, stats.errors) == (sent, 0)

    run(scenario())


def test_a_retry_after_a_timeout_chooses_from_the_routes_as_they_are_now(
    spawn_backend,  # type: ignore[no-untyped-def]
) -> None:
    live = spawn_backend("L")
    # L must be up before it is routed to: one second is all it gets, and a process still
    # importing under load (its socket accepts from the start) would time out like H.
    live.wait_answering()

    async def scenario() -> None:
        async with hanging_replica() as hung:
            first = replace(
                model("m", {"r1": 100}, backend("H", "r1", hung.port)), response_timeout_s=1.0
            )
            async with running([first]) as (gateway, client):
                asked = asyncio.create_task(client.post("/v2/models/m/infer"))
                for _ in range(1000):
                    if hung.requests:
                        break
                    await asyncio.sleep(0.01)
                assert hung.requests == 1
                # While H sits on the request, L becomes ready (a restarted replica, say).
                now = replace(first, backends=(*first.backends, backend("L", "r1", live.port)))
                gateway.set_routes([now])
                answer = await asyncio.wait_for(asked, 30)
                assert (answer.status_code, answer.json()["replica"]) == (200, "L")

    run(scenario())


@contextmanager
def closes_at_once() -> Iterator[Dying]:
    """A replica that accepts each connection and closes it at once, from a thread of its own
    (as a dying process would, outside the gateway's event loop)."""
    seen = Dying()
    listener = socket.create_server(("127.0.0.1", 0))
    seen.port = listener.getsockname()[1]

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                seen.requests += 1
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_connection_closed_before_its_request_went_out_is_retried_at_once(
    spawn_backend,  # type: ignore[no-untyped-def]
    loop: str,
) -> None:
    """The race behind a 35 s stall in SIGKILL drills: the replica's close arrived while the
    gateway was still resuming from connect, and the request then waited for an answer on a
    connection already gone, until the response timeout (asyncio's loop, which ``kaip up``
    runs, drops the write; uvloop raises). Now it goes to another replica at once."""
    live = spawn_backend("L")

    async def scenario() -> None:
        with closes_at_once() as closing:
            both = backend("C", "r1", closing.port), backend("L", "r1", live.port)
            route = replace(model("m", {"r1": 100}, *both), response_timeout_s=30.0)
            async with running([route], rng=random.Random(5)) as (gateway, client):
                for _ in range(40):
                    gateway._ejected.clear()
                    answer = await asyncio.wait_for(client.post("/v2/models/m/infer"), 10)
                    assert (answer.status_code, answer.json()["replica"]) == (200, "L")
                assert closing.requests >= 10

    (asyncio.run if loop == "asyncio" else run)(scenario())
