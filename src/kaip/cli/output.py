"""How the CLI prints: one console for people, plain JSON or YAML for scripts.

Every command that prints data takes ``-o/--output`` with at least ``json`` and ``yaml``
(:class:`OutputFormat`; ``text`` or ``table`` is the one for people) and prints the same data in
either through :func:`print_data` (tests/unit/test_cli_conventions.py holds every command to it).
"""

from __future__ import annotations

import enum
import json
import sys
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console

if TYPE_CHECKING:
    from kaip.spec import SpecSet

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class OutputFormat(enum.StrEnum):
    text = "text"
    json = "json"
    yaml = "yaml"

    @property
    def structured(self) -> bool:
        """Data for a script (json, yaml) rather than text for a person."""
        return self.value in STRUCTURED


class ManifestFormat(enum.StrEnum):
    """Kubernetes objects (or a schema): no text form, YAML or JSON."""

    yaml = "yaml"
    json = "json"


STRUCTURED = ("json", "yaml")
OUTPUT_HELP = "text, json or yaml"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def print_data(output: enum.StrEnum, data: Any) -> None:
    """``data`` as JSON or as YAML (the same document), as ``output`` asks."""
    if output.value == "yaml":
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
    else:
        print_json(data)


def output_option(default: enum.StrEnum = OutputFormat.text, help: str = OUTPUT_HELP) -> Any:
    """The ``-o/--output`` option every data-printing command takes."""
    import typer

    return typer.Option(default, "--output", "-o", help=help)


def note_skipped(specs: SpecSet) -> None:
    """Say on stderr which plain Kubernetes manifests the load left out (one line each)."""
    for note in specs.skipped:
        where = f"{note.file}:{note.line}:{note.column}"
        stderr.print(f"note: {where}: {note.message} ({note.hint})", markup=False)
