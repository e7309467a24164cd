"""The client side of the gateway: one asyncio Protocol per accepted connection.

Owns the sockets clients connect to. Parses requests with httptools (buffering each body, which
makes a retry on another replica possible), runs one handler task per request in arrival order
(pipelined requests wait their turn), and is the :class:`ResponseSink` that writes answers back,
re-chunking streamed bodies as they arrive. Never decides where a request goes: the handler
passed in does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import httptools

from kaip.local.gateway.http1 import Headers, json_body, reason_phrase
from kaip.local.gateway.upstream import Framing, UpstreamConnection, set_nodelay

log = logging.getLogger("kaip.local.gateway")

MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_PIPELINED = 32  # queued requests per connection before reading pauses


@dataclass(slots=True)
class Request:
    method: bytes
    target: bytes
    headers: Headers
    body: bytes
    keep_alive: bool
    http10: bool


Handler = Callable[["ClientConnection", Request], Coroutine[Any, Any, None]]


class ClientConnection(asyncio.Protocol):
    """One client connection: request parsing, ordering, and the response writer."""

    def __init__(self, handler: Handler, registry: set[ClientConnection]) -> None:
        self._handler = handler
        self._registry = registry
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._out: list[bytes] = []
        self._url = b""
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._body_size = 0
        self.write_paused = False
        self._http10 = False
        self._chunked = False
        self._must_close = False
        self.closed = False
        self.closing_after_response = False  # set by the gateway when it stops
        self.peer: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        # Per-response state, read by the handler.
        self.head_sent = False
        self.status = 0
        self.upstream: UpstreamConnection | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        set_nodelay(transport)
        self._registry.add(self)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.peer = (peer[0], peer[1]) if peer else None
        self.local = (local[0], local[1]) if local else None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(501, "protocol upgrades (WebSocket) are not supported by the gateway")
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed HTTP request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._registry.discard(self)
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.upstream is not None:
            self.upstream.resume_reading()

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        for name, value in self._headers:
            if name.lower() == b"expect" and value.lower() == b"100-continue":
                assert self._transport is not None
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > MAX_BODY_BYTES:
            raise httptools.HttpParserError(f"request body over {MAX_BODY_BYTES} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(
            method=parser.get_method(),
            target=self._url,
            headers=self._headers,
            body=body,
            keep_alive=parser.should_keep_alive(),
            http10=parser.get_http_version() == "1.0",
        )
        if self._task is None and not self._queue:
            self._start(request)
        else:
            self._queue.append(request)
            if len(self._queue) >= MAX_PIPELINED and self._transport is not None:
                self._transport.pause_reading()

    # -- request lifecycle ---------------------------------------------------------------------
    def _start(self, request: Request) -> None:
        self.head_sent = False
        self.status = 0
        self._http10 = request.http10
        self._must_close = not request.keep_alive or self.closing_after_response
        task = self._loop.create_task(self._handler(self, request))
        self._task = task
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        self.upstream = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("gateway request handler failed", exc_info=exc)
            if not self.head_sent and not self.closed:
                self.send_json(500, {"error": "internal gateway error"})
            else:
                self._must_close = True
        self.flush()
        if self.closed or self._transport is None:
            return
        if self._must_close or self.closing_after_response:
            self._transport.close()
        elif self._queue:
            self._start(self._queue.popleft())
            if len(self._queue) < MAX_PIPELINED:
                self._transport.resume_reading()

    def close_if_idle(self) -> None:
        if self._task is None and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- ResponseSink ------------------------------------------------------------------------------
    def response_head(self, status: int, reason: bytes, headers: Headers, framing: Framing) -> None:
        self.status = status
        self.head_sent = True
        out = self._out
        out += (b"HTTP/1.1 %d " % status, reason or reason_phrase(status), b"\r\n")
        for name, value in headers:
            out += (name, b": ", value, b"\r\n")
        self._chunked = False
        if framing is Framing.CHUNKED or framing is Framing.UNTIL_CLOSE:
            if self._http10:
                self._must_close = True
            else:
                out.append(b"transfer-encoding: chunked\r\n")
                self._chunked = True
        if self._must_close or self.closing_after_response:
            self._must_close = True
            out.append(b"connection: close\r\n\r\n")
        elif self._http10:
            out.append(b"connection: keep-alive\r\n\r\n")
        else:
            out.append(b"\r\n")

    def response_body(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self._chunked:
            self._out += (b"%x\r\n" % len(chunk), chunk, b"\r\n")
        else:
            self._out.append(chunk)

    def response_end(self) -> None:
        if self._chunked:
            self._out.append(b"0\r\n\r\n")
            self._chunked = False

    def flush(self) -> None:
        if self._out:
            if self._transport is not None and not self.closed:
                self._transport.write(b"".join(self._out))
            self._out.clear()

    # -- answers the gateway gives itself ----------------------------------------------------------
    def send_json(
        self, status: int, payload: object, headers: Headers | None = None, *, head: bool = False
    ) -> None:
        body = json_body(payload)
        all_headers: Headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
        ]
        if headers:
            all_headers += headers
        self.response_head(status, b"", all_headers, Framing.LENGTH)
        if not head:
            self.response_body(body)
        self.response_end()
        self.flush()

    def _reject(self, status: int, message: str) -> None:
        if self._transport is None or self.closed:
            return
        self._queue.clear()
        if self._task is None:
            self._must_close = True
            self.send_json(status, {"error": message})
        self._transport.close()
        self.closed = True
