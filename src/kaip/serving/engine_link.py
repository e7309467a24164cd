"""The engine relay's leg to its engine: one HTTP/1.1 exchange per request over kept-alive
connections, the answer handed to the relay as it arrives.

The connections are the gateway's own client (:mod:`kaip.protocol.upstream`: one write per
request, httptools parsing the answer in the connection's callback), not a general HTTP client:
on the relay's hot path, a streamed answer costs one read from the engine and one hand-off to
the relay per event, and every event already read when the relay comes for more goes on in one
piece. The rules:

- **Once more.** A request whose connection the engine closed (or refused at once) before any
  byte of an answer came goes once more, on a new connection: llama-server closes kept-alive
  connections after 5 s idle and after 100 requests, and one it closed just as a request went
  out is no failure of the engine's.
- **Time.** Connecting may take :data:`CONNECT_TIMEOUT_S`; the answer's head must come within
  the relay's timeout (``serve.timeoutSeconds``), and after it no more than that may pass
  between two reads of the answer, else :class:`EngineFailure` with ``timed_out``. Time spent
  waiting for the relay's own client (below) does not count.
- **Handed on.** The relay takes the body with :meth:`EngineAnswer.read` (its task woken per
  read), or has each piece handed to a callback of its own as the connection reads it
  (:meth:`EngineAnswer.stream_to`: no task woken per piece, the relay's task waits for the end).
- **Back-pressure.** While more than :data:`PAUSE_BYTES` read from the engine wait for the
  relay (its client reads slowly), or the callback says its client can take no more, the
  engine's connection is not read.
- **Cancel.** An answer closed before it ended (the relay's client went away, the relay was
  cancelled) aborts its connection: the engine sees it close and stops generating.

Never reads or changes a body, and never chooses an engine.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from kaip.protocol.upstream import (
    Framing,
    Headers,
    Outcome,
    UpstreamConnection,
    UpstreamPool,
)

CONNECT_TIMEOUT_S: Final = 5.0
PAUSE_BYTES: Final = 256 * 1024
MAX_IDLE_CONNECTIONS: Final = 256
INLINE_BODY_BYTES: Final = 64 * 1024
"""A request body up to this goes out in the same write as its head."""


class EngineFailure(Exception):
    """The engine did not answer, or broke off its answer: ``reason`` says how (for a
    message), ``error_type`` names it for the GenAI histograms' ``error.type``."""

    def __init__(self, reason: str, error_type: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type
        self.timed_out = timed_out


class EngineAnswer:
    """One answer from the engine, as its connection reads it (a
    :class:`~kaip.protocol.upstream.ResponseSink`): its head, then :meth:`read` for its body."""

    def __init__(self, conn: UpstreamConnection, timeout: float) -> None:
        self.status = 0
        self.headers: Headers = []
        self.head_in = False
        # kept: asyncio.get_running_loop() makes a getpid() system call each time
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[Outcome] = self._loop.create_future()
        self.done.add_done_callback(self._wake)
        self._conn = conn
        self._timeout = timeout
        self._parts: list[bytes] = []
        self._size = 0
        self._paused = False
        self._ended = False
        self._failure: EngineFailure | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._read_at = 0.0
        self._clock: asyncio.TimerHandle | None = None
        self._forward: Callable[[bytes], bool] | None = None

    # -- the connection's side (ResponseSink) ----------------------------------------------------
    def response_head(self, status: int, reason: bytes, headers: Headers, framing: Framing) -> None:
        self.status = status
        self.headers = headers
        self.head_in = True

    def response_body(self, chunk: bytes) -> None:
        forward = self._forward
        if forward is not None:  # stream_to: handed on at once (this runs once per piece)
            try:
                more = forward(chunk)
            except Exception as exc:  # a bug of the relay's: this answer fails, not the connection
                self._fail_relay(exc)
                return
            if not more and not self._paused:
                self._paused = True
                self._conn.pause_reading()
            return
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size > PAUSE_BYTES and not self._paused:
            self._paused = True
            self._conn.pause_reading()

    def response_end(self) -> None:
        self._ended = True

    def flush(self) -> None:
        self._read_at = time.monotonic()
        if self._forward is None:  # else the relay waits for the end only (done, a failure)
            self._wake()

    # -- the relay's side --------------------------------------------------------------------------
    async def read(self) -> bytes:
        """All of the body read since the last call (waiting for some), ``b""`` once the answer
        is complete; raises :class:`EngineFailure` once what came before the failure was read."""
        while True:
            parts = self._parts
            if parts:
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                self._parts = []
                self._size = 0
                self.resume()
                return data
            if self._over():
                return b""
            await self.wait()

    def stream_to(self, forward: Callable[[bytes], bool]) -> None:
        """From now on hand each piece of the body to ``forward`` as the connection reads it
        (what was read already goes at once), instead of keeping it for :meth:`read`;
        ``forward`` returns False when its client can take no more for now: the engine is not
        read until :meth:`resume`. Wait for the end with :meth:`finished`."""
        self._forward = forward
        parts, self._parts, self._size = self._parts, [], 0
        if self._paused:  # it was paused for those parts alone
            self.resume()
        if parts:
            self.response_body(parts[0] if len(parts) == 1 else b"".join(parts))

    async def finished(self) -> None:
        """Once the answer has ended (after :meth:`stream_to`); raises :class:`EngineFailure`
        as :meth:`read` does."""
        while not self._over():
            await self.wait()

    @property
    def paused(self) -> bool:
        """Whether the engine's connection is left unread now (module docstring: Back-pressure)."""
        return self._paused

    def resume(self) -> None:
        """Read the engine again, if a full client paused it (the read clock starts over)."""
        if self._paused:
            self._paused = False
            self._read_at = time.monotonic()
            self._conn.resume_reading()

    def _fail_relay(self, exc: Exception) -> None:
        self._failure = EngineFailure(f"the relay failed on the answer: {exc!r}", "relay")
        self._conn.abort()
        self._wake()

    def _over(self) -> bool:
        """True once the answer has ended; raises its failure; else arms the read clock."""
        if self._ended:
            self._stop_clock()
            return True
        if self._failure is not None:
            raise self._failure
        if self.done.done():
            self._stop_clock()
            outcome = self.done.result()
            if outcome is Outcome.OK:  # ended without a body (HEAD)
                return True
            raise EngineFailure(
                "the connection closed in the middle of the answer", outcome.name.lower()
            )
        if self._clock is None:
            self._clock = self._loop.call_later(self._timeout, self._overdue)
        return False

    def close(self) -> None:
        """Abort the connection if the answer has not ended (it is not reused then)."""
        self._stop_clock()
        if not self.done.done():
            self._conn.abort()
            self.done.cancel()

    async def wait(self) -> None:
        """Until the connection has read something, or the exchange is over."""
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self, _: object = None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _overdue(self) -> None:
        """The read clock (module docstring: Time): nothing came for the timeout, or the
        relay's client is what is slow."""
        self._clock = None
        if self._paused or self.done.done():
            return
        idle = time.monotonic() - self._read_at
        if idle < self._timeout:
            self._clock = self._loop.call_later(self._timeout - idle, self._overdue)
            return
        self._failure = EngineFailure("nothing came", "timeout", timed_out=True)
        self._conn.abort()
        self._wake()

    def _stop_clock(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None


class EngineLink:
    """The relay's connections to the engine at one base URL (``http://host:port``)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        parts = urlsplit(base_url)
        tls = parts.scheme == "https"
        self.base_url = base_url
        self.timeout = timeout
        self._key = (parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80))
        self._host = parts.netloc.encode("idna")
        self._pool = UpstreamPool(
            max_idle_per_backend=MAX_IDLE_CONNECTIONS,
            connect_timeout_s=CONNECT_TIMEOUT_S,
            tls=ssl.create_default_context() if tls else None,
        )

    def request_head(self, method: bytes, target: bytes, headers: Headers, length: int) -> bytes:
        """A request's head: ``headers`` as given (the caller leaves out what is not to go on),
        this engine's ``host`` and the body's length."""
        parts = [method, b" ", target, b" HTTP/1.1\r\nhost: ", self._host, b"\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if length or method not in (b"GET", b"HEAD"):
            parts.append(b"content-length: %d\r\n" % length)
        parts.append(b"\r\n")
        return b"".join(parts)

    async def open(self, head: bytes, body: bytes, *, head_request: bool = False) -> EngineAnswer:
        """Send a request; return its answer once the answer's head is in (for a small answer,
        once all of it is). Raises :class:`EngineFailure` (module docstring: Once more, Time)."""
        if len(body) <= INLINE_BODY_BYTES:  # one write, one segment for the engine to read
            head, body = head + body, b""
        failure = EngineFailure("no connection", "failed_before_response")
        for attempt in (0, 1):
            conn = self._pool.take_idle(self._key) if attempt == 0 else None
            if conn is None:
                try:
                    conn = await self._pool.connect(self._key)
                except TimeoutError:
                    raise EngineFailure(
                        f"no connection within {CONNECT_TIMEOUT_S:g} s", "timeout"
                    ) from None
                except OSError as exc:
                    failure = EngineFailure(
                        f"cannot connect: {exc.strerror or exc}", type(exc).__name__
                    )
                    continue
            answer = EngineAnswer(conn, self.timeout)
            conn.send(head, body, answer, answer.done, head_request, self.timeout)
            try:
                while not answer.head_in and not answer.done.done():
                    await answer.wait()
            except BaseException:
                answer.close()
                raise
            if answer.head_in:
                answer.flush()  # the read clock starts with the head
                return answer
            outcome = answer.done.result()
            if outcome is Outcome.TIMED_OUT:
                raise EngineFailure("nothing came", "timeout", timed_out=True)
            failure = EngineFailure(
                "the connection closed before an answer came", outcome.name.lower()
            )
        raise failure

    def close(self) -> None:
        self._pool.close()


__all__ = ["EngineAnswer", "EngineFailure", "EngineLink"]
