"""The pure parts of a reconcile pass: reading a custom resource, status patches, attention."""

from __future__ import annotations

import pytest

from kaip.errors import SpecError
from kaip.kube.operator.handlers import backoff
from kaip.kube.operator.reconcile import (
    PROGRESS,
    RESYNC,
    merge_patch,
    needs_attention,
    pace,
    parse,
    spec_problems,
)

BODY = {
    "apiVersion": "kaip.dev/v1alpha1",
    "kind": "Model",
    "metadata": {
        "name": "digits",
        "namespace": "ml",
        "uid": "u-1",
        "generation": 3,
        "labels": {"team": "ml"},
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "kaip.dev/last-handled-configuration": "{}",
            "owner.example.com/ticket": "ML-1",
        },
        "managedFields": [{"manager": "kubectl"}],
    },
    "spec": {"owner": "ml", "artifact": {"uri": "https://e.com/m.onnx", "format": "onnx"}},
    "status": {"observedGeneration": 2},
}


def test_a_custom_resource_reads_as_the_spec_model_without_bookkeeping_annotations() -> None:
    model = parse(BODY)
    assert model.kind == "Model" and model.metadata.namespace == "ml"
    assert model.metadata.annotations == {"owner.example.com/ticket": "ML-1"}


def test_an_invalid_spec_reads_as_field_paths_and_messages_without_positions() -> None:
    bad = {**BODY, "spec": {"owner": "ml", "artifact": {"uri": "m.joblib", "format": "sklearn"}}}
    with pytest.raises(SpecError) as info:
        parse(bad)
    message = spec_problems(info.value)
    assert message.startswith("spec.artifact.sha256: ")
    assert ":1:" not in message and "<string>" not in message


def test_merge_patch_sets_changes_and_nulls_what_went_away() -> None:
    before = {"rollout": {"stable": {"revision": "a"}, "canary": {"step": 1}}, "url": "x"}
    after = {"rollout": {"stable": {"revision": "b"}}, "url": "x", "replicas": 1}
    assert merge_patch(before, after) == {
        "rollout": {"stable": {"revision": "b"}, "canary": None},
        "replicas": 1,
    }
    assert merge_patch(after, after) == {}


def condition(type_: str, status: str, reason: str) -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason}


@pytest.mark.parametrize(
    ("status", "attention"),
    [
        ({}, True),
        ({"observedGeneration": 3, "conditions": [condition("Ready", "True", "ReplicasReady")]},
         False),
        ({"observedGeneration": 2, "conditions": [condition("Ready", "True", "ReplicasReady")]},
         True),
        ({"observedGeneration": 3, "conditions": [condition("Ready", "False", "ReplicasNotReady")]},
         True),
        ({"observedGeneration": 3, "conditions": [condition("Degraded", "True", "InvalidSpec")]},
         False),
        ({"observedGeneration": 3, "conditions": [condition("Ready", "True", "ReplicasReady")],
          "rollout": {"canary": {"revision": "b", "step": 0}}}, True),
    ],
)  # fmt: skip
def test_only_unsettled_resources_need_the_timer(
    status: dict[str, object], attention: bool
) -> None:
    assert needs_attention({**BODY, "status": status}) is attention


def test_retries_back_off_exponentially_up_to_a_minute() -> None:
    assert [backoff(n) for n in (0, 1, 2, 3, 10)] == [1.0, 2.0, 4.0, 8.0, 60.0]


@pytest.mark.parametrize(
    ("status", "timer"),
    [
        ({"observedGeneration": 3, "conditions": [condition("Ready", "True", "ReplicasReady")]},
         None),
        ({"observedGeneration": 3, "conditions": [condition("Ready", "False", "ReplicasNotReady")]},
         RESYNC),
        ({"observedGeneration": 2, "conditions": [condition("Ready", "True", "ReplicasReady")]},
         RESYNC),
        ({"observedGeneration": 3, "conditions": [condition("Ready", "Unknown", "Retrying")]},
         PROGRESS),
        ({"observedGeneration": 3, "conditions": [condition("Ready", "True", "ReplicasReady")],
          "rollout": {"canary": {"revision": "b", "step": 0}}}, PROGRESS),
        # Settled, but following a registry selector: it looks for new versions now and then.
        ({"observedGeneration": 3, "conditions": [condition("Ready", "True", "ReplicasReady")],
          "follows": "models:/digits@latest"}, RESYNC),
    ],
)  # fmt: skip
def test_timed_steps_and_retries_tick_fast_waiting_for_workloads_only_resyncs(
    status: dict[str, object], timer: str | None
) -> None:
    assert pace({**BODY, "status": status}) == timer
