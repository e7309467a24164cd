"""What the gateway observed per route and revision: request counts, errors, latencies, load.

The controller reads these to drive autoscaling (:class:`LoadSample`) and rollout gates
(:class:`RevisionStats`, taken with snapshot-and-reset). Latencies are kept exactly up to a cap
per window and reservoir-sampled beyond it, so memory stays bounded however long the controller
waits between takes. Never does I/O.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

MAX_SAMPLES = 20_000  # latencies kept per revision per window; more are reservoir-sampled


@dataclass(frozen=True)
class RevisionStats:
    """One revision's requests since the last take.

    ``errors`` counts 5xx answers, requests that found no replica to answer them (every
    connection failed, even after retries), and attempts on which a replica of this revision sent
    no response within the route's response timeout. A timed-out attempt counts (as one request
    and one error, with the time waited as its latency) even when another replica then answered:
    that answer is a request of its own revision too. ``latencies_ms`` is a uniform sample when
    the window saw more than :data:`MAX_SAMPLES` requests.
    """

    requests: int
    errors: int
    latencies_ms: tuple[float, ...]

    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def p99_ms(self) -> float | None:
        return percentile(self.latencies_ms, 99.0)


@dataclass(frozen=True)
class LoadSample:
    """A route's load right now, for the autoscaler."""

    in_flight: int
    held: int
    last_request_at: float | None


def percentile(values: tuple[float, ...] | list[float], pct: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least ``pct``% at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class _Window:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


class StatsRecorder:
    """Per-revision windows of one route, plus its live load counters."""

    __slots__ = ("_rng", "_windows", "held", "in_flight", "last_request_at")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._windows: dict[str, _Window] = {}
        self.in_flight = 0
        self.held = 0
        self.last_request_at: float | None = None

    def record(self, revision: str, latency_ms: float, error: bool) -> None:
        window = self._windows.get(revision)
        if window is None:
            window = self._windows[revision] = _Window()
        window.requests += 1
        if error:
            window.errors += 1
        latencies = window.latencies
        if len(latencies) < MAX_SAMPLES:
            latencies.append(latency_ms)
        else:
            slot = self._rng.randrange(window.requests)
            if slot < MAX_SAMPLES:
                latencies[slot] = latency_ms

    def take(self) -> dict[str, RevisionStats]:
        windows, self._windows = self._windows, {}
        return {
            rev: RevisionStats(w.requests, w.errors, tuple(w.latencies))
            for rev, w in windows.items()
        }

    def load(self) -> LoadSample:
        return LoadSample(self.in_flight, self.held, self.last_request_at)
