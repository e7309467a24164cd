"""The training examples report through :mod:`kaip.training`, so they register with their
metrics wherever they run.

``kaip up`` reads a job's ``KAIP_METRIC``/``KAIP_PARAM``/``KAIP_PROGRESS`` lines from its
output; the operator reads none of it, only the report file ``KAIP_REPORT_FILE`` names (the
container's termination message), which ``kaip.training.metric``/``param`` keep. Each example
runs here as a real process (real scikit-learn training) with the variables the operator's pod
gets, and must leave both: the lines and the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kaip.training import decode_report, parse_line

EXAMPLES = Path(__file__).parents[2] / "examples"
pytestmark = pytest.mark.timeout(300)


def run_example(script: Path, tmp_path: Path, **env: str) -> tuple[dict[str, object], list[str]]:
    """Run ``script`` as a pod of the operator would; its report file's JSON and its lines."""
    report = tmp_path / "termination-log"
    report.touch()  # the kubelet makes the file before the container starts
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={
            **os.environ,
            "KAIP_REPORT_FILE": str(report),
            "KAIP_OUTPUT_URI": str(tmp_path / "out" / "model.joblib"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "model.joblib").stat().st_size > 0
    decode_report(report.read_text())  # what the operator does with it: it must be valid
    return json.loads(report.read_text()), done.stdout.splitlines()


def test_the_quickstart_trainer_leaves_its_accuracy_and_c_in_the_report_file(
    tmp_path: Path,
) -> None:
    report, lines = run_example(EXAMPLES / "quickstart" / "train.py", tmp_path, C="0.5")
    assert report["params"] == {"C": "0.5"}
    accuracy = report["metrics"]["accuracy"]  # type: ignore[index]
    assert 0.9 < accuracy <= 1.0, report
    said = [r for r in map(parse_line, lines) if r is not None]
    assert [(r.what, r.name, r.value) for r in said] == [
        ("param", "C", "0.5"),
        ("metric", "accuracy", accuracy),
    ], "kaip up reads the same from its output"


def test_the_checkpointing_trainer_leaves_its_accuracy_and_alpha_in_the_report_file(
    tmp_path: Path,
) -> None:
    report, lines = run_example(
        EXAMPLES / "training" / "train_sgd.py",
        tmp_path,
        EPOCHS="3",
        KAIP_CHECKPOINT_DIR=str(tmp_path / "checkpoints"),
    )
    assert report["params"] == {"alpha": "0.0001"}
    accuracy = report["metrics"]["accuracy"]  # type: ignore[index]
    assert 0.8 < accuracy <= 1.0, report
    said = [r for r in map(parse_line, lines) if r is not None]
    assert [r.value for r in said if r.what == "progress"] == pytest.approx(
        [1 / 3, 2 / 3, 1.0], abs=1e-3
    )
    assert [(r.name, r.value) for r in said if r.what == "metric"] == [("accuracy", accuracy)]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch-1.joblib",
        "epoch-2.joblib",
        "epoch-3.joblib",
    ]
