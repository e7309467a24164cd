"""``kaip lineage NAME[@VERSION]``: job -> run -> version -> revisions, with traffic history.

Parse, call, print: the joining is :mod:`kaip.local.controller.lineage`. Reads the registry and
``.kaip/state.db`` directly, so it works with or without a ``kaip up`` running.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer

from kaip.cli.output import OutputFormat, output_option, print_data, stdout
from kaip.local.controller.lineage import lineage as build_lineage
from kaip.local.state import State
from kaip.registry import EmbeddedRegistry, RunStore
from kaip.registry.backends import open_registry
from kaip.settings import load_settings


def lineage(
    reference: str = typer.Argument(..., help="NAME (every version) or NAME@VERSION|@ALIAS"),
    output: OutputFormat = output_option(),
) -> None:
    """Where a model version came from and where it went: job -> run -> version -> revisions."""
    name, _, selector = reference.partition("@")
    settings = load_settings()
    state_dir = settings.local.state_dir.resolve()
    embedded = EmbeddedRegistry.open(state_dir)
    try:
        registry = open_registry(embedded, settings.registry)
        state = State.open(state_dir)
        try:
            entries = build_lineage(registry, RunStore(embedded.db), state, name, selector or None)
        finally:
            state.close()
            registry.close()
    finally:
        embedded.close()
    if output.structured:
        print_data(output, entries)
        return
    for entry in entries:
        _print_lineage(entry)


def _when(at: float | None) -> str:
    return "-" if at is None else f"{datetime.fromtimestamp(at):%Y-%m-%d %H:%M:%S}"


def _print_lineage(entry: dict[str, Any]) -> None:
    v, run = entry["version"], entry["run"]

    def say(line: str) -> None:
        stdout.print(line, markup=False, highlight=False)

    aliases = f" [{', '.join(v['aliases'])}]" if v["aliases"] else ""
    say(f"{v['name']} version {v['version']}{aliases}  {v['uri']}  sha256 {v['sha256'][:12]}  "
        f"registered {_when(v['created_at'])}")  # fmt: skip
    if entry["job"]:
        commit = f" (commit {v['commit'][:12]})" if v["commit"] else ""
        say(f"  job       {entry['job']}{commit}")
    if run is not None:
        took = (run["finished_at"] or run["started_at"]) - run["started_at"]
        say(f"  run       {run['id']}: {run['status']} on attempt {run['attempt']}/"
            f"{run['attempts']}, exit {run['exit_code']}, {took:.0f}s"
            + (f", resumed from {run['resumed_from']}" if run["resumed_from"] else ""))  # fmt: skip
    params = ", ".join(f"{k}={val}" for k, val in sorted(v["params"].items())) or "-"
    metrics = ", ".join(f"{k}={val:g}" for k, val in sorted(v["metrics"].items())) or "-"
    say(f"  version   params {params}; metrics {metrics}; {v['format']}, {v['size']} B at "
        f"{v['storage']}")  # fmt: skip
    for served in entry["revisions"]:
        now = " (stable now)" if served["stable_now"] else ""
        say(f"  revision  Model {served['model']} {served['revision']}{now}")
        for rollout in served["rollouts"]:
            say(f"    rollout #{rollout['id']} {rollout['from_revision']} -> "
                f"{rollout['to_revision']} ({rollout['strategy']}): {rollout['status']}"
                + (f" ({rollout['reason']})" if rollout["reason"] else ""))  # fmt: skip
            for step in rollout["steps"]:
                say(f"      {_when(step['at'])}  {step['weight']:>3}%  {step['action']}: "
                    f"{step['reason']}")  # fmt: skip
    for event in entry["events"]:
        if event["outcome"] == "refused":
            say(f"  refused   {_when(event['at'])} Model {event['name']}: {event['detail']}")
    if not entry["revisions"] and not any(e["outcome"] == "refused" for e in entry["events"]):
        say("  served    never (no Model revision has pinned it here)")
