"""The report lines a training job prints, the report file it leaves on Kubernetes (its
container's termination message, read back by the operator from the pod's status), and the
quality gate that reads their metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kaip.kube.operator.job_report import job_report
from kaip.policy import judge_quality
from kaip.spec.kinds import QualityGate
from kaip.training import (
    MAX_REPORT_BYTES,
    FinalReport,
    Report,
    decode_report,
    encode_report,
    parse_line,
)


@pytest.mark.parametrize(
    ("line", "report"),
    [
        ("KAIP_PROGRESS 0.42", Report("progress", "", 0.42)),
        ("KAIP_PROGRESS 7", Report("progress", "", 1.0)),
        ("KAIP_PROGRESS -1\n", Report("progress", "", 0.0)),
        ("KAIP_METRIC accuracy 0.97", Report("metric", "accuracy", 0.97)),
        ("KAIP_METRIC val/loss 1e-3", Report("metric", "val/loss", 0.001)),
        ("KAIP_PARAM optimizer adam with warmup", Report("param", "optimizer", "adam with warmup")),
        ("KAIP_PROGRESS nan", None),
        ("KAIP_METRIC accuracy high", None),
        ("KAIP_METRIC bad name 1", None),
        ("KAIP_METRIC accuracy", None),
        ("epoch 3 done", None),
        ("KAIP_UNKNOWN 1", None),
    ],
)
def test_parse_line(line: str, report: Report | None) -> None:
    assert parse_line(line) == report


GATE = QualityGate(min_metric={"accuracy": 0.95}, max_metric={"loss": 0.2})


@pytest.mark.parametrize(
    ("metrics", "passed", "reason"),
    [
        ({"accuracy": 0.97, "loss": 0.1}, True, "accuracy 0.97 >= 0.95, loss 0.1 <= 0.2"),
        ({"accuracy": 0.80, "loss": 0.1}, False, "accuracy 0.8 < 0.95 (minMetric)"),
        ({"accuracy": 0.97, "loss": 0.3}, False, "loss 0.3 > 0.2 (maxMetric)"),
        ({"loss": 0.1}, False, "the run reported no metric 'accuracy' (minMetric)"),
        ({"accuracy": 0.95, "loss": 0.2}, True, "accuracy 0.95 >= 0.95, loss 0.2 <= 0.2"),
    ],
)
def test_quality_gate_worked_examples(metrics: dict[str, float], passed: bool, reason: str) -> None:
    verdict = judge_quality(GATE, metrics)
    assert (verdict.passed, verdict.reason) == (passed, reason)


def test_no_gate_passes_anything() -> None:
    assert judge_quality(QualityGate(), {}).passed


JOB = """
from kaip import training
training.param("C", 0.5)
training.metric("accuracy", 0.9)
training.progress(0.5)
training.metric("accuracy", 0.97)
training.metric("loss", 0.1)
"""


def run_job(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, cwd=tmp_path,
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip


def test_under_the_operator_the_helper_keeps_its_report_in_the_termination_message_file(
    tmp_path: Path,
) -> None:
    report = tmp_path / "termination-log"
    report.write_text("")  # the kubelet makes the file; the container writes into it
    out = run_job(JOB, tmp_path, KAIP_REPORT_FILE=str(report))
    assert "KAIP_METRIC accuracy 0.97" in out.stdout.splitlines(), "the lines are still printed"
    assert decode_report(report.read_text()) == FinalReport(
        {"accuracy": 0.97, "loss": 0.1}, {"C": "0.5"}
    ), "the last value of each name"


def test_outside_the_operator_the_helper_writes_no_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAIP_REPORT_FILE"}
    subprocess.run([sys.executable, "-c", JOB], env=env, cwd=tmp_path, check=True, timeout=60)
    assert list(tmp_path.iterdir()) == []


def test_a_report_too_large_keeps_the_newest_metrics_and_says_what_it_left_out(
    tmp_path: Path,
) -> None:
    report = tmp_path / "termination-log"
    code = (
        "from kaip import training\n"
        "training.param('notes', 'x' * 1000)\n"
        "for i in range(100): training.metric(f'loss_epoch_{i:03d}', 0.5)\n"
        "training.metric('accuracy', 0.97)\n"
    )
    out = run_job(code, tmp_path, KAIP_REPORT_FILE=str(report))
    text = report.read_text()
    assert len(text.encode()) <= MAX_REPORT_BYTES
    decoded = decode_report(text)
    assert decoded.metrics["accuracy"] == 0.97 and "loss_epoch_099" in decoded.metrics
    assert "loss_epoch_000" not in decoded.metrics and decoded.params == {}
    said = out.stderr.splitlines()[-1]
    assert "left out: param notes, metric loss_epoch_000" in said, said


def test_encode_and_decode_agree() -> None:
    report = FinalReport({"accuracy": 0.97, "val/loss": 1e-3}, {"C": "0.5"})
    text, left_out = encode_report(report)
    assert (decode_report(text), left_out) == (report, [])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "it is empty: the job reported no metric"),
        ("accuracy=0.97", "it is not JSON: 'accuracy=0.97'"),
        ('{"accuracy": 0.97}', 'it is not an object with "metrics"'),
        ('{"metrics": {"accuracy": "high"}}', "metric 'accuracy': high is not a finite number"),
        ('{"metrics": {"accuracy": NaN}}', "metric 'accuracy': nan is not a finite number"),
        ('{"metrics": {"accuracy": true}}', "metric 'accuracy': True is not a finite number"),
        ('{"metrics": {"bad name": 1}}', "metric name 'bad name': use 1-128 letters"),
        ('{"metrics": {}, "params": []}', 'its "params" is not an object'),
        ('{"metrics": {"a": 1}, "pad": "' + "x" * 2048 + '"}', "longer than 2048 bytes"),
    ],
)
def test_a_malformed_report_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        decode_report(text)


def pod(
    name: str,
    message: str | None,
    phase: str = "Succeeded",
    exit_code: int = 0,
    index: str | None = None,
    created: str = "2026-11-30T10:00:00Z",
) -> dict[str, Any]:
    terminated: dict[str, Any] = {"exitCode": exit_code}
    if message is not None:
        terminated["message"] = message
    annotations = {} if index is None else {"batch.kubernetes.io/job-completion-index": index}
    return {
        "metadata": {"name": name, "creationTimestamp": created, "annotations": annotations},
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "train", "state": {"terminated": terminated}}],
        },
    }


GOOD = json.dumps({"metrics": {"accuracy": 0.97}, "params": {"C": "1.0"}})


def test_the_operator_reads_the_report_of_the_succeeded_pod() -> None:
    pods = [
        pod("train-abc-1", '{"metrics": {"accuracy": 0.1}}', phase="Failed", exit_code=1),
        pod("train-abc-2", GOOD, created="2026-11-30T10:05:00Z"),
    ]
    read = job_report("train-abc", pods)
    assert (read.pod, read.problem) == ("train-abc-2", None)
    assert read.report == FinalReport({"accuracy": 0.97}, {"C": "1.0"})
    assert judge_quality(QualityGate(min_metric={"accuracy": 0.95}), read.report.metrics).passed


def test_of_several_nodes_rank_zero_reports() -> None:
    pods = [pod("r1", '{"metrics": {"accuracy": 0.1}}', index="1"), pod("r0", GOOD, index="0")]
    assert job_report("train-abc", pods).report.metrics == {"accuracy": 0.97}


@pytest.mark.parametrize(
    ("pods", "problem"),
    [
        ([], "the Job train-abc has no succeeded pod to read its metrics from"),
        ([pod("p", GOOD, phase="Failed", exit_code=1)], "has no succeeded pod"),
        ([pod("p", None)], "pod p's termination message, the job's report: it is empty"),
        ([pod("p", "done")], "pod p's termination message, the job's report: it is not JSON"),
        ([pod("p", '{"metrics": {}}')], "pod p reported no metric; report them with kaip.training"),
    ],
)
def test_no_report_is_no_metrics_and_says_what_is_missing(
    pods: list[dict[str, Any]], problem: str
) -> None:
    read = job_report("train-abc", pods)
    assert read.report.metrics == {}
    assert read.problem is not None and problem in read.problem, read.problem
    verdict = judge_quality(QualityGate(min_metric={"accuracy": 0.95}), read.report.metrics)
    assert not verdict.passed, "no evidence is not good evidence"
