"""Quantiles of the GenAI histograms, for the time to first token and per output token gates (pure).

The replicas record ``gen_ai.server.time_to_first_token`` and
``gen_ai.server.time_per_output_token`` as Prometheus histograms: cumulative counts per upper
bound ``le``. On a cluster Prometheus's ``histogram_quantile`` turns the increase of those
buckets over a window into a p95; ``kaip up`` takes the same increase from the replicas'
``/metrics`` itself and asks :func:`histogram_quantile` here, which follows Prometheus's rule,
so both targets judge a canary on the same number.

The rule: the rank ``q x total`` falls in the first bucket whose cumulative count reaches it; the
answer is interpolated linearly between that bucket's lower and upper bound (the lower bound of
the first bucket is 0); a rank in the ``+Inf`` bucket answers the highest finite bound. So a
p95 is only as fine as the buckets: with bounds doubling (10, 20, 40, 80, 160, 320 ms, ...)
every request taking 200 ms reads as 312 ms. The replicas' TTFT and TPOT histograms therefore
have the GenAI semantic conventions' boundaries (:data:`kaip.serving.metrics.GENAI_TTFT_BUCKETS`:
..., 100, 250, 500 ms, ...), where 200 ms reads as 242.5 ms.

Worked example (bounds 0.08, 0.16, 0.32 s and +Inf, 20 requests, all between 0.16 and 0.32 s)::

    cumulative (0.08, 0), (0.16, 0), (0.32, 20), (+Inf, 20)
    rank 0.95 x 20 = 19 of the 20 in (0.16, 0.32]  ->  0.16 + 0.16 x 19/20 = 0.312 s

Never reads a clock or does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

Buckets = Mapping[float, float]
"""Cumulative counts by upper bound (``math.inf`` for ``+Inf``), as Prometheus exposes them."""


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """The ``q`` quantile (0..1) of a cumulative histogram, by Prometheus's rule (module doc);
    None without an observation or without the ``+Inf`` bucket.

    >>> histogram_quantile(0.95, {0.08: 0, 0.16: 0, 0.32: 20, math.inf: 20})
    0.312
    >>> histogram_quantile(0.5, {0.1: 4, 0.2: 8, math.inf: 8})
    0.1
    >>> histogram_quantile(0.95, {0.1: 0, math.inf: 3})  # all above the last bound
    0.1
    >>> histogram_quantile(0.95, {0.1: 0, math.inf: 0}) is None
    True
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a quantile is between 0 and 1, not {q}")
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf:
        return None
    total = buckets[math.inf]
    if total <= 0:
        return None
    rank = q * total
    below, lower = 0.0, 0.0
    for index, upper in enumerate(bounds):
        count = buckets[upper]
        if count >= rank:
            if upper == math.inf:
                return bounds[index - 1] if index > 0 else None
            if index == 0 and upper <= 0:
                return upper
            inside = count - below
            if inside <= 0:
                return upper
            return lower + (upper - lower) * (rank - below) / inside
        below, lower = count, upper
    return None  # not reached: the +Inf bucket holds the total


def increase(now: Buckets, before: Buckets | None) -> dict[float, float]:
    """What a replica's cumulative buckets gained since ``before`` (None: since it started).

    A count below its earlier value means the replica restarted (its counters began again), and
    then all of ``now`` is new, as Prometheus's ``increase`` reads a counter reset.

    >>> increase({0.1: 5, math.inf: 7}, {0.1: 2, math.inf: 3})
    {0.1: 3, inf: 4}
    >>> increase({0.1: 1, math.inf: 1}, {0.1: 2, math.inf: 3})  # restarted
    {0.1: 1, inf: 1}
    """
    if before is None or any(now.get(le, 0.0) < count for le, count in before.items()):
        return dict(now)
    return {le: count - before.get(le, 0.0) for le, count in now.items()}


def add(histograms: Iterable[Buckets]) -> dict[float, float]:
    """Bucket-wise sums (``sum by (le)``): several replicas' histograms as one.

    >>> add([{0.1: 1, math.inf: 2}, {0.1: 3, math.inf: 3}])
    {0.1: 4.0, inf: 5.0}
    """
    total: dict[float, float] = {}
    for histogram in histograms:
        for le, count in histogram.items():
            total[le] = total.get(le, 0.0) + count
    return total


__all__ = ["Buckets", "add", "histogram_quantile", "increase"]
