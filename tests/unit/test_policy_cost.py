"""kaip.policy.cost: a canary's cost per 1,000 requests against the rollout's cost budget."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import kaip.policy.cost
from kaip.policy import Verdict
from kaip.policy.cost import CostEvidence, cost_gate, has_budget
from kaip.spec.rollout import Gates

ADVANCE = Verdict("advance", "step 1 passed (40 requests, 0.0% errors): on to 50%")
STABLE = CostEvidence(400, 0.002)  # $0.005 per 1,000 requests


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(kaip.policy.cost)
    assert result.attempted > 0 and result.failed == 0


def test_a_canary_costing_twice_stable_is_rolled_back_naming_the_budget() -> None:
    verdict = cost_gate(
        ADVANCE, canary=CostEvidence(40, 0.0004), stable=STABLE, gates=Gates(max_cost_ratio=1.5)
    )
    assert verdict.action == "rollback"
    assert "2.00x stable's $0.005 " in verdict.reason and "maxCostRatio 1.5" in verdict.reason


def test_a_same_cost_canary_passes_with_its_figures_as_evidence() -> None:
    verdict = cost_gate(
        ADVANCE, canary=CostEvidence(40, 0.00021), stable=STABLE, gates=Gates(max_cost_ratio=1.5)
    )
    assert verdict.action == "advance"
    assert verdict.reason.startswith(ADVANCE.reason)
    assert "cost $0.00525 per 1,000 requests, 1.05x stable's $0.005 " in verdict.reason


def test_the_absolute_budget_needs_no_baseline() -> None:
    gates = Gates(max_cost_per_1k_requests_usd=0.004)
    over = cost_gate(ADVANCE, canary=CostEvidence(40, 0.0002), stable=None, gates=gates)
    assert over.action == "rollback"
    assert over.reason == (
        "cost $0.005 per 1,000 requests (40 requests): over maxCostPer1kRequestsUsd $0.004"
    )
    under = cost_gate(ADVANCE, canary=CostEvidence(40, 0.0001), stable=None, gates=gates)
    assert under.action == "advance" and "(maxCostPer1kRequestsUsd $0.004)" in under.reason


def test_too_little_evidence_is_not_judged_and_says_so() -> None:
    gates = Gates(max_cost_ratio=1.5, min_requests=20)
    early = cost_gate(ADVANCE, canary=CostEvidence(5, 1.0), stable=STABLE, gates=gates)
    assert early.action == "advance" and "not judged yet: 5 of minRequests 20" in early.reason
    no_baseline = cost_gate(
        ADVANCE, canary=CostEvidence(40, 1.0), stable=CostEvidence(3, 0.1), gates=gates
    )
    assert no_baseline.action == "advance"
    assert "maxCostRatio not judged: stable has 3 of 20 requests" in no_baseline.reason
    no_data = cost_gate(ADVANCE, canary=None, stable=None, gates=gates)
    assert no_data.action == "advance" and "no cost figures" in no_data.reason


def test_while_stable_takes_traffic_the_ratio_waits_for_its_evidence() -> None:
    gates = Gates(max_cost_ratio=1.5, min_requests=20)
    few = CostEvidence(12, 0.00006)  # stable's requests since the canary's first step
    for verdict in (ADVANCE, Verdict("promote", "all 2 steps passed")):
        held = cost_gate(verdict, canary=CostEvidence(40, 0.0002), stable=few, gates=gates,
                         stable_gets_traffic=True)  # fmt: skip
        assert held.action == "hold"
        assert held.reason == (
            "cost $0.005 per 1,000 requests; maxCostRatio waits for stable's evidence: "
            "12 of 20 requests: holding"
        )
    enough = cost_gate(ADVANCE, canary=CostEvidence(40, 0.0002), stable=CostEvidence(20, 0.0001),
                       gates=gates, stable_gets_traffic=True)  # fmt: skip
    assert enough.action == "advance" and "1.00x stable's $0.005" in enough.reason
    both = Gates(max_cost_ratio=1.5, max_cost_per_1k_requests_usd=0.004, min_requests=20)
    dear = cost_gate(ADVANCE, canary=CostEvidence(40, 0.0002), stable=few, gates=both,
                     stable_gets_traffic=True)  # fmt: skip
    assert dear.action == "rollback" and "over maxCostPer1kRequestsUsd" in dear.reason


def test_without_a_budget_or_after_a_rollback_the_verdict_stands() -> None:
    dear = CostEvidence(40, 10.0)
    assert cost_gate(ADVANCE, canary=dear, stable=STABLE, gates=Gates()) is ADVANCE
    failed = Verdict("rollback", "error rate 50.0% over 40 requests exceeds maxErrorRate 1.0%")
    gates = Gates(max_cost_ratio=1.5)
    assert cost_gate(failed, canary=dear, stable=STABLE, gates=gates) is failed
    hold = Verdict("hold", "pausing: 4s of 10s at 10%")
    assert cost_gate(hold, canary=CostEvidence(40, 0.0002), stable=STABLE, gates=gates) is hold
    assert cost_gate(hold, canary=dear, stable=STABLE, gates=gates).action == "rollback"


@given(
    st.integers(1, 10_000),
    st.floats(1e-6, 10.0),
    st.integers(1, 10_000),
    st.floats(1e-6, 10.0),
    st.floats(0.1, 10.0),
)
def test_the_ratio_budget_rolls_back_exactly_when_the_ratio_exceeds_it(
    canary_n: int, canary_usd: float, stable_n: int, stable_usd: float, limit: float
) -> None:
    canary, stable = CostEvidence(canary_n, canary_usd), CostEvidence(stable_n, stable_usd)
    gates = Gates(max_cost_ratio=limit, min_requests=1)
    verdict = cost_gate(ADVANCE, canary=canary, stable=stable, gates=gates)
    ratio = (canary_usd / canary_n) / (stable_usd / stable_n)
    assert (verdict.action == "rollback") == (ratio > limit)


@pytest.mark.parametrize("field", ["maxCostPer1kRequestsUsd", "maxCostRatio"])
def test_a_budget_is_spelled_as_documented_and_must_be_positive(field: str) -> None:
    def gates(value: float) -> Gates:
        return Gates.model_validate({field: value})

    assert has_budget(gates(1.5))
    with pytest.raises(ValidationError) as raised:
        gates(0)
    assert field in str(raised.value) and "greater than 0" in str(raised.value)
