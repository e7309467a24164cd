"""Analysis checks (PromQL queries, webhooks): observation -> result with evidence -> verdict.

The pure half of issue 13 #4: the same judging on both targets, and the rollout policy acting on
the results as it acts on its built-in gates (a fail rolls back, a pending holds until the
progress deadline).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kaip.analysis import StepContext
from kaip.errors import SpecError
from kaip.kube.operator.canary import RolloutState, progress
from kaip.kube.operator.metrics import RevisionMetrics, StaticMetrics
from kaip.plan import revision_id
from kaip.policy import CheckResult, Evidence, judge_query, judge_webhook, not_asked, rollout
from kaip.spec import Model, load_text
from kaip.spec.rollout import Analysis, Gates, QueryCheck, RolloutStep, WebhookCheck

pytestmark = pytest.mark.unit

RATIO = QueryCheck(name="error-ratio", query='r{revision="{{revision}}"}', max=0.05)
FLOOR = QueryCheck(name="accuracy", query="a", min=0.9, max=1)
HOOK = WebhookCheck(name="load-test", url="http://loadtester.test/run")
STEPS = [RolloutStep(weight=10, pause_seconds=1), RolloutStep(weight=100, pause_seconds=1)]
GATES = Gates(max_error_rate=1.0, min_requests=5)  # the built-in gates never fail here


def verdict(checks: tuple[CheckResult, ...], seconds: float = 5, deadline: float | None = None):  # type: ignore[no-untyped-def]
    return rollout(
        step_index=0, steps=STEPS, seconds_in_step=seconds, canary=Evidence(50, 50),
        stable=Evidence(50, 0), gates=GATES, progress_deadline_seconds=deadline, checks=checks,
    )  # fmt: skip


def test_a_query_is_judged_against_its_bounds_and_no_data_is_pending() -> None:
    assert judge_query(RATIO, 0.01).status == "pass"
    failed = judge_query(RATIO, 0.31)
    assert (failed.status, failed.describe()) == ("fail", "query error-ratio: 0.31 > max 0.05")
    assert judge_query(FLOOR, 0.8).describe() == "query accuracy: 0.8 < min 0.9"
    assert judge_query(FLOOR, 0.95).evidence == "0.95 within min 0.9 and max 1"
    assert judge_query(RATIO, None).status == "pending"
    outage = judge_query(RATIO, None, "cannot ask Prometheus at http://p: refused")
    assert outage.status == "pending" and "refused" in outage.evidence  # no verdict from an outage
    assert judge_query(RATIO, float("nan")).status == "pending"


def test_a_webhook_votes_with_its_status_and_a_silent_one_fails() -> None:
    assert judge_webhook(HOOK, 204).describe() == "webhook load-test: HTTP 204"
    no = judge_webhook(HOOK, 500, "p99  too\nhigh" + "x" * 1000)
    assert no.status == "fail" and no.evidence.startswith("HTTP 500: p99 too high")
    assert len(no.evidence) < 320  # bounded evidence
    assert judge_webhook(HOOK, 302).status == "fail"  # redirects are not followed, nor votes
    silent = judge_webhook(HOOK, None, error="no answer in 10s")
    assert (silent.status, silent.evidence) == ("fail", "no answer in 10s")


def test_a_failed_check_rolls_back_with_its_evidence_and_a_pending_one_holds() -> None:
    passed = (judge_query(RATIO, 0.0), judge_webhook(HOOK, 200))
    advanced = verdict(passed)
    assert advanced.action == "advance"
    assert "query error-ratio: 0 within max 0.05; webhook load-test: HTTP 200" in advanced.reason
    assert advanced.checks == passed
    rolled = verdict((judge_query(RATIO, 0.0), judge_webhook(HOOK, 503, "canary is slow")))
    assert (rolled.action, rolled.reason) == (
        "rollback", "webhook load-test: HTTP 503: canary is slow",
    )  # fmt: skip
    held = verdict((judge_query(RATIO, None), judge_webhook(HOOK, 200)))
    assert (held.action, held.reason) == (
        "hold", "waiting for evidence: query error-ratio: no data yet at 10%",
    )  # fmt: skip
    late = verdict(not_asked(Analysis(webhooks=[HOOK])), seconds=100, deadline=30)
    assert late.action == "abort" and "webhook load-test: not asked yet" in late.reason
    assert verdict(()).action == "advance"  # no analysis: the gates alone decide


def test_query_variables_are_checked_and_queries_need_a_prometheus() -> None:
    with pytest.raises(ValueError, match="is not a variable kaip fills in"):
        QueryCheck(name="q", query="x{{revisoin}}", max=1)
    with pytest.raises(ValueError, match="needs max or min"):
        QueryCheck(name="q", query="x")
    with pytest.raises(ValueError, match="queries need a Prometheus"):
        Analysis(queries=[RATIO])
    with pytest.raises(ValueError, match="used twice"):
        Analysis(webhooks=[HOOK, HOOK])


SPEC = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: digits}}
spec:
  owner: ml
  artifact: {{uri: https://example.com/m.onnx, format: onnx, sha256: {sha}}}
  rollout:
    steps: [{{weight: 10, pauseSeconds: 1}}, {{weight: 100, pauseSeconds: 1}}]
    gates: {{maxErrorRate: 1, minRequests: 5}}
    analysis:
      intervalSeconds: 30
      webhooks: [{{name: load-test, url: "http://loadtester.test/run"}}]
"""


def model(sha: str) -> Model:
    resource = load_text(SPEC.format(sha=sha * 64)).documents[0].resource
    assert isinstance(resource, Model)
    return resource


def test_an_invalid_analysis_is_one_message_naming_the_field() -> None:
    bad = SPEC.format(sha="a" * 64).replace("loadtester.test/run", "loadtester.test/run x")
    with pytest.raises(SpecError) as raised:
        load_text(bad)
    assert "spec.rollout.analysis.webhooks[0].url" in str(raised.value)


def test_the_operator_asks_the_checks_each_interval_keeps_them_in_status_and_obeys_them() -> None:
    old, new = model("a"), model("b")
    t0 = datetime(2026, 1, 2, tzinfo=UTC)
    numbers = RevisionMetrics(100, 0, 10.0)
    metrics = StaticMetrics({revision_id(old): numbers, revision_id(new): numbers})
    asked: list[StepContext] = []
    votes = [200, 500]

    def analyze(analysis: Analysis, step: StepContext) -> tuple[CheckResult, ...]:
        asked.append(step)
        return (judge_webhook(analysis.webhooks[0], votes[len(asked) - 1], "slow"),)

    def tick(state: RolloutState, at: datetime):  # type: ignore[no-untyped-def]
        return progress(
            state, new, at, lambda r, w: metrics.revision_metrics("ml", "digits", r, w),
            analyze=analyze, namespace="ml",
        )  # fmt: skip

    state = progress(None, old, t0, lambda r, w: numbers).state
    started = tick(state, t0)
    assert started.decision is not None and started.decision.action == "start"
    advanced = tick(started.state, t0 + timedelta(seconds=5))
    assert advanced.decision is not None and advanced.decision.action == "advance"
    assert "webhook load-test: HTTP 200: slow" in advanced.decision.reason
    assert advanced.decision.evidence["checks"][0]["status"] == "pass"
    step = asked[0]
    assert (step.namespace, step.revision, step.step, step.weight) == (
        "ml", revision_id(new), 1, 10,
    )  # fmt: skip
    # the next step asks afresh, and what it answered is saved and read back from status
    held_state = RolloutState.from_status(advanced.state.to_status())
    assert held_state is not None and held_state.canary is not None
    rolled = tick(held_state, t0 + timedelta(seconds=10))
    assert len(asked) == 2 and asked[1].step == 2
    assert rolled.decision is not None and rolled.decision.action == "rollback"
    assert rolled.decision.reason == "webhook load-test: HTTP 500: slow"
    assert rolled.state.rolled_back == revision_id(new)


def test_the_operator_does_not_ask_again_before_the_interval() -> None:
    old, new = model("a"), model("b")
    t0 = datetime(2026, 1, 2, tzinfo=UTC)
    numbers = RevisionMetrics(2, 0, 10.0)  # short of minRequests: the step holds
    asked: list[int] = []

    def analyze(analysis: Analysis, step: StepContext) -> tuple[CheckResult, ...]:
        asked.append(step.step)
        return (judge_webhook(analysis.webhooks[0], 200),)

    state = progress(None, old, t0, lambda r, w: numbers).state
    state = progress(state, new, t0, lambda r, w: numbers, analyze=analyze).state
    for seconds in (2, 10, 20, 32):
        moved = progress(
            state, new, t0 + timedelta(seconds=seconds), lambda r, w: numbers, analyze=analyze
        )
        state = RolloutState.from_status(moved.state.to_status()) or moved.state
    assert asked == [1, 1]  # at 2 s and, 30 s later, at 32 s
    assert state.canary is not None and state.canary.checks[0].status == "pass"


def test_pre_and_post_rollout_webhooks_are_not_step_checks_and_a_pre_refusal_rolls_back() -> None:
    from kaip.policy import pre_rollout_verdict

    analysis = Analysis(
        webhooks=[
            HOOK,
            WebhookCheck(name="smoke", type="pre-rollout", url="http://t.test/pre"),
            WebhookCheck(name="report", type="post-rollout", url="http://t.test/post"),
        ]
    )
    assert [w.name for w in analysis.hooks("rollout")] == ["load-test"]
    assert [w.name for w in analysis.hooks("pre-rollout")] == ["smoke"]
    assert [r.check for r in not_asked(analysis)] == ["webhook load-test"]
    only_hooks = Analysis(webhooks=analysis.webhooks[1:])
    assert not only_hooks.judges_steps and not_asked(only_hooks) == ()
    refused = pre_rollout_verdict(
        [judge_webhook(analysis.webhooks[1], 200), judge_webhook(analysis.webhooks[1], 409, "no")]
    )
    assert refused is not None and refused.action == "rollback"
    assert refused.reason == "pre-rollout webhook smoke: HTTP 409: no"
    assert pre_rollout_verdict([judge_webhook(analysis.webhooks[1], 204)]) is None
