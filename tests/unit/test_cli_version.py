"""``kaip version``, ``kaip --version`` and shell completion (issue 13 #8)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import kaip

pytestmark = pytest.mark.unit


def kaip_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaip.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_version_command_prints_package_version() -> None:
    out = kaip_cli("version")
    assert (out.returncode, out.stdout.strip()) == (0, f"kaip {kaip.__version__}")


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_flag_prints_the_same_and_runs_no_command(flag: str) -> None:
    out = kaip_cli(flag, "status")  # eager: the version, and nothing of status
    assert (out.returncode, out.stdout.strip(), out.stderr) == (0, f"kaip {kaip.__version__}", "")


def test_shell_completion_is_offered_and_completes_commands() -> None:
    kaip_bin = Path(sys.executable).with_name("kaip")  # the entry point: completion keys on it
    assert "--install-completion" in kaip_cli("--help").stdout
    script = subprocess.run(
        [str(kaip_bin), "--show-completion", "bash"], capture_output=True, text=True, timeout=120
    )
    assert script.returncode == 0 and "_kaip_completion()" in script.stdout
    env = {**os.environ, "_KAIP_COMPLETE": "complete_bash", "COMP_CWORD": "1"}
    for words, expected in (("kaip roll", ["rollout"]), ("kaip ver", ["version"])):
        completed = subprocess.run(
            [str(kaip_bin)], capture_output=True, text=True, timeout=120,
            env={**env, "COMP_WORDS": words},
        )  # fmt: skip
        assert completed.stdout.split() == expected, completed.stdout[:300]
