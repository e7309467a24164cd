"""``kaip cost``: what the running ``kaip up``'s replicas cost, drew and emitted, per request.

Asks the control port's ``GET /_kaip/cost`` (kaip.accounting's report, computed by ``kaip up``
from the replicas' CPU seconds and memory and the gateway's busy time) and prints it as a table
or JSON. Parse, call, print: the arithmetic lives in :mod:`kaip.accounting`.
"""

from __future__ import annotations

import enum
from typing import Any

import typer
from rich.table import Table

from kaip.cli import admin_client
from kaip.cli.output import print_json, stdout
from kaip.settings import load_settings


class CostOutput(enum.StrEnum):
    table = "table"
    json = "json"


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
    by: CostBy = typer.Option(
        CostBy.revision, "--by", help="model (resource), revision, owner or replica"
    ),
    basis: CostBasis = typer.Option(
        CostBasis.usage,
        "--basis",
        help="usage: idle time apart; allocation: idle spread over requests",
    ),
    output: CostOutput = typer.Option(CostOutput.table, "--output", "-o", help="table or json"),
) -> None:
    """Requests, CPU seconds, cost, energy and CO2e per model, revision or owner, since each
    replica started (formulas, defaults and overrides: docs/observability.md)."""
    key = "resource" if by is CostBy.model else by.value
    answer = admin_client.call(load_settings(), "GET", f"/_kaip/cost?by={key}&basis={basis.value}")
    if output is CostOutput.json:
        print_json(answer)
    else:
        _print_table(answer)


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.6f}"


def _print_table(answer: dict[str, Any]) -> None:
    keys = [
        k for k in ("resource", "revision", "owner", "replica") if k in (answer["rows"] or [{}])[0]
    ]
    table = Table(title=f"cost by {answer['by']} ({answer['basis']} basis)", title_justify="left")
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
