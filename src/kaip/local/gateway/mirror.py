"""Traffic mirroring: a copy of a request to the canary, whose answer nobody waits for.

Owns the mirrored exchanges (``rollout.traffic.mirror``): :meth:`Mirror.submit` is called by the
gateway as it sends a request to the stable revision and returns at once; the copy (the same
head and body bytes the stable replica gets) goes to the least busy canary replica on a
connection pool of its own, its answer is read and thrown away, and what it showed (status,
latency, or no answer) is kept: in the route's stats as the canary's evidence for the gates, and
in the gateway's metrics (``kaip_gateway_mirrored_requests_total``). A client never waits for a
mirror and never sees anything of it: the copy shares no connection, no sink and no retry with
the client's request. Bounded: at most ``max_in_flight`` copies at a time for the whole gateway
(more are dropped and counted, ``kaip_gateway_mirror_dropped_total``), each ends within its
route's response timeout (head and body), and copies are never retried. Never chooses which
requests are mirrored (the route says, see :meth:`CompiledRoute.mirror_to`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from kaip.local.gateway.balance import pick_least_outstanding
from kaip.local.gateway.routes import Backend, CompiledRoute
from kaip.local.gateway.signals import GatewaySignals
from kaip.local.gateway.stats import StatsRecorder
from kaip.protocol.upstream import Framing, Headers, Outcome, UpstreamPool

log = logging.getLogger("kaip.local.gateway")

MAX_MIRRORED_IN_FLIGHT = 64
"""Copies on their way at once, gateway-wide; a request past it is not mirrored (counted)."""


class _Discard:
    """A :class:`~kaip.protocol.upstream.ResponseSink` that keeps the status only."""

    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status = 0

    def response_head(self, status: int, reason: bytes, headers: Headers, framing: Framing) -> None:
        self.status = status

    def response_body(self, chunk: bytes) -> None:
        pass

    def response_end(self) -> None:
        pass

    def flush(self) -> None:
        pass


class Mirror:
    """The gateway's mirrored copies in flight, their pool and their bound."""

    def __init__(
        self,
        stats: Callable[[str], StatsRecorder | None],
        rng: random.Random,
        *,
        signals: GatewaySignals | None = None,
        max_in_flight: int = MAX_MIRRORED_IN_FLIGHT,
    ) -> None:
        self._stats = stats
        self._rng = rng
        self.signals = signals
        self.max_in_flight = max_in_flight
        self._pool = UpstreamPool(max_idle_per_backend=8)
        self._tasks: set[asyncio.Task[None]] = set()
        self._outstanding: dict[str, int] = {}
        self.dropped = 0
        """Copies not sent because ``max_in_flight`` were on their way (since start)."""

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def submit(
        self,
        route: CompiledRoute,
        backends: tuple[Backend, ...],
        data: bytes,
        body: bytes,
        timeout_s: float,
    ) -> None:
        """Send a copy of one request (``data``: its head, maybe with the body; ``body``: the
        rest) to one of ``backends``; never waits and never raises."""
        kind, name, owner = route.route.kind, route.name, route.route.owner
        backend = pick_least_outstanding(backends, self._outstanding, self._rng)
        if backend is None:
            return
        if len(self._tasks) >= self.max_in_flight:
            self.dropped += 1
            if self.signals is not None:
                self.signals.mirror_dropped((kind, name, backend.revision, owner))
            return
        task = asyncio.get_running_loop().create_task(
            self._copy(route, backend, data, body, timeout_s)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _copy(
        self, route: CompiledRoute, backend: Backend, data: bytes, body: bytes, timeout_s: float
    ) -> None:
        replica = backend.replica
        self._outstanding[replica] = self._outstanding.get(replica, 0) + 1
        sink = _Discard()
        started = time.perf_counter()
        outcome = Outcome.FAILED_BEFORE_RESPONSE
        try:
            outcome = await self._exchange(backend, sink, data, body, timeout_s)
        except Exception:  # a copy must never take the gateway down
            log.exception("mirroring a request of %r to %s failed", route.name, replica)
        finally:
            left = self._outstanding[replica] - 1
            if left:
                self._outstanding[replica] = left
            else:
                del self._outstanding[replica]
        latency_ms = (time.perf_counter() - started) * 1000.0
        status = sink.status if outcome is Outcome.OK else 0
        stats = self._stats(route.name)
        if stats is not None:
            stats.record(backend.revision, latency_ms, status == 0 or status >= 500)
        if self.signals is not None:
            key = (route.route.kind, route.name, backend.revision, route.route.owner)
            self.signals.mirrored(key, status)

    async def _exchange(
        self, backend: Backend, sink: _Discard, data: bytes, body: bytes, timeout_s: float
    ) -> Outcome:
        key = (backend.host, backend.port)
        upstream = self._pool.take_idle(key)
        if upstream is None:
            try:
                upstream = await self._pool.connect(key)
            except (OSError, TimeoutError):
                return Outcome.FAILED_BEFORE_RESPONSE
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        upstream.send(data, body, sink, done, data.startswith(b"HEAD "), timeout_s)
        try:
            # the head within timeout_s (upstream's own deadline), the whole answer within twice
            return await asyncio.wait_for(done, 2 * timeout_s)
        except TimeoutError:
            upstream.abort()
            return Outcome.TIMED_OUT
        except asyncio.CancelledError:
            upstream.abort()
            raise

    async def close(self) -> None:
        """Cancel every copy on its way and close the pool (the gateway is stopping)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pool.close()
