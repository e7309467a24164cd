"""``kaip top``: every resource of the running ``kaip up``, refreshed in place like ``top``.

Each refresh reads the gateway's ``GET /metrics`` and the control port's ``GET /api/v1/cost``;
rates come from the difference of two reads (:func:`rows`, pure), so the first screen appears
after one interval. Columns: req/s, p50/p99 (from the latency histogram's buckets: the upper
bound of the bucket the percentile falls in), 5xx/s, ready/all replicas, CPU % (of one core),
cost per 1,000 requests and joules per request (since each replica started). Never changes
anything.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.live import Live
from rich.table import Table

from kaip.cli import admin_client
from kaip.cli.output import OutputFormat, output_option, print_data, stdout
from kaip.errors import PlatformError
from kaip.settings import load_settings


@dataclass
class Sample:
    """One read of the gateway's metrics and the cost report, per resource."""

    at: float
    requests: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)  # le -> cumulative
    replicas: dict[str, tuple[int, int]] = field(default_factory=dict)  # ready, all
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    cost_per_1k: dict[str, float | None] = field(default_factory=dict)
    joules_per_request: dict[str, float | None] = field(default_factory=dict)


def parse(at: float, metrics_text: str, cost: dict[str, object]) -> Sample:
    sample = Sample(at)
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            resource = s.labels.get("resource", "")
            if s.name == "kaip_gateway_requests_total":
                sample.requests[resource] = sample.requests.get(resource, 0.0) + s.value
                if s.labels.get("status_class") in ("5xx", "none"):
                    sample.errors[resource] = sample.errors.get(resource, 0.0) + s.value
            elif s.name == "kaip_gateway_request_duration_seconds_bucket":
                le = float(s.labels["le"])
                by_le = sample.buckets.setdefault(resource, {})
                by_le[le] = by_le.get(le, 0.0) + s.value
            elif s.name == "kaip_replicas":
                ready, total = sample.replicas.get(resource, (0, 0))
                n = int(s.value)
                ready += n if s.labels.get("phase") == "ready" else 0
                sample.replicas[resource] = (ready, total + n)
    for row in cost.get("rows", []):  # type: ignore[attr-defined]
        resource = row["resource"]
        sample.cpu_seconds[resource] = row["cpu_seconds"] + row["idle"]["cpu_seconds"]
        sample.cost_per_1k[resource] = row["cost_per_1k_requests_usd"]
        sample.joules_per_request[resource] = row["joules_per_request"]
    return sample


@dataclass(frozen=True)
class Row:
    resource: str
    rps: float
    p50_s: float | None
    p99_s: float | None
    errors_per_s: float
    ready: int
    replicas: int
    cpu_percent: float | None
    cost_per_1k: float | None
    joules_per_request: float | None


def _quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    wanted = q * counts[-1]
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= wanted:
            return bound
    return math.inf


def rows(before: Sample, after: Sample) -> list[Row]:
    """What changed between two samples, per resource, sorted by name."""
    seconds = max(after.at - before.at, 1e-9)
    out = []
    for resource in sorted({*after.requests, *after.replicas, *after.cpu_seconds}):
        cpu = None
        if resource in after.cpu_seconds and resource in before.cpu_seconds:
            cpu = 100.0 * (after.cpu_seconds[resource] - before.cpu_seconds[resource]) / seconds
        old, new = before.buckets.get(resource, {}), after.buckets.get(resource, {})
        ready, total = after.replicas.get(resource, (0, 0))
        delta = after.requests.get(resource, 0.0) - before.requests.get(resource, 0.0)
        errors = after.errors.get(resource, 0.0) - before.errors.get(resource, 0.0)
        out.append(
            Row(
                resource,
                delta / seconds,
                _quantile(old, new, 0.5),
                _quantile(old, new, 0.99),
                errors / seconds,
                ready,
                total,
                cpu,
                after.cost_per_1k.get(resource),
                after.joules_per_request.get(resource),
            )
        )
    return out


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "> 10 s" if math.isinf(value) else f"≤ {value * 1000:g} ms"


def table(data: list[Row], interval: float) -> Table:
    view = Table(title=f"kaip top (every {interval:g} s, Ctrl-C to quit)", title_justify="left")
    for name in ("resource", "req/s", "p50", "p99", "5xx/s", "replicas", "CPU %", "$/1k req",
                 "J/req"):  # fmt: skip
        view.add_column(name, justify="left" if name == "resource" else "right")
    for r in data:
        view.add_row(
            r.resource,
            f"{r.rps:.1f}",
            _ms(r.p50_s),
            _ms(r.p99_s),
            f"{r.errors_per_s:.1f}",
            f"{r.ready}/{r.replicas}",
            "-" if r.cpu_percent is None else f"{r.cpu_percent:.0f}",
            "-" if r.cost_per_1k is None else f"${r.cost_per_1k:.6f}",
            "-" if r.joules_per_request is None else f"{r.joules_per_request:.3f}",
        )
    return view


def top(
    interval: float = typer.Option(2.0, "--interval", min=0.5, max=60, help="seconds"),
    iterations: int = typer.Option(
        0, "--iterations", min=0, help="stop after N screens (0: never)"
    ),
    output: OutputFormat = output_option(
        help="text (a live view), or json or yaml: one --interval's figures, then exit"
    ),
) -> None:
    """A live view of every resource: req/s, p50/p99, errors, replicas, CPU, cost, energy."""
    settings = load_settings()
    gateway = admin_client.running(settings).url

    def read() -> Sample:
        try:
            metrics = httpx.get(f"{gateway}/metrics", timeout=10, trust_env=False).text
        except httpx.HTTPError as exc:
            raise PlatformError(f"cannot read {gateway}/metrics: {exc}") from None
        cost = admin_client.call(settings, "GET", "/api/v1/cost?by=resource")
        return parse(time.monotonic(), metrics, cost)

    before = read()
    if output.structured:
        time.sleep(interval)
        figures = [asdict(r) for r in rows(before, read())]
        print_data(output, {"intervalSeconds": interval, "resources": figures})
        return
    shown = 0
    with Live(table([], interval), console=stdout, auto_refresh=False) as live:
        try:
            while not iterations or shown < iterations:
                time.sleep(interval)
                after = read()
                live.update(table(rows(before, after), interval), refresh=True)
                before = after
                shown += 1
        except KeyboardInterrupt:
            pass
