"""The report lines a training job prints, and the quality gate that reads their metrics."""

from __future__ import annotations

import pytest

from kaip.policy import judge_quality
from kaip.spec.kinds import QualityGate
from kaip.training import Report, parse_line


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
