"""HTTP/1.1 details at the socket: pipelining, HTTP/1.0, Expect: 100-continue, HEAD, chunking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gateway_harness import AB, backend, model, run, running


async def _exchange(port: int, data: bytes, until: bytes, count: int = 1) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    received = b""
    while received.count(until) < count:
        chunk = await asyncio.wait_for(reader.read(65536), 15)
        if not chunk:
            break
        received += chunk
    writer.close()
    return received


def _routes(backends_ab: AB) -> list:  # type: ignore[type-arg]
    return [model("m", {"r": 100}, backend("A", "r", backends_ab[0].port))]


def test_pipelined_requests_are_answered_in_order(backends_ab: AB) -> None:
    async def scenario() -> None:
        async with running(_routes(backends_ab)) as (_, client):
            port = int(str(client.base_url).rsplit(":", 1)[1])
            requests = b"".join(
                b"GET /v2/models/m/ready?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3)
            )
            raw = await _exchange(port, requests, b'"body_len"', count=3)
            order = [raw.find(b"?n=%d" % i) for i in range(3)]
            assert raw.count(b"HTTP/1.1 200 OK") == 3 and -1 not in order and order == sorted(order)

    run(scenario())


def test_http10_expect_continue_head_and_chunked_request_bodies(backends_ab: AB) -> None:
    async def scenario() -> None:
        async with running(_routes(backends_ab)) as (_, client):
            port = int(str(client.base_url).rsplit(":", 1)[1])
            old = await _exchange(port, b"GET /v2/models/m/ready HTTP/1.0\r\n\r\n", b"}")
            assert old.startswith(b"HTTP/1.1 200") and b"connection: close" in old.lower()

            head = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            interim = await _exchange(port, head + b"Expect: 100-continue\r\n\r\n", b"\r\n\r\n")
            assert interim.startswith(b"HTTP/1.1 100 Continue")

            async def pieces() -> AsyncIterator[bytes]:
                for piece in (b"abc", b"defg"):
                    yield piece

            answer = await client.post("/v2/models/m/infer", content=pieces())
            assert answer.json()["body_len"] == 7

            only_head = await client.head("/v2/models/m/ready")
            assert only_head.status_code == 200 and only_head.content == b""
            assert (await client.get("/v2/models/m/ready")).json()["method"] == "GET"

    run(scenario())


def test_a_slow_reader_gets_a_large_stream_whole_and_the_replica_connection_stays_usable(
    backends_ab: AB,
) -> None:
    """Backpressure: the gateway stops reading the replica while the client's buffer is full."""

    async def scenario() -> None:
        async with running(_routes(backends_ab)) as (_, client):
            chunks = 128  # 8 MiB: far beyond the socket buffers on both sides
            async with client.stream("GET", f"/v2/models/m/big?{chunks}") as stream:
                body = b""
                async for piece in stream.aiter_raw(16384):
                    body += piece
                    await asyncio.sleep(0.0005)
            expected = b"".join(bytes([65 + i % 26]) * 65536 for i in range(chunks))
            assert body == expected
            for _ in range(5):  # the pooled replica connection must not be left paused
                answer = await asyncio.wait_for(client.get("/v2/models/m/ready"), 15)
                assert answer.status_code == 200

    run(scenario())
