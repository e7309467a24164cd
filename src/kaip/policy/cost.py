"""The cost gate of a canary: its cost per 1,000 requests against a budget (pure).

Beside the error-rate, latency and SLO gates of :func:`kaip.policy.rollout`, a rollout's
``gates`` may set a cost budget: ``maxCostPer1kRequestsUsd`` (an absolute ceiling) and/or
``maxCostRatio`` (a ceiling relative to the stable revision's cost per 1,000 requests). The
controller hands :func:`cost_gate` what each revision's requests cost so far (the usage basis of
:mod:`kaip.accounting`: a replica's cost shared among its requests by busy time, idle apart)
together with the verdict the other gates reached, and gets back that verdict, or a rollback
naming the budget and the evidence. Nothing here reads a clock, a process or a price.

The rules:

1. Without a budget, or when the verdict is already a rollback or an abort, it stands as is.
2. The canary is judged once it has ``minRequests`` requests (at least 1) with cost figures.
3. **Absolute:** its cost per 1,000 requests above ``maxCostPer1kRequestsUsd``: roll back.
4. **Relative:** with a stable revision of at least ``minRequests`` requests and a nonzero
   cost, a canary costing more than ``maxCostRatio`` times stable's per 1,000 requests: roll
   back. Without such a baseline the ratio is not judged (said in the reason, as evidence),
   unless the caller says stable is still taking traffic (``stable_gets_traffic``: both are
   counted over the same time, at a step below 100 %): then an advance or a promotion waits
   for stable's requests (a hold saying so).
5. Otherwise an advance or a promotion carries the cost figures in its reason; a hold is left
   alone (the other gates' reason says why it holds).

Worked example (``maxCostRatio: 1.5``, ``minRequests: 20``): stable served 400 requests for
$0.0020 ($0.0050 per 1,000), the canary 40 for $0.00042 ($0.0105 per 1,000, 2.10x): the
verdict "advance" becomes "rollback: cost $0.0105 per 1,000 requests (40 requests) is 2.10x
stable's $0.005 (400 requests): over maxCostRatio 1.5". Amounts show 4 significant digits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kaip.policy.rollouts import Verdict
from kaip.spec.rollout import Gates


@dataclass(frozen=True)
class CostEvidence:
    """What one revision's requests cost so far: how many, and their cost in USD."""

    requests: int = 0
    cost_usd: float = 0.0

    def per_1k_usd(self) -> float | None:
        """USD per 1,000 requests, or None without a request."""
        return self.cost_usd * 1000.0 / self.requests if self.requests > 0 else None


def has_budget(gates: Gates) -> bool:
    return gates.max_cost_per_1k_requests_usd is not None or gates.max_cost_ratio is not None


def cost_gate(
    verdict: Verdict,
    *,
    canary: CostEvidence | None,
    stable: CostEvidence | None,
    gates: Gates,
    stable_gets_traffic: bool = False,
) -> Verdict:
    """The verdict after the cost budget (module docstring); ``None`` evidence: no cost data.

    >>> from kaip.spec.rollout import Gates
    >>> gates = Gates(max_cost_ratio=1.5, min_requests=20)
    >>> v = cost_gate(Verdict("advance", "step 1 passed"), canary=CostEvidence(40, 0.00042),
    ...               stable=CostEvidence(400, 0.002), gates=gates)
    >>> v.action, v.reason.endswith("over maxCostRatio 1.5"), v.reason[:45]
    ('rollback', True, 'cost $0.0105 per 1,000 requests (40 requests)')
    >>> cost_gate(Verdict("advance", "step 1 passed"), canary=CostEvidence(40, 0.0002),
    ...           stable=CostEvidence(400, 0.002), gates=gates).reason
    "step 1 passed; cost $0.005 per 1,000 requests, 1.00x stable's $0.005 (maxCostRatio 1.5)"
    >>> cost_gate(Verdict("advance", "step 1 passed"), canary=CostEvidence(40, 0.0002),
    ...           stable=CostEvidence(12, 0.00006), gates=gates, stable_gets_traffic=True).action
    'hold'
    """
    if not has_budget(gates) or verdict.action in ("rollback", "abort"):
        return verdict
    figures = _figures(canary, stable, gates, stable_gets_traffic)
    if isinstance(figures, Breach):
        return replace(verdict, action="rollback", reason=figures.reason)
    if verdict.action == "hold":
        return verdict
    if isinstance(figures, Wait):
        return replace(verdict, action="hold", reason=f"{figures.reason}: holding")
    return replace(verdict, reason=f"{verdict.reason}; {figures}")


@dataclass(frozen=True)
class Breach:
    reason: str


@dataclass(frozen=True)
class Wait:
    reason: str


def _figures(
    canary: CostEvidence | None,
    stable: CostEvidence | None,
    gates: Gates,
    stable_gets_traffic: bool = False,
) -> Breach | Wait | str:
    """A breach of the budget, a wait for stable's evidence, or the figures that passed it."""
    if canary is None:
        return "cost budget not judged: no cost figures for this rollout"
    needed = max(gates.min_requests, 1)
    mine = canary.per_1k_usd()
    if mine is None or canary.requests < needed:
        return f"cost budget not judged yet: {canary.requests} of minRequests {needed} requests"
    text = f"cost ${mine:.4g} per 1,000 requests"
    ceiling = gates.max_cost_per_1k_requests_usd
    if ceiling is not None and mine > ceiling:
        return Breach(
            f"{text} ({canary.requests} requests): over maxCostPer1kRequestsUsd ${ceiling:g}"
        )
    limit = gates.max_cost_ratio
    if limit is None:
        return f"{text} (maxCostPer1kRequestsUsd ${ceiling:g})"
    theirs = stable.per_1k_usd() if stable is not None else None
    if stable is None or theirs is None or stable.requests < needed or theirs <= 0:
        seen = stable.requests if stable is not None else 0
        if stable_gets_traffic:
            return Wait(f"{text}; maxCostRatio waits for stable's evidence: {seen} of "
                        f"{needed} requests")  # fmt: skip
        return f"{text}; maxCostRatio not judged: stable has {seen} of {needed} requests"
    ratio = mine / theirs
    if ratio > limit:
        return Breach(
            f"{text} ({canary.requests} requests) is {ratio:.2f}x stable's ${theirs:.4g} "
            f"({stable.requests} requests): over maxCostRatio {limit:g}"
        )
    return f"{text}, {ratio:.2f}x stable's ${theirs:.4g} (maxCostRatio {limit:g})"
