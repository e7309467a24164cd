"""How the CLI prints: one console for people, plain JSON for scripts."""

from __future__ import annotations

import enum
import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from kaip.spec import SpecSet

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class OutputFormat(enum.StrEnum):
    text = "text"
    json = "json"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def note_skipped(specs: SpecSet) -> None:
    """Say on stderr which plain Kubernetes manifests the load left out (one line each)."""
    for note in specs.skipped:
        where = f"{note.file}:{note.line}:{note.column}"
        stderr.print(f"note: {where}: {note.message} ({note.hint})", markup=False)
