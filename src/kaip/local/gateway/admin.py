"""Serving ``/_kaip/...`` from an ASGI app (the controller's admin API) inside the gateway.

A minimal ASGI 3 HTTP bridge for one buffered request: builds the scope, feeds the body once,
and streams what the app sends back through the client connection. Never routes to replicas and
never runs lifespan events (the app's owner does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

from kaip.local.gateway.server import ClientConnection, Request
from kaip.local.gateway.upstream import Framing

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def serve_asgi(app: ASGIApp, conn: ClientConnection, request: Request) -> None:
    """Run ``app`` for ``request`` and write its response to ``conn``."""
    path, _, query = request.target.partition(b"?")
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.0" if request.http10 else "1.1",
        "method": request.method.decode("latin-1"),
        "scheme": "http",
        "path": unquote(path.decode("latin-1")),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in request.headers],
        "client": conn.peer,
        "server": conn.local,
    }
    body_sent = False
    disconnected = asyncio.Event()

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    started = False
    has_length = False

    async def send(message: Message) -> None:
        nonlocal started, has_length
        if message["type"] == "http.response.start":
            headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", [])]
            has_length = any(n.lower() == b"content-length" for n, _ in headers)
            framing = Framing.LENGTH if has_length else Framing.CHUNKED
            if request.method == b"HEAD":
                framing = Framing.NONE
            conn.response_head(int(message["status"]), b"", headers, framing)
            started = True
        elif message["type"] == "http.response.body" and started:
            if request.method != b"HEAD":
                conn.response_body(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                conn.response_end()
            conn.flush()

    try:
        await app(scope, receive, send)
    finally:
        disconnected.set()
    if not started:
        conn.send_json(500, {"error": "the admin API sent no response"})
