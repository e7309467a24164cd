"""``kaip cost``: what the running ``kaip up``'s replicas cost, drew and emitted, per request.

Asks the control port's ``GET /api/v1/cost`` (kaip.accounting's report, computed by ``kaip up``
from the replicas' CPU seconds and memory and the gateway's busy time) and prints it as a table
or JSON; with ``--prometheus URL`` the same report of a cluster's Model pods, from their own
metrics in Prometheus (:mod:`kaip.kube.operator.costs`). Parse, call, print: the arithmetic
lives in :mod:`kaip.accounting`.
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import re
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer
from rich.table import Table

from kaip.cli import admin_client
from kaip.cli.output import output_option, print_data, stdout
from kaip.settings import load_settings
from kaip.spec import load_paths

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class CostOutput(enum.StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


class CostBy(enum.StrEnum):
    model = "model"
    resource = "resource"
    revision = "revision"
    owner = "owner"
    replica = "replica"


class CostBasis(enum.StrEnum):
    usage = "usage"
    allocation = "allocation"


def cost(
    paths: list[Path] | None = typer.Argument(
        None, help="only the Models and Apps these spec files or directories define"
    ),
    by: CostBy = typer.Option(
        CostBy.revision, "--by", help="model (resource), revision, owner or replica"
    ),
    basis: CostBasis = typer.Option(
        CostBasis.usage,
        "--basis",
        help="usage: idle time apart; allocation: idle spread over requests",
    ),
    output: CostOutput = output_option(CostOutput.table, "table, json or yaml"),
    since: str | None = typer.Option(
        None, "--since", help="only the last DURATION, e.g. 90s, 15m, 1h, 1d, 1h30m"
    ),
    prometheus: str | None = typer.Option(
        None,
        "--prometheus",
        help="a cluster's Prometheus (http://HOST:9090): its Model pods' own metrics over the "
        "last --since (default 1h) instead of kaip up",
    ),
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", help="with --prometheus: only this namespace"
    ),
    until: str | None = typer.Option(
        None,
        "--until",
        help="with --prometheus: the window's end, seconds since the epoch or an ISO 8601 time "
        "with its offset, e.g. 2026-12-01T09:00:00Z (default: now)",
    ),
) -> None:
    """Requests, CPU seconds, cost, energy and CO2e per model, revision or owner, since each
    replica started or over the last --since, of every resource or those PATHS define; of a
    cluster's Models with --prometheus (formulas, defaults and overrides:
    docs/observability.md)."""
    key = "resource" if by is CostBy.model else by.value
    if prometheus is not None:
        answer = cluster_report(
            prometheus,
            key,
            basis.value,
            duration_seconds(since) if since is not None else 3600.0,
            namespace,
            served_names(paths) if paths else None,
            time.time() if until is None else epoch_seconds(until),
        )
        if output is not CostOutput.table:
            print_data(output, answer)
        else:
            _print_table(answer)
        return
    if namespace is not None:
        raise typer.BadParameter("only with --prometheus (kaip up has no namespaces)",
                                 param_hint="--namespace")  # fmt: skip
    if until is not None:
        raise typer.BadParameter("only with --prometheus (kaip up counts up to now)",
                                 param_hint="--until")  # fmt: skip
    query = f"/api/v1/cost?by={key}&basis={basis.value}"
    if since is not None:
        query += f"&since={duration_seconds(since):g}"
    if paths:
        query += "".join(f"&resource={quote(name, safe='')}" for name in served_names(paths))
    answer = admin_client.call(load_settings(), "GET", query)
    if output is not CostOutput.table:
        print_data(output, answer)
    else:
        _print_table(answer)


def cluster_report(
    url: str,
    by: str,
    basis: str,
    window_s: float,
    namespace: str | None,
    names: list[str] | None,
    until: float,
) -> dict[str, Any]:
    """``kaip cost --prometheus``: the same report as kaip up's, from the pods' own metrics
    (:mod:`kaip.kube.operator.costs`), priced and powered with the same defaults and overrides
    (``KAIP_COST_*``, ``KAIP_COST_PRICES_FILE``; the CPU model is unknown: CCF's average)."""
    from kaip.accounting import attribute, report
    from kaip.kube.operator.costs import cluster_windows
    from kaip.kube.operator.metrics import PrometheusMetrics
    from kaip.local.controller.costs import coefficients_from, price_book_from

    if namespace is not None and not _DNS_LABEL.fullmatch(namespace):
        raise typer.BadParameter(f"{namespace!r} is not a namespace name", param_hint="--namespace")
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{url!r}: give an http(s) URL, e.g. http://localhost:9090",
                                 param_hint="--prometheus")  # fmt: skip
    coefficients = coefficients_from(os.environ, "")
    prices = price_book_from(os.environ, coefficients.prices)
    source = PrometheusMetrics(url, timeout=30.0)
    try:
        seen = cluster_windows(source.query, window_s, until, namespace)
    finally:
        source.close()
    windows = [w for w in seen.windows if names is None or w.resource in names]
    attributions = [
        attribute(w, replace(coefficients, prices=prices.resolve(w.owner, None)), basis)  # type: ignore[arg-type]
        for w in windows
    ]
    answer = report(attributions, by, basis, coefficients)  # type: ignore[arg-type]
    answer["price_overrides"] = {**prices.to_json(), "node_type": None}
    return {
        **answer,
        "since_seconds": window_s,
        "covered_seconds": window_s,
        "until": until,
        "prometheus": url,
        "namespace": namespace,
        "reserved_cpus": "kube-state-metrics" if seen.reserved_cpus_known else
        "unknown (no kube_pod_container_resource_requests): 1 per replica assumed",
    }  # fmt: skip


def served_names(paths: list[Path]) -> list[str]:
    """The Models and Apps the specs at ``paths`` define (a bad spec is refused, as kaip
    validate does; none at all is a usage error)."""
    names = sorted(
        {r.metadata.name for r in load_paths(paths).resources if r.kind in ("Model", "App")}
    )
    if not names:
        shown = ", ".join(map(str, paths))
        raise typer.BadParameter(f"{shown} defines no Model or App", param_hint="PATHS")
    return names


def duration_seconds(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``15m``, ``1h30m`` or ``1d``.

    >>> duration_seconds("1h30m"), duration_seconds("45s"), duration_seconds("0.5d")
    (5400.0, 45.0, 43200.0)
    """
    parts = _DURATION.findall(text.strip().lower())
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in parts)
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower() or seconds <= 0:
        raise typer.BadParameter(
            f"{text!r}: give a duration such as 90s, 15m, 1h, 1d or 1h30m", param_hint="--since"
        )
    return seconds


def epoch_seconds(text: str) -> float:
    """A time given as seconds since the epoch or as ISO 8601 with its UTC offset.

    >>> epoch_seconds("1764579600"), epoch_seconds("2025-12-01T09:00:00Z")
    (1764579600.0, 1764579600.0)
    """
    seconds: float | None = None
    try:
        seconds = float(text)
    except ValueError:
        with contextlib.suppress(ValueError):
            moment = datetime.fromisoformat(text.strip())
            seconds = moment.timestamp() if moment.tzinfo is not None else None
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise typer.BadParameter(
            f"{text!r}: give seconds since the epoch or an ISO 8601 time with its offset, such "
            "as 2026-12-01T09:00:00Z",
            param_hint="--until",
        )
    return seconds


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.6f}"


def _print_table(answer: dict[str, Any]) -> None:
    keys = [
        k for k in ("resource", "revision", "owner", "replica") if k in (answer["rows"] or [{}])[0]
    ]
    covered = answer.get("covered_seconds")
    span = f", last {_span(covered)}" if answer.get("since_seconds") and covered else ""
    table = Table(
        title=f"cost by {answer['by']} ({answer['basis']} basis{span})", title_justify="left"
    )
    for name in [*keys, "requests", "CPU s", "cost", "$/1k req", "energy J", "J/req", "band J",
                 "CO2e g", "method", "idle $", "idle J"]:  # fmt: skip
        table.add_column(name, justify="left" if name in keys or name == "method" else "right")

    def line(label: list[str], row: dict[str, Any]) -> None:
        low, high = row["energy_joules_band"]
        per = row["joules_per_request"]
        table.add_row(
            *label,
            f"{row['requests']:,}",
            f"{row['cpu_seconds']:.2f}",
            _money(row["cost_usd"]),
            _money(row["cost_per_1k_requests_usd"]),
            f"{row['energy_joules']:.1f}",
            "-" if per is None else f"{per:.3f}",
            f"{low:.0f}-{high:.0f}",
            f"{row['co2e_grams']:.3f}",
            row["method"],
            _money(row["idle"]["cost_usd"]),
            f"{row['idle']['energy_joules']:.1f}",
        )

    for row in answer["rows"]:
        line([str(row[k]) for k in keys], row)
    if len(answer["rows"]) > 1 and keys:
        line(["total", *[""] * (len(keys) - 1)], answer["total"])
    stdout.print(table)
    c = answer["coefficients"]
    overrides = answer.get("price_overrides") or {}
    if overrides.get("source"):
        owners, nodes = len(overrides.get("owners", {})), len(overrides.get("nodeTypes", {}))
        stdout.print(
            f"price overrides: {overrides['source']} ({owners} owner(s), {nodes} node type(s); "
            f"this node: {overrides.get('node_type') or 'unnamed'})",
            markup=False,
        )
    stdout.print(
        f"prices: {c['prices_usd_per_hour']['source']}; "
        f"CPU power: {c['cpu_watts_per_vcpu']['source']}; grid: {c['grid_source']}; PUE {c['pue']}",
        markup=False,
    )


def _span(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{seconds:.0f}s" if seconds < 120 else f"{minutes // 60}h{minutes % 60:02d}m"
