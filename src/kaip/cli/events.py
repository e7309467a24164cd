"""``kaip events [NAME]``: the deployment events ``kaip up`` recorded (who, what, outcome).

Reads the admin API's ``/api/v1/events`` (the latest 200, oldest first) and prints them, for one
resource when NAME is given; never changes anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer

from kaip.cli import admin_client
from kaip.cli.output import OutputFormat, output_option, print_data, stdout
from kaip.settings import load_settings


def events(
    name: str | None = typer.Argument(None, help="only this Model, App or TrainingJob"),
    output: OutputFormat = output_option(),
) -> None:
    """Show deployment events (created, rolled out, promoted, rolled back, ...), oldest first."""
    answer = admin_client.call(load_settings(), "GET", "/api/v1/events")
    found: list[dict[str, Any]] = [
        e for e in answer.get("events", []) if name is None or e.get("name") == name
    ]
    if output.structured:
        print_data(output, {"events": found})
        return
    if not found:
        stdout.print(f"no events{f' for {name}' if name else ''} yet", markup=False)
    for event in found:
        at = datetime.fromtimestamp(float(event["at"])).strftime("%Y-%m-%d %H:%M:%S")
        revision = f" {event['revision']}" if event.get("revision") else ""
        detail = f": {event['detail']}" if event.get("detail") else ""
        stdout.print(
            f"{at} {event['kind']} {event['name']}{revision} {event['action']} "
            f"{event['outcome']} (by {event['who']}){detail}",
            markup=False,
        )
