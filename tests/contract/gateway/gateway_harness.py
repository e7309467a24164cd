"""Test replicas as real processes, and a :class:`Gateway` in a test's own event loop."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import uvloop

from kaip.local.gateway import Backend, Gateway, Route

BACKEND = Path(__file__).with_name("gateway_backend.py")


@dataclass
class BackendProcess:
    replica: str
    port: int
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def wait_answering(self, timeout_s: float = 60.0) -> None:
        """Block until the process answers (its socket accepts from the start, before it is up)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/_seen", trust_env=False).is_success:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"backend {self.replica} never answered on {self.port}")
            time.sleep(0.05)


def spawner() -> tuple[Callable[[str], BackendProcess], list[BackendProcess]]:
    started: list[BackendProcess] = []

    def spawn(replica: str) -> BackendProcess:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Accepted sockets inherit TCP_NODELAY on Linux; uvicorn on an inherited fd does not set it,
        # and Nagle + delayed ACKs would add 40 ms to every response it writes in two parts.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        process = subprocess.Popen(
            [sys.executable, str(BACKEND), str(sock.fileno()), replica],
            pass_fds=[sock.fileno()],
        )
        sock.close()
        backend = BackendProcess(replica, port, process)
        started.append(backend)
        return backend

    return spawn, started


def stop_all(started: list[BackendProcess]) -> None:
    for backend in started:
        if backend.process.poll() is None:
            backend.process.terminate()
            try:
                backend.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                backend.kill()


AB = tuple["BackendProcess", "BackendProcess"]


def backend(replica: str, revision: str, port: int) -> Backend:
    return Backend(replica=replica, revision=revision, host="127.0.0.1", port=port)


def model(name: str, weights: dict[str, int], *backends: Backend) -> Route:
    return Route(kind="model", name=name, weights=weights, backends=tuple(backends))


def app(name: str, *backends: Backend) -> Route:
    revision = backends[0].revision if backends else "r1"
    return Route(kind="app", name=name, weights={revision: 100}, backends=tuple(backends))


@asynccontextmanager
async def running(
    routes: list[Route], **options: Any
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    gateway = Gateway(host="127.0.0.1", port=0, **options)
    port = await gateway.start()
    gateway.set_routes(routes)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            yield gateway, client
    finally:
        await gateway.stop()


T = TypeVar("T")


def run(scenario: Coroutine[Any, Any, T]) -> T:
    """Run a test scenario on uvloop. ``kaip up`` runs the gateway on asyncio's own loop (uvloop
    is the model server's): a test whose outcome may differ between them runs on both."""
    return uvloop.run(scenario)


async def until(condition: Callable[[], object], what: str) -> None:
    """Wait up to ~10 s for ``condition()`` to hold; fail naming ``what``."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def open_chat_stream(
    http: httpx.AsyncClient, model: str = "beta"
) -> tuple[openai.AsyncOpenAI, AsyncIterator[Any], Any]:
    """A streamed OpenAI chat with ``model`` through the gateway ``http`` talks to: the client
    (close it), the chunks still to come and the first one (each wait at most 15 s)."""
    client = openai.AsyncOpenAI(
        base_url=str(http.base_url).rstrip("/") + "/v1", api_key="unused", max_retries=0
    )
    stream = await asyncio.wait_for(
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], stream=True
        ),
        timeout=15,
    )
    chunks = aiter(stream)
    first = await asyncio.wait_for(anext(chunks), timeout=15)
    return client, chunks, first


@dataclass
class Hanging:
    """What a never-answering replica saw: requests sent to it, connections open and dropped."""

    port: int = 0
    requests: int = 0
    open: int = 0
    dropped: int = 0  # connections the gateway closed or reset
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


@asynccontextmanager
async def hanging_replica() -> AsyncIterator[Hanging]:
    seen = Hanging()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.open += 1
        seen.writers.append(writer)
        try:
            while chunk := await reader.read(65536):
                seen.requests += chunk.count(b" HTTP/1.1\r\n")  # one request line each
        except ConnectionError:
            pass
        seen.open -= 1
        seen.dropped += 1

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    seen.port = server.sockets[0].getsockname()[1]
    try:
        yield seen
    finally:
        server.close()
        for writer in seen.writers:
            writer.transport.abort()
