"""``kaip profile NAME``: a sampling profile of one replica of a Model that ``kaip up`` runs.

Asks the control port (``POST /api/v1/profile/{name}``), which calls the replica's authenticated
profiling endpoint; writes the profile to a file (speedscope JSON, open it at
https://www.speedscope.app, or collapsed stacks for flamegraph.pl) and prints the hottest frames.
Parse, call, print: the sampler is :mod:`kaip.serving.profiler`.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path

import typer

from kaip.cli import admin_client
from kaip.cli.output import stdout
from kaip.local.private import write_private
from kaip.settings import load_settings


class ProfileFormat(enum.StrEnum):
    speedscope = "speedscope"
    collapsed = "collapsed"


def profile(
    name: str = typer.Argument(..., help="a Model that kaip up runs"),
    replica: str | None = typer.Option(None, "--replica", help="replica id (kaip status)"),
    seconds: float = typer.Option(10.0, "--seconds", min=0.1, max=120, help="how long to sample"),
    rate: float = typer.Option(100.0, "--rate", min=1, max=250, help="samples per second"),
    fmt: ProfileFormat = typer.Option(
        ProfileFormat.speedscope, "--format", help="speedscope or collapsed"
    ),
    output: Path | None = typer.Option(
        None, "--output", help="file to write (default: NAME-REPLICA.EXT)"
    ),
) -> None:
    """Sample every thread of one replica for SECONDS and write the profile (no ptrace needed)."""
    body = {"replica": replica, "seconds": seconds, "rate": rate, "format": fmt.value}
    answer = admin_client.call(load_settings(), "POST", f"/api/v1/profile/{name}", body)
    extension = "speedscope.json" if fmt is ProfileFormat.speedscope else "collapsed.txt"
    path = output or Path(f"{name}-{answer['replica']}.{extension}")
    data = answer["profile"]
    text = json.dumps(data) if fmt is ProfileFormat.speedscope else str(data)
    write_private(path, text)
    stdout.print(
        f"profile of {name} replica {answer['replica']} (revision {answer['revision']}) "
        f"written to {path}",
        markup=False,
    )
    if fmt is ProfileFormat.speedscope:
        meta = data.get("kaip", {})
        stdout.print(f"{meta.get('samples', 0)} samples over {meta.get('seconds', 0):.1f} s; "
                     "running the most (self):", markup=False)  # fmt: skip
        for frame, count in meta.get("top_self", []):
            stdout.print(f"  {count:>6}  {frame}", markup=False)
        stdout.print("in the most samples (inclusive):", markup=False)
        for frame, count in meta.get("top", [])[:10]:
            stdout.print(f"  {count:>6}  {frame}", markup=False)
