"""kaip top's arithmetic on two real scrapes of the gateway's signals: rates, percentiles from
histogram buckets, replicas, CPU % and cost per 1,000 requests from the cost report."""

from __future__ import annotations

import time

from kaip.cli.top import parse, rows, table
from kaip.local.gateway.signals import GatewaySignals


def serve(signals: GatewaySignals, status: int, n: int) -> None:
    for _ in range(n):
        started = time.monotonic()  # as the gateway counts a request: from its arrival
        signals.count(("model", "digits", "1", "team"), status, time.monotonic() - started)


def cost(cpu: float) -> dict[str, object]:
    row = {"resource": "digits", "cpu_seconds": cpu, "idle": {"cpu_seconds": 1.0},
           "cost_per_1k_requests_usd": 0.002, "joules_per_request": 0.5}  # fmt: skip
    return {"rows": [row]}


def test_rates_percentiles_and_cpu_from_two_scrapes() -> None:
    signals = GatewaySignals(replica_phases=lambda: [("digits", "1", "team", "ready")] * 2)
    serve(signals, 200, 10)
    before = parse(100.0, signals.scrape().decode(), cost(3.0))
    serve(signals, 200, 18)
    serve(signals, 503, 2)
    after = parse(102.0, signals.scrape().decode(), cost(4.0))
    [row] = rows(before, after)
    assert row.resource == "digits"
    assert row.rps == 10.0 and row.errors_per_s == 1.0
    assert row.p50_s is not None and row.p50_s <= 0.005  # in-process: the first bucket
    assert (row.ready, row.replicas) == (2, 2)
    assert row.cpu_percent == 50.0
    assert row.cost_per_1k == 0.002 and row.joules_per_request == 0.5
    assert table([row], 2.0).row_count == 1
