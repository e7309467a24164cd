"""The spec corpus, judged by the real ``kaip validate`` command in a child process.

Each ``bad/NAME.expected`` holds the exact stderr lines for ``kaip validate NAME.yaml`` (or the
directory ``NAME/``, or a ``NAME.yaml`` that does not exist on purpose), run from ``bad/``.
Every spec under ``good/`` must pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

CORPUS = Path(__file__).parent
BAD = CORPUS / "bad"
GOOD = CORPUS / "good"
KAIP = Path(sys.executable).with_name("kaip")

# One module fixture runs every bad case as its own `kaip validate` process: ~50 CLI starts,
# seconds each on a busy 2-core machine. The bound is on a hang, not on speed.
pytestmark = pytest.mark.timeout(1800)
CASES = sorted(BAD.glob("*.expected"))


def _target(expected: Path) -> str:
    stem = expected.name.removesuffix(".expected")
    for candidate in (f"{stem}.yaml", f"{stem}.yml", stem):
        if (BAD / candidate).exists():
            return candidate
    return f"{stem}.yaml"


def _kaip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KAIP), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_every_bad_input_has_its_expected_lines() -> None:
    assert len(CASES) >= 30
    targets = {_target(e) for e in CASES}
    inputs = {p.name for p in BAD.iterdir() if p.suffix != ".expected"}
    assert inputs - targets == set()
    assert not (BAD / "does-not-exist.yaml").exists()


@pytest.fixture(scope="module")
def bad_runs() -> dict[Path, subprocess.CompletedProcess[str]]:
    """One ``kaip validate`` per case, a few at a time: each is a real, separate process."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = pool.map(lambda e: _kaip("validate", _target(e), cwd=BAD), CASES)
        return dict(zip(CASES, runs, strict=True))


@pytest.mark.parametrize("expected", CASES, ids=lambda p: p.name.removesuffix(".expected"))
def test_bad_spec_prints_its_problems_and_exits_2(
    expected: Path, bad_runs: dict[Path, subprocess.CompletedProcess[str]]
) -> None:
    result = bad_runs[expected]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == expected.read_text().splitlines()
    assert result.returncode == 2


def test_bad_spec_problems_as_json() -> None:
    result = _kaip("validate", "--output", "json", "wrong-types.yaml", cwd=BAD)
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["problems"][3] == {
        "file": "wrong-types.yaml",
        "line": 9,
        "column": 3,
        "path": "spec.port",
        "message": "must be an integer, not a string ('8080')",
        "hint": "remove the quotes",
    }


def test_every_good_spec_passes() -> None:
    result = _kaip("validate", ".", cwd=GOOD)
    assert result.returncode == 0, result.stderr
    files = {line.split()[1].split(":")[0] for line in result.stdout.splitlines()[:-1]}
    assert files == {p.name for p in GOOD.iterdir() if p.suffix in (".yaml", ".yml")}
    assert result.stdout.splitlines()[-1] == "24 resource(s) valid"


def test_unpinned_remote_artifacts_are_valid_with_a_warning() -> None:
    result = _kaip("validate", "artifacts.yaml", cwd=GOOD)
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.splitlines()
    assert [w.split(": spec.")[0] for w in warnings] == [
        "warning: artifacts.yaml:27:1",
        "warning: artifacts.yaml:35:1",
    ], result.stderr
    assert "Model embedder: the remote artifact s3://bucket/minilm is not pinned" in warnings[0]
    assert "pin it with sha256" in warnings[1]
    report = json.loads(_kaip("validate", "-o", "json", "artifacts.yaml", cwd=GOOD).stdout)
    assert [(w["line"], w["path"]) for w in report["warnings"]] == [
        (27, "spec.artifact.sha256"),
        (35, "spec.artifact.sha256"),
    ]
