"""``kaip serve``: run the model server for one Model of a spec in the foreground."""

from __future__ import annotations

from pathlib import Path

import typer

from kaip.errors import ConfigError


def only_model(spec_path: Path) -> str:
    """The name of the one Model in ``spec_path``; a ConfigError naming them when not one."""
    from kaip.spec import load_paths

    names = [d.resource.metadata.name for d in load_paths([spec_path]).of_kind("Model")]
    if len(names) == 1:
        return names[0]
    if not names:
        raise ConfigError(f"no Model in {spec_path}: kaip serve serves a Model (kind: Model)")
    listed = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    raise ConfigError(
        f"{spec_path} has {len(names)} Models ({listed}): name the one to serve with --model NAME"
    )


def serve(
    spec_path: Path = typer.Argument(..., help="spec file or directory"),
    model: str | None = typer.Option(
        None, "--model", "-m", help="metadata.name of the Model to serve (default: the only one)"
    ),
    host: str | None = typer.Option(None, help="address to listen on (default 127.0.0.1)"),
    port: int | None = typer.Option(None, help="port (default 8000); 0 picks a free one"),
    revision: str = typer.Option("1", help="revision label (the OIP model version)"),
    port_file: Path | None = typer.Option(None, help="write the bound port to this file"),
    engine_url: str | None = typer.Option(
        None,
        help="serve.engine: relay to the engine already serving at this URL (e.g. "
        "http://127.0.0.1:8001) instead of starting it",
    ),
) -> None:
    """Serve a Model over OIP v2 (and the OpenAI API when enabled) until SIGTERM."""
    # the server and its runtimes: only `serve` loads them
    from kaip.serving.entrypoint import engine_url as checked_url
    from kaip.serving.entrypoint import run

    url = checked_url(engine_url)
    code = run(spec_path, model or only_model(spec_path), host, port, revision, port_file, url)
    if code:
        raise typer.Exit(code)
