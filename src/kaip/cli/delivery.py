"""``kaip delivery``: the delivery (DORA) numbers of the running ``kaip up``, from ``/api/v1/dora``.

Asks the portal API (the same answer the portal's Delivery page shows) for a window of whole
days ending now or at ``--until``, for every resource or one owner or resource, and prints the
five numbers with their 2024 context: deployment frequency, change lead time on two clocks
(commit and new artifact to 100 % traffic), change failure rate (caught by the canary, reached
full traffic), failed-deployment recovery time and rework rate. Never changes anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import typer

from kaip.cli import admin_client
from kaip.cli.output import OutputFormat, output_option, print_data, stdout
from kaip.errors import ConfigError
from kaip.settings import load_settings


def delivery(
    days: int = typer.Option(30, "--days", min=1, max=366, help="the window, in whole days"),
    until: str | None = typer.Option(
        None, "--until", help="the window's end: seconds since the epoch or an ISO 8601 time"
    ),
    owner: str | None = typer.Option(None, "--owner", help="only this owner's resources"),
    resource: str | None = typer.Option(None, "--resource", help="only this Model or App"),
    output: OutputFormat = output_option(),
) -> None:
    """Show deployment frequency, lead time, change failure rate, recovery time and rework."""
    query: dict[str, str] = {"days": str(days)}
    if until is not None:
        query["until"] = str(_epoch(until))
    if owner is not None:
        query["owner"] = owner
    if resource is not None:
        query["resource"] = resource
    answer = admin_client.call(load_settings(), "GET", f"/api/v1/dora?{urlencode(query)}")
    if output.structured:
        print_data(output, answer)
        return
    for line in summary_lines(answer):
        stdout.print(line, markup=False)


def _epoch(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ConfigError(
            f"--until {text[:40]!r}: give seconds since the epoch (1800000000) or an ISO 8601 "
            "time (2026-11-30T12:00:00+00:00)"
        ) from None


def summary_lines(data: dict[str, Any]) -> list[str]:
    """The API's answer as the lines ``kaip delivery`` prints."""
    window = data["window"]
    since = datetime.fromtimestamp(window["since"]).strftime("%Y-%m-%d %H:%M")
    until = datetime.fromtimestamp(window["until"]).strftime("%Y-%m-%d %H:%M")
    scope = ", ".join(f"{k} {v}" for k, v in (data.get("filter") or {}).items() if v) or "all"
    freq, lead = data["deployment_frequency"], data["lead_time"]
    cfr, recovery, rework = data["change_fail_rate"], data["recovery_time"], data["rework_rate"]
    lines = [
        f"delivery of {scope}, {window['days']:g} days ({since} to {until})",
        f"  deployment frequency  {freq['deployments']} deployments, {freq['per_day']:.2f} a day"
        f" ({freq['band']})",
        f"  lead time, commit     {_duration(lead['commit'])}",
        f"  lead time, artifact   {_duration(lead['artifact'])}",
        f"  change failure rate   {_rate(cfr['rate'])} of {cfr['decided']} decided: "
        f"{len(cfr['caught_by_canary'])} caught by the canary, "
        f"{len(cfr['user_impacting'])} reached full traffic",
        f"  recovery time         {_duration(recovery)}",
        f"  rework rate           {_rate(rework['rate'])}"
        f" ({len(rework['deployments'])} rollback deployments)",
    ]
    if data.get("refused_by_quality_gate"):
        refused = data["refused_by_quality_gate"]
        lines.append(f"  refused by a quality gate before any traffic: {refused}")
    return lines


def _duration(summary: dict[str, Any]) -> str:
    if not summary["count"]:
        return "no deployments to measure"
    return (
        f"median {_hours(summary['median_s'])}, p90 {_hours(summary['p90_s'])} "
        f"over {summary['count']}"
    )


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.1%}"
