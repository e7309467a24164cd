"""The rollout decision: advance, hold, promote, roll back or abort a canary (pure).

At every tick of a rollout the controller hands :func:`rollout` where the rollout stands (step
index, when that step began) and what the gateway observed for the canary and for the stable
revision since the step began, and gets back a :class:`Verdict` with a reason a person can read.
Nothing here reads a clock or does I/O.

The rules, in order:

1. **Broken canary, early.** Before ``minRequests`` is reached, if the canary's errors already
   exceed what ``maxErrorRate`` allows over ``minRequests`` requests (so the gate is lost even if
   every remaining request succeeds) and there are at least :data:`EARLY_ROLLBACK_MIN_ERRORS` of
   them, roll back now: a revision that fails every request should not wait for more traffic.
2. **Gates.** Once the canary has ``minRequests`` requests: roll back when its error rate
   exceeds ``maxErrorRate`` or its p99 latency exceeds ``maxP99LatencyMs``; for generative
   models, when its p95 time to first token or per output token (from the replicas' GenAI
   histograms) exceeds ``maxP95TimeToFirstTokenMs`` / ``maxP95TimePerOutputTokenMs``, or that
   multiple of stable's p95 (``maxTimeToFirstTokenRatio`` / ``maxTimePerOutputTokenRatio``,
   judged while stable has a p95 of its own). A GenAI gate with no p95 for the canary yet holds
   the step, as missing evidence does (rule 6).
3. **SLO, relative to stable.** Roll back when the canary breaks the SLO (``availability`` as a
   maximum error rate ``1 - availability``, ``p99LatencyMs``) while the stable revision, with
   at least ``minRequests`` requests of its own, meets it: the canary made things worse, not the
   machine. Without such a baseline the gates alone decide.
4. **Analysis checks.** A failed check (a PromQL query out of its bounds, a webhook voting
   no: see :mod:`kaip.policy.checks`) rolls back, with the check's evidence as the reason.
5. **Manual pause.** A step with ``pause: {}`` holds, with no deadline, until someone runs
   ``kaip rollout promote`` (``released_by``); then it passes without waiting for more
   evidence: a person has looked. Rules 1 to 4 still roll back a canary that fails meanwhile.
6. **Evidence and pause.** Hold until the step's ``pauseSeconds`` has passed, the canary has
   ``minRequests`` requests in this step and no check is pending. With
   ``progressDeadlineSeconds``, a step still short of evidence that long after its pause ended
   is settled by ``onNoEvidence``: ``abort`` (the default: the rollout ends, stable keeps all
   traffic) or ``promote`` (the step passes as if it had its evidence). Failing gates and
   checks always win over the deadline.
7. **Progress.** Then advance to the next step, or promote after the last one.

A new revision that is not ready ``progressDeadlineSeconds`` after the rollout began is
aborted too (:func:`not_ready_verdict`), and one a ``pre-rollout`` webhook refuses is rolled back
before it gets any traffic (:func:`pre_rollout_verdict`).

Worked example (steps 10% / 50% / 100%, ``pauseSeconds: 10``, ``maxErrorRate: 0.01``,
``minRequests: 20``)::

    step 0, 4 s in,  canary 12 req / 0 err       -> hold (pausing 4s of 10s)
    step 0, 11 s in, canary 25 req / 0 err       -> advance to step 1 (50%)
    step 2, 11 s in, canary 240 req / 1 err      -> promote (0.4% <= 1%)
    step 0, 2 s in,  canary 3 req / 3 err        -> rollback (3 errors > 0.2 allowed in 20)
    step 0, 75 s in, canary 0 req, deadline 60 s -> abort (0 of minRequests 20 by the deadline)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from kaip.policy.checks import CheckResult, first
from kaip.spec.base import SLO
from kaip.spec.rollout import Gates, RolloutStep

Action = Literal["advance", "hold", "promote", "rollback", "abort"]
"""``rollback``: the new revision failed a gate. ``abort``: it ran out of time (or a person
stopped it) without failing one."""
NoEvidence = Literal["abort", "promote"]

EARLY_ROLLBACK_MIN_ERRORS = 3
"""Errors needed before the early rule may roll back: one failed request is not yet a pattern."""


@dataclass(frozen=True)
class Evidence:
    """Requests, errors and latencies observed for one revision over some window.

    The gateway's per-revision stats convert into this; :meth:`plus` accumulates windows.
    """

    requests: int = 0
    errors: int = 0
    latencies_ms: tuple[float, ...] = field(default=(), repr=False)
    ttft_p95_ms: float | None = None
    """p95 time to the first output token over the window (the GenAI histograms); None: none
    observed (or not asked: no gate needs it)."""
    tpot_p95_ms: float | None = None
    """p95 time per output token after the first, likewise."""

    def plus(self, other: Evidence, keep_latencies: int = 20_000) -> Evidence:
        """Both windows' counts and latencies; a p95 cannot be added, so ``other``'s (the later
        window's, where it has one) is kept."""
        latencies = (self.latencies_ms + other.latencies_ms)[-keep_latencies:]
        return Evidence(
            self.requests + other.requests,
            self.errors + other.errors,
            latencies,
            self.ttft_p95_ms if other.ttft_p95_ms is None else other.ttft_p95_ms,
            self.tpot_p95_ms if other.tpot_p95_ms is None else other.tpot_p95_ms,
        )

    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def p99_ms(self) -> float | None:
        """The 99th percentile latency (nearest rank), or None with no latency observed."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        rank = max(1, math.ceil(0.99 * len(ordered)))
        return ordered[rank - 1]


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    checks: tuple[CheckResult, ...] = field(default=(), compare=False, repr=False)
    """The analysis checks' results this verdict was reached with (evidence for the record)."""


def not_ready_verdict(
    seconds_waiting: float, progress_deadline_seconds: float | None
) -> Verdict | None:
    """Abort a new revision still not ready at the progress deadline; None while it may wait.

    >>> not_ready_verdict(30, 600) is None
    True
    >>> not_ready_verdict(601, 600).reason
    'the new revision was not ready within progressDeadlineSeconds 600'
    """
    if progress_deadline_seconds is None or seconds_waiting < progress_deadline_seconds:
        return None
    return Verdict(
        "abort",
        f"the new revision was not ready within progressDeadlineSeconds "
        f"{progress_deadline_seconds:g}",
    )


def pre_rollout_verdict(results: Sequence[CheckResult]) -> Verdict | None:
    """Roll back a new revision a ``pre-rollout`` webhook refused; None: its traffic may start.

    >>> from kaip.policy.checks import CheckResult
    >>> pre_rollout_verdict([CheckResult("webhook smoke", "pass", "HTTP 200")]) is None
    True
    >>> pre_rollout_verdict([CheckResult("webhook smoke", "fail", "HTTP 500: no")]).reason
    'pre-rollout webhook smoke: HTTP 500: no'
    """
    results = tuple(results)
    failed = first(results, "fail")
    if failed is None:
        return None
    return Verdict("rollback", f"pre-rollout {failed.describe()}", results)


def rollout(
    *,
    step_index: int,
    steps: Sequence[RolloutStep],
    seconds_in_step: float,
    canary: Evidence,
    stable: Evidence,
    gates: Gates,
    slo: SLO | None = None,
    progress_deadline_seconds: float | None = None,
    on_no_evidence: NoEvidence = "abort",
    released_by: str = "",
    checks: Sequence[CheckResult] = (),
) -> Verdict:
    """Decide the next move of a canary rollout at ``steps[step_index]``.

    ``released_by`` names who promoted the rollout while this step waits at a manual pause;
    ``checks`` are the latest results of this step's analysis checks (queries, webhooks).

    >>> from kaip.spec.rollout import Gates, RolloutStep
    >>> steps = [RolloutStep(weight=10, pause_seconds=10), RolloutStep(weight=50,
    ...          pause_seconds=10), RolloutStep(weight=100, pause_seconds=10)]
    >>> gates = Gates(max_error_rate=0.01, min_requests=20)
    >>> rollout(step_index=0, steps=steps, seconds_in_step=4, canary=Evidence(12, 0),
    ...         stable=Evidence(100, 0), gates=gates).reason
    'pausing: 4s of 10s at 10%'
    >>> rollout(step_index=0, steps=steps, seconds_in_step=11, canary=Evidence(25, 0),
    ...         stable=Evidence(200, 0), gates=gates)
    Verdict(action='advance', reason='step 1 passed (25 requests, 0.0% errors): on to 50%')
    >>> rollout(step_index=2, steps=steps, seconds_in_step=11, canary=Evidence(240, 1),
    ...         stable=Evidence(0, 0), gates=gates).action
    'promote'
    >>> v = rollout(step_index=0, steps=steps, seconds_in_step=2, canary=Evidence(3, 3),
    ...             stable=Evidence(30, 0), gates=gates)
    >>> v.action, v.reason[:50]
    ('rollback', '3 of 3 requests failed: more than maxErrorRate 1% ')
    >>> rollout(step_index=0, steps=steps, seconds_in_step=75, canary=Evidence(0, 0),
    ...         stable=Evidence(0, 0), gates=gates, progress_deadline_seconds=60).reason
    'no evidence by progressDeadlineSeconds 60 at 10%: 0 of minRequests 20'
    >>> from kaip.spec.rollout import ManualPause
    >>> paused = [RolloutStep(weight=10, pause=ManualPause()), RolloutStep(weight=100)]
    >>> rollout(step_index=0, steps=paused, seconds_in_step=9000, canary=Evidence(0, 0),
    ...         stable=Evidence(0, 0), gates=gates, progress_deadline_seconds=60).reason
    'paused at 10%: waiting for `kaip rollout promote` (0 requests, 0.0% errors)'
    >>> rollout(step_index=0, steps=paused, seconds_in_step=5, canary=Evidence(0, 0),
    ...         stable=Evidence(0, 0), gates=gates, released_by="ann").reason
    'step 1 passed (released by ann at a manual pause; 0 requests, 0.0% errors): on to 100%'
    """
    checks = tuple(checks)

    def judged(action: Action, reason: str) -> Verdict:
        return Verdict(action, reason, checks)

    step = steps[step_index]
    rate = canary.error_rate()
    if canary.requests < gates.min_requests:
        allowed = gates.max_error_rate * gates.min_requests
        if canary.errors > allowed and canary.errors >= EARLY_ROLLBACK_MIN_ERRORS:
            return judged(
                "rollback",
                f"{canary.errors} of {canary.requests} requests failed: more than maxErrorRate "
                f"{gates.max_error_rate:.0%} of minRequests {gates.min_requests} allows",
            )
    else:
        if rate > gates.max_error_rate:
            return judged(
                "rollback",
                f"error rate {rate:.1%} over {canary.requests} requests exceeds maxErrorRate "
                f"{gates.max_error_rate:.1%}",
            )
        p99 = canary.p99_ms()
        limit = gates.max_p99_latency_ms
        if limit is not None and p99 is not None and p99 > limit:
            return judged("rollback", f"p99 latency {p99:.1f} ms exceeds maxP99LatencyMs {limit:g}")
        breach = _slo_breach(canary, stable, gates.min_requests, slo) or _genai_breach(
            canary, stable, gates
        )
        if breach:
            return judged("rollback", breach)
    failed = first(checks, "fail")
    if failed is not None:
        return judged("rollback", failed.describe())

    summary = f"{canary.requests} requests, {rate:.1%} errors" + _genai_summary(canary, gates)
    if checks and not first(checks, "pending"):
        summary += "; " + "; ".join(c.describe() for c in checks)
    if step.pause is not None:
        if not released_by:
            return judged(
                "hold", f"paused at {step.weight}%: waiting for `kaip rollout promote` ({summary})"
            )
        released = f"released by {released_by} at a manual pause; {summary}"
        return _passed(step_index, steps, released, checks)
    if seconds_in_step < step.pause_seconds:
        return judged(
            "hold",
            f"pausing: {seconds_in_step:.0f}s of {step.pause_seconds:g}s at {step.weight}%",
        )
    pending = first(checks, "pending")
    unmeasured = _genai_missing(canary, gates)
    if canary.requests < gates.min_requests or pending is not None or unmeasured:
        missing = f"{canary.requests} of minRequests {gates.min_requests}"
        if canary.requests >= gates.min_requests:
            missing = pending.describe() if pending is not None else unmeasured
        waited = seconds_in_step - step.pause_seconds
        if progress_deadline_seconds is not None and waited >= progress_deadline_seconds:
            late = (
                f"no evidence by progressDeadlineSeconds {progress_deadline_seconds:g} at "
                f"{step.weight}%: {missing}"
            )
            if on_no_evidence == "abort":
                return judged("abort", late)
            summary = f"{late}, passed by onNoEvidence: promote"
        else:
            return judged("hold", f"waiting for evidence: {missing} at {step.weight}%")
    return _passed(step_index, steps, summary, checks)


def _passed(
    step_index: int, steps: Sequence[RolloutStep], summary: str, checks: tuple[CheckResult, ...]
) -> Verdict:
    """The step passed: on to the next one, or promoted after the last."""
    if step_index + 1 < len(steps):
        return Verdict(
            "advance",
            f"step {step_index + 1} passed ({summary}): on to {steps[step_index + 1].weight}%",
            checks,
        )
    return Verdict("promote", f"all {len(steps)} steps passed ({summary})", checks)


def _slo_breach(canary: Evidence, stable: Evidence, min_requests: int, slo: SLO | None) -> str:
    """Why the canary breaks the SLO while stable meets it, or "" if it does not."""
    if slo is None or stable.requests < max(min_requests, 1):
        return ""  # no baseline to compare with: the gates alone decide
    if slo.availability is not None:
        budget = 1.0 - slo.availability
        if canary.error_rate() > budget >= stable.error_rate():
            return (
                f"error rate {canary.error_rate():.2%} breaks the availability SLO "
                f"{slo.availability:g} while stable is at {stable.error_rate():.2%}"
            )
    canary_p99, stable_p99 = canary.p99_ms(), stable.p99_ms()
    if slo.p99_latency_ms is not None and canary_p99 is not None:
        stable_meets = stable_p99 is None or stable_p99 <= slo.p99_latency_ms
        if canary_p99 > slo.p99_latency_ms and stable_meets:
            return (
                f"p99 latency {canary_p99:.1f} ms breaks the SLO {slo.p99_latency_ms:g} ms "
                f"while stable is at {_ms(stable_p99)}"
            )
    return ""


GENAI_GATES = (
    ("time to first token", "ttft_p95_ms", "maxP95TimeToFirstTokenMs", "maxTimeToFirstTokenRatio"),
    ("time per output token", "tpot_p95_ms", "maxP95TimePerOutputTokenMs",
     "maxTimePerOutputTokenRatio"),
)  # fmt: skip
"""Each GenAI gate: what it measures, the Evidence field, its absolute and its ratio gate."""


def _genai_limits(gates: Gates) -> tuple[tuple[float | None, float | None], ...]:
    return (
        (gates.max_p95_time_to_first_token_ms, gates.max_time_to_first_token_ratio),
        (gates.max_p95_time_per_output_token_ms, gates.max_time_per_output_token_ratio),
    )


def _genai_breach(canary: Evidence, stable: Evidence, gates: Gates) -> str:
    """Which GenAI gate the canary fails, with its evidence, or "" if none.

    Absolute: its p95 above the limit. Ratio: its p95 above that multiple of stable's, judged
    only while stable has a p95 of its own in the window (no baseline: the ratio waits).
    """
    for (what, attr, absolute, ratio), (limit, multiple) in zip(
        GENAI_GATES, _genai_limits(gates), strict=True
    ):
        mine, theirs = getattr(canary, attr), getattr(stable, attr)
        if mine is None:
            continue
        if limit is not None and mine > limit:
            return f"p95 {what} {mine:.1f} ms exceeds {absolute} {limit:g}"
        if multiple is not None and theirs is not None and theirs > 0 and mine > multiple * theirs:
            return (
                f"p95 {what} {mine:.1f} ms is {mine / theirs:.2f}x stable's {theirs:.1f} ms: "
                f"over {ratio} {multiple:g}"
            )
    return ""


def _genai_summary(canary: Evidence, gates: Gates) -> str:
    """The canary's GenAI p95s for a passing step's reason, when a GenAI gate judged them."""
    said = ""
    for (what, attr, _, _), limits in zip(GENAI_GATES, _genai_limits(gates), strict=True):
        value = getattr(canary, attr)
        if value is not None and limits != (None, None):
            said += f", p95 {what} {value:.1f} ms"
    return said


def _genai_missing(canary: Evidence, gates: Gates) -> str:
    """Why a GenAI gate cannot be judged yet (the canary has no p95 for it), or ""."""
    for (what, attr, absolute, ratio), (limit, multiple) in zip(
        GENAI_GATES, _genai_limits(gates), strict=True
    ):
        if getattr(canary, attr) is None and (limit is not None or multiple is not None):
            gate = absolute if limit is not None else ratio
            return f"no {what} observed yet for {gate}"
    return ""


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
