"""The engine relay's stream path, piece by piece on real loopback sockets: the engine's answer
handed to a callback as its connection reads it (:meth:`EngineAnswer.stream_to`), and each piece
written straight to the client's connection under the model server's own protocol
(:class:`kaip.serving.protocol.DirectBody`), with back-pressure both ways."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from kaip.serving.engine_link import EngineFailure, EngineLink
from kaip.serving.protocol import DIRECT_BODY, DirectBody, bounded_protocol
from kaip.settings import HttpLimits

PIECE = b"data: " + b"x" * 1000 + b"\n\n"
PIECES = 200


async def _engine(
    more: asyncio.Event, *, break_off: bool = False
) -> tuple[asyncio.Server, int, list[bool]]:
    """A server that answers with one chunked piece, waits for ``more``, then sends the rest
    (or closes the connection mid-answer, ``break_off``); the list says when it wrote all."""
    wrote_all: list[bool] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%b\r\n" % (len(PIECE), PIECE))
        await writer.drain()
        await more.wait()
        if break_off:
            writer.transport.abort()
            return
        for _ in range(PIECES - 1):
            writer.write(b"%x\r\n%b\r\n" % (len(PIECE), PIECE))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        wrote_all.append(True)
        await reader.read()  # until the client closes or reuses it

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], wrote_all


def test_a_full_client_leaves_the_engine_unread_until_it_resumes() -> None:
    async def main() -> None:
        more = asyncio.Event()
        server, port, wrote_all = await _engine(more)
        link = EngineLink(f"http://127.0.0.1:{port}", timeout=30)
        got: list[bytes] = []
        full = True

        def forward(chunk: bytes) -> bool:
            got.append(chunk)
            return not full

        try:
            answer = await link.open(link.request_head(b"GET", b"/stream", [], 0), b"")
            answer.stream_to(forward)
            while not got:  # the first piece, read with the head or just after it
                await asyncio.sleep(0.01)
            assert answer.paused  # the client said it is full
            more.set()
            while not wrote_all:  # all of it is on the wire (fits the socket buffers)
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            assert b"".join(got) == PIECE  # not read while paused
            full = False
            answer.resume()
            assert not answer.paused
            await asyncio.wait_for(answer.finished(), 30)
            assert b"".join(got) == PIECE * PIECES
        finally:
            link.close()
            server.close()

    asyncio.run(main())


def test_an_engine_that_breaks_off_fails_the_streamed_answer() -> None:
    async def main() -> None:
        more = asyncio.Event()
        server, port, _ = await _engine(more, break_off=True)
        link = EngineLink(f"http://127.0.0.1:{port}", timeout=30)
        got: list[bytes] = []
        try:
            answer = await link.open(link.request_head(b"GET", b"/stream", [], 0), b"")
            answer.stream_to(lambda chunk: got.append(chunk) is None)
            more.set()
            with pytest.raises(EngineFailure) as failure:
                await asyncio.wait_for(answer.finished(), 30)
            assert failure.value.error_type == "failed_during_response"
            assert b"".join(got) == PIECE
        finally:
            link.close()
            server.close()

    asyncio.run(main())


class _StreamingApp:
    """Streams ``/small`` as three direct pieces and ``/big`` until the client is full, then one
    piece more once it has taken what waited; each ends through ASGI."""

    def __init__(self) -> None:
        self.paused_after = 0
        self.client_full = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        direct: DirectBody = scope["extensions"][DIRECT_BODY]
        assert direct.usable()
        if scope["path"] == "/small":
            for piece in (b"one ", b"two ", b"three "):
                assert direct.write(piece)
        else:
            writable = asyncio.Event()
            direct.on_writable(writable.set)
            piece = b"y" * (256 * 1024)
            while direct.write(piece):
                self.paused_after += 1
                assert self.paused_after < 1024, "256 MiB went out and the client never filled"
            self.paused_after += 1
            self.client_full.set()
            await writable.wait()
            direct.on_writable(None)
            assert direct.write(b"after")
        await send({"type": "http.response.body", "body": b"end", "more_body": False})


@pytest.fixture
def server() -> Iterator[tuple[int, _StreamingApp]]:
    app = _StreamingApp()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, http=bounded_protocol(HttpLimits()), lifespan="off", log_level="warning"
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(running.serve(sockets=[sock])))
    thread.start()
    try:
        while not running.started:
            threading.Event().wait(0.01)
        yield sock.getsockname()[1], app
    finally:
        running.should_exit = True
        thread.join(30)
        sock.close()


def _read_chunked(sock: socket.socket) -> bytes:
    """One chunked response's body (the head checked), read off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    body = b""
    while True:
        while b"\r\n" not in rest:
            rest += sock.recv(65536)
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        while len(rest) < size + 2:
            rest += sock.recv(1 << 20)
        body, rest = body + rest[:size], rest[size + 2 :]
        if size == 0:
            assert rest == b""
            return body


def test_direct_pieces_are_chunks_of_the_body_and_the_connection_serves_the_next_request(
    server: tuple[int, _StreamingApp],
) -> None:
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for _ in range(2):  # kept alive: the second request is served on the same connection
            sock.sendall(b"GET /small HTTP/1.1\r\nhost: x\r\n\r\n")
            assert _read_chunked(sock) == b"one two three end"


def test_a_client_that_does_not_read_pauses_the_writer_until_it_has_taken_what_waited(
    server: tuple[int, _StreamingApp],
) -> None:
    port, app = server
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
        assert app.client_full.wait(60)  # write() said so, with the client reading nothing
        body = _read_chunked(sock)
    assert body == b"y" * (256 * 1024) * app.paused_after + b"afterend"
