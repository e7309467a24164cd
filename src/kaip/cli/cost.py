"""``kaip cost``: what the running ``kaip up``'s replicas cost, drew and emitted, per request.

Asks the control port's ``GET /_kaip/cost`` (kaip.accounting's report, computed by ``kaip up``
from the replicas' CPU seconds and memory and the gateway's busy time) and prints it as a table
or JSON. Parse, call, print: the arithmetic lives in :mod:`kaip.accounting`.
"""

from __future__ import annotations

import enum
import re
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
) -> None:
    """Requests, CPU seconds, cost, energy and CO2e per model, revision or owner, since each
    replica started or over the last --since, of every resource or those PATHS define
    (formulas, defaults and overrides: docs/observability.md)."""
    key = "resource" if by is CostBy.model else by.value
    query = f"/_kaip/cost?by={key}&basis={basis.value}"
    if since is not None:
        query += f"&since={duration_seconds(since):g}"
    if paths:
        query += "".join(f"&resource={quote(name, safe='')}" for name in served_names(paths))
    answer = admin_client.call(load_settings(), "GET", query)
    if output is not CostOutput.table:
        print_data(output, answer)
    else:
        _print_table(answer)


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
    stdout.print(
        f"prices: {c['prices_usd_per_hour']['source']}; "
        f"CPU power: {c['cpu_watts_per_vcpu']['source']}; grid: {c['grid_source']}; PUE {c['pue']}",
        markup=False,
    )


def _span(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{seconds:.0f}s" if seconds < 120 else f"{minutes // 60}h{minutes % 60:02d}m"
