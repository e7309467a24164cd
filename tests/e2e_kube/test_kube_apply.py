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

from kaip.errors import KubeError
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
    with kube_api.api_client() as api:
        client.CoreV1Api(api).create_namespaced_config_map(
            api_namespace, config_map("shared", owner="ops"), field_manager="ops-tool"
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
