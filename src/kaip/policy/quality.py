"""The quality gate: may a registered version take any traffic at all? (pure)

Before a new version of a Model's artifact becomes a canary, :func:`judge_quality` compares
the metrics its training run reported with the Model's ``qualityGate``. Every bound must hold;
a metric the gate names but the run did not report fails the gate (no evidence is not good
evidence). A version that fails is refused outright: it never gets a replica or a request, so a
bad model cannot hurt even the canary's share of users.

Worked example (``minMetric: {accuracy: 0.95}``, ``maxMetric: {loss: 0.2}``)::

    {accuracy: 0.97, loss: 0.1}  -> passed: accuracy 0.97 >= 0.95, loss 0.1 <= 0.2
    {accuracy: 0.80, loss: 0.1}  -> refused: accuracy 0.8 < 0.95 (minMetric)
    {loss: 0.1}                  -> refused: the run reported no metric 'accuracy'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kaip.spec.kinds import QualityGate


@dataclass(frozen=True)
class QualityVerdict:
    passed: bool
    reason: str


def judge_quality(gate: QualityGate | None, metrics: Mapping[str, float]) -> QualityVerdict:
    """Whether ``metrics`` meet every bound of ``gate`` (None: no gate), and why (or why not)."""
    if gate is None:
        return QualityVerdict(True, "no quality gate")
    checks: list[str] = []
    for name, low in sorted(gate.min_metric.items()):
        value = metrics.get(name)
        if value is None:
            return QualityVerdict(False, f"the run reported no metric {name!r} (minMetric)")
        if value < low:
            return QualityVerdict(False, f"{name} {value:g} < {low:g} (minMetric)")
        checks.append(f"{name} {value:g} >= {low:g}")
    for name, high in sorted(gate.max_metric.items()):
        value = metrics.get(name)
        if value is None:
            return QualityVerdict(False, f"the run reported no metric {name!r} (maxMetric)")
        if value > high:
            return QualityVerdict(False, f"{name} {value:g} > {high:g} (maxMetric)")
        checks.append(f"{name} {value:g} <= {high:g}")
    return QualityVerdict(True, ", ".join(checks) or "no quality gate")
