"""``kaip validate``, ``kaip schema`` and ``kaip crd``: the spec's commands.

Parse, call :mod:`kaip.spec`, print; nothing else.
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path

import typer
import yaml

from kaip.cli.output import (
    ManifestFormat,
    OutputFormat,
    output_option,
    print_data,
    print_json,
    stderr,
    stdout,
)
from kaip.errors import SpecError
from kaip.spec import KINDS, load_paths
from kaip.spec.advice import advice
from kaip.spec.crd import crds
from kaip.spec.schema import json_schema

Kind = enum.StrEnum("Kind", {k: k for k in KINDS})  # type: ignore[misc]


def validate(
    paths: list[Path] = typer.Argument(
        ..., help="spec files or directories (searched recursively)"
    ),
    output: OutputFormat = output_option(),
) -> None:
    """Validate spec files; print every problem as FILE:LINE:COL and exit 2 if any.

    Warnings (e.g. an unpinned remote artifact) are printed too but do not fail.
    """
    try:
        specs = load_paths(paths)
    except SpecError as exc:
        if output.structured:
            print_data(
                output,
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
                },
            )
            raise typer.Exit(exc.exit_code) from None
        raise
    warnings = advice(specs)
    if output.structured:
        print_data(
            output,
            {
                "valid": True,
                "warnings": [
                    {
                        "file": w.file,
                        "line": w.line,
                        "path": w.path,
                        "message": w.message,
                        "hint": w.hint,
                    }
                    for w in warnings
                ],
                "resources": [
                    {
                        "kind": d.resource.kind,
                        "name": d.resource.metadata.name,
                        "file": str(d.path),
                        "line": d.line,
                    }
                    for d in specs.documents
                ],
            },
        )
        return
    for doc in specs.documents:
        stdout.print(
            f"[green]ok[/] {doc.path}:{doc.line} {doc.resource.kind} {doc.resource.metadata.name}"
        )
    for warning in warnings:
        stderr.print(f"warning: {warning.render()}", markup=False, highlight=False)
    stdout.print(f"{len(specs.documents)} resource(s) valid")


def schema(
    kind: Kind | None = typer.Option(None, "--kind", "-k", help="one kind only"),
    output: ManifestFormat = output_option(ManifestFormat.json, "json (the default) or yaml"),
) -> None:
    """Print the JSON Schema of kaip specs, for editors' YAML validation.

    Save it (kaip schema > kaip.schema.json) and start a spec with
    '# yaml-language-server: $schema=./kaip.schema.json'.
    """
    print_data(output, json_schema(str(kind) if kind is not None else None))


def crd(
    output: ManifestFormat = output_option(
        ManifestFormat.yaml, "yaml (a stream) or json (a v1 List)"
    ),
) -> None:
    """Print the CustomResourceDefinitions of Model, App and TrainingJob (kubectl apply -f -)."""
    objects = crds()
    if output is ManifestFormat.json:
        print_json({"apiVersion": "v1", "kind": "List", "items": objects})
        return
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, width=100))
