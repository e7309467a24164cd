"""Connections to HTTP/1.1 upstreams: a keep-alive pool and a response reader, for the gateway
(to replicas) and the engine relay (to an engine's server, :mod:`kaip.serving.relay`).

The one module of :mod:`kaip.protocol` that does I/O: it owns every socket the gateway and the
relay open to an upstream. A request goes out as one write; the response is parsed with
httptools and handed, piece by piece as it arrives, to a :class:`ResponseSink` (the client's
connection, or the relay's reader), so streamed answers stream through. Each exchange ends with
an :class:`Outcome` on a future, which tells the caller whether a retry is safe: only when
nothing of the response was passed on. A response that declares a small length (up to
:data:`HOLD_BYTES`, which is nearly every inference answer) is passed on whole, once complete,
so an upstream that dies between its head and its body (a SIGKILL, an OOM kill) is retried too
rather than cutting the client's response short. Each exchange has a deadline for the response
head: an upstream that accepts a request and then says nothing is aborted (its connection never
goes back to the pool) and the outcome is :attr:`Outcome.TIMED_OUT`; once the head is in, the
body may take as long as it takes (a stream; the caller may abort it). Never chooses an upstream
and never retries by itself.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import ssl
from typing import Protocol, cast

import httptools

Headers = list[tuple[bytes, bytes]]

# RFC 9110 section 7.6.1 connection-specific fields: one hop only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


class Outcome(enum.IntEnum):
    OK = 0
    FAILED_BEFORE_RESPONSE = 1  # refused, reset or closed before anything was passed on: retry
    FAILED_DURING_RESPONSE = 2  # the upstream went away or spoke garbage mid-response
    TIMED_OUT = 3  # no complete response head within the deadline: nothing reached the client


class Framing(enum.IntEnum):
    LENGTH = 0  # content-length
    CHUNKED = 1
    NONE = 2  # no body (HEAD, 1xx, 204, 304)
    UNTIL_CLOSE = 3  # neither: the body ends when the upstream closes


class ResponseSink(Protocol):
    """Where an upstream's response goes as it is parsed."""

    def response_head(self, status: int, reason: bytes, headers: Headers, framing: Framing) -> None:
        """Called once per response, before any body."""

    def response_body(self, chunk: bytes) -> None: ...

    def response_end(self) -> None: ...

    def flush(self) -> None:
        """Write what was buffered; called after every read from the upstream."""


BackendKey = tuple[str, int]
HOLD_BYTES = 64 * 1024
"""Responses with a ``content-length`` up to this are held until complete, then passed on."""


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle: a response written in pieces must not wait for the peer's delayed ACK."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to one upstream (a replica, an engine), one exchange at a time."""

    def __init__(self, pool: UpstreamPool, key: BackendKey) -> None:
        self.key = key
        self.closed = False
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._sink: ResponseSink | None = None
        self._done: asyncio.Future[Outcome] | None = None
        self._delivered = False  # some of the response went to the sink
        self._held: list[bytes] | None = None  # a small response's head and body, until complete
        self._held_head: tuple[int, bytes, Headers, Framing] | None = None
        self._head_done = False
        self._head_request = False
        self._paused = False
        self._deadline: asyncio.TimerHandle | None = None
        self._framing = Framing.LENGTH
        self._reason = b""
        self._headers: Headers = []

    # -- the caller's side -------------------------------------------------------------------
    def send(
        self,
        data: bytes,
        body: bytes,
        sink: ResponseSink,
        done: asyncio.Future[Outcome],
        head_request: bool,
        head_timeout_s: float,
    ) -> None:
        """Write one whole request (``data``, then ``body`` unless empty: a large body goes
        out as is, never copied into the head); ``done`` gets the outcome when the response has
        ended.

        The response head must be complete within ``head_timeout_s`` of this call, or the
        connection is aborted and ``done`` gets :attr:`Outcome.TIMED_OUT`.
        """
        assert self._transport is not None
        if self.closed or self._transport.is_closing():
            # Lost before this exchange began: the upstream closed it (it died, say) while the
            # caller was still being told it had connected. Nothing was sent; try elsewhere.
            self.closed = True
            done.set_result(Outcome.FAILED_BEFORE_RESPONSE)
            return
        self._sink = sink
        self._done = done
        self._delivered = False
        self._held = self._held_head = None
        self._head_done = False
        self._head_request = head_request
        self._reason = b""
        self._headers = []
        self.resume_reading()  # in case the last exchange ended while its client was slow
        self._deadline = self._loop.call_later(head_timeout_s, self._head_overdue)
        self._transport.write(data)
        if body:
            self._transport.write(body)

    def abort(self) -> None:
        """Drop the connection at once (the client went away, or the upstream is not answering)."""
        self._sink = None
        self._done = None
        self.closed = True
        self._disarm()
        if self._transport is not None:
            self._transport.abort()

    def pause_reading(self) -> None:
        """Stop reading the upstream while the client cannot keep up (only mid-exchange)."""
        if self._sink is not None and not self._paused and not self.closed:
            assert self._transport is not None
            self._paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and not self.closed:
            assert self._transport is not None
            self._paused = False
            self._transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        self._disarm()
        if self._transport is not None:
            self._transport.close()

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_overdue(self) -> None:
        """The deadline passed with no complete response head: give up on this upstream."""
        self._deadline = None
        done = self._done
        if self._sink is None or self._head_done or done is None:
            return
        # abort, not close: a hung upstream may not read, and close() would wait for our write
        # buffer to drain first; a connection with a request still in it is never reused.
        self.abort()
        if not done.done():
            done.set_result(Outcome.TIMED_OUT)

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        set_nodelay(transport)

    def data_received(self, data: bytes) -> None:
        sink = self._sink
        if sink is None:  # bytes nobody asked for: this connection cannot be trusted any more
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            failed = (
                Outcome.FAILED_DURING_RESPONSE
                if self._delivered
                else Outcome.FAILED_BEFORE_RESPONSE
            )
            self._finish(failed, reuse=False)
        sink.flush()

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost decides what it meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.discard(self)
        sink = self._sink
        if sink is None:
            return
        if self._head_done and self._framing is Framing.UNTIL_CLOSE and exc is None:
            sink.response_end()
            sink.flush()
            self._finish(Outcome.OK, reuse=False)
        elif self._delivered:
            self._finish(Outcome.FAILED_DURING_RESPONSE, reuse=False)
        else:
            self._finish(Outcome.FAILED_BEFORE_RESPONSE, reuse=False)

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        framing = Framing.UNTIL_CLOSE
        length = -1
        kept: Headers = []
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                framing = Framing.LENGTH
                length = int(value) if value.strip().isdigit() else -1
            elif lower == b"transfer-encoding":
                if b"chunked" in value.lower():
                    framing = Framing.CHUNKED
                continue
            elif lower in HOP_BY_HOP:
                continue
            kept.append((name, value))
        if self._head_request or status < 200 or status in (204, 304):
            framing = Framing.NONE
        self._framing = framing
        self._head_done = True
        self._disarm()
        if framing is Framing.LENGTH and 0 <= length <= HOLD_BYTES:
            self._held_head, self._held = (status, self._reason, kept, framing), []
        elif self._sink is not None:
            self._delivered = True
            self._sink.response_head(status, self._reason, kept, framing)
        if self._head_request:
            # httptools cannot be told that a HEAD response has no body: end here, don't reuse.
            if self._sink is not None:
                self._sink.response_end()
            self._finish(Outcome.OK, reuse=False)

    def on_body(self, body: bytes) -> None:
        if self._held is not None:
            self._held.append(body)
        elif self._sink is not None:
            self._sink.response_body(body)

    def on_message_complete(self) -> None:
        sink = self._sink
        if sink is None:
            return
        if self._held_head is not None and self._held is not None:
            self._delivered = True
            sink.response_head(*self._held_head)
            sink.response_body(b"".join(self._held))
            self._held = self._held_head = None
        sink.response_end()
        self._finish(Outcome.OK, reuse=self._parser.should_keep_alive())

    def _finish(self, outcome: Outcome, *, reuse: bool) -> None:
        done = self._done
        self._sink = None
        self._done = None
        self._disarm()
        if reuse and not self.closed:
            self._pool.release(self)
        else:
            self.close()
        if done is not None and not done.done():
            done.set_result(outcome)


class UpstreamPool:
    """Idle keep-alive connections per upstream address, most recently used first; over TLS
    when given ``tls`` (an ``https://`` engine URL), else plain TCP."""

    def __init__(
        self,
        *,
        max_idle_per_backend: int = 64,
        connect_timeout_s: float = 5.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._max_idle = max_idle_per_backend
        self._connect_timeout_s = connect_timeout_s
        self._tls = tls
        self._idle: dict[BackendKey, list[UpstreamConnection]] = {}
        self._open: set[UpstreamConnection] = set()

    def take_idle(self, key: BackendKey) -> UpstreamConnection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def connect(self, key: BackendKey) -> UpstreamConnection:
        """A new connection; raises OSError (or TimeoutError) when it cannot be reached."""
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: UpstreamConnection(self, key),
                key[0],
                key[1],
                ssl=self._tls,
                server_hostname=key[0] if self._tls is not None else None,
            ),
            self._connect_timeout_s,
        )
        self._open.add(conn)
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self._max_idle:
            conn.close()
        else:
            idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def close(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
