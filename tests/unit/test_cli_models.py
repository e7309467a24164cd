"""``kaip models show|alias`` as a user runs them: a real ``python -m kaip.cli`` process reading a
real embedded registry (SQLite and artifact store) under a temporary state directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kaip.registry import EmbeddedRegistry, Registration

pytestmark = pytest.mark.unit


def kaip(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaip.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def show_json(cwd: Path, reference: str) -> dict[str, Any]:
    result = kaip(cwd, "models", "show", reference, "-o", "json")
    assert result.returncode == 0, result
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.fixture
def registered(tmp_path: Path) -> Path:
    """Two versions of ``digits`` in ``tmp_path/.kaip``, the first from a job run with metrics."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.joblib").write_bytes(b"one")
    (work / "b.joblib").write_bytes(b"two")
    registry = EmbeddedRegistry.open(tmp_path / ".kaip")
    try:
        first = Registration(
            "digits", work / "a.joblib", "sklearn", metrics={"accuracy": 0.96},
            params={"C": "1.0"}, job="train-digits", run_id=7, source_commit="abc123",
        )  # fmt: skip
        registry.register(first)
        registry.register(Registration("digits", work / "b.joblib", "sklearn"))
    finally:
        registry.close()
    return tmp_path


def test_models_show_prints_one_version_as_text_and_json(registered: Path) -> None:
    text = kaip(registered, "models", "show", "digits@1")
    assert text.returncode == 0, text
    lines = dict(line.split(None, 1) for line in text.stdout.splitlines())
    assert lines["name:"] == "digits" and lines["version:"] == "1"
    assert lines["uri:"] == "registry://digits@1"
    assert lines["sha256:"] == "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"
    assert (lines["metrics:"], lines["params:"]) == ("accuracy=0.96", "C=1.0")
    assert (lines["job:"], lines["run:"], lines["commit:"]) == ("train-digits", "7", "abc123")

    latest = show_json(registered, "digits")
    assert (latest["version"], latest["job"], latest["metrics"]) == (2, None, {})
    assert latest["size"] == 3 and latest["format"] == "sklearn"


def test_models_alias_moves_an_alias_that_show_and_versions_then_follow(registered: Path) -> None:
    moved = kaip(registered, "models", "alias", "digits", "champion", "1")
    assert moved.returncode == 0, moved
    assert moved.stdout.strip() == "digits@champion -> version 1"
    champion = show_json(registered, "digits@champion")
    assert (champion["version"], champion["aliases"]) == (1, ["champion"])

    assert kaip(registered, "models", "alias", "digits", "champion", "2").returncode == 0
    champion = show_json(registered, "digits@champion")
    assert champion["version"] == 2
    versions = json.loads(kaip(registered, "models", "versions", "digits", "-o", "json").stdout)
    assert [v["aliases"] for v in versions] == [[], ["champion"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "digits@9"), "the registry has no version 9 for model 'digits'"),
        (("show", "digits@canary"), "the registry has no alias 'canary' for model 'digits'"),
        (("show", "nosuch"), "the registry has no versions for model 'nosuch'"),
        (("show", "@1"), "names no model: write NAME, NAME@VERSION or NAME@ALIAS"),
        (("alias", "digits", "champion", "9"), "the registry has no version 9 for model 'digits'"),
        (("alias", "nosuch", "champion", "1"), "no version 1 for model 'nosuch'"),
        (("alias", "digits", "latest", "1"), "not 'latest'"),
    ],
)
def test_unknown_names_versions_and_aliases_are_one_clear_message_and_exit_1(
    registered: Path, args: tuple[str, ...], message: str
) -> None:
    result = kaip(registered, "models", *args)
    assert result.returncode == 1, result
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
