"""The local platform's CLI when nothing runs: one clear message and the right exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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


def test_delivery_refuses_a_window_end_that_is_no_time_before_asking_anyone(
    tmp_path: Path,
) -> None:
    result = kaip(tmp_path, "delivery", "--until", "last tuesday")
    assert result.returncode == 2, result
    assert "--until 'last tuesday': give seconds since the epoch" in result.stderr
    nothing_runs = kaip(tmp_path, "delivery", "--until", "2026-11-30T12:00:00+00:00")
    assert nothing_runs.returncode == 1 and "kaip is not running here" in nothing_runs.stderr


def test_down_with_nothing_running_says_so_and_succeeds(tmp_path: Path) -> None:
    result = kaip(tmp_path, "down")
    assert result.returncode == 0
    assert "not running" in result.stdout


def test_logs_of_an_unknown_name_points_at_status(tmp_path: Path) -> None:
    result = kaip(tmp_path, "logs", "nope")
    assert result.returncode == 1
    assert "no logs for 'nope'" in result.stderr and "kaip status" in result.stderr


def test_down_never_signals_a_process_that_took_over_the_recorded_pid(tmp_path: Path) -> None:
    """Review #12: pointed at an unrelated ``sleep`` through run.json, ``kaip down`` killed it.

    The record names the pid of a ``sleep`` but the start time and command line of the ``kaip
    up`` that wrote it (as after that kaip up died and the pid was reused).
    """
    victim = subprocess.Popen(["sleep", "600"])
    try:
        state = tmp_path / ".kaip"
        state.mkdir()
        record = {
            "pid": victim.pid,
            "process": {"pid": victim.pid, "started": time.time() - 3600,
                        "cmdline": [sys.executable, "-m", "kaip.cli", "up", "spec"]},
            "port": 8080, "url": "http://127.0.0.1:8080",
            "admin_port": 8081, "admin_url": "http://127.0.0.1:8081", "started_at": 1.0,
        }  # fmt: skip
        (state / "run.json").write_text(json.dumps(record))
        result = kaip(tmp_path, "down")
        assert result.returncode == 0, result.stderr
        assert f"pid {victim.pid} of .kaip/run.json is now another process (sleep 600)" in (
            result.stdout
        )
        assert victim.poll() is None, "kaip down signalled the unrelated process"
        assert not (state / "run.json").exists()  # the stale record is gone, the process not
        status = kaip(tmp_path, "status")
        assert status.returncode == 1 and "kaip is not running here" in status.stderr
    finally:
        victim.kill()
        victim.wait()
