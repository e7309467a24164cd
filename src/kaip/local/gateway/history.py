"""Recent traffic per resource, for charts: the gateway's counters sampled at a fixed interval.

:class:`TrafficHistory` keeps, per resource, the last :data:`SAMPLES` readings of the
cumulative counters :class:`~kaip.local.gateway.signals.GatewaySignals` already keeps (requests,
5xx and cut-short answers, the latency histogram), taken every :data:`INTERVAL_S` by
:meth:`TrafficHistory.run`; :meth:`TrafficHistory.series` turns consecutive readings into one
point per interval (req/s, error share, the p99 bucket). Bounded: :data:`SAMPLES` readings of
at most :data:`MAX_RESOURCES` resources. Never touches the request path: it only reads counters
the gateway keeps anyway, once per interval, in the event loop (a sum over the records).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from kaip.local.gateway.signals import LATENCY_BUCKETS_S, GatewaySignals

INTERVAL_S = 10.0
SAMPLES = 361
"""An hour of points at :data:`INTERVAL_S`, and the reading before the first."""
MAX_RESOURCES = 5_000


@dataclass(frozen=True)
class Totals:
    """One resource's cumulative counters at one moment."""

    requests: int
    errors: int
    buckets: tuple[int, ...]


@dataclass(frozen=True)
class Point:
    """One interval of one resource's traffic (rates None when it saw no request)."""

    at: float
    """The interval's end, seconds since the epoch."""
    rate: float
    error_pct: float | None
    p99_le_s: float | None


def resource_totals(signals: GatewaySignals) -> dict[str, Totals]:
    """Each resource's counters summed over its revisions and owners."""
    sums: dict[str, list[int]] = {}
    for (_kind, resource, _revision, _owner), record in signals.records():
        into = sums.setdefault(resource, [0, 0] + [0] * len(record.buckets))
        into[0] += sum(record.by_class)
        into[1] += record.by_class[4] + record.by_class[5]
        for i, count in enumerate(record.buckets):
            into[2 + i] += count
    return {r: Totals(v[0], v[1], tuple(v[2:])) for r, v in sums.items()}


def p99_bound(buckets: tuple[int, ...] | list[int]) -> float | None:
    """The upper bound of the histogram bucket the 99th percentile falls in (inf: above all)."""
    total = sum(buckets)
    if not total:
        return None
    rank, seen = math.ceil(0.99 * total), 0
    for bound, count in zip((*LATENCY_BUCKETS_S, math.inf), buckets, strict=True):
        seen += count
        if seen >= rank:
            return bound
    return math.inf


class TrafficHistory:
    """The last hour of each resource's traffic, one reading every :data:`INTERVAL_S`."""

    def __init__(self, signals: GatewaySignals, clock: Callable[[], float] = time.time) -> None:
        self._signals = signals
        self._clock = clock
        self._readings: dict[str, deque[tuple[float, Totals]]] = {}

    def sample(self) -> None:
        """Take one reading of every resource's counters."""
        now = self._clock()
        for resource, totals in resource_totals(self._signals).items():
            readings = self._readings.get(resource)
            if readings is None:
                if len(self._readings) >= MAX_RESOURCES:
                    continue
                readings = self._readings[resource] = deque(maxlen=SAMPLES)
            readings.append((now, totals))

    async def run(self) -> None:
        """Sample every :data:`INTERVAL_S` until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(INTERVAL_S)

    def series(self, resource: str) -> list[Point]:
        """One point per interval between consecutive readings, oldest first."""
        readings = list(self._readings.get(resource, ()))
        points = []
        for (before, old), (at, new) in itertools.pairwise(readings):
            requests = new.requests - old.requests
            errors = new.errors - old.errors
            buckets = [n - o for n, o in zip(new.buckets, old.buckets, strict=True)]
            points.append(
                Point(
                    at=at,
                    rate=requests / (at - before) if at > before else 0.0,
                    error_pct=100.0 * errors / requests if requests else None,
                    p99_le_s=p99_bound(buckets),
                )
            )
        return points
