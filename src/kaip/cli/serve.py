"""``kaip serve``: run the model server for one Model of a spec in the foreground."""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    spec_path: Path = typer.Argument(..., help="spec file or directory"),
    model: str = typer.Option(..., "--model", help="metadata.name of the Model to serve"),
    host: str | None = typer.Option(None, help="address to listen on (default 127.0.0.1)"),
    port: int | None = typer.Option(None, help="port (default 8000); 0 picks a free one"),
    revision: str = typer.Option("1", help="revision label (the OIP model version)"),
    port_file: Path | None = typer.Option(None, help="write the bound port to this file"),
) -> None:
    """Serve a Model over OIP v2 (and the OpenAI API when enabled) until SIGTERM."""
    from kaip.serving.entrypoint import run  # the server and its runtimes: only `serve` loads them

    code = run(spec_path, model, host, port, revision, port_file)
    if code:
        raise typer.Exit(code)
