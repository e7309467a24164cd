"""``kaip cost --until``: the window's end of a cluster's report, given two ways or refused."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from kaip.cli.cost import epoch_seconds


@pytest.mark.parametrize(
    "text",
    ["1764579600", "1764579600.0", "2025-12-01T09:00:00Z", "2025-12-01T10:00:00+01:00"],
)
def test_an_instant_is_seconds_since_the_epoch_or_iso_8601_with_its_offset(text: str) -> None:
    assert epoch_seconds(text) == 1764579600.0


@pytest.mark.parametrize("text", ["2025-12-01T09:00:00", "yesterday", "nan", "inf", "-5", "0", ""])
def test_an_instant_without_an_offset_or_not_a_time_is_refused_saying_what_to_give(
    text: str,
) -> None:
    with pytest.raises(typer.BadParameter, match="ISO 8601 time with its offset") as refused:
        epoch_seconds(text)
    assert refused.value.param_hint == "--until"


def test_until_is_refused_without_prometheus() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kaip.cli", "cost", "--until", "1764579600"],
        capture_output=True, text=True, timeout=60, env={"COLUMNS": "200", "PATH": ""},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--until: only with --prometheus" in done.stderr and "Traceback" not in done.stderr
