"""The local platform's CLI when nothing runs: one clear message and the right exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def kaip(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaip.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_commands_that_need_a_running_kaip_say_how_to_start_it(tmp_path: Path) -> None:
    for args in (("status",), ("rollout", "status", "x"), ("deploy", str(tmp_path))):
        result = kaip(tmp_path, *args)
        if args[0] == "deploy":  # validation comes first: an empty directory is a spec error
            assert result.returncode == 2
            assert "no *.yaml or *.yml files here" in result.stderr
            continue
        assert result.returncode == 1, result
        assert "kaip is not running here" in result.stderr
        assert "kaip up PATH" in result.stderr
        assert "Traceback" not in result.stderr


def test_down_with_nothing_running_says_so_and_succeeds(tmp_path: Path) -> None:
    result = kaip(tmp_path, "down")
    assert result.returncode == 0
    assert "not running" in result.stdout


def test_logs_of_an_unknown_name_points_at_status(tmp_path: Path) -> None:
    result = kaip(tmp_path, "logs", "nope")
    assert result.returncode == 1
    assert "no logs for 'nope'" in result.stderr and "kaip status" in result.stderr
