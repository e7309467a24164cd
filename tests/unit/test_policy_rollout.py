"""kaip.policy.rollout: verdicts for healthy, broken, slow and starved canaries."""

from __future__ import annotations

from kaip.policy import EARLY_ROLLBACK_MIN_ERRORS, Evidence, rollout
from kaip.spec.base import SLO
from kaip.spec.rollout import Gates, ManualPause, RolloutStep

STEPS = [
    RolloutStep(weight=10, pause_seconds=5),
    RolloutStep(weight=50, pause_seconds=5),
    RolloutStep(weight=100, pause_seconds=5),
]
GATES = Gates(max_error_rate=0.05, min_requests=20, max_p99_latency_ms=200)


def ok(requests: int, latency: float = 5.0) -> Evidence:
    return Evidence(requests, 0, (latency,) * requests)


def test_healthy_canary_walks_every_step_then_promotes() -> None:
    actions = []
    for index in range(len(STEPS)):
        before = rollout(
            step_index=index, steps=STEPS, seconds_in_step=1, canary=ok(30), stable=ok(30),
            gates=GATES,
        )  # fmt: skip
        assert before.action == "hold"
        after = rollout(
            step_index=index, steps=STEPS, seconds_in_step=6, canary=ok(30), stable=ok(30),
            gates=GATES,
        )  # fmt: skip
        actions.append(after.action)
    assert actions == ["advance", "advance", "promote"]


def test_canary_holds_until_it_has_min_requests() -> None:
    v = rollout(
        step_index=0, steps=STEPS, seconds_in_step=60, canary=ok(19), stable=ok(100), gates=GATES
    )
    assert v.action == "hold"
    assert "19 of minRequests 20" in v.reason


def test_error_rate_over_gate_rolls_back_once_evidence_is_in() -> None:
    canary = Evidence(40, 3, (5.0,) * 40)  # 7.5% > 5%
    v = rollout(
        step_index=1, steps=STEPS, seconds_in_step=0, canary=canary, stable=ok(40), gates=GATES
    )
    assert v.action == "rollback"
    assert "7.5%" in v.reason


def test_error_rate_within_gate_passes() -> None:
    canary = Evidence(40, 2, (5.0,) * 40)  # exactly 5%
    v = rollout(
        step_index=1, steps=STEPS, seconds_in_step=6, canary=canary, stable=ok(40), gates=GATES
    )
    assert v.action == "advance"


def test_broken_canary_is_rolled_back_before_min_requests() -> None:
    early = Evidence(EARLY_ROLLBACK_MIN_ERRORS, EARLY_ROLLBACK_MIN_ERRORS)
    v = rollout(
        step_index=0, steps=STEPS, seconds_in_step=0, canary=early, stable=ok(5), gates=GATES
    )
    assert v.action == "rollback"
    one_blip = Evidence(2, 1)
    v = rollout(
        step_index=0, steps=STEPS, seconds_in_step=0, canary=one_blip, stable=ok(5), gates=GATES
    )
    assert v.action == "hold"


def test_early_rule_needs_the_gate_to_be_lost_for_sure() -> None:
    lenient = Gates(max_error_rate=0.5, min_requests=20)  # 10 errors in 20 allowed
    v = rollout(
        step_index=0, steps=STEPS, seconds_in_step=0, canary=Evidence(8, 8), stable=ok(5),
        gates=lenient,
    )  # fmt: skip
    assert v.action == "hold"
    v = rollout(
        step_index=0, steps=STEPS, seconds_in_step=0, canary=Evidence(11, 11), stable=ok(5),
        gates=lenient,
    )  # fmt: skip
    assert v.action == "rollback"


def test_slow_canary_is_rolled_back_on_p99() -> None:
    slow = Evidence(100, 0, (5.0,) * 95 + (500.0,) * 5)
    v = rollout(
        step_index=0, steps=STEPS, seconds_in_step=9, canary=slow, stable=ok(100), gates=GATES
    )
    assert v.action == "rollback"
    assert "p99" in v.reason


def test_slo_breach_counts_only_when_stable_meets_it() -> None:
    slo = SLO(p99_latency_ms=50)
    canary = ok(30, latency=80.0)
    worse = rollout(
        step_index=0, steps=STEPS, seconds_in_step=9, canary=canary, stable=ok(30, 10.0),
        gates=GATES, slo=slo,
    )  # fmt: skip
    assert worse.action == "rollback"
    assert "SLO" in worse.reason
    machine_is_slow = rollout(
        step_index=0, steps=STEPS, seconds_in_step=9, canary=canary, stable=ok(30, 90.0),
        gates=GATES, slo=slo,
    )  # fmt: skip
    assert machine_is_slow.action == "advance"


def test_evidence_accumulates_and_computes_p99() -> None:
    e = Evidence(2, 1, (1.0, 2.0)).plus(Evidence(98, 0, tuple(float(i) for i in range(98))))
    assert (e.requests, e.errors) == (100, 1)
    assert e.error_rate() == 0.01
    assert e.p99_ms() == 96.0
    assert Evidence().p99_ms() is None
    assert Evidence().error_rate() == 0.0


PAUSED = [
    RolloutStep(weight=10, pause_seconds=5),
    RolloutStep(weight=50, pause=ManualPause()),
    RolloutStep(weight=100, pause_seconds=5),
]


def test_a_manual_pause_holds_past_any_deadline_until_released() -> None:
    for seconds in (0, 60, 86_400 * 30):
        v = rollout(
            step_index=1, steps=PAUSED, seconds_in_step=seconds, canary=ok(500), stable=ok(500),
            gates=GATES, progress_deadline_seconds=60,
        )  # fmt: skip
        assert v.action == "hold"
        assert "waiting for `kaip rollout promote`" in v.reason
    released = rollout(
        step_index=1, steps=PAUSED, seconds_in_step=0, canary=ok(0), stable=ok(0), gates=GATES,
        released_by="ann",
    )  # fmt: skip
    assert released.action == "advance"
    assert "released by ann" in released.reason and "on to 100%" in released.reason


def test_a_released_pause_still_rolls_back_a_failing_canary() -> None:
    v = rollout(
        step_index=1, steps=PAUSED, seconds_in_step=0, canary=Evidence(40, 30, (5.0,) * 40),
        stable=ok(40), gates=GATES, released_by="ann",
    )  # fmt: skip
    assert v.action == "rollback"


def test_a_released_last_step_pause_promotes() -> None:
    steps = [RolloutStep(weight=10, pause_seconds=0), RolloutStep(weight=100, pause=ManualPause())]
    v = rollout(
        step_index=1, steps=steps, seconds_in_step=0, canary=ok(3), stable=ok(3), gates=GATES,
        released_by="ci",
    )  # fmt: skip
    assert v.action == "promote"
