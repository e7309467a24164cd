"""Traffic numbers for the portal's catalog, from the gateway's cumulative counters.

Per resource: requests, the share of 5xx answers and requests cut short, the upper bound of the
latency histogram bucket the 99th percentile falls in, req/s over the time since the catalog
was last read, and when cost accounting runs, the cost per 1,000 requests and the energy per
request of its replicas' requests so far (usage basis, as ``kaip cost`` reports them, with the
figures' method). Reads :class:`~kaip.local.gateway.signals.GatewaySignals` when the gateway
keeps them and gives nothing when it does not; never changes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kaip.accounting import Figures
from kaip.local.gateway.history import p99_bound, resource_totals

if TYPE_CHECKING:
    from kaip.local.controller.loop import Controller


class TrafficReader:
    """Per-resource requests, error share, p99 bucket and req/s from the gateway's counters."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}

    def read(self, controller: Controller) -> dict[str, dict[str, Any]]:
        gateway = controller.gateway
        signals = gateway.signals if gateway is not None else None
        if signals is None:
            return {}
        costs: dict[str, Figures] = {}
        for (_kind, resource, _revision, _owner), figures in (
            signals.accounting() if signals.accounting is not None else ()
        ):
            costs[resource] = costs.get(resource, Figures()) + figures
        now = self._clock()
        out: dict[str, dict[str, Any]] = {}
        for resource, totals in resource_totals(signals).items():
            requests, errors, buckets = totals.requests, totals.errors, totals.buckets
            previous = self._last.get(resource)
            rate = None
            if previous is not None and now - previous[0] >= 1.0:
                rate = (requests - previous[1]) / (now - previous[0])
            if previous is None or rate is not None:
                self._last[resource] = (now, requests)
            out[resource] = {
                "requests": requests,
                "rate": rate,
                "error_pct": 100.0 * errors / requests if requests else None,
                "p99_le_s": p99_bound(buckets),
                **cost_columns(costs.get(resource)),
            }
        return out


def cost_columns(figures: Figures | None, until: float | None = None) -> dict[str, Any]:
    """The catalog's cost and energy columns from the figures of some requests (None: none).

    ``cost_until`` is the end of the window they are of, where it is a fixed instant (on a
    cluster: the time Prometheus was asked for, so ``kaip cost --prometheus --until`` gives the
    same figures); None for kaip up's running totals.
    """
    if figures is None or not figures.requests:
        return {"cost_per_1k_usd": None, "joules_per_request": None, "cost_method": None,
                "cost_until": None}  # fmt: skip
    return {
        "cost_per_1k_usd": figures.per_1k_requests_usd(),
        "joules_per_request": figures.joules_per_request(),
        "cost_method": figures.method,
        "cost_until": until,
    }
