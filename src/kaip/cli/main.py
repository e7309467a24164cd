"""Entry point of the ``kaip`` command: builds the typer app and maps errors to exit codes."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from kaip import __version__
from kaip.cli import (
    catalog,
    cost,
    gitops,
    kube_commands,
    local,
    operator,
    portal,
    profile,
    render,
    rollout_commands,
    serve,
    spec_commands,
    token_commands,
    top,
    training,
)
from kaip.cli.delivery import delivery
from kaip.cli.events import events
from kaip.cli.lineage import lineage
from kaip.cli.output import OutputFormat, output_option, print_data
from kaip.errors import KaipError

app = typer.Typer(
    name="kaip",
    help="kaip, the Kubernetes AI Platform: one spec, laptop to cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"kaip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_print_version,
        is_eager=True,
        help="Print the kaip version and exit.",
    ),
) -> None:
    """kaip, the Kubernetes AI Platform: one spec, laptop to cluster."""


@app.command()
def version(output: OutputFormat = output_option()) -> None:
    """Print the kaip version."""
    if output.structured:
        print_data(output, {"version": __version__})
    else:
        print(f"kaip {__version__}")


app.command()(spec_commands.validate)
app.command()(spec_commands.schema)
app.command()(spec_commands.crd)
app.command()(render.render)
app.add_typer(gitops.app)
app.add_typer(token_commands.app)
app.add_typer(catalog.app)
app.command()(serve.serve)
app.command()(kube_commands.apply)
app.command()(kube_commands.delete)
app.command()(operator.operator)
app.command()(portal.portal)
app.command()(cost.cost)
app.command()(profile.profile)
app.command()(top.top)
local.register(app)
rollout_commands.register(app)
training.register(app)
app.command()(lineage)
app.command()(events)
app.command()(delivery)


def main() -> None:
    """Run the CLI; a KaipError becomes its message on stderr and its exit code, never a trace."""
    try:
        app()
    except KaipError as exc:
        err_console.print(exc.message, markup=False)
        sys.exit(exc.exit_code)
