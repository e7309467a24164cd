"""The model server's HTTP/1.1 protocol: uvicorn's httptools protocol with the bounds it lacks.

uvicorn closes idle kept-alive connections (``timeout_keep_alive``, set from
``idle_timeout_seconds``) and reads one pipelined request at a time, but its httptools protocol
takes a request head of any size (httptools joins a partial header value by concatenation, so
the cost grows faster than the size), waits forever for a head or a body that never completes,
and never caps connections. :func:`bounded_protocol` makes a subclass that adds, from
:class:`~kaip.settings.HttpLimits`:

- a request line and headers over ``max_header_bytes`` get 431 and the connection is closed,
  as soon as that many bytes of an unfinished head have arrived;
- a head must be complete ``header_timeout_seconds`` after its first byte (or after the
  connection opened), a body ``body_timeout_seconds`` after its head; else 408 and close;
- at ``max_connections`` (lowered to what the open-file limit allows) a new connection closes
  the oldest one with no request in progress, or gets 503 when every one has one.

Deadlines are one float per connection, checked by one sweep task per server: the request path
arms no timer.

Each request's scope also carries a :class:`DirectBody` (``scope["extensions"][DIRECT_BODY]``):
an app that relays a stream from a socket callback (the engine relay) writes each piece straight
to the connection with it, one write and no task woken per piece, where an ASGI send per piece
would wake the app's task and go through uvicorn's send (bench/README.md). It costs every
request one small object. Never routes and never reads bodies (the app does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import resource
from collections.abc import Callable
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from kaip.settings import HttpLimits

log = logging.getLogger("kaip.serving")
FILES_RESERVED = 64  # open files kept for the model, its logs and the runtime
_NONE, _HEAD, _BODY = 0, 1, 2
_LINE_OVERHEAD = 4  # ": " and CRLF per header line
DIRECT_BODY: Final = "kaip.direct_body"
"""The scope extension under which a request finds its :class:`DirectBody`."""


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered so that that many connections fit the process's open-file limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FILES_RESERVED))


class _Refused(Exception):
    """Raised out of a parser callback to stop parsing a request that was just refused."""


class _Registry:
    """One server's open connections, oldest first, and the task that enforces deadlines."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.open: dict[BoundedProtocol, None] = {}
        self._sweeper: asyncio.Task[None] | None = None
        shortest = min(limits.header_timeout_seconds, limits.body_timeout_seconds)
        self._period = min(1.0, max(0.05, shortest / 4))

    def admit(self, conn: BoundedProtocol) -> bool:
        # Looked up per connection: the open-file limit may change under a running process.
        if len(self.open) >= connection_cap(self.limits.max_connections):
            victim = next((c for c in self.open if not c.busy), None)
            if victim is None:
                return False
            self.open.pop(victim, None)
            victim.transport.close()
        self.open[conn] = None
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return True

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while self.open:
            await asyncio.sleep(self._period)
            now = loop.time()
            for conn in list(self.open):
                if conn.deadline <= now:
                    try:
                        conn.expire()
                    except Exception:
                        log.exception("closing a connection past its deadline failed")


class DirectBody:
    """One response's streamed body, written straight to its connection (module docstring).

    Usable once the response's head went out through ASGI with chunked framing (:meth:`usable`:
    uvicorn chose it, the answer having no length); each :meth:`write` is then one chunk, and the
    end still goes through ASGI (``more_body: False``), which ends the chunked body and lets
    uvicorn finish the response (keep-alive, the next pipelined request). Pieces written after
    the client went away are dropped, as uvicorn's send drops them.
    """

    __slots__ = ("_cycle", "_protocol")

    def __init__(self, protocol: BoundedProtocol, cycle: RequestResponseCycle) -> None:
        self._protocol = protocol
        self._cycle = cycle

    def usable(self) -> bool:
        cycle = self._cycle
        return (
            cycle.response_started
            and cycle.chunked_encoding is True
            and not cycle.response_complete
            and not cycle.disconnected
        )

    def write(self, data: bytes) -> bool:
        """Send ``data`` (not empty) as one chunk of the body; False when the client has more
        waiting than the connection's high-water mark, and the writer should pause until the
        callback given to :meth:`on_writable` is called."""
        cycle = self._cycle
        if cycle.disconnected or cycle.response_complete:
            return True
        cycle.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return not cycle.flow.write_paused

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` whenever the client has taken what was waiting (None: no more)."""
        self._protocol.on_writable = callback


class BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded (see the module docstring).

    Its parser callbacks run for every request (``on_header`` for every header), so they call
    uvicorn's by its class rather than through ``super()``, count the head inline and read the
    limits from class attributes: on Python 3.11 a ``super()`` object, a helper's frame and
    three attribute loads per callback were ~4 of the ~7.5 µs of CPU per request these bounds
    cost the model server over uvicorn's own protocol, in place (bench/README.md, session 13)."""

    registry: _Registry  # set per server by bounded_protocol(), with the three below
    max_head: int = 0  # registry.limits.max_header_bytes
    header_timeout: float = 0.0  # registry.limits.header_timeout_seconds
    body_timeout: float = 0.0  # registry.limits.body_timeout_seconds

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_writable: Callable[[], None] | None = None
        """Called when the client has taken what was waiting (:meth:`DirectBody.on_writable`)."""
        self.deadline = math.inf
        self._deadline_kind = _NONE
        self._reading = False
        self._head_done = False
        self._head_size = 0
        self._head_raw = 0
        self._began_in_chunk = False
        self._refused = False

    @property
    def busy(self) -> bool:
        """A request of this connection is being answered or waits to be."""
        cycle = self.cycle
        return bool(self.pipeline) or (cycle is not None and not cycle.response_complete)

    # -- deadlines ---------------------------------------------------------------------------------
    def _set_deadline(self, kind: int, seconds: float) -> None:
        self.deadline = self.loop.time() + seconds
        self._deadline_kind = kind

    def _clear_deadline(self) -> None:
        self.deadline = math.inf
        self._deadline_kind = _NONE

    def expire(self) -> None:
        limits = self.registry.limits
        if self._deadline_kind == _HEAD:
            seconds, what = limits.header_timeout_seconds, "request head"
        else:
            seconds, what = limits.body_timeout_seconds, "request body"
        self._refuse(408, f"the {what} did not arrive within {seconds:g} s")

    # -- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.registry.admit(self):
            self._refuse(503, "the server has too many open connections; retry shortly")
            return
        self._set_deadline(_HEAD, self.registry.limits.header_timeout_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.open.pop(self, None)
        self._clear_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._began_in_chunk = False
        # A refusal inside comes back through send_400_response.
        HttpToolsProtocol.data_received(self, data)
        if self._reading and not self._head_done and not self._began_in_chunk and not self._refused:
            # A head that never ends is refused before httptools buffers much of it.
            self._head_raw += len(data)
            if self._head_raw > self.max_head:
                self._head_too_large()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.on_writable is not None:
            self.on_writable()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # else a callback refused the request and answered already
            self._refuse(400, msg)

    # -- httptools callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        self._reading = True
        self._head_done = False
        self._head_size = 0
        self._head_raw = 0
        self._began_in_chunk = True
        self.deadline = self.loop.time() + self.header_timeout
        self._deadline_kind = _HEAD

    def on_url(self, url: bytes) -> None:
        HttpToolsProtocol.on_url(self, url)
        size = self._head_size + len(url)
        self._head_size = size
        if size > self.max_head:
            self._head_too_large()
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        HttpToolsProtocol.on_header(self, name, value)
        size = self._head_size + len(name) + len(value) + _LINE_OVERHEAD
        self._head_size = size
        if size > self.max_head:
            self._head_too_large()
            raise _Refused

    def on_headers_complete(self) -> None:
        self._head_done = True
        self.deadline = self.loop.time() + self.body_timeout
        self._deadline_kind = _BODY
        before = self.cycle
        HttpToolsProtocol.on_headers_complete(self)
        cycle = self.cycle
        if cycle is not before and cycle is not None:  # a request's cycle (not an upgrade)
            extensions: dict[str, Any] = {DIRECT_BODY: DirectBody(self, cycle)}
            cycle.scope["extensions"] = extensions

    def on_message_complete(self) -> None:
        self._reading = False
        self.deadline = math.inf
        self._deadline_kind = _NONE
        HttpToolsProtocol.on_message_complete(self)

    # -- refusing ----------------------------------------------------------------------------------

    def _head_too_large(self) -> None:
        limit = self.registry.limits.max_header_bytes
        self._refuse(431, f"the request line and headers are over {limit} bytes; send less")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` (unless a response is under way) and close the connection."""
        self._refused = True
        self._clear_deadline()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            body = b'{"error":"%s"}' % message.replace('"', "'").encode()
            head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error"))
            transport.write(
                head + b"content-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n" % len(body) + body
            )
        with contextlib.suppress(RuntimeError):
            transport.close()


_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def bounded_protocol(limits: HttpLimits) -> type[BoundedProtocol]:
    """A protocol class for one server (pass it as uvicorn's ``http``), with its own registry."""
    return type(
        "BoundedProtocol",
        (BoundedProtocol,),
        {
            "registry": _Registry(limits),
            "max_head": limits.max_header_bytes,
            "header_timeout": limits.header_timeout_seconds,
            "body_timeout": limits.body_timeout_seconds,
        },
    )
