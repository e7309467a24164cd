"""kaip.kube.client against a real kube-apiserver: server-side apply, outcomes, pruning,
dry-run, conflicts, deletion and readiness."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_harness import GPU_RESOURCE, ControlPlane
from kubernetes import client
from kubernetes.client.rest import ApiException

from kaip.errors import ForeignObjectError, KubeError
from kaip.kube.client import (
    MANAGED_BY_LABEL,
    PART_OF_LABEL,
    Outcome,
    Session,
    apply,
    delete,
    wait_ready,
)


def config_map(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def deployment(name: str, replicas: int = 2, gpus: int = 0) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": "100m"}}
    if gpus:
        resources["limits"] = {GPU_RESOURCE: str(gpus)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "example.invalid/m:1", "resources": resources}
                    ]
                },
            },
        },
    }


def outcomes(result: Any) -> dict[str, Outcome]:
    return {c.ref.name: c.outcome for c in result.changes}


@pytest.fixture
def session(kube_api: ControlPlane) -> Iterator[Session]:
    with Session.connect(kube_api.kubeconfig) as s:
        yield s


def test_apply_reports_created_then_unchanged_then_configured(
    session: Session, kube_api: ControlPlane, api_namespace: str
) -> None:
    manifests = [config_map("settings", mode="fast"), deployment("web")]

    first = apply(session, manifests, part_of="demo", namespace=api_namespace)
    again = apply(session, manifests, part_of="demo", namespace=api_namespace)
    changed = apply(
        session,
        [config_map("settings", mode="safe"), deployment("web")],
        part_of="demo",
        namespace=api_namespace,
    )

    assert outcomes(first) == {"settings": Outcome.created, "web": Outcome.created}
    assert outcomes(again) == {"settings": Outcome.unchanged, "web": Outcome.unchanged}
    assert outcomes(changed) == {"settings": Outcome.configured, "web": Outcome.unchanged}
    assert changed.summary() == "1 configured, 1 unchanged"
    with kube_api.api_client() as api:
        stored = client.CoreV1Api(api).read_namespaced_config_map("settings", api_namespace)
    assert stored.data == {"mode": "safe"}
    assert stored.metadata.labels[MANAGED_BY_LABEL] == "kaip"
    assert stored.metadata.labels[PART_OF_LABEL] == "demo"
    managers = {(f.manager, f.operation) for f in stored.metadata.managed_fields}
    assert ("kaip", "Apply") in managers


def test_apply_without_report_skips_the_reads_but_applies_the_same(
    session: Session, kube_api: ControlPlane, api_namespace: str
) -> None:
    first = apply(
        session, [config_map("quiet", mode="fast")], part_of="quiet", namespace=api_namespace
    )
    again = apply(
        session,
        [config_map("quiet", mode="safe")],
        part_of="quiet",
        namespace=api_namespace,
        report=False,
    )

    assert outcomes(first) == {"quiet": Outcome.created}
    assert outcomes(again) == {"quiet": Outcome.applied}
    with kube_api.api_client() as api:
        stored = client.CoreV1Api(api).read_namespaced_config_map("quiet", api_namespace)
    assert stored.data == {"mode": "safe"}
    assert stored.metadata.labels[PART_OF_LABEL] == "quiet"


def test_a_kind_not_served_is_asked_for_again_only_when_fresh_or_stale(
    session: Session, kube_api: ControlPlane, tmp_path: Path
) -> None:
    group = f"g{uuid.uuid4().hex[:8]}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }
    assert session.resource(f"{group}/v1", "Widget") is None

    (tmp_path / "crd.json").write_text(json.dumps(crd))
    kube_api.kubectl("apply", "--server-side", "-f", str(tmp_path / "crd.json"))
    kube_api.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}")
    cached = session.resource(f"{group}/v1", "Widget")
    deadline = time.monotonic() + 30
    fresh = session.resource(f"{group}/v1", "Widget", fresh=True)
    while fresh is None and time.monotonic() < deadline:  # discovery lags Established a little
        time.sleep(0.5)
        fresh = session.resource(f"{group}/v1", "Widget", fresh=True)

    assert cached is None  # the negative answer is kept for REDISCOVER_AFTER seconds
    assert (
        fresh is not None
        and fresh.path("default") == f"/apis/{group}/v1/namespaces/default/widgets"
    )
    assert session.resource(f"{group}/v1", "Widget") == fresh


def test_prune_deletes_only_this_sets_leftovers(
    session: Session, kube_api: ControlPlane, api_namespace: str
) -> None:
    apply(session, [config_map("a"), config_map("b")], part_of="one", namespace=api_namespace)
    apply(session, [config_map("other")], part_of="two", namespace=api_namespace)
    with kube_api.api_client() as api:
        client.CoreV1Api(api).create_namespaced_config_map(
            api_namespace, {"metadata": {"name": "hand-made"}}
        )

    result = apply(session, [config_map("a")], part_of="one", namespace=api_namespace, prune=True)

    assert outcomes(result) == {"a": Outcome.unchanged, "b": Outcome.pruned}
    with kube_api.api_client() as api:
        left = client.CoreV1Api(api).list_namespaced_config_map(api_namespace).items
    assert {c.metadata.name for c in left} >= {"a", "other", "hand-made"}
    assert "b" not in {c.metadata.name for c in left}


def test_server_dry_run_validates_but_persists_nothing(
    session: Session, kube_api: ControlPlane, api_namespace: str
) -> None:
    apply(session, [config_map("keep")], part_of="dry", namespace=api_namespace)

    result = apply(
        session,
        [config_map("new"), deployment("web")],
        part_of="dry",
        namespace=api_namespace,
        prune=True,
        dry_run=True,
    )

    assert outcomes(result) == {
        "new": Outcome.created,
        "web": Outcome.created,
        "keep": Outcome.pruned,
    }
    assert result.summary().endswith("(server dry run)")
    with kube_api.api_client() as api:
        names = {
            c.metadata.name
            for c in client.CoreV1Api(api).list_namespaced_config_map(api_namespace).items
        }
    assert "keep" in names and "new" not in names


def test_server_dry_run_surfaces_validation_errors(session: Session, api_namespace: str) -> None:
    broken = deployment("web")
    broken["spec"]["replicas"] = -1
    with pytest.raises(KubeError, match=r"apply deployment\.apps/web .*replicas"):
        apply(session, [broken], part_of="x", namespace=api_namespace, dry_run=True)


def test_conflict_with_another_manager_needs_force(
    session: Session, kube_api: ControlPlane, api_namespace: str
) -> None:
    apply(session, [config_map("shared", owner="kaip")], part_of="c", namespace=api_namespace)
    with kube_api.api_client() as api:  # someone edits a field kaip set
        client.CoreV1Api(api).patch_namespaced_config_map(
            "shared", api_namespace, {"data": {"owner": "ops"}}, field_manager="ops-tool"
        )

    with pytest.raises(KubeError, match="--force-conflicts") as conflict:
        apply(session, [config_map("shared", owner="kaip")], part_of="c", namespace=api_namespace)
    forced = apply(
        session,
        [config_map("shared", owner="kaip")],
        part_of="c",
        namespace=api_namespace,
        force_conflicts=True,
    )

    assert "ops-tool" in str(conflict.value)
    assert outcomes(forced) == {"shared": Outcome.configured}


def test_an_object_kaip_did_not_create_is_refused_untouched_unless_adopted(
    session: Session, kube_api: ControlPlane, api_namespace: str
) -> None:
    """Issue 11 #2, for ``kaip apply``: a Service someone else made, under a name the spec uses,
    is neither merged into nor labelled into the set (where --prune could delete it later)."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "payments", "labels": {"team": "pay"}},
        "spec": {"selector": {"app": "payments"}, "ports": [{"port": 80}]},
    }
    with kube_api.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_service(api_namespace, service, field_manager="helm")
        before = api.sanitize_for_serialization(
            core.read_namespaced_service("payments", api_namespace)
        )
    ours = {**service, "spec": {"selector": {"app": "kaip-model"}, "ports": [{"port": 80}]}}

    for force in (False, True):  # --force-conflicts is about fields, not whole objects
        with pytest.raises(ForeignObjectError) as refused:
            apply(
                session,
                [config_map("unrelated"), ours],
                part_of="shop",
                namespace=api_namespace,
                force_conflicts=force,
            )
        assert f"Service {api_namespace}/payments: kaip did not create it" in refused.value.message
        assert "its fields are managed by helm" in refused.value.message
        assert "--adopt" in refused.value.message
    with pytest.raises(ForeignObjectError):
        apply(session, [ours], part_of="shop", namespace=api_namespace, dry_run=True)
    with kube_api.api_client() as api:
        core = client.CoreV1Api(api)
        after = api.sanitize_for_serialization(
            core.read_namespaced_service("payments", api_namespace)
        )
        names = {c.metadata.name for c in core.list_namespaced_config_map(api_namespace).items}
    assert after == before, "byte for byte, resourceVersion included"
    assert "unrelated" not in names, "nothing of the set was applied"

    adopted = apply(session, [ours], part_of="shop", namespace=api_namespace, adopt=True)
    assert outcomes(adopted) == {"payments": Outcome.adopted}
    assert adopted.changes[0].live is not None
    labels = adopted.changes[0].live["metadata"]["labels"]
    assert labels[MANAGED_BY_LABEL] == "kaip" and labels[PART_OF_LABEL] == "shop"
    assert adopted.changes[0].live["spec"]["selector"] == {"app": "kaip-model"}  # fields too
    again = apply(session, [ours], part_of="shop", namespace=api_namespace)
    assert outcomes(again) == {"payments": Outcome.unchanged}  # kaip's now


def test_delete_removes_objects_and_reports_absent_ones(
    session: Session, kube_api: ControlPlane, api_namespace: str
) -> None:
    manifests = [config_map("a"), config_map("b")]
    apply(session, manifests, part_of="gone", namespace=api_namespace)
    apply(session, [config_map("older")], part_of="gone", namespace=api_namespace)

    first = delete(session, manifests, part_of="gone", namespace=api_namespace)
    second = delete(session, manifests, part_of="gone", namespace=api_namespace)

    assert outcomes(first) == {"a": Outcome.deleted, "b": Outcome.deleted, "older": Outcome.deleted}
    assert outcomes(second) == {"a": Outcome.absent, "b": Outcome.absent}
    with kube_api.api_client() as api, pytest.raises(ApiException):
        client.CoreV1Api(api).read_namespaced_config_map("older", api_namespace)


def test_apply_then_wait_until_deployments_are_available(
    kube_cluster: ControlPlane, cluster_namespace: str
) -> None:
    waited: list[str] = []
    with Session.connect(kube_cluster.kubeconfig) as session:
        result = apply(
            session,
            [deployment("api", replicas=2), deployment("llm", replicas=1, gpus=1)],
            part_of="serve",
            namespace=cluster_namespace,
        )
        wait_ready(
            session,
            [c.ref for c in result.changes],
            timeout=90,
            on_wait=lambda ref, why: waited.append(ref.name),
        )

    with kube_cluster.api_client() as api:
        llm = client.CoreV1Api(api).list_namespaced_pod(cluster_namespace, label_selector="app=llm")
    assert [p.status.phase for p in llm.items] == ["Running"]
    assert llm.items[0].spec.node_name in {n.name for n in kube_cluster.nodes if n.gpus}


def test_wait_times_out_naming_what_is_not_ready(
    kube_cluster: ControlPlane, cluster_namespace: str
) -> None:
    with Session.connect(kube_cluster.kubeconfig) as session:
        result = apply(
            session,
            [deployment("greedy", replicas=1, gpus=64)],
            part_of="t",
            namespace=cluster_namespace,
        )
        with pytest.raises(KubeError, match=r"timed out after 3s .*deployment\.apps/greedy"):
            wait_ready(session, [c.ref for c in result.changes], timeout=3)
