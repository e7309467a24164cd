"""What one client may cost the gateway: open connections, their deadlines, request bodies.

:class:`Connections` is the registry of open client connections. It caps their number (at the
cap a new connection closes the oldest one that has no request in progress, or is itself turned
away with a 503 when every one has) and, from one sweep task, enforces each connection's
deadline: its request head must arrive within ``header_timeout_seconds``, its body within
``body_timeout_seconds`` after that (both answered 408 and closed), and a kept-alive connection
with no request is closed after ``idle_timeout_seconds``. A connection only moves its deadline
(one float), so the request path pays no timer per request. :class:`BodyLimit` says how large a
body the gateway buffers for a request target; the gateway decides it per route. Never parses
HTTP (:mod:`kaip.local.gateway.server` does) and never routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Generic, Protocol, TypeVar

from kaip.settings import HttpLimits

log = logging.getLogger("kaip.local.gateway")
FILES_RESERVED = 64  # open files kept for the gateway's own use (state, logs, the controller)


class Deadline(IntEnum):
    NONE = 0
    HEAD = 1  # the request head must be complete by then
    BODY = 2  # the request body must be complete by then
    IDLE = 3  # a kept-alive connection with no request is closed then


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """The largest request body the gateway takes for one target, and whose limit it is."""

    max_bytes: int
    owner: str  # for the 413: "model 'digits' (serve.maxRequestBytes)"
    openai: bool = False

    def message(self) -> str:
        return (
            f"the request body is larger than {self.max_bytes} bytes, the limit of {self.owner}; "
            "send less per request"
        )


class Limited(Protocol):
    """A client connection as the registry sees it."""

    deadline: float
    deadline_kind: Deadline

    @property
    def busy(self) -> bool:
        """A request of it is being handled or waits to be."""

    def expire(self, kind: Deadline) -> None:
        """Its deadline passed: answer 408 or just close, by ``kind``."""

    def evict(self) -> None:
        """Close it now to make room (it is not busy)."""

    def refuse_full(self) -> None:
        """Answer 503 and close: the gateway is at its connection cap."""


C = TypeVar("C", bound=Limited)


def connection_cap(wanted: int, files_per_connection: int = 1) -> int:
    """``wanted``, lowered so that that many connections fit the process's open-file limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, (soft - FILES_RESERVED) // files_per_connection))


class Connections(Generic[C]):
    """The open client connections: the cap, eviction and the deadline sweep."""

    def __init__(self, limits: HttpLimits, *, files_per_connection: int = 1) -> None:
        self.limits = limits
        self.cap = connection_cap(limits.max_connections, files_per_connection)
        self._open: dict[C, None] = {}  # oldest first
        self._sweeper: asyncio.Task[None] | None = None
        shortest = min(
            limits.header_timeout_seconds,
            limits.body_timeout_seconds,
            limits.idle_timeout_seconds,
        )
        self._period = min(1.0, max(0.05, shortest / 4))

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[C]:
        return iter(list(self._open))

    def admit(self, conn: C) -> bool:
        """Register a new connection; False when it must be turned away (every one is busy)."""
        if len(self._open) >= self.cap:
            victim = next((c for c in self._open if not c.busy), None)
            if victim is None:
                return False
            self.discard(victim)
            victim.evict()
        self._open[conn] = None
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return True

    def discard(self, conn: C) -> None:
        self._open.pop(conn, None)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._period)
            now = loop.time()
            for conn in list(self._open):
                if conn.deadline <= now:
                    kind = conn.deadline_kind
                    conn.deadline = math.inf
                    conn.deadline_kind = Deadline.NONE
                    try:
                        conn.expire(kind)
                    except Exception:
                        log.exception("closing a client connection past its deadline failed")
