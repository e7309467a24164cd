"""Rollout, quality-gate and autoscaling decisions, as pure functions (no clock, no I/O).

:func:`autoscale` says how many replicas a resource should run; :func:`rollout` says whether a
canary advances, holds, is promoted, rolled back or aborted, with the analysis checks' results
judged by :mod:`kaip.policy.checks` among its evidence. Both take time as an argument so tests
drive them with a fake clock, and both explain themselves with a reason.
"""

from kaip.policy.checks import (
    CheckResult,
    CheckStatus,
    judge_query,
    judge_webhook,
    not_asked,
    render_query,
)
from kaip.policy.quality import QualityVerdict, judge_quality
from kaip.policy.rollouts import (
    EARLY_ROLLBACK_MIN_ERRORS,
    Action,
    Evidence,
    NoEvidence,
    Verdict,
    not_ready_verdict,
    pre_rollout_verdict,
    rollout,
)
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
    "CheckResult",
    "CheckStatus",
    "Evidence",
    "LoadObservation",
    "NoEvidence",
    "QualityVerdict",
    "ScaleDecision",
    "ScaleMemory",
    "Verdict",
    "autoscale",
    "judge_quality",
    "judge_query",
    "judge_webhook",
    "not_asked",
    "not_ready_verdict",
    "pre_rollout_verdict",
    "render_query",
    "rollout",
]
