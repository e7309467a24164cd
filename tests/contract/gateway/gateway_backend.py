"""A tiny real replica for gateway tests: a raw-ASGI app on uvicorn, on a socket it inherits.

Run as ``python gateway_backend.py FD REPLICA_ID``. Every answer says which replica gave it and
what arrived (path, traceparent, body size, forwarded prefix, all headers), so tests can check
routing from the outside. ``/hold?k`` and ``/sse?k`` park until ``/release?k`` is called
(sticky per key ``k``), which lets tests prove least-outstanding balancing and incremental
streaming without any timing. ``GET /_seen`` (asked directly) lists the path and body size of
every other request it got (``seen``) and their ``traceparent`` headers (``traceparents``); a
replica named ``broken...`` answers 500 to all of them.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import uvicorn

REPLICA = sys.argv[2] if len(sys.argv) > 2 else "backend"
BROKEN = REPLICA.startswith("broken")  # answers 500 to everything but /_seen
_released: dict[str, asyncio.Event] = {}
_seen: list[tuple[str, int]] = []  # (path, body size) of every request but /_seen
_traceparents: list[str] = []  # their traceparent headers, in the same order


def _event(key: str) -> asyncio.Event:
    return _released.setdefault(key, asyncio.Event())


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = dict(scope["headers"])
    path: str = scope["path"]
    query = scope["query_string"].decode()
    if path == "/_seen":  # asked directly, not through the gateway
        await _json(send, 200, {"seen": _seen, "traceparents": _traceparents})
        return
    _seen.append((path, len(body)))
    _traceparents.append(headers.get(b"traceparent", b"").decode())
    if BROKEN:
        await _json(send, 500, {"replica": REPLICA, "error": "broken on purpose"})
        return
    chat = orjson.loads(body) if path.endswith("/chat/completions") else {}
    if path.endswith("/sse") or chat.get("stream"):
        await _sse(send, _event(query or "chat"))
        return
    if path.endswith("/big"):  # ?N: N 64 KiB chunks, streamed
        await _big(send, int(query or "1"))
        return
    status = 200
    if "/status/" in path:
        status = int(path.rsplit("/", 1)[1])
    if path.endswith("/hold"):
        await _event(query).wait()
    if path.endswith("/release"):
        _event(query).set()
    payload = {
        "replica": REPLICA,
        "method": scope["method"],
        "path": path + ("?" + query if query else ""),
        "traceparent": headers.get(b"traceparent", b"").decode(),
        "prefix": headers.get(b"x-forwarded-prefix", b"").decode(),
        "body_len": len(body),
        "headers": {k.decode(): v.decode("latin-1") for k, v in scope["headers"]},
    }
    if path.endswith("/chat/completions"):
        payload = _chat_completion(chat["model"])
    data = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"x-replica", REPLICA.encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _json(send: Any, status: int, payload: object) -> None:
    headers = [(b"content-type", b"application/json"), (b"x-replica", REPLICA.encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps(payload)})


async def _big(send: Any, chunks: int) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(chunks):
        piece = bytes([65 + i % 26]) * 65536
        await send({"type": "http.response.body", "body": piece, "more_body": i < chunks - 1})


async def _sse(send: Any, released: asyncio.Event) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    first = dict(chunk, choices=[{"index": 0, "delta": {"content": "first"}}])
    await send(
        {
            "type": "http.response.body",
            "body": b"data: " + orjson.dumps(first) + b"\n\n",
            "more_body": True,
        }
    )
    await released.wait()
    second = dict(
        chunk, choices=[{"index": 0, "delta": {"content": "second"}, "finish_reason": "stop"}]
    )
    await send(
        {
            "type": "http.response.body",
            "body": b"data: " + orjson.dumps(second) + b"\n\n",
            "more_body": True,
        }
    )
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def _chat_completion(model: str) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLICA},
                "finish_reason": "stop",
            }
        ],
    }


if __name__ == "__main__":
    uvicorn.run(
        app,
        fd=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
