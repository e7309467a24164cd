"""The portal's traffic charts (kaip.portal.charts): inline SVG from interval points."""

from __future__ import annotations

import math
import re

from kaip.portal.charts import charts_section


def point(at: float, rate: float, error_pct: float | None, p99: float | None) -> dict[str, object]:
    return {"at": at, "rate": rate, "error_pct": error_pct, "p99_le_s": p99}


def test_three_charts_with_latest_and_highest_and_a_gap_where_nothing_was_asked() -> None:
    points = [
        point(1_000.0, 2.0, 0.0, 0.05),
        point(1_010.0, 0.0, None, None),  # no request in this interval: no error share, no p99
        point(1_020.0, 5.0, 20.0, math.inf),
    ]
    html = charts_section(points, "")
    assert [m for m in re.findall(r'data-chart="(\w+)"', html)] == ["rate", "errors", "p99"]
    assert 'data-latest="rate">5.00</strong>, highest 5.00' in html
    assert 'data-latest="errors">20.0 %</strong>, highest 20.0 %' in html
    assert 'data-latest="p99">&gt; 10 s</strong>' in html
    errors = html.split('data-chart="errors"')[1].split("</figure>")[0]
    assert errors.count("<circle") == 2  # the interval without requests is a gap: two dots
    assert "<script" not in html and "style=" not in html


def test_no_points_yet_and_no_charts_here_say_so() -> None:
    assert "No traffic recorded yet" in charts_section([], "")
    assert "in Prometheus" in charts_section(None, "the numbers are in Prometheus")
