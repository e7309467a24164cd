"""A canary on a cluster: which revisions are live, with which weights, and what happens next.

The rollout's whole state lives in the resource's ``status.rollout`` (see :class:`RolloutState`),
never in the operator's memory, so an operator that restarts mid-canary reads it back and goes
on at the same step. At every tick :func:`progress` measures the canary and the stable revision
since the current step began, asks :func:`kaip.policy.rollout` for the verdict (the same policy
``kaip up`` uses locally) and returns the new state, the live revisions with their weights, and
the decision to record as an Event.

Commands from ``kaip rollout promote|abort NAME --kubeconfig`` arrive as the annotation
:data:`COMMAND_ANNOTATION` on the resource (JSON: ``id``, ``action`` -- ``promote``,
``promote-full`` or ``abort`` --, the canary ``revision`` it is meant for and ``by``); each id is
acted on once (``status.rollout.lastCommand`` records it) and only for the canary it names, so
a command typed for an earlier canary never moves a later one. The operator never writes
the annotation. ``status.rollout.previous`` keeps the revision stable before the last promotion,
with its spec, for ``kaip rollout undo``.

Analysis checks (``spec.rollout.analysis``: PromQL queries, webhooks) are asked through the
injected ``analyze`` at most every ``intervalSeconds``; their latest answers live in
``status.rollout.canary.checks`` (with ``checkedAt``), so a restarted operator does not ask again
early, and they go to the policy beside the metrics, exactly as ``kaip up`` hands them.

A cost budget (``gates.maxCostPer1kRequestsUsd``, ``maxCostRatio``) is judged by the same pure
:func:`kaip.policy.cost.cost_gate` as ``kaip up``'s, on the same usage basis
(:mod:`kaip.accounting`: requests carry their replica's price for the time it was busy, idle
apart): the busy seconds the metrics source gives for each revision (its runtimes' batch wall
time, from the pods' own metrics) times the hourly price of what one of its replicas reserves
(:func:`cost_evidence`).

``pre-rollout`` webhooks (``analysis.webhooks[].type``) hold a new canary at 0 % (its Deployment
is applied, it gets no traffic by weight) until its pods are ready, then are called once through
the injected ``hooks``: a refusal rolls it back with the hook's answer as the reason
(:func:`kaip.policy.pre_rollout_verdict`, as ``kaip up`` does), all yes starts the first step.
``status.rollout.canary.preRollout: pending`` keeps that across operator restarts.

Pure but for ``measure``, ``analyze`` and ``hooks``, the injected callables that read the
metrics source, ask the checks and call the pre-rollout webhooks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from kaip.accounting import Coefficients, Prices, ReplicaWindow, replica_cost_usd
from kaip.analysis import StepContext
from kaip.errors import MetricsError
from kaip.kube.operator.conditions import rfc3339
from kaip.kube.operator.metrics import RevisionMetrics
from kaip.plan import revision_id
from kaip.policy import (
    CheckResult,
    Evidence,
    not_asked,
    not_ready_verdict,
    pre_rollout_verdict,
    rollout,
)
from kaip.policy.cost import CostEvidence, cost_gate
from kaip.spec import App, Model
from kaip.spec.base import Resources, parse_quantity
from kaip.spec.rollout import Analysis, HookType

Served = Model | App
Measure = Callable[[str, float], RevisionMetrics]
"""(revision, window in seconds) -> what that revision served over the window."""
Analyze = Callable[[Analysis, StepContext], tuple[CheckResult, ...]]
"""Ask every check of the analysis once about the step (see :func:`kaip.analysis.run_checks`)."""
Hooks = Callable[[Analysis, HookType, StepContext], tuple[CheckResult, ...]]
"""Call the analysis's webhooks of one type once (see :func:`kaip.analysis.run_hooks`)."""
COMMAND_ANNOTATION: Final = "kaip.dev/rollout-command"
COMMAND_ACTIONS: Final = ("promote", "promote-full", "abort")
MAX_COMMAND_CHARS: Final = 1024


@dataclass(frozen=True)
class Command:
    """A person's word on the canary, read from :data:`COMMAND_ANNOTATION`."""

    id: str
    action: str
    revision: str
    by: str

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, Any] | None) -> Command | None:
        """The command in the annotations, or None when there is none or it is malformed."""
        raw = (annotations or {}).get(COMMAND_ANNOTATION)
        if not isinstance(raw, str) or len(raw) > MAX_COMMAND_CHARS:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        fields = [data.get(k) for k in ("id", "action", "revision", "by")]
        if not all(isinstance(f, str) and f for f in fields):
            return None
        if data["action"] not in COMMAND_ACTIONS:
            return None
        return cls(*(str(f)[:200] for f in fields))

    def to_annotation(self) -> str:
        return json.dumps(
            {"id": self.id, "action": self.action, "revision": self.revision, "by": self.by}
        )


@dataclass(frozen=True)
class Canary:
    revision: str
    step: int
    step_started_at: datetime
    released_by: str = ""
    """Who released the manual pause of this step (``kaip rollout promote``)."""
    checks: tuple[CheckResult, ...] = ()
    """The analysis checks' latest answers in this step."""
    checked_at: datetime | None = None
    pre_rollout_passed: bool = True
    """False while the ``pre-rollout`` webhooks have not said yes (the canary stays at 0 %)."""


@dataclass(frozen=True)
class RolloutState:
    """What ``status.rollout`` holds: the stable revision (and its spec, to render it again),
    the canary in flight, and the revision last rolled back."""

    stable_revision: str
    stable_spec: Mapping[str, Any]
    canary: Canary | None = None
    rolled_back: str | None = None
    rolled_back_reason: str = ""
    last_command: str = ""
    """The id of the last command acted on (or ignored): each is read once."""
    previous_revision: str | None = None
    previous_spec: Mapping[str, Any] | None = None
    """The revision stable before the last promotion, and its spec: what undo goes back to."""

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "stable": {"revision": self.stable_revision, "spec": dict(self.stable_spec)}
        }
        if self.canary is not None:
            status["canary"] = {
                "revision": self.canary.revision,
                "step": self.canary.step,
                "stepStartedAt": rfc3339(self.canary.step_started_at),
            }
            if self.canary.released_by:
                status["canary"]["releasedBy"] = self.canary.released_by
            if not self.canary.pre_rollout_passed:
                status["canary"]["preRollout"] = "pending"
            if self.canary.checked_at is not None:
                status["canary"]["checks"] = [c.to_dict() for c in self.canary.checks]
                status["canary"]["checkedAt"] = rfc3339(self.canary.checked_at)
        if self.last_command:
            status["lastCommand"] = self.last_command
        if self.previous_revision is not None and self.previous_spec is not None:
            status["previous"] = {
                "revision": self.previous_revision,
                "spec": dict(self.previous_spec),
            }
        if self.rolled_back is not None:
            status["rolledBack"] = {
                "revision": self.rolled_back,
                "reason": self.rolled_back_reason,
            }
        return status

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> RolloutState | None:
        """The state saved in ``status.rollout``, or None if there is none (or it is unusable)."""
        if not status:
            return None
        try:
            stable = status["stable"]
            canary = status.get("canary")
            rolled = status.get("rolledBack") or {}
            previous = status.get("previous") or {}
            return cls(
                stable_revision=str(stable["revision"]),
                stable_spec=dict(stable["spec"]),
                canary=None
                if not canary
                else Canary(
                    revision=str(canary["revision"]),
                    step=int(canary["step"]),
                    step_started_at=_time(canary["stepStartedAt"]),
                    released_by=str(canary.get("releasedBy", "")),
                    checks=_checks(canary.get("checks")),
                    checked_at=_time(canary["checkedAt"]) if canary.get("checkedAt") else None,
                    pre_rollout_passed=canary.get("preRollout") != "pending",
                ),
                rolled_back=str(rolled["revision"]) if rolled.get("revision") else None,
                rolled_back_reason=str(rolled.get("reason", "")),
                last_command=str(status.get("lastCommand", "")),
                previous_revision=str(previous["revision"]) if previous.get("revision") else None,
                previous_spec=dict(previous["spec"]) if previous.get("spec") else None,
            )
        except (KeyError, TypeError, ValueError):
            return None


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _checks(saved: Any) -> tuple[CheckResult, ...]:
    if not isinstance(saved, list):
        return ()
    read = (CheckResult.from_dict(c) for c in saved if isinstance(c, Mapping))
    return tuple(c for c in read if c is not None)


@dataclass(frozen=True)
class Decision:
    """A move of the rollout worth an Event: ``action`` is the policy's verdict."""

    action: str
    reason: str
    revision: str
    evidence: Mapping[str, Any]

    @property
    def event_reason(self) -> str:
        return {
            "start": "CanaryStarted",
            "pre-rollout": "PreRolloutPassed",
            "advance": "CanaryAdvanced",
            "promote": "CanaryPromoted",
            "rollback": "CanaryRolledBack",
            "abort": "CanaryAborted",
            "replace": "RevisionReplaced",
            "register": "VersionRegistered",
            "refuse": "VersionRefused",
        }.get(self.action, "CanaryHeld")

    @property
    def warning(self) -> bool:
        return self.action in ("rollback", "abort", "refuse")

    def to_status(self, now: datetime) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "revision": self.revision,
            "at": rfc3339(now),
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class Progress:
    """The outcome of one tick."""

    state: RolloutState
    live: tuple[tuple[str, int], ...]
    """Each live revision (``"stable"`` or ``"canary"``) and its weight."""
    decision: Decision | None
    summary: str | None
    """While a canary runs, where it stands (for the Progressing condition)."""


def _spec(resource: Served) -> dict[str, Any]:
    dumped: dict[str, Any] = resource.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dict(dumped["spec"])


def _evidence(metrics: RevisionMetrics) -> Evidence:
    # Prometheus answers with the p99 itself; one latency equal to it has the same p99.
    latencies = () if metrics.p99_latency_ms is None else (metrics.p99_latency_ms,)
    return Evidence(
        round(metrics.requests),
        round(metrics.errors),
        latencies,
        metrics.ttft_p95_ms,
        metrics.tpot_p95_ms,
    )


def cost_evidence(
    metrics: RevisionMetrics, resources: Resources, prices: Prices = Prices()
) -> CostEvidence | None:
    """What a revision's requests cost over the window, or None without busy-time figures.

    The usage basis of :mod:`kaip.accounting` (as ``kaip up``): a replica's price for the time
    it was busy, here the runtimes' busy seconds ``B`` summed over the revision's pods, times
    what one replica reserves (requests equal limits): ``B / 3600 x (CPU $/core-h x cores +
    RAM $/GB-h x GB + GPU $/h x GPUs)``, OpenCost's default prices. Idle time is not charged.

    >>> m = RevisionMetrics(requests=400, errors=0, p99_latency_ms=None, busy_seconds=36.0)
    >>> e = cost_evidence(m, Resources(cpu="2", memory="1G"))
    >>> e.requests, round(e.cost_usd * 1e6, 2)  # 36 s x (2 x 0.031611 + 1 x 0.004237) / 3600
    (400, 674.59)
    """
    if metrics.busy_seconds is None:
        return None
    busy = max(metrics.busy_seconds, 0.0)
    window = ReplicaWindow(
        resource="", revision="", owner="", replica="", seconds=busy, cpu_seconds=0.0,
        busy_seconds=busy, requests=round(metrics.requests),
        memory_gb=parse_quantity(resources.memory) / 1e9, vcpus=parse_quantity(resources.cpu),
        gpus=float(resources.gpu),
    )  # fmt: skip
    return CostEvidence(round(metrics.requests), replica_cost_usd(window, Coefficients(prices)))


def _resources(spec: Mapping[str, Any]) -> Resources:
    """The resources a saved spec (``status.rollout.stable.spec``) asks for; the defaults when
    it names none (or none readable)."""
    try:
        return Resources.model_validate(spec.get("resources") or {})
    except ValueError:
        return Resources()


def progress(
    state: RolloutState | None,
    desired: Served,
    now: datetime,
    measure: Measure,
    command: Command | None = None,
    analyze: Analyze | None = None,
    namespace: str = "",
    prices: Prices = Prices(),
    hooks: Hooks | None = None,
    canary_ready: bool = False,
) -> Progress:
    """One tick of the rollout towards ``desired`` (the resource as its spec says now).

    ``command`` is the person's word from the resource's annotation, if any (see the module);
    ``analyze`` asks the analysis checks (none asked without it: they stay pending); ``prices``
    price a cost budget (:func:`cost_evidence`); ``hooks`` calls the pre-rollout webhooks once
    ``canary_ready`` (the canary's pods were all ready at the last look) -- without it a canary
    that has some waits at 0 %.
    """
    revision = revision_id(desired)
    rollout_spec = desired.spec.rollout
    if state is None:
        fresh = RolloutState(revision, _spec(desired))
        return Progress(fresh, (("stable", 100),), None, None)
    if revision == state.stable_revision:
        return Progress(replace(state, canary=None), (("stable", 100),), None, None)
    if revision == state.rolled_back:
        return Progress(state, (("stable", 100),), None, None)
    if rollout_spec.strategy == "replace":
        replaced = RolloutState(revision, _spec(desired))
        decision = Decision("replace", "strategy replace: no canary", revision, {})
        return Progress(replaced, (("stable", 100),), decision, None)
    steps = rollout_spec.steps
    if state.canary is None or state.canary.revision != revision:
        analysis = rollout_spec.analysis
        if analysis is not None and analysis.hooks("pre-rollout"):
            gated = replace(state, canary=Canary(revision, 0, now, pre_rollout_passed=False))
            reason = f"canary {revision} at 0% until the pre-rollout webhooks pass"
            decision = Decision("start", reason, revision, {"step": 0})
            return Progress(gated, _weights(0), decision, _summary(gated, steps))
        started = replace(state, canary=Canary(revision, 0, now))
        decision = Decision(
            "start", f"canary {revision} at {steps[0].weight}%", revision, {"step": 1}
        )
        return Progress(started, _weights(steps[0].weight), decision, _summary(started, steps))
    if command is not None and command.id != state.last_command:
        state, ordered = _obey(replace(state, last_command=command.id), desired, command)
        if ordered is not None:
            return ordered
    canary = state.canary
    assert canary is not None
    if not canary.pre_rollout_passed:
        return _pre_rollout(state, desired, now, hooks, canary_ready, namespace)
    seconds = max(0.0, (now - canary.step_started_at).total_seconds())
    window = max(1.0, seconds)
    try:
        canary_numbers = measure(canary.revision, window)
        stable_numbers = measure(state.stable_revision, window)
    except MetricsError as exc:
        weight = steps[canary.step].weight
        reason = f"holding at {weight}%: {exc.message}"
        held = Decision("hold", reason, revision, {})
        return Progress(state, _weights(weight), held, _summary(state, steps))
    state, checks = _analysis(state, desired, now, analyze, namespace)
    canary = state.canary
    assert canary is not None
    verdict = rollout(
        step_index=canary.step,
        steps=steps,
        seconds_in_step=seconds,
        canary=_evidence(canary_numbers),
        stable=_evidence(stable_numbers),
        gates=rollout_spec.gates,
        slo=desired.spec.slo if isinstance(desired, Model) else None,
        progress_deadline_seconds=rollout_spec.progress_deadline_seconds,
        on_no_evidence=rollout_spec.no_evidence,
        released_by=canary.released_by,
        checks=checks,
    )
    # Without busy-time figures (an App, a source without them) a budget is said to be not
    # judged, never ignored.
    verdict = cost_gate(
        verdict,
        canary=cost_evidence(canary_numbers, desired.spec.resources, prices),
        stable=cost_evidence(stable_numbers, _resources(state.stable_spec), prices),
        gates=rollout_spec.gates,
    )
    evidence: dict[str, Any] = {
        "step": canary.step + 1,
        "secondsInStep": round(seconds),
        "canary": canary_numbers.to_status(),
        "stable": stable_numbers.to_status(),
    }
    if checks:
        evidence["checks"] = [c.to_dict() for c in checks]
    decision = Decision(verdict.action, verdict.reason, revision, evidence)
    if verdict.action == "hold":
        return Progress(
            state, _weights(steps[canary.step].weight), decision, _summary(state, steps)
        )
    if verdict.action == "advance":
        moved = replace(state, canary=Canary(revision, canary.step + 1, now))
        return Progress(
            moved, _weights(steps[canary.step + 1].weight), decision, _summary(moved, steps)
        )
    if verdict.action == "promote":
        return Progress(_promoted(state, desired, revision), (("stable", 100),), decision, None)
    # rollback or abort: either way the new revision is not tried again until the spec changes
    why = verdict.reason if verdict.action == "rollback" else f"aborted: {verdict.reason}"
    rolled = replace(state, canary=None, rolled_back=revision, rolled_back_reason=why)
    return Progress(rolled, (("stable", 100),), decision, None)


def _pre_rollout(
    state: RolloutState,
    desired: Served,
    now: datetime,
    hooks: Hooks | None,
    canary_ready: bool,
    namespace: str,
) -> Progress:
    """The canary at 0 % waits for its pods, then for the pre-rollout webhooks' answers."""
    canary, rollout_spec = state.canary, desired.spec.rollout
    assert canary is not None and rollout_spec.analysis is not None
    steps, revision = rollout_spec.steps, canary.revision
    waited = max(0.0, (now - canary.step_started_at).total_seconds())
    if not canary_ready or hooks is None:
        late = not_ready_verdict(waited, rollout_spec.progress_deadline_seconds)
        if late is not None:
            reason = f"aborted: {late.reason}"
            rolled = replace(state, canary=None, rolled_back=revision, rolled_back_reason=reason)
            decision = Decision("abort", late.reason, revision, {"step": 0})
            return Progress(rolled, (("stable", 100),), decision, None)
        reason = "waiting for the new revision to be ready before the pre-rollout webhooks"
        held = Decision("hold", reason, revision, {"step": 0})
        return Progress(state, _weights(0), held, _summary(state, steps))
    context = StepContext(
        desired.kind, desired.metadata.name, namespace, revision, state.stable_revision,
        0, len(steps), 0, target="kubernetes",
    )  # fmt: skip
    results = hooks(rollout_spec.analysis, "pre-rollout", context)
    evidence = {"step": 0, "checks": [c.to_dict() for c in results]}
    verdict = pre_rollout_verdict(results)
    if verdict is not None:
        rolled = replace(
            state, canary=None, rolled_back=revision, rolled_back_reason=verdict.reason
        )
        decision = Decision("rollback", verdict.reason, revision, evidence)
        return Progress(rolled, (("stable", 100),), decision, None)
    started = replace(state, canary=Canary(revision, 0, now))
    said = "; ".join(c.describe() for c in results)
    reason = f"pre-rollout passed ({said}): canary {revision} at {steps[0].weight}%"
    decision = Decision("pre-rollout", reason, revision, {**evidence, "step": 1})
    return Progress(started, _weights(steps[0].weight), decision, _summary(started, steps))


def _analysis(
    state: RolloutState, desired: Served, now: datetime, analyze: Analyze | None, namespace: str
) -> tuple[RolloutState, tuple[CheckResult, ...]]:
    """The checks' answers for this tick, asking them again when ``intervalSeconds`` is up."""
    analysis = desired.spec.rollout.analysis
    canary = state.canary
    assert canary is not None
    if analysis is None or not analysis.judges_steps:
        return state, ()
    asked = canary.checked_at
    due = asked is None or (now - asked).total_seconds() >= analysis.interval_seconds
    if not due or analyze is None:
        return state, canary.checks or not_asked(analysis)
    steps = desired.spec.rollout.steps
    context = StepContext(
        desired.kind, desired.metadata.name, namespace, canary.revision, state.stable_revision,
        canary.step + 1, len(steps), steps[canary.step].weight, target="kubernetes",
    )  # fmt: skip
    answers = analyze(analysis, context)
    return replace(state, canary=replace(canary, checks=answers, checked_at=now)), answers


def _promoted(state: RolloutState, desired: Served, revision: str) -> RolloutState:
    return RolloutState(
        revision,
        _spec(desired),
        last_command=state.last_command,
        previous_revision=state.stable_revision,
        previous_spec=state.stable_spec,
    )


def _obey(
    state: RolloutState, desired: Served, command: Command
) -> tuple[RolloutState, Progress | None]:
    """Act on ``command``: the state to go on with, and a Progress when it ends the tick.

    A command for another canary is ignored (it was typed before this one started). Promote at
    a manual pause releases it (the policy then passes the step, as locally); anywhere else, or
    as ``promote-full``, it promotes at once. Abort ends the canary as the policy's abort does.
    """
    canary = state.canary
    assert canary is not None
    if command.revision != canary.revision:
        return state, None
    revision = canary.revision
    steps = desired.spec.rollout.steps
    step = steps[min(canary.step, len(steps) - 1)]
    evidence = {"step": canary.step + 1, "by": command.by}
    if command.action == "abort":
        reason = f"aborted by {command.by}"
        rolled = replace(state, canary=None, rolled_back=revision, rolled_back_reason=reason)
        return rolled, Progress(
            rolled, (("stable", 100),), Decision("abort", reason, revision, evidence), None
        )
    if command.action == "promote" and step.pause is not None:
        return replace(state, canary=replace(canary, released_by=command.by)), None
    promoted = _promoted(state, desired, revision)
    decision = Decision("promote", f"promoted by {command.by}", revision, evidence)
    return promoted, Progress(promoted, (("stable", 100),), decision, None)


def _weights(canary_weight: int) -> tuple[tuple[str, int], ...]:
    return (("stable", 100 - canary_weight), ("canary", canary_weight))


def _summary(state: RolloutState, steps: Any) -> str:
    assert state.canary is not None
    step = state.canary.step
    return (
        f"canary {state.canary.revision} at step {step + 1}/{len(steps)} "
        f"({steps[step].weight}% of traffic), stable {state.stable_revision}"
    )
