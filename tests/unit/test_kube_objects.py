"""The pure half of kaip.kube.client: references, ordering, ownership labels, readiness."""

from __future__ import annotations

from typing import Any

from kaip.kube.client.objects import (
    MANAGED_BY_LABEL,
    PART_OF_LABEL,
    Change,
    ObjectRef,
    Outcome,
    Result,
    apply_order,
    check_manifest,
    readiness,
    same_content,
    with_ownership,
)


def test_refs_print_like_kubectl() -> None:
    assert str(ObjectRef("apps/v1", "Deployment", "web", "ns")) == "deployment.apps/web"
    assert str(ObjectRef("v1", "ConfigMap", "c", "ns")) == "configmap/c"
    assert ObjectRef("apps/v1", "Deployment", "w", "n").identity == (
        ObjectRef("apps/v1beta1", "Deployment", "w", "n").identity
    )


def test_summary_counts_outcomes_in_a_fixed_order() -> None:
    ref = ObjectRef("v1", "ConfigMap", "c")
    result = Result(
        (Change(ref, Outcome.pruned), Change(ref, Outcome.created), Change(ref, Outcome.created)),
        dry_run=True,
    )
    assert result.summary() == "2 created, 1 pruned (server dry run)"
    assert Result(()).summary() == "nothing to do"


def test_namespaces_and_crds_are_applied_before_what_needs_them() -> None:
    manifests = [{"kind": k} for k in ("Deployment", "Service", "Namespace", "Foo", "ConfigMap")]
    assert [m["kind"] for m in apply_order(manifests)] == [
        "Namespace",
        "ConfigMap",
        "Service",
        "Deployment",
        "Foo",
    ]


def test_ownership_labels_are_added_without_touching_the_input() -> None:
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    owned = with_ownership(manifest, "shop", "prod")
    assert owned["metadata"]["labels"] == {MANAGED_BY_LABEL: "kaip", PART_OF_LABEL: "shop"}
    assert owned["metadata"]["namespace"] == "prod"
    assert "labels" not in manifest["metadata"]


def test_check_manifest_names_what_is_missing() -> None:
    assert check_manifest({"kind": "X", "metadata": {}}, 3) == [
        "manifest #3: missing apiVersion",
        "manifest #3: missing metadata.name",
    ]
    assert check_manifest("nope", 0) == ["manifest #0: not a mapping"]


def test_same_content_ignores_bookkeeping() -> None:
    before = {"metadata": {"name": "a", "resourceVersion": "1"}, "data": {"k": "v"}}
    after = {
        "metadata": {"name": "a", "resourceVersion": "2", "managedFields": []},
        "data": {"k": "v"},
    }
    assert same_content(before, after)
    assert not same_content(before, {**after, "data": {"k": "w"}})


def deployment(status: dict[str, Any], generation: int = 2, replicas: int = 3) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": status,
    }


def test_deployment_readiness() -> None:
    assert readiness(deployment({"observedGeneration": 1})) == (
        "the controller has not seen the latest spec yet"
    )
    assert readiness(
        deployment({"observedGeneration": 2, "updatedReplicas": 3, "availableReplicas": 1})
    ) == ("1/3 replicas ready, 3/3 updated")
    assert (
        readiness(
            deployment({"observedGeneration": 2, "updatedReplicas": 3, "availableReplicas": 3})
        )
        is None
    )
    assert readiness(deployment({"observedGeneration": 2}, replicas=0)) is None


def test_crd_readiness_and_kinds_without_readiness() -> None:
    crd = {"kind": "CustomResourceDefinition", "status": {"conditions": []}}
    assert readiness(crd) == "not Established yet"
    crd["status"]["conditions"] = [{"type": "Established", "status": "True"}]
    assert readiness(crd) is None
    assert readiness({"kind": "ConfigMap"}) is None
