"""``kaip token create|list|revoke``: role tokens for the control port and the portal.

Parse, call, print: the tokens are :mod:`kaip.local.controller.tokens`'. ``create`` prints the
new token once, on stdout and alone on its line (so ``TOKEN=$(kaip token create ...)`` works),
and what it may do on stderr; nothing ever shows it again. ``list`` shows the records only;
``revoke`` removes one (by id or name), and a running ``kaip up`` refuses it from then on.
Works with or without a ``kaip up`` running (a running one accepts a new token at once).
"""

from __future__ import annotations

from datetime import datetime

import typer

from kaip.cli.output import OutputFormat, output_option, print_data, stdout
from kaip.local.controller.tokens import create_token, read_tokens, revoke_token
from kaip.settings import load_settings

app = typer.Typer(
    name="token", help="Role tokens: viewer, deployer (for owners) or admin.", no_args_is_help=True
)


@app.command()
def create(
    role: str = typer.Option(..., "--role", help="viewer, deployer or admin"),
    owner: list[str] = typer.Option(
        [], "--owner", help="a deployer acts only on this owner's resources (repeatable)"
    ),
    name: str = typer.Option("", "--name", help="who holds it, for the event log"),
    output: OutputFormat = output_option(help="text (the token alone), or json or yaml"),
) -> None:
    """Make a token; it is printed once and stored hashed in .kaip/tokens.json."""
    state_dir = load_settings().local.state_dir
    token, record = create_token(state_dir, role, owner, name)
    if output.structured:
        print_data(output, {
            "id": record.id, "name": record.name, "role": record.role,
            "owners": list(record.owners), "created_at": record.created_at, "token": token,
        })  # fmt: skip
        return
    scope = f" for {', '.join(record.owners)}" if record.owners else ""
    typer.echo(f"{record.name}: {record.role}{scope}; shown once, keep it safe", err=True)
    typer.echo(token)


@app.command("list")
def list_tokens(
    output: OutputFormat = output_option(),
) -> None:
    """The tokens made here: id, name, role, owners, when (never the tokens themselves)."""
    records = read_tokens(load_settings().local.state_dir)
    if output.structured:
        print_data(output,
            [
                {"id": r.id, "name": r.name, "role": r.role, "owners": list(r.owners),
                 "created_at": r.created_at}
                for r in records
            ]
        )  # fmt: skip
        return
    for r in records:
        owners = ", ".join(r.owners) or "every owner"
        when = datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M:%S")
        stdout.print(f"{r.id}  {r.name}  {r.role}  {owners}  {when}", markup=False)


@app.command()
def revoke(
    which: str = typer.Argument(..., metavar="NAME|ID", help="the token's id or name"),
) -> None:
    """Remove a token: refused at once, with the portal sessions it opened."""
    record = revoke_token(load_settings().local.state_dir, which)
    typer.echo(f"revoked {record.name} ({record.id}, {record.role})", err=True)
