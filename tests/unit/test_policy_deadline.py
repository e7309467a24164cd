"""kaip.policy: progress deadlines settle a step starved of evidence (abort or promote)."""

from __future__ import annotations

from kaip.policy import Evidence, Verdict, not_ready_verdict, rollout
from kaip.policy.rollouts import NoEvidence
from kaip.spec.rollout import Gates, RolloutStep

STEPS = [RolloutStep(weight=10, pause_seconds=5), RolloutStep(weight=100, pause_seconds=5)]
GATES = Gates(max_error_rate=0.05, min_requests=20)


def decide(
    step: int,
    seconds: float,
    canary: Evidence,
    deadline: float | None = None,
    on_no_evidence: NoEvidence = "abort",
) -> Verdict:
    return rollout(
        step_index=step, steps=STEPS, seconds_in_step=seconds, canary=canary,
        stable=Evidence(50, 0), gates=GATES, progress_deadline_seconds=deadline,
        on_no_evidence=on_no_evidence,
    )  # fmt: skip


def ok(requests: int) -> Evidence:
    return Evidence(requests, 0, (5.0,) * requests)


def test_without_a_deadline_a_starved_canary_holds_forever() -> None:
    assert decide(0, 1_000_000, ok(0)).action == "hold"


def test_a_starved_canary_is_aborted_at_its_deadline_with_the_reason() -> None:
    assert decide(0, 5 + 59, ok(3), deadline=60).action == "hold"  # the pause does not count
    verdict = decide(0, 5 + 60, ok(3), deadline=60)
    assert verdict == Verdict(
        "abort", "no evidence by progressDeadlineSeconds 60 at 10%: 3 of minRequests 20"
    )


def test_on_no_evidence_promote_passes_the_step_at_the_deadline() -> None:
    first = decide(0, 70, ok(0), deadline=60, on_no_evidence="promote")
    assert first.action == "advance"
    assert "passed by onNoEvidence: promote" in first.reason
    assert decide(1, 70, ok(0), deadline=60, on_no_evidence="promote").action == "promote"


def test_enough_evidence_before_the_deadline_passes_as_usual() -> None:
    assert decide(0, 70, ok(30), deadline=60).action == "advance"


def test_the_deadline_never_overrides_failing_gates() -> None:
    broken = Evidence(10, 10, (5.0,) * 10)
    assert decide(0, 500, broken, deadline=60).action == "rollback"
    promote_anyway = decide(0, 500, broken, deadline=60, on_no_evidence="promote")
    assert promote_anyway.action == "rollback"


def test_a_revision_not_ready_by_the_deadline_is_aborted() -> None:
    assert not_ready_verdict(1_000_000, None) is None
    assert not_ready_verdict(59, 60) is None
    verdict = not_ready_verdict(60, 60)
    assert verdict is not None and verdict.action == "abort"
