"""The test control plane itself works: the API answers, Deployments run on kwok nodes, the
scheduler places GPU pods on GPU nodes only, and RBAC users are who they say they are."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kube_harness import GPU_PRODUCT_LABEL, GPU_RESOURCE, KUBE_VERSION, ControlPlane
from kubernetes import client
from kubernetes.client.rest import ApiException


def _eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_api_server_reports_version_and_readiness(kube_api: ControlPlane) -> None:
    with kube_api.api_client() as api:
        assert client.VersionApi(api).get_code().git_version == KUBE_VERSION
    assert kube_api.kubectl("get", "--raw", "/readyz") == "ok"


def test_deployment_becomes_running_pods_on_kwok_nodes(
    kube_cluster: ControlPlane, cluster_namespace: str
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "example.invalid/web:1",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ]
                },
            },
        },
    }
    with kube_cluster.api_client() as api:
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        apps.create_namespaced_deployment(cluster_namespace, deployment)

        def available() -> bool:
            status = apps.read_namespaced_deployment_status("web", cluster_namespace).status
            return status.available_replicas == 3

        assert _eventually(available), "Deployment never had 3 available replicas"
        pods = core.list_namespaced_pod(cluster_namespace, label_selector="app=web").items
    fake_nodes = {n.name for n in kube_cluster.nodes}
    assert len(pods) == 3
    assert {p.status.phase for p in pods} == {"Running"}
    assert {p.spec.node_name for p in pods} <= fake_nodes


def test_gpu_pod_lands_only_on_a_gpu_node(
    kube_cluster: ControlPlane, cluster_namespace: str
) -> None:
    gpu_nodes = {n.name for n in kube_cluster.nodes if n.gpus}
    assert gpu_nodes and gpu_nodes != {n.name for n in kube_cluster.nodes}

    def pod(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "containers": [
                    {
                        "name": "llm",
                        "image": "example.invalid/llm:1",
                        "resources": {"limits": {GPU_RESOURCE: "1"}},
                    }
                ]
            },
        }

    with kube_cluster.api_client() as api:
        core = client.CoreV1Api(api)
        names = [f"llm-{i}" for i in range(4)]
        for name in names:
            core.create_namespaced_pod(cluster_namespace, pod(name))

        def all_running() -> list[Any] | None:
            pods = [core.read_namespaced_pod(n, cluster_namespace) for n in names]
            return pods if all(p.status.phase == "Running" for p in pods) else None

        pods = _eventually(all_running)
        assert pods, "GPU pods never reached Running"
        node = core.read_node(pods[0].spec.node_name)
    assert {p.spec.node_name for p in pods} <= gpu_nodes
    assert node.metadata.labels[GPU_PRODUCT_LABEL]
    assert node.status.allocatable[GPU_RESOURCE] == "8"


def test_gpu_pod_beyond_capacity_stays_pending(
    kube_cluster: ControlPlane, cluster_namespace: str
) -> None:
    too_big = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "greedy"},
        "spec": {
            "containers": [
                {"name": "c", "image": "x.invalid/c", "resources": {"limits": {GPU_RESOURCE: "9"}}}
            ]
        },
    }
    with kube_cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(cluster_namespace, too_big)

        def unschedulable() -> bool:
            conditions = core.read_namespaced_pod("greedy", cluster_namespace).status.conditions
            return any(
                c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions or []
            )

        assert _eventually(unschedulable), "a pod asking for 9 GPUs was scheduled"


def test_rbac_users_are_authenticated_and_denied_by_default(
    kube_api: ControlPlane, api_namespace: str
) -> None:
    with kube_api.api_client("nobody") as api:
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(api).list_namespaced_config_map(api_namespace)
        review = client.AuthenticationV1Api(api).create_self_subject_review({})
    assert denied.value.status == 403
    assert review.status.user_info.username == "nobody"
    assert "system:authenticated" in review.status.user_info.groups
