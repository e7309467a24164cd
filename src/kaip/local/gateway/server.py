"""The client side of the gateway: one asyncio Protocol per accepted connection.

Owns the sockets clients connect to. Parses requests with httptools (buffering each body, which
makes a retry on another replica possible), runs one handler task per request in arrival order
(pipelined requests wait their turn, at most :data:`MAX_PIPELINED` of them before reading
pauses), and is the :class:`ResponseSink` that writes answers back, re-chunking streamed bodies
as they arrive. A request that upgrades the connection (WebSocket) is handed to its handler like
any other, and the bytes after it to the tunnel the handler sets up (:meth:`tunnel_to`); the
connection closes after its answer if there is none. Bounds what a client may send: a request
head over ``max_header_bytes`` gets 431, a body over its target's
:class:`~kaip.local.gateway.limits.BodyLimit` gets 413 (from ``Content-Length`` before any of
it is read), each then closed; deadlines and the connection
cap are :class:`~kaip.local.gateway.limits.Connections`'. Never decides where a request goes:
the handler passed in does.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import httptools

from kaip.local.gateway.http1 import error_payload, json_body, reason_phrase
from kaip.local.gateway.limits import BodyLimit, Connections, Deadline
from kaip.protocol.upstream import Framing, Headers, UpstreamConnection, set_nodelay

log = logging.getLogger("kaip.local.gateway")

MAX_PIPELINED = 2  # complete requests queued per connection before reading pauses
MAX_EARLY_BYTES = 64 * 1024  # read past an upgrade before its tunnel is set up; then pause
_HEADER_LINE_OVERHEAD = 4  # ": " and CRLF


@dataclass(slots=True)
class Request:
    method: bytes
    target: bytes
    headers: Headers
    body: bytes
    keep_alive: bool
    http10: bool
    upgrade: bool = False
    """The client asked to switch protocols (``Connection: upgrade``); the connection then
    carries nothing but this request's answer or tunnel (see :meth:`ClientConnection.tunnel_to`)."""


Handler = Callable[["ClientConnection", Request], Coroutine[Any, Any, None]]
BodyLimitFor = Callable[[bytes], BodyLimit]  # request target -> the body limit of its route


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that was just refused."""


class ClientConnection(asyncio.Protocol):
    """One client connection: request parsing, ordering, and the response writer."""

    def __init__(
        self,
        handler: Handler,
        registry: Connections[ClientConnection],
        body_limit_for: BodyLimitFor,
    ) -> None:
        self._handler = handler
        self._registry = registry
        self._limits = registry.limits
        self._body_limit_for = body_limit_for
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
        self._body_limit: BodyLimit | None = None
        self._reading = False  # between a request's first byte and its end
        self._head_done = False
        self._head_size = 0  # exact: the URL and header lines seen so far
        self._head_raw = 0  # raw bytes of later chunks while the head is incomplete
        self._began_in_chunk = False
        self._refused = False
        self.deadline = math.inf
        self.deadline_kind = Deadline.NONE
        self.write_paused = False
        self._http10 = False
        self._chunked = False
        self._must_close = False
        self.closed = False
        self.closing_after_response = False  # set by the gateway when it stops
        self.peer: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.client_address = b""  # the peer's IP, for X-Forwarded-For
        # Per-response state, read by the handler.
        self.head_sent = False
        self.status = 0
        self.upstream: UpstreamConnection | None = None
        # An upgraded connection: bytes past the handshake go to _feed (buffered until set).
        self._upgraded = False
        self._early = b""
        self._feed: Callable[[bytes], None] | None = None
        self._on_lost: Callable[[], None] | None = None
        self._writable: asyncio.Event | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        set_nodelay(transport)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.peer = (peer[0], peer[1]) if peer else None
        self.local = (local[0], local[1]) if local else None
        self.client_address = self.peer[0].encode() if self.peer else b""
        if not self._registry.admit(self):
            self.refuse_full()
            return
        self._set_deadline(Deadline.HEAD, self._limits.header_timeout_seconds)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._upgraded:
            if self._feed is not None:
                self._feed(data)
            else:
                self._early += data
                if len(self._early) > MAX_EARLY_BYTES and self._transport is not None:
                    self._transport.pause_reading()
            return
        if self.deadline_kind is Deadline.IDLE:
            self.deadline, self.deadline_kind = math.inf, Deadline.NONE
        self._began_in_chunk = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # The request is complete (its handler decides); what follows is another protocol.
            self._upgraded = True
            self._must_close = True
            self._early = data[upgrade.args[0] :]
            return
        except httptools.HttpParserError as exc:
            if not self._refused:
                self._reject(400, f"malformed HTTP request: {exc}")
            return
        if self._reading and not self._head_done and not self._began_in_chunk:
            # A head that never ends is refused before httptools buffers much of it.
            self._head_raw += len(data)
            if self._head_raw > self._limits.max_header_bytes:
                self._head_too_large()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._on_lost is not None:
            self._on_lost()
        if self._writable is not None:
            self._writable.set()
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
        if self._writable is not None:
            self._writable.set()
        if self.upstream is not None:
            self.upstream.resume_reading()

    # -- the registry's side (limits.Limited) ---------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._task is not None or bool(self._queue)

    def expire(self, kind: Deadline) -> None:
        if kind is Deadline.IDLE:
            self.close_if_idle()
        elif kind is Deadline.HEAD:
            seconds = self._limits.header_timeout_seconds
            self._reject(408, f"the request head did not arrive within {seconds:g} s")
        elif kind is Deadline.BODY:
            seconds = self._limits.body_timeout_seconds
            self._reject(408, f"the request body did not arrive within {seconds:g} s")

    def evict(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def refuse_full(self) -> None:
        self._reject(503, "the gateway has too many open connections; retry shortly")

    def _set_deadline(self, kind: Deadline, seconds: float) -> None:
        self.deadline = self._loop.time() + seconds
        self.deadline_kind = kind

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []
        self._body_size = 0
        self._reading = True
        self._head_done = False
        self._head_size = 0
        self._head_raw = 0
        self._began_in_chunk = True
        self._set_deadline(Deadline.HEAD, self._limits.header_timeout_seconds)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self._limits.max_header_bytes:
            self._head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._head_size += len(name) + len(value) + _HEADER_LINE_OVERHEAD
        if self._head_size > self._limits.max_header_bytes:
            self._head_too_large()

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._set_deadline(Deadline.BODY, self._limits.body_timeout_seconds)
        limit = self._body_limit = self._body_limit_for(self._url)
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0  # httptools refuses it next
                if declared > limit.max_bytes:
                    self._too_large(limit)
            elif lower == b"expect" and value.lower() == b"100-continue":
                assert self._transport is not None
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        limit = self._body_limit
        if limit is not None and self._body_size > limit.max_bytes:
            self._too_large(limit)
        self._body.append(body)

    def _head_too_large(self) -> None:
        limit = self._limits.max_header_bytes
        self._refuse(
            431, f"the request line and headers are larger than {limit} bytes; send less in them"
        )

    def _too_large(self, limit: BodyLimit) -> None:
        self._refuse(413, limit.message(), openai=limit.openai)

    def _refuse(self, status: int, message: str, *, openai: bool = False) -> None:
        """Answer ``status``, close, and stop parsing (raises out of the parser callback)."""
        self._reject(status, message, openai=openai)
        raise _Refused

    def on_message_complete(self) -> None:
        self._reading = False
        self.deadline, self.deadline_kind = math.inf, Deadline.NONE
        parser = self._parser
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(
            method=parser.get_method(),
            target=self._url,
            headers=self._headers,
            body=body,
            keep_alive=parser.should_keep_alive(),
            http10=parser.get_http_version() == "1.0",
            upgrade=parser.should_upgrade(),
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
        self._must_close = not request.keep_alive or self.closing_after_response or request.upgrade
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
        elif not self._reading:
            self._set_deadline(Deadline.IDLE, self._limits.idle_timeout_seconds)

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

    # -- an upgraded connection (see kaip.local.gateway.websocket) --------------------------------
    def tunnel_to(self, feed: Callable[[bytes], None], on_lost: Callable[[], None]) -> bytes:
        """From now on every byte from the client goes to ``feed``; returns those already read
        past the upgrade request. ``on_lost`` is called when the client goes away."""
        early, self._early = self._early, b""
        self._feed, self._on_lost = feed, on_lost
        self.resume_reading()
        return early

    def pause_reading(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()

    def write_raw(self, data: bytes) -> None:
        """Bytes to the client as they are (a relayed handshake answer, tunnelled frames)."""
        self.head_sent = True
        if self._transport is not None and not self.closed:
            self._transport.write(data)

    async def drained(self) -> None:
        """Return once the client has taken what was written (below the high-water mark)."""
        while self.write_paused and not self.closed:
            self._writable = self._writable or asyncio.Event()
            self._writable.clear()
            await self._writable.wait()

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

    def _reject(self, status: int, message: str, *, openai: bool = False) -> None:
        self._refused = True
        self.deadline, self.deadline_kind = math.inf, Deadline.NONE
        if self._transport is None or self.closed:
            return
        self._queue.clear()
        if self._task is None:
            self._must_close = True
            self.send_json(status, error_payload(message, openai=openai))
        self._transport.close()
        self.closed = True
