"""The operator's canary: state saved in status, weights per step, the policy's verdicts."""

import doctest
from datetime import UTC, datetime, timedelta

import kaip.kube.operator.canary
from kaip.errors import MetricsError
from kaip.kube.operator.canary import (
    COMMAND_ANNOTATION,
    Command,
    Decision,
    RolloutState,
    Served,
    cost_evidence,
    progress,
)
from kaip.kube.operator.metrics import RevisionMetrics, StaticMetrics
from kaip.plan import revision_id
from kaip.spec import Model, load_text
from kaip.spec.base import Resources

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SPEC = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: digits, namespace: ml}
spec:
  owner: ml
  artifact: {uri: https://example.com/m.onnx, format: onnx}
  rollout:
    steps: [{weight: 10, pauseSeconds: 10}, {weight: 50, pauseSeconds: 10}]
    gates: {maxErrorRate: 0.05, minRequests: 20}
"""


def model(batch: int = 64) -> Served:
    text = SPEC + f"  serve: {{batching: {{maxBatchSize: {batch}}}}}\n"
    resource = load_text(text).documents[0].resource
    assert isinstance(resource, Model)
    return resource


def measure(metrics: StaticMetrics):  # type: ignore[no-untyped-def]
    return lambda revision, window: metrics.revision_metrics("ml", "digits", revision, window)


def healthy() -> RevisionMetrics:
    return RevisionMetrics(100, 0, 20.0)


def test_the_first_revision_is_stable_at_once() -> None:
    first = progress(None, model(), T0, measure(StaticMetrics()))
    assert first.live == (("stable", 100),)
    assert first.state.stable_revision == revision_id(model())
    assert first.decision is None


def test_a_healthy_canary_walks_the_steps_and_is_promoted() -> None:
    old, new = model(), model(batch=8)
    metrics = StaticMetrics({revision_id(new): healthy(), revision_id(old): healthy()})
    state = progress(None, old, T0, measure(metrics)).state
    seen = []
    now = T0
    for _ in range(6):
        moved = progress(state, new, now, measure(metrics))
        seen.append((moved.decision.action if moved.decision else None, moved.live))
        state = moved.state
        now += timedelta(seconds=6)
    assert seen == [
        ("start", (("stable", 90), ("canary", 10))),
        ("hold", (("stable", 90), ("canary", 10))),
        ("advance", (("stable", 50), ("canary", 50))),
        ("hold", (("stable", 50), ("canary", 50))),
        ("promote", (("stable", 100),)),
        (None, (("stable", 100),)),
    ]
    assert state.stable_revision == revision_id(new)
    assert state.canary is None


def test_a_failing_canary_is_rolled_back_and_stays_rolled_back() -> None:
    old, new = model(), model(batch=8)
    metrics = StaticMetrics({revision_id(new): RevisionMetrics(50, 25, 20.0)})
    state = progress(None, old, T0, measure(metrics)).state
    state = progress(state, new, T0, measure(metrics)).state
    moved = progress(state, new, T0 + timedelta(seconds=3), measure(metrics))
    assert moved.decision is not None and moved.decision.action == "rollback"
    assert moved.decision.event_reason == "CanaryRolledBack"
    assert moved.decision.evidence["canary"] == {"requests": 50, "errors": 25, "errorRate": 0.5,
                                                 "p99LatencyMs": 20.0}  # fmt: skip
    assert moved.live == (("stable", 100),)
    again = progress(moved.state, new, T0 + timedelta(minutes=5), measure(metrics))
    assert again.live == (("stable", 100),) and again.decision is None
    assert again.state.rolled_back == revision_id(new)


def test_state_read_back_from_status_resumes_at_the_same_step() -> None:
    old, new = model(), model(batch=8)
    metrics = StaticMetrics({revision_id(new): healthy(), revision_id(old): healthy()})
    state = progress(None, old, T0, measure(metrics)).state
    state = progress(state, new, T0, measure(metrics)).state
    state = progress(state, new, T0 + timedelta(seconds=11), measure(metrics)).state
    saved = state.to_status()
    resumed = RolloutState.from_status(saved)
    assert resumed == state
    assert resumed is not None and resumed.canary is not None and resumed.canary.step == 1
    after = progress(resumed, new, T0 + timedelta(seconds=15), measure(metrics))
    assert after.decision is not None and after.decision.action == "hold"
    assert after.live == (("stable", 50), ("canary", 50))


def test_unavailable_metrics_hold_the_canary_where_it_is() -> None:
    class Broken:
        def revision_metrics(
            self, namespace: str, name: str, revision: str, window_seconds: float
        ) -> RevisionMetrics:
            raise MetricsError("cannot reach Prometheus at http://p:9090")

    old, new = model(), model(batch=8)
    state = progress(None, old, T0, measure(StaticMetrics())).state
    state = progress(state, new, T0, measure(StaticMetrics())).state
    broken = Broken()
    moved = progress(
        state, new, T0 + timedelta(minutes=1), lambda r, w: broken.revision_metrics("ml", "d", r, w)
    )
    assert moved.decision is not None and moved.decision.action == "hold"
    assert "cannot reach Prometheus" in moved.decision.reason
    assert moved.state == state


def test_reverting_the_spec_drops_the_canary() -> None:
    old, new = model(), model(batch=8)
    state = progress(None, old, T0, measure(StaticMetrics())).state
    state = progress(state, new, T0, measure(StaticMetrics())).state
    back = progress(state, old, T0 + timedelta(seconds=1), measure(StaticMetrics()))
    assert back.live == (("stable", 100),) and back.state.canary is None


def test_unusable_saved_state_is_ignored() -> None:
    assert RolloutState.from_status({"stable": {"revision": "x"}}) is None
    assert RolloutState.from_status(None) is None


def test_a_canary_without_traffic_is_aborted_at_its_progress_deadline() -> None:
    def with_deadline(batch: int) -> Served:
        text = SPEC.replace("    gates:", "    progressDeadlineSeconds: 60\n    gates:")
        resource = load_text(text + f"  serve: {{batching: {{maxBatchSize: {batch}}}}}\n")
        served = resource.documents[0].resource
        assert isinstance(served, Model) and served.spec.rollout.progress_deadline_seconds == 60
        return served

    old, new = with_deadline(64), with_deadline(8)
    metrics = StaticMetrics({revision_id(new): RevisionMetrics(0, 0, None)})
    state = progress(None, old, T0, measure(metrics)).state
    state = progress(state, new, T0, measure(metrics)).state
    held = progress(state, new, T0 + timedelta(seconds=10 + 59), measure(metrics))
    assert held.decision is not None and held.decision.action == "hold"
    moved = progress(held.state, new, T0 + timedelta(seconds=10 + 60), measure(metrics))
    assert moved.decision is not None and moved.decision.action == "abort"
    assert moved.decision.event_reason == "CanaryAborted" and moved.decision.warning
    assert "progressDeadlineSeconds 60" in moved.decision.reason
    assert moved.live == (("stable", 100),)
    assert moved.state.rolled_back == revision_id(new)
    assert (moved.state.rolled_back_reason or "").startswith("aborted: no evidence by")


PAUSED = SPEC.replace("{weight: 50, pauseSeconds: 10}", "{weight: 50, pause: {}}")


def paused_model(batch: int = 64) -> Served:
    text = PAUSED + f"  serve: {{batching: {{maxBatchSize: {batch}}}}}\n"
    resource = load_text(text).documents[0].resource
    assert isinstance(resource, Model)
    return resource


def at_the_pause() -> tuple[RolloutState, Served, StaticMetrics]:
    old, new = paused_model(), paused_model(batch=8)
    metrics = StaticMetrics({revision_id(new): healthy(), revision_id(old): healthy()})
    state = progress(None, old, T0, measure(metrics)).state
    state = progress(state, new, T0, measure(metrics)).state  # start at 10%
    state = progress(state, new, T0 + timedelta(seconds=11), measure(metrics)).state  # to 50%
    assert state.canary is not None and state.canary.step == 1
    return state, new, metrics


def cmd(action: str, revision: str, id: str = "c1") -> Command:
    raw = {COMMAND_ANNOTATION: Command(id, action, revision, "ann").to_annotation()}
    parsed = Command.from_annotations(raw)
    assert parsed is not None
    return parsed


def test_a_manual_pause_holds_until_a_promote_command_releases_it_once() -> None:
    state, new, metrics = at_the_pause()
    later = T0 + timedelta(days=3)
    held = progress(state, new, later, measure(metrics))
    assert held.decision is not None and held.decision.action == "hold"
    assert "waiting for `kaip rollout promote`" in held.decision.reason
    released = progress(state, new, later, measure(metrics), cmd("promote", revision_id(new)))
    assert released.decision is not None and released.decision.action == "promote"
    assert "released by ann" in released.decision.reason
    assert released.state.stable_revision == revision_id(new)
    assert released.state.previous_revision == state.stable_revision
    assert released.state.last_command == "c1"
    saved = RolloutState.from_status(released.state.to_status())
    assert saved == released.state  # previous and lastCommand survive a restart


def test_abort_and_promote_full_act_at_once_and_only_on_the_canary_they_name() -> None:
    state, new, metrics = at_the_pause()
    canary = revision_id(new)
    other = progress(state, new, T0, measure(metrics), cmd("abort", "0123456789"))
    assert other.state.canary is not None and other.state.last_command == "c1"  # ignored
    aborted = progress(state, new, T0, measure(metrics), cmd("abort", canary, "c2"))
    assert aborted.decision is not None and aborted.decision.action == "abort"
    assert aborted.state.rolled_back == canary and aborted.state.canary is None
    assert aborted.state.rolled_back_reason == "aborted by ann"
    done = progress(aborted.state, new, T0, measure(metrics), cmd("abort", canary, "c2"))
    assert done.decision is None  # the same command id is not acted on twice
    full = progress(state, new, T0, measure(metrics), cmd("promote-full", canary, "c3"))
    assert full.decision is not None and full.decision.action == "promote"
    assert full.state.stable_revision == canary


def test_a_malformed_command_is_ignored() -> None:
    bad = [
        "not json",
        "[]",
        '{"id": "x", "action": "delete", "revision": "r", "by": "a"}',
        '{"id": "", "action": "abort", "revision": "r", "by": "a"}',
        "x" * 5000,
    ]
    for raw in bad:
        assert Command.from_annotations({COMMAND_ANNOTATION: raw}) is None
    assert Command.from_annotations(None) is None


BUDGET = "gates: {maxErrorRate: 0.05, minRequests: 20, maxCostRatio: 1.5}"


def budgeted(batch: int, resources: str = "") -> Served:
    text = SPEC.replace("gates: {maxErrorRate: 0.05, minRequests: 20}", BUDGET)
    text += f"  serve: {{batching: {{maxBatchSize: {batch}}}}}\n" + resources
    served = load_text(text).documents[0].resource
    assert isinstance(served, Model) and served.spec.rollout.gates.max_cost_ratio == 1.5
    return served


def step_verdict(old: Served, new: Served, metrics: StaticMetrics) -> Decision:
    """The decision at the end of the canary's first step (10 s paused, 11 s in)."""
    state = progress(None, old, T0, measure(metrics)).state
    state = progress(state, new, T0, measure(metrics)).state
    moved = progress(state, new, T0 + timedelta(seconds=11), measure(metrics))
    assert moved.decision is not None
    return moved.decision


def test_a_canary_busy_twice_as_long_per_request_is_rolled_back_by_the_cost_budget() -> None:
    old, new = budgeted(64), budgeted(8)
    metrics = StaticMetrics({
        revision_id(old): RevisionMetrics(400, 0, 20.0, busy_seconds=8.0),
        revision_id(new): RevisionMetrics(40, 0, 20.0, busy_seconds=1.6),  # 2x per request
    })  # fmt: skip
    decision = step_verdict(old, new, metrics)
    assert decision.action == "rollback"
    assert decision.reason == (
        "cost $0.0004018 per 1,000 requests (40 requests) is 2.00x stable's $0.0002009 "
        "(400 requests): over maxCostRatio 1.5"
    )  # 1.6 s / 40 x (1 core x $0.031611 + 1 GiB x $0.004237 per hour), stable 8 s / 400
    assert decision.evidence["canary"]["busySeconds"] == 1.6


def test_a_same_cost_canary_advances_with_its_cost_figures_as_evidence() -> None:
    old, new = budgeted(64), budgeted(8)
    metrics = StaticMetrics({
        revision_id(old): RevisionMetrics(400, 0, 20.0, busy_seconds=8.0),
        revision_id(new): RevisionMetrics(40, 0, 20.0, busy_seconds=0.8),
    })  # fmt: skip
    decision = step_verdict(old, new, metrics)
    assert decision.action == "advance"
    assert decision.reason.endswith(
        "; cost $0.0002009 per 1,000 requests, 1.00x stable's $0.0002009 (maxCostRatio 1.5)"
    )


def test_the_cost_prices_what_each_revision_reserves() -> None:
    """The same busy time per request on twice the CPUs costs more: the price is the reserved
    replica's (its resources), as kaip up's usage basis has it."""
    old = budgeted(64, "  resources: {cpu: '1', memory: 1G}\n")
    new = budgeted(8, "  resources: {cpu: '2', memory: 1G}\n")
    metrics = StaticMetrics({
        revision_id(old): RevisionMetrics(400, 0, 20.0, busy_seconds=8.0),
        revision_id(new): RevisionMetrics(40, 0, 20.0, busy_seconds=0.8),
    })  # fmt: skip
    decision = step_verdict(old, new, metrics)
    assert decision.action == "rollback" and "is 1.88x stable's" in decision.reason
    assert cost_evidence(RevisionMetrics(40, 0, None), Resources()) is None


def test_without_busy_time_figures_a_cost_budget_is_said_to_be_not_judged() -> None:
    old, new = budgeted(64), budgeted(8)
    metrics = StaticMetrics({revision_id(new): healthy(), revision_id(old): healthy()})
    decision = step_verdict(old, new, metrics)
    assert decision.action == "advance"
    assert decision.reason.endswith("; cost budget not judged: no cost figures for this rollout")


def test_the_cost_evidence_docstring_example_holds() -> None:
    result = doctest.testmod(kaip.kube.operator.canary)
    assert result.attempted > 0 and result.failed == 0


def hooked(batch: int, pre: str = "pre-rollout") -> Served:
    text = SPEC + f"  serve: {{batching: {{maxBatchSize: {batch}}}}}\n"
    text = text.replace(
        "    gates: {maxErrorRate: 0.05, minRequests: 20}\n",
        "    gates: {maxErrorRate: 0.05, minRequests: 20}\n    analysis:\n      webhooks:\n"
        f"        - {{name: smoke, type: {pre}, url: http://tester.test/smoke}}\n"
        "        - {name: report, type: post-rollout, url: http://tester.test/done}\n",
    )
    resource = load_text(text).documents[0].resource
    assert isinstance(resource, Model)
    return resource


def test_pre_rollout_hooks_hold_the_canary_at_0_until_ready_then_vote_before_any_traffic() -> None:
    from kaip.analysis import StepContext
    from kaip.policy import CheckResult
    from kaip.spec.rollout import Analysis, HookType

    old, new = hooked(64), hooked(8)
    metrics = StaticMetrics({revision_id(new): healthy(), revision_id(old): healthy()})
    asked: list[tuple[HookType, StepContext]] = []
    answer = CheckResult("webhook smoke", "fail", "HTTP 409: not today")

    def hooks(analysis: Analysis, phase: HookType, context: StepContext) -> tuple[CheckResult]:
        assert [w.name for w in analysis.hooks(phase)] == ["smoke"]
        asked.append((phase, context))
        return (answer,)

    def tick(state: RolloutState, ready: bool, at: float) -> object:
        now = T0 + timedelta(seconds=at)
        return progress(state, new, now, measure(metrics), hooks=hooks, canary_ready=ready)

    state = progress(None, old, T0, measure(metrics)).state
    started = tick(state, False, 0)
    assert started.decision.action == "start" and started.live == (("stable", 100), ("canary", 0))
    assert started.state.to_status()["canary"]["preRollout"] == "pending"
    # the CRD declares it (the apiserver prunes a status field it does not declare, and the
    # operator then read the canary back as past its pre-rollout hooks: found on the cluster)
    from kaip.spec.status import RolloutStatus

    declared = RolloutStatus.model_validate(started.state.to_status())
    assert declared.canary is not None and declared.canary.pre_rollout == "pending"
    # saved and read back (an operator restart): still pending, still at 0 until the pods are up
    saved = RolloutState.from_status(started.state.to_status())
    assert saved is not None and saved.canary is not None and not saved.canary.pre_rollout_passed
    waiting = tick(saved, False, 5)
    assert waiting.decision.action == "hold" and waiting.live == (("stable", 100), ("canary", 0))
    assert asked == []

    refused = tick(saved, True, 10)
    assert [(phase, c.step, c.weight, c.target) for phase, c in asked] == [
        ("pre-rollout", 0, 0, "kubernetes")
    ]
    assert refused.decision.action == "rollback" and refused.live == (("stable", 100),)
    assert refused.decision.reason == "pre-rollout webhook smoke: HTTP 409: not today"
    assert refused.state.rolled_back == revision_id(new)

    answer = CheckResult("webhook smoke", "pass", "HTTP 200")
    passed = tick(saved, True, 10)
    assert passed.decision.action == "pre-rollout"
    assert passed.decision.event_reason == "PreRolloutPassed"
    assert passed.live == (("stable", 90), ("canary", 10))
    assert passed.state.canary is not None and passed.state.canary.pre_rollout_passed
    assert "preRollout" not in passed.state.to_status()["canary"]


def test_post_rollout_hooks_are_told_each_outcome_and_replace_refuses_a_pre_rollout_hook() -> None:
    import pytest

    from kaip.analysis import StepContext
    from kaip.errors import SpecError
    from kaip.kube.operator.canary import Decision
    from kaip.kube.operator.notices import post_rollout
    from kaip.spec.rollout import Analysis

    told: list[StepContext] = []

    def tell(analysis: Analysis, context: StepContext) -> None:
        assert [w.name for w in analysis.hooks("post-rollout")] == ["report"]
        told.append(context)

    new = hooked(8)
    previous = {"rollout": {"stable": {"revision": "old"}, "canary": {"step": 1}}}
    decisions = [
        Decision("advance", "on", "r1", {}),
        Decision("promote", "all 2 steps passed", "r1", {}),
        Decision("rollback", "error rate", "r2", {}),
        Decision("abort", "aborted by ann", "r3", {}),
    ]
    post_rollout(tell, new, decisions, "ml", previous)
    assert [(c.revision, c.outcome, c.reason, c.stable_revision, c.weight) for c in told] == [
        ("r1", "promoted", "all 2 steps passed", "old", 50),
        ("r2", "rolled_back", "error rate", "old", 50),
        ("r3", "aborted", "aborted by ann", "old", 50),
    ]
    body = told[0].webhook_body(new.spec.rollout.analysis.hooks("post-rollout")[0])  # type: ignore[union-attr]
    assert (body["phase"], body["outcome"], body["reason"]) == (
        "post-rollout", "promoted", "all 2 steps passed",
    )  # fmt: skip
    with pytest.raises(SpecError, match="a pre-rollout webhook needs strategy: canary") as no:
        load_text(SPEC.replace("  rollout:\n", "  rollout:\n    strategy: replace\n")
                  + "    analysis:\n      webhooks:\n"
                  "        - {name: smoke, type: pre-rollout, url: http://t.test/s}\n")  # fmt: skip
    assert "spec.rollout.analysis.webhooks[0].type" in str(no.value)


def ttft_gated(batch: int) -> Served:
    gates = "gates: {maxErrorRate: 0.05, minRequests: 20, maxP95TimeToFirstTokenMs: 450}"
    text = SPEC.replace("gates: {maxErrorRate: 0.05, minRequests: 20}", gates)
    served = load_text(text + f"  serve: {{batching: {{maxBatchSize: {batch}}}}}\n").documents[0]
    assert isinstance(served.resource, Model)
    return served.resource


def test_a_canary_doubling_ttft_is_rolled_back_by_the_ttft_gate_on_prometheus_numbers() -> None:
    """The operator hands Prometheus's p95s to the same kaip.policy.rollout as kaip up."""
    old, new = ttft_gated(64), ttft_gated(8)
    metrics = StaticMetrics({
        revision_id(old): RevisionMetrics(400, 0, 20.0, ttft_p95_ms=312.0),
        revision_id(new): RevisionMetrics(40, 0, 20.0, ttft_p95_ms=624.0),
    })  # fmt: skip
    decision = step_verdict(old, new, metrics)
    assert decision.action == "rollback"
    assert decision.reason == (
        "p95 time to first token 624.0 ms exceeds maxP95TimeToFirstTokenMs 450"
    )
    assert decision.evidence["canary"]["p95TimeToFirstTokenMs"] == 624.0
    metrics.numbers[revision_id(new)] = RevisionMetrics(40, 0, 20.0, ttft_p95_ms=312.0)
    passed = step_verdict(old, new, metrics)
    assert passed.action == "advance", passed.reason
    assert "p95 time to first token 312.0 ms" in passed.reason
    metrics.numbers[revision_id(new)] = RevisionMetrics(40, 0, 20.0)  # no token observed
    assert step_verdict(old, new, metrics).action == "hold"
