"""A resource's traffic, latency and error charts: small inline SVG, no script.

From the points a source gives (one per sampling interval of the gateway's counters, see
:mod:`kaip.local.gateway.history`): requests per second, the share of errors (5xx and cut-short
answers) and the p99 latency bucket's upper bound, each drawn as a line over the last hour with
its latest and highest value written beside it. The SVG uses presentation attributes only (the
portal's Content-Security-Policy allows no inline style or script); values are numbers this
module formats, and labels are escaped. Pure rendering, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kaip.portal.pages import _e

WIDTH, HEIGHT, PAD = 560, 90, 4


def _line(values: Sequence[float | None]) -> str:
    """An SVG polyline's points for ``values`` (gaps at None), scaled to the chart's box."""
    known = [v for v in values if v is not None]
    top = max(known, default=0.0) or 1.0
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
    runs: list[list[str]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        x = PAD + i * step
        y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / top
        runs[-1].append(f"{x:.1f},{y:.1f}")
    return "".join(
        f'<polyline fill="none" stroke="#0969da" stroke-width="1.5" points="{" ".join(run)}"/>'
        if len(run) > 1
        else '<circle cx="{}" cy="{}" r="2.5" fill="#0969da"/>'.format(*run[0].split(","))
        for run in runs
        if run
    )


def _chart(
    title: str, key: str, values: Sequence[float | None], fmt: Callable[[float], str]
) -> str:
    known = [v for v in values if v is not None]
    latest = fmt(known[-1]) if known else "—"
    highest = fmt(max(known)) if known else "—"
    return (
        f'<figure class="chart" data-chart="{_e(key)}"><figcaption>{_e(title)}: latest '
        f'<strong data-latest="{_e(key)}">{_e(latest)}</strong>, highest {_e(highest)}'
        f'</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_e(title)}">'
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff" stroke="#d0d7de"/>'
        f"{_line(values)}</svg></figure>"
    )


ABOVE_ALL_S = 12.5
"""Where a p99 above the highest bucket (10 s) is drawn."""


def _ms(seconds: float) -> str:
    return "> 10 s" if seconds > 10 else f"≤ {seconds * 1000:g} ms"


def charts_section(points: Sequence[Mapping[str, Any]] | None, hint: str) -> str:
    """Three charts over ``points`` (oldest first), or what to do instead of them."""
    if points is None:
        return f'<p class="muted">{_e(hint)}</p>'
    if not points:
        return '<p class="muted">No traffic recorded yet.</p>'
    p99 = [p["p99_le_s"] for p in points]
    finite = [ABOVE_ALL_S if v is not None and math.isinf(v) else v for v in p99]
    since = datetime.fromtimestamp(points[0]["at"], UTC).strftime("%H:%M:%S UTC")
    every = f", one per {points[1]['at'] - points[0]['at']:.0f} s" if len(points) > 1 else ""
    return (
        f'<p class="muted">{len(points)} points since {_e(since)}{_e(every)}.</p>'
        + _chart("Requests per second", "rate", [p["rate"] for p in points], lambda v: f"{v:.2f}")
        + _chart("Errors", "errors", [p["error_pct"] for p in points], lambda v: f"{v:.1f} %")
        + _chart("p99 latency (bucket)", "p99", finite, _ms)
    )
