"""CLI conventions users already have (issue 13 #8), held for every command by walking the app.

Every command that prints data takes ``-o/--output`` with ``json`` and ``yaml``; a short option
means the same long option in every command (``-n`` is ``--namespace``, ``-o`` is ``--output``);
a command that prints no data says why in :data:`NO_DATA`. A new command fails here until it
follows them or is listed.
"""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer
import yaml

import kaip
from kaip.cli.main import app

pytestmark = pytest.mark.unit

NO_DATA = {
    "up": "runs the platform in the foreground; its lines are a log",
    "down": "stops the platform; one line says so",
    "logs": "prints the replicas' own log lines as they are",
    "serve": "runs a model server in the foreground",
    "train": "runs a job in the foreground with a progress bar",
    "apply": "reports what it changed, one line per object (kubectl's -o is not offered yet)",
    "delete": "reports what it deleted, one line per object",
    "operator": "runs the operator in the foreground; its lines are a log",
    "portal": "runs the portal server in the foreground",
    "profile": "writes a profile to a file (--output FILE)",
    "catalog export": "writes catalog-info.yaml into --output-dir",
    "gitops commit": "writes and commits files; one line says which commit",
    "rollout promote": "acts; one line says what happened",
    "rollout abort": "acts; one line says what happened",
    "rollout undo": "acts; one line says what happened",
    "models alias": "moves an alias; one line says so",
    "token revoke": "acts; one line says so",
}
LEGACY_OUTPUT = {"profile": "the file it writes"}
"""Commands whose ``--output`` (long form, kept) names a file, not a format; no ``-o`` there."""


def commands(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf command under ``group`` (typer's own click), as ``"sub command"`` paths."""
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if hasattr(command, "commands"):
            yield from commands(command, f"{path} ")
        else:
            yield path, command


ROOT = typer.main.get_command(app)
ALL = dict(commands(ROOT))


def options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option"]


def choices(option: Any) -> list[str]:
    annotation = option.type_descriptor.annotation
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(member.value) for member in annotation]
    return []


def test_the_walk_sees_every_command() -> None:
    assert {"validate", "deploy", "status", "rollout status", "top", "version", "token create",
            "models list", "cost", "events"} <= set(ALL)  # fmt: skip
    assert set(NO_DATA) <= set(ALL), set(NO_DATA) - set(ALL)


def test_every_data_printing_command_offers_json_and_yaml() -> None:
    missing, not_formats = [], []
    for path, command in ALL.items():
        output = [o for o in options(command) if "--output" in o.opts]
        if path in LEGACY_OUTPUT:
            assert all("-o" not in o.opts for o in output), path
            continue
        if not output:
            if path not in NO_DATA:
                missing.append(path)
            continue
        (option,) = output
        offered = choices(option)
        if "-o" not in option.opts or not {"json", "yaml"} <= set(offered):
            not_formats.append(f"{path}: {option.opts} {offered}")
        assert path not in NO_DATA, f"{path} has -o now: take it off NO_DATA"
    assert missing == [], f"commands that print data without -o json|yaml: {missing}"
    assert not_formats == [], not_formats


def test_a_short_option_means_the_same_long_option_in_every_command() -> None:
    meanings: dict[str, set[str]] = {}
    for path, command in [("kaip", ROOT), *ALL.items()]:
        for option in options(command):
            longs = [o for o in option.opts if o.startswith("--")]
            for short in (o for o in option.opts if not o.startswith("--")):
                meanings.setdefault(short, set()).add(longs[0] if longs else path)
    conflicting = {s: sorted(m) for s, m in meanings.items() if len(m) > 1}
    assert conflicting == {}, conflicting
    assert meanings["-n"] == {"--namespace"} and meanings["-o"] == {"--output"}


def kaip_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaip.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_json_and_yaml_print_the_same_data() -> None:
    as_json = kaip_cli("version", "-o", "json")
    as_yaml = kaip_cli("version", "-o", "yaml")
    assert as_json.returncode == as_yaml.returncode == 0, as_json.stderr + as_yaml.stderr
    assert (
        json.loads(as_json.stdout)
        == yaml.safe_load(as_yaml.stdout)
        == {"version": kaip.__version__}
    )
    schema_json = json.loads(kaip_cli("schema", "--kind", "Model").stdout)
    schema_yaml = yaml.safe_load(kaip_cli("schema", "--kind", "Model", "-o", "yaml").stdout)
    assert schema_json == schema_yaml and "$defs" in schema_json
