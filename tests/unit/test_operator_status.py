from datetime import UTC, datetime, timedelta

import pytest

from kaip.kube.operator.conditions import Condition, find, merge
from kaip.kube.operator.observe import OWNED_KINDS
from kaip.kube.operator.status import Fault, JobState, Observation, RevisionState, compute
from kaip.render.kube.manifests import KIND_ORDER

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)


def _condition(status: dict[str, object], type_: str) -> dict[str, object]:
    found = find(status["conditions"], type_)  # type: ignore[arg-type]
    assert found is not None
    return dict(found)


def test_transition_time_changes_only_when_the_status_changes() -> None:
    first = merge([], [Condition("Ready", "False", "ReplicasNotReady", "0/1")], 3, T0)
    same = merge(first, [Condition("Ready", "False", "ReplicasNotReady", "0/2")], 4, T1)
    flipped = merge(same, [Condition("Ready", "True", "ReplicasReady", "2/2")], 4, T1)
    assert first[0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert same[0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert same[0]["observedGeneration"] == 4
    assert same[0]["message"] == "0/2"
    assert flipped[0]["lastTransitionTime"] == "2026-01-02T03:05:05Z"


def test_conditions_of_other_owners_are_kept() -> None:
    theirs = {"type": "Synced", "status": "True", "reason": "X", "message": ""}
    merged = merge([theirs], [Condition("Ready", "True", "ReplicasReady")], 1, T0)
    assert [c["type"] for c in merged] == ["Ready", "Synced"]


def test_a_reason_must_be_camel_case() -> None:
    with pytest.raises(ValueError, match="CamelCase"):
        Condition("Ready", "True", "not camel")


def test_ready_revisions_make_a_ready_resource_with_weights_in_status() -> None:
    seen = Observation(
        kind="Model",
        generation=2,
        revisions=(RevisionState("abc", 100, 2, 2),),
        url="http://digits.ml.svc:8000",
    )
    status = compute(seen, None, T0)
    assert status["observedGeneration"] == 2
    assert status["revisions"] == [
        {"name": "abc", "weight": 100, "replicas": 2, "readyReplicas": 2}
    ]
    assert status["url"] == "http://digits.ml.svc:8000"
    assert _condition(status, "Ready")["status"] == "True"
    assert _condition(status, "Progressing")["status"] == "False"
    assert _condition(status, "Degraded")["status"] == "False"


def test_a_deployment_not_caught_up_is_not_ready() -> None:
    stale = RevisionState("abc", 100, 1, 1, up_to_date=False)
    status = compute(Observation("App", 1, revisions=(stale,)), None, T0)
    assert _condition(status, "Ready")["status"] == "False"
    assert _condition(status, "Progressing")["reason"] == "ReplicasUpdating"


def test_a_canary_is_progressing_and_a_rollback_is_degraded() -> None:
    revisions = (RevisionState("old", 90, 1, 1), RevisionState("new", 10, 1, 1))
    canary = compute(Observation("Model", 3, revisions, canary="step 1/3: 10%"), None, T0)
    assert _condition(canary, "Progressing")["reason"] == "CanaryInProgress"
    assert canary["traffic"] == "old=90,new=10"
    assert _condition(canary, "Ready")["status"] == "True"
    rolled = compute(
        Observation("Model", 3, revisions[:1], rolled_back="error rate 0.2 > 0.01"), canary, T1
    )
    assert _condition(rolled, "Degraded") == {
        "type": "Degraded",
        "status": "True",
        "observedGeneration": 3,
        "lastTransitionTime": "2026-01-02T03:05:05Z",
        "reason": "RolledBack",
        "message": "error rate 0.2 > 0.01",
    }


def test_an_invalid_spec_is_degraded_with_its_message_and_not_progressing() -> None:
    fault = Fault("InvalidSpec", "spec.scaling.minReplicas: must be >= 0", permanent=True)
    status = compute(Observation("Model", 5, fault=fault), None, T0)
    assert _condition(status, "Degraded")["message"] == "spec.scaling.minReplicas: must be >= 0"
    assert _condition(status, "Progressing")["status"] == "False"
    assert _condition(status, "Ready")["status"] == "False"


def test_a_transient_fault_is_progressing_not_degraded() -> None:
    fault = Fault("ApplyRetrying", "apiserver unreachable", permanent=False)
    status = compute(Observation("App", 1, fault=fault), None, T0)
    assert _condition(status, "Ready")["status"] == "Unknown"
    assert _condition(status, "Progressing")["status"] == "True"
    assert _condition(status, "Degraded")["status"] == "False"


@pytest.mark.parametrize(
    ("job", "ready", "degraded"),
    [
        (JobState(completions=2, active=2), "False", "False"),
        (JobState(completions=2, succeeded=2, complete=True), "True", "False"),
        (JobState(completions=2, failed=4, failure="BackoffLimitExceeded"), "False", "True"),
    ],
)
def test_training_job_conditions_follow_the_job(job: JobState, ready: str, degraded: str) -> None:
    status = compute(Observation("TrainingJob", 1, job=job), None, T0)
    assert _condition(status, "Ready")["status"] == ready
    assert _condition(status, "Degraded")["status"] == degraded
    assert status["succeeded"] == job.succeeded


def test_a_missing_deployment_is_not_ready() -> None:
    gone = RevisionState("abc", 100, 1, 0, missing=True)
    status = compute(Observation("Model", 1, revisions=(gone,)), None, T0)
    assert _condition(status, "Ready")["status"] == "False"


def test_a_jobset_reports_as_its_pods_complete_running_or_failed_for_good() -> None:
    from kaip.kube.operator.observe import jobset_state

    running = {"status": {"replicatedJobsStatus": [{"name": "node", "active": 1}], "restarts": 1}}
    assert jobset_state(running, 4) == JobState(completions=4, active=4, failed=1)
    done = {"status": {"conditions": [{"type": "Completed", "status": "True"}]}}
    assert jobset_state(done, 4) == JobState(completions=4, succeeded=4, complete=True)
    failed = {"status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "FailedJobs", "message": "restarts 2"}
    ]}}  # fmt: skip
    assert jobset_state(failed, 4).failure == "FailedJobs: restarts 2"
    assert jobset_state({}, 4) == JobState(completions=4)


def test_every_kind_kaip_renders_is_looked_at_for_leftovers() -> None:
    """A kind missing here outlives the revision or the field that rendered it (a canary's
    InferencePool and its picker's Role did, once the canary was promoted)."""
    assert set(KIND_ORDER) - {"Namespace"} <= {kind for _, kind in OWNED_KINDS}
