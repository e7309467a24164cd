"""What a watch event on an owned Deployment or Job calls for: drift, a pass, or nothing."""

from __future__ import annotations

import copy
from typing import Any

from kaip.kube.client import ObjectRef
from kaip.kube.operator.owned import (
    FOREIGN,
    Ledger,
    Owner,
    Verdict,
    applied_fields,
    compare_resource_version,
    foreign_fault,
    owner_of,
    refusal_for,
)
from kaip.kube.operator.reconcile import needs_attention, pace

OWNER_REF = {
    "apiVersion": "kaip.dev/v1alpha1",
    "kind": "Model",
    "name": "digits",
    "uid": "m-1",
    "controller": True,
    "blockOwnerDeletion": True,
}
KAIP_FIELDS = {
    "f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}}},
    "f:spec": {
        "f:replicas": {},
        "f:template": {"f:spec": {"f:containers": {'k:{"name":"server"}': {"f:image": {}}}}},
    },
}


def deployment(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "digits-abc",
            "uid": "d-1",
            "generation": 2,
            "ownerReferences": [OWNER_REF],
            "managedFields": [
                {"manager": "kaip", "operation": "Apply", "fieldsV1": KAIP_FIELDS},
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "subresource": "status",
                    "fieldsV1": {"f:status": {}},
                },
            ],
        },
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 2, "updatedReplicas": 1, "availableReplicas": 1},
    }
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = obj
        for part in parents:
            target = target[part]
        target[leaf] = value
    return obj


def settled_ledger() -> Ledger:
    ledger = Ledger("kaip")
    ledger.applied("m-1", [deployment()])
    ledger.observed("m-1", "Deployment", "digits-abc", deployment())
    return ledger


def test_the_owner_is_the_kaip_controller_reference_only() -> None:
    assert owner_of(deployment()) == Owner("Model", "digits", "m-1")
    other = {**OWNER_REF, "apiVersion": "apps/v1", "kind": "ReplicaSet"}
    assert owner_of({"metadata": {"ownerReferences": [other]}}) is None
    not_controller = {**OWNER_REF, "controller": False}
    assert owner_of({"metadata": {"ownerReferences": [not_controller]}}) is None
    assert owner_of({"metadata": {}}) is None


def test_a_status_heartbeat_of_a_settled_deployment_costs_nothing() -> None:
    ledger = settled_ledger()
    beat = deployment(status__conditions=[{"type": "Available", "status": "True"}])
    assert ledger.verdict("m-1", "Deployment", beat, deleted=False) is Verdict.QUIET


def test_what_readiness_reads_changing_calls_for_a_pass() -> None:
    ledger = settled_ledger()
    fewer = deployment(status__availableReplicas=0)
    assert ledger.verdict("m-1", "Deployment", fewer, deleted=False) is Verdict.CHANGED


def test_rollout_steps_that_change_nothing_the_status_shows_are_quiet() -> None:
    ledger = Ledger("kaip")
    fresh = deployment(status={})  # just applied: the controller has not seen it yet
    ledger.applied("m-1", [fresh])
    ledger.observed("m-1", "Deployment", "digits-abc", fresh)
    seen = deployment(status={"observedGeneration": 2})
    scaled_up = deployment(status={"observedGeneration": 2, "updatedReplicas": 1})
    for step in (seen, scaled_up):
        assert ledger.verdict("m-1", "Deployment", step, deleted=False) is Verdict.QUIET
    assert ledger.verdict("m-1", "Deployment", deployment(), deleted=False) is Verdict.CHANGED


def test_deletion_and_a_field_taken_by_another_manager_are_drift() -> None:
    ledger = settled_ledger()
    assert ledger.verdict("m-1", "Deployment", deployment(), deleted=True) is Verdict.DRIFT
    taken = deployment()
    taken["metadata"]["generation"] = 3
    fields = copy.deepcopy(KAIP_FIELDS)
    del fields["f:spec"]["f:template"]  # kubectl set image took the image
    taken["metadata"]["managedFields"][0]["fieldsV1"] = fields
    assert ledger.verdict("m-1", "Deployment", taken, deleted=False) is Verdict.DRIFT


def test_a_field_the_operator_never_set_is_no_drift() -> None:
    ledger = settled_ledger()
    scaled = deployment(spec__replicas=4, status__observedGeneration=3)
    scaled["metadata"]["generation"] = 3
    scaled["metadata"]["managedFields"].append(
        {
            "manager": "horizontal-pod-autoscaler",
            "operation": "Update",
            "subresource": "scale",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        }
    )
    # The ledger sees that readiness may have moved, but nothing to take back.
    assert ledger.verdict("m-1", "Deployment", scaled, deleted=False) is Verdict.CHANGED


def test_events_older_than_the_last_apply_or_of_another_incarnation_are_quiet() -> None:
    ledger = Ledger("kaip")
    ledger.applied("m-1", [deployment(metadata__generation=5)])
    stale = deployment()  # generation 2, with the fields someone else held then
    stale["metadata"]["managedFields"][0]["fieldsV1"] = {}
    assert ledger.verdict("m-1", "Deployment", stale, deleted=False) is Verdict.QUIET
    old = deployment(metadata__uid="d-0")
    assert ledger.verdict("m-1", "Deployment", old, deleted=True) is Verdict.QUIET


def test_a_late_event_no_newer_than_the_last_read_is_quiet_whatever_it_shows() -> None:
    """The watch can fall minutes behind (1,000 Models on two cores): an event that predates
    what a pass already read must not run a pass of its own."""
    ledger = Ledger("kaip")
    ledger.applied("m-1", [deployment(status={}, metadata__resourceVersion="100")])
    ledger.observed("m-1", "Deployment", "digits-abc", deployment(metadata__resourceVersion="130"))
    for late in ("100", "120", "130"):  # not ready yet, as the controller saw it back then
        event = deployment(status__availableReplicas=0, metadata__resourceVersion=late)
        assert ledger.stale("m-1", "Deployment", event)
        assert ledger.verdict("m-1", "Deployment", event, deleted=False) is Verdict.QUIET
    newer = deployment(status__availableReplicas=0, metadata__resourceVersion="1000")
    assert not ledger.stale("m-1", "Deployment", newer)
    assert ledger.verdict("m-1", "Deployment", newer, deleted=False) is Verdict.CHANGED
    gone = deployment(metadata__resourceVersion="130")
    assert ledger.verdict("m-1", "Deployment", gone, deleted=True) is Verdict.DRIFT
    # Versions one may not compare: judged by what the event shows, as before.
    opaque = deployment(status__availableReplicas=0, metadata__resourceVersion="a7")
    assert ledger.verdict("m-1", "Deployment", opaque, deleted=False) is Verdict.CHANGED


def test_a_read_that_shows_drift_leaves_its_event_to_say_drift() -> None:
    ledger = Ledger("kaip")
    ledger.applied("m-1", [deployment(metadata__resourceVersion="100")])
    taken = deployment(metadata__resourceVersion="140", metadata__generation=3)
    taken["metadata"]["managedFields"][0]["fieldsV1"] = {"f:spec": {"f:replicas": {}}}
    ledger.observed("m-1", "Deployment", "digits-abc", taken)  # the pass read it first
    assert not ledger.stale("m-1", "Deployment", taken)
    assert ledger.verdict("m-1", "Deployment", taken, deleted=False) is Verdict.DRIFT


def test_resource_versions_compare_as_kep_5504_says() -> None:
    assert compare_resource_version("10", "9") == 1
    assert compare_resource_version("9", "10") == -1
    assert compare_resource_version("123", "123") == 0
    for bad in ("", "0", "012", "1a", "-1", "١٢"):  # Arabic-Indic digits are digits, not ASCII
        assert compare_resource_version(bad, "5") is None
        assert compare_resource_version("5", bad) is None


def test_objects_not_applied_since_start_or_no_longer_rendered_are_quiet() -> None:
    ledger = Ledger("kaip")
    assert ledger.verdict("m-1", "Deployment", deployment(), deleted=True) is Verdict.QUIET
    ledger.applied("m-1", [deployment(metadata__name="digits-new")])
    pruned = deployment()  # the old revision, deleted by the operator itself
    assert ledger.verdict("m-1", "Deployment", pruned, deleted=True) is Verdict.QUIET
    ledger.forget("m-1")
    assert ledger.verdict("m-1", "Deployment", deployment(), deleted=True) is Verdict.QUIET


def test_kueue_unsuspending_a_job_is_no_drift() -> None:
    fields = {"f:spec": {"f:suspend": {}, "f:backoffLimit": {}}}
    job = {
        "kind": "Job",
        "metadata": {"managedFields": [{"manager": "kaip", "operation": "Apply", "fieldsV1": {}}]},
    }
    job["metadata"]["managedFields"][0]["fieldsV1"] = fields
    without_suspend = {"f:spec": {"f:backoffLimit": {}}}
    trimmed = {**job, "metadata": {"managedFields": [{"manager": "kaip", "operation": "Apply",
                                                      "fieldsV1": without_suspend}]}}  # fmt: skip
    assert applied_fields("Job", job, "kaip") == applied_fields("Job", trimmed, "kaip")
    assert applied_fields("Deployment", job, "kaip") != applied_fields(
        "Deployment", trimmed, "kaip"
    )
    assert applied_fields("Job", job, "someone-else") is None


def _live(kind: str, name: str, owner: dict[str, Any] | None, *managers: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ml"}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    meta["managedFields"] = [{"manager": m, "operation": "Update"} for m in managers]
    return {"apiVersion": "v1", "kind": kind, "metadata": meta}


def test_the_operator_writes_only_over_what_the_resource_controls() -> None:
    refuse = refusal_for("m-1")
    assert refuse(_live("Service", "digits", OWNER_REF, "kaip", "kubectl-edit")) is None
    stranger = refuse(_live("Service", "digits", None, "kubectl-client-side-apply"))
    assert stranger == "its fields are managed by kubectl-client-side-apply"
    # Applied by `kaip apply` (manager kaip, no owner): still not this Model's to take.
    assert refuse(_live("Service", "digits", None, "kaip")) == "its fields are managed by kaip"
    other = {**OWNER_REF, "kind": "App", "name": "shop", "uid": "a-9"}
    assert refuse(_live("Service", "digits", other)) == "it belongs to App shop"
    not_controller = {**OWNER_REF, "controller": False}
    assert refuse(_live("Service", "digits", not_controller, "x")) is not None


def test_foreign_objects_are_a_permanent_fault_naming_each_one() -> None:
    found = [
        (ObjectRef("v1", kind, "digits", "ml"), _live(kind, "digits", None, "kubectl"), why)
        for kind, why in (("Service", "managed by kubectl"), ("ServiceAccount", "by hand"))
    ]
    fault = foreign_fault("Model", "digits", "m-1", found)
    assert fault.permanent and fault.reason == FOREIGN
    assert fault.message.startswith(
        "Service ml/digits (managed by kubectl); ServiceAccount ml/digits (by hand): they exist "
        "and are not this Model's, so kaip leaves them untouched and applies nothing."
    )
    status = {"observedGeneration": 1, "conditions": [
        {"type": "Degraded", "status": "True", "reason": fault.reason},
    ]}  # fmt: skip
    body = {"metadata": {"generation": 1}, "status": status}
    assert not needs_attention(body) and pace(body) is None  # waits for a change


def test_objects_of_an_earlier_resource_of_that_name_are_waited_for() -> None:
    earlier = {**OWNER_REF, "uid": "m-0"}  # deleted and created again: GC is on its way
    found = [(ObjectRef("v1", "Service", "digits", "ml"), _live("Service", "digits", earlier), "")]
    fault = foreign_fault("Model", "digits", "m-1", found)
    assert not fault.permanent and fault.reason == "Retrying"
    assert "garbage collector to remove Service ml/digits" in fault.message
