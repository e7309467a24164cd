"""``kaip catalog export PATH [-o DIR]``: Backstage entities generated from specs, never by hand.

Parse, call, write: the mapping is :mod:`kaip.render.backstage`. Reads the specs at PATH and,
when this directory has a ``.kaip/state.db``, the revision each resource runs now; links point
at the portal of the running ``kaip up`` (or ``--portal-url``). Writes every entity into
``DIR/catalog-info.yaml`` (one YAML document each, groups first) and says how many of each kind.
A bad spec is refused with the loader's message and exit code, as ``kaip deploy`` does.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
import yaml

from kaip.cli.output import stdout
from kaip.local.controller.runrecord import find_running
from kaip.local.state import STATE_FILE, State
from kaip.render.backstage import entities
from kaip.settings import load_settings
from kaip.spec import App, Model, load_paths

app = typer.Typer(name="catalog", help="The catalog, for other tools.", no_args_is_help=True)


@app.command()
def export(
    path: Path = typer.Argument(..., help="spec file or directory"),
    out: Path = typer.Option(Path("."), "--output-dir", help="where catalog-info.yaml goes"),
    portal_url: str = typer.Option(
        "", "--portal-url", help="the portal's URL for links (default: the running kaip up's)"
    ),
) -> None:
    """Write Backstage entities (Resource ai-model, Component model-server, API, Group)."""
    specs = load_paths([path])
    resources = [r for r in specs.resources if isinstance(r, Model | App)]
    state_dir = load_settings().local.state_dir
    revisions: dict[str, str] = {}
    if (state_dir / STATE_FILE).exists():
        state = State.open(state_dir)
        try:
            for resource in resources:
                stable = state.stable(resource.kind, resource.metadata.name)
                if stable is not None:
                    revisions[resource.metadata.name] = stable
        finally:
            state.close()
    if not portal_url:
        running = find_running(state_dir).record
        portal_url = running.admin_url if running is not None else ""
    made = entities(resources, revisions=revisions, portal_url=portal_url.rstrip("/"))
    out.mkdir(parents=True, exist_ok=True)
    target = out / "catalog-info.yaml"
    target.write_text(yaml.safe_dump_all(made, sort_keys=False), encoding="utf-8")
    counts = Counter(e["kind"] for e in made)
    said = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    stdout.print(f"wrote {target}: {said}", markup=False, highlight=False)
