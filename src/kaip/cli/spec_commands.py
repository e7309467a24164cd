"""``kaip validate``: check spec files and report every problem."""

from __future__ import annotations

from pathlib import Path

import typer

from kaip.cli.output import OutputFormat, print_json, stdout
from kaip.errors import SpecError
from kaip.spec import load_paths


def validate(
    paths: list[Path] = typer.Argument(
        ..., help="spec files or directories (searched recursively)"
    ),
    output: OutputFormat = typer.Option(OutputFormat.text, "--output", "-o", help="text or json"),
) -> None:
    """Validate spec files; print every problem as FILE:LINE:COL and exit 2 if any."""
    try:
        specs = load_paths(paths)
    except SpecError as exc:
        if output is OutputFormat.json:
            print_json(
                {
                    "valid": False,
                    "problems": [
                        {
                            "file": p.file,
                            "line": p.line,
                            "column": p.column,
                            "path": p.path,
                            "message": p.message,
                            "hint": p.hint,
                        }
                        for p in exc.problems
                    ],
                }
            )
            raise typer.Exit(exc.exit_code) from None
        raise
    if output is OutputFormat.json:
        print_json(
            {
                "valid": True,
                "resources": [
                    {
                        "kind": d.resource.kind,
                        "name": d.resource.metadata.name,
                        "file": str(d.path),
                        "line": d.line,
                    }
                    for d in specs.documents
                ],
            }
        )
        return
    for doc in specs.documents:
        stdout.print(
            f"[green]ok[/] {doc.path}:{doc.line} {doc.resource.kind} {doc.resource.metadata.name}"
        )
    stdout.print(f"{len(specs.documents)} resource(s) valid")
