"""Holding requests for a route that has no ready replica yet, until one is ready.

Owns the hold queue: a request for a route whose replicas are all starting (or scaled to zero)
waits, at most ``hold_timeout_s``, for :meth:`HoldQueue.wake` (the gateway calls it when the
route table gives the route a backend, or drops it), after asking ``on_demand`` to start one.
At most ``max_held`` requests wait at a time across the gateway; more get their 503 at once.
Never starts replicas itself and never answers a request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kaip.local.gateway.routes import CompiledRoute, RouteKind
from kaip.local.gateway.stats import StatsRecorder

log = logging.getLogger("kaip.local.gateway")

Key = tuple[RouteKind, str]


class HoldQueue:
    def __init__(
        self,
        lookup: Callable[[RouteKind, str], CompiledRoute | None],
        *,
        hold_timeout_s: float,
        max_held: int,
        on_demand: Callable[[str], None] | None = None,
    ) -> None:
        self._lookup = lookup
        self._hold_timeout_s = hold_timeout_s
        self._max_held = max_held
        self._on_demand = on_demand
        self._waiters: dict[Key, list[asyncio.Future[None]]] = {}
        self._held_total = 0
        self.stopping = False
        """Set when the gateway stops: nothing more is held, and :meth:`wake_all` ends the rest."""

    @property
    def keys(self) -> list[Key]:
        """The routes requests are waiting for now."""
        return list(self._waiters)

    async def hold(self, kind: RouteKind, name: str, stats: StatsRecorder) -> CompiledRoute | None:
        """Wait for the route to get a backend; None on timeout, full queue, removal or stop."""
        if self._held_total >= self._max_held or self.stopping:
            return None
        self._held_total += 1
        stats.held += 1
        loop = asyncio.get_running_loop()
        try:
            if self._on_demand is not None:
                try:
                    self._on_demand(name)
                except Exception:
                    log.exception("on_demand(%r) failed", name)
            deadline = loop.time() + self._hold_timeout_s
            while True:
                route = self._lookup(kind, name)
                if route is None or self.stopping:
                    return None
                if route.has_backends:
                    return route
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                waiter: asyncio.Future[None] = loop.create_future()
                waiters = self._waiters.setdefault((kind, name), [])
                waiters.append(waiter)
                try:
                    await asyncio.wait_for(waiter, remaining)
                except TimeoutError:
                    pass
                finally:
                    if waiter in waiters:
                        waiters.remove(waiter)
        finally:
            self._held_total -= 1
            stats.held -= 1

    def wake(self, key: Key) -> None:
        for waiter in self._waiters.pop(key, []):
            if not waiter.done():
                waiter.set_result(None)

    def wake_all(self) -> None:
        for key in list(self._waiters):
            self.wake(key)
