"""WebSocket through the gateway: an App's upgraded connection, spliced to one of its replicas.

Owns what happens after a client asks ``/apps/NAME/...`` to upgrade to WebSocket (Streamlit,
Gradio): the same-origin check, the handshake relayed to the chosen replica on a connection of
its own (never pooled), and the splice of bytes both ways until either side closes. Bounded: a
cross-origin upgrade (an ``Origin`` whose host and port are not the request's ``Host``: another
site's page opening the App with the user's cookies) is refused 403 before any replica is asked;
the replica's handshake answer must come within the route's response timeout and fit
:data:`MAX_HANDSHAKE_BYTES`; a frame from the client may declare at most ``max_frame_bytes``
(the App's request body limit; a larger one closes the connection with status 1009); a tunnel
with no byte either way for ``idle_s`` is closed; reading pauses on a side whose peer cannot keep
up. Frames are never reassembled or copied into buffers of their own: only the client's frame
headers are read, to enforce the size bound. Never chooses the replica (the gateway does) and
never retries: a handshake that fails is answered 502 or 504.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

log = logging.getLogger("kaip.local.gateway")

MAX_HANDSHAKE_BYTES = 64 * 1024
"""The replica's answer to the upgrade (status line and headers) must fit in this."""
IDLE_S = 300.0
"""A tunnel with no byte in either direction this long is closed."""
CLOSE_TOO_BIG = b"\x88\x02\x03\xf1"  # a close frame, status 1009 (message too big), unmasked
_PIECE = 64 * 1024


def wants_websocket(headers: list[tuple[bytes, bytes]]) -> bool:
    """The request asks to upgrade to WebSocket (``Upgrade: websocket``)."""
    return any(
        name.lower() == b"upgrade" and value.strip().lower() == b"websocket"
        for name, value in headers
    )


def cross_origin(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why the upgrade is refused as cross-origin, or None.

    A browser sends ``Origin`` with every WebSocket handshake; its host and port must be the
    request's ``Host`` (the page came from this gateway). Clients that are not browsers may omit
    it. ``Origin: null`` (a sandboxed or file page) is refused.
    """
    host = origin = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"host":
            host = value.strip().decode("latin-1").lower()
        elif lower == b"origin":
            origin = value.strip().decode("latin-1")
    if origin is None:
        return None
    parts = urlsplit(origin.lower())
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        port = None
    authority = f"{parts.hostname}:{port}" if port is not None and parts.hostname else None
    if host is not None and ":" not in host.rpartition("]")[2]:
        host += ":80"
    if authority is None or authority != host:
        return (
            f"a WebSocket from the origin {origin[:80]!r} to the host {host or '(none)'!r} is "
            "refused: the page must come from the same host and port as the App"
        )
    return None


class Client(Protocol):
    """The client's connection as the tunnel sees it (the gateway's ``ClientConnection``)."""

    def tunnel_to(self, feed: Callable[[bytes], None], on_lost: Callable[[], None]) -> bytes:
        """Hand every further byte from the client to ``feed`` (returns those already read
        past the handshake); ``on_lost`` is called when the client goes away."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def write_raw(self, data: bytes) -> None: ...

    async def drained(self) -> None:
        """Return once the client's write buffer is below its high-water mark."""

    def abort(self) -> None: ...


@dataclass
class _FrameHeaders:
    """Reads the headers of the client's frames in a byte stream, to bound their size."""

    max_payload: int
    skip: int = 0  # payload bytes of the current frame still to pass
    pending: bytes = b""  # an incomplete frame header

    def too_big(self, data: bytes) -> bool:
        """Whether ``data`` (the next bytes from the client) starts a frame over the bound."""
        view = memoryview(data)
        while view:
            if self.skip:
                step = min(self.skip, len(view))
                self.skip -= step
                view = view[step:]
                continue
            head = self.pending + bytes(view[:14])
            need = 2
            if len(head) >= 2:
                short = head[1] & 0x7F
                need = 2 + (2 if short == 126 else 8 if short == 127 else 0)
                need += 4 if head[1] & 0x80 else 0
            if len(head) < need:
                self.pending = head
                return False
            short = head[1] & 0x7F
            if short == 126:
                length = int.from_bytes(head[2:4], "big")
            elif short == 127:
                length = int.from_bytes(head[2:10], "big")
            else:
                length = short
            if length > self.max_payload:
                return True
            used = need - len(self.pending)
            self.pending = b""
            view = view[used:]
            self.skip = length
        return False


async def tunnel(
    client: Client,
    host: str,
    port: int,
    head: bytes,
    *,
    handshake_timeout_s: float,
    max_frame_bytes: int,
    idle_s: float = IDLE_S,
) -> int:
    """Relay the upgrade ``head`` to the replica at ``host:port`` and splice both ways.

    Returns the status the client got: 101 when the tunnel ran (it is over when this returns),
    the replica's own status when it declined the upgrade (its answer passed on as is), 502 when
    it could not be reached or answered garbage, 504 when its answer did not come in time; for
    the last two nothing was written to the client.
    """
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=MAX_HANDSHAKE_BYTES), handshake_timeout_s
        )
    except (OSError, TimeoutError):
        return 502
    try:
        writer.write(head)
        try:
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), handshake_timeout_s)
        except TimeoutError:
            return 504
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            return 502
        status_line = answer.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[1].isdigit():
            return 502
        status = int(status_line[1])
        client.write_raw(answer)
        if status == 101:
            await _splice(client, reader, writer, max_frame_bytes, idle_s)
        else:  # declined: its body (by Content-Length, bounded), then the connection closes
            length = _content_length(answer)
            if length:
                with contextlib.suppress(asyncio.IncompleteReadError, OSError, TimeoutError):
                    rest = reader.readexactly(min(length, MAX_HANDSHAKE_BYTES))
                    client.write_raw(await asyncio.wait_for(rest, handshake_timeout_s))
        return status
    finally:
        writer.transport.abort()


async def _splice(
    client: Client,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    max_frame_bytes: int,
    idle_s: float,
) -> None:
    loop = asyncio.get_running_loop()
    last = [loop.time()]
    ended: asyncio.Future[None] = loop.create_future()
    frames = _FrameHeaders(max_frame_bytes)
    draining: set[asyncio.Task[None]] = set()  # at most one: resumes reading the client

    def end() -> None:
        if not ended.done():
            ended.set_result(None)

    def from_client(data: bytes) -> None:
        if ended.done():
            return
        last[0] = loop.time()
        if frames.too_big(data):
            client.write_raw(CLOSE_TOO_BIG)
            end()
            return
        writer.write(data)
        if writer.transport.get_write_buffer_size() > _PIECE * 4 and not draining:
            client.pause_reading()
            draining.add(loop.create_task(_resume_when_drained(writer, client, draining)))

    async def from_replica() -> None:
        while data := await reader.read(_PIECE):
            last[0] = loop.time()
            client.write_raw(data)
            await client.drained()
        end()

    async def idle() -> None:
        while True:
            await asyncio.sleep(max(0.05, last[0] + idle_s - loop.time()))
            if loop.time() - last[0] >= idle_s:
                end()
                return

    tasks = [loop.create_task(from_replica()), loop.create_task(idle())]
    early = client.tunnel_to(from_client, end)
    if early:
        from_client(early)
    try:
        await asyncio.wait([ended, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return 0


async def _resume_when_drained(
    writer: asyncio.StreamWriter, client: Client, draining: set[asyncio.Task[None]]
) -> None:
    with contextlib.suppress(OSError):
        await writer.drain()
    draining.clear()
    client.resume_reading()
