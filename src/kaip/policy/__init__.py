"""Rollout and autoscaling decisions, as pure functions (no clock, no I/O).

:func:`autoscale` says how many replicas a resource should run; :func:`rollout` says whether a
canary advances, holds, is promoted or is rolled back. Both take time as an argument so tests
drive them with a fake clock, and both explain themselves with a reason.
"""

from kaip.policy.rollouts import EARLY_ROLLBACK_MIN_ERRORS, Action, Evidence, Verdict, rollout
from kaip.policy.scaling import (
    DEFAULT_STABILIZATION_SECONDS,
    LoadObservation,
    ScaleDecision,
    ScaleMemory,
    autoscale,
)

__all__ = [
    "DEFAULT_STABILIZATION_SECONDS",
    "EARLY_ROLLBACK_MIN_ERRORS",
    "Action",
    "Evidence",
    "LoadObservation",
    "ScaleDecision",
    "ScaleMemory",
    "Verdict",
    "autoscale",
    "rollout",
]
