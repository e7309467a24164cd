"""``kaip apply`` of kaip specs: render, server-side apply, wait, re-apply, prune a revision, delete
- and CRDs applied in the same run as the objects that need them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from kube_harness import ControlPlane
from kubernetes import client

from kaip.kube.client import Outcome, Session, apply

REPO = Path(__file__).resolve().parents[2]

# A CRD of our own for the one-run test (any group outside *.k8s.io needs no approval).
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.kaip.dev"},
    "spec": {
        "group": "example.kaip.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}

APP_SPEC = """\
apiVersion: kaip.dev/v1alpha1
kind: App
metadata:
  name: shop
spec:
  owner: web
  image: ghcr.io/example/shop:{version}
  port: 8080
  resources:
    cpu: 100m
    memory: 128Mi
"""


def kaip(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaip.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )


def deployments(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    with plane.api_client() as api:
        items = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
    return {d.metadata.name: d for d in items}


def test_quickstart_applies_becomes_ready_and_reapplies_unchanged(
    kube_cluster: ControlPlane, cluster_namespace: str
) -> None:
    common = ("--kubeconfig", kube_cluster.kubeconfig, "-n", cluster_namespace)

    first = kaip("apply", "examples/quickstart", *common, "--timeout", "120")
    second = kaip("apply", "examples/quickstart", *common, "--prune")

    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout and "ready:" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "created" not in second.stdout and "pruned" not in second.stdout
    running = deployments(kube_cluster, cluster_namespace)
    assert running and all(d.status.available_replicas == 1 for d in running.values())
    assert all(d.metadata.labels["kaip.dev/part-of"] == "quickstart" for d in running.values())


def test_a_new_revision_prunes_the_old_deployment(
    kube_cluster: ControlPlane, cluster_namespace: str, tmp_path: Path
) -> None:
    spec = tmp_path / "shop" / "kaip.yaml"
    spec.parent.mkdir()
    common = ("--kubeconfig", kube_cluster.kubeconfig, "-n", cluster_namespace, "--prune")

    spec.write_text(APP_SPEC.format(version="1.0"))
    v1 = kaip("apply", spec.parent, *common)
    old = set(deployments(kube_cluster, cluster_namespace))
    spec.write_text(APP_SPEC.format(version="2.0"))
    v2 = kaip("apply", spec.parent, *common)
    new = set(deployments(kube_cluster, cluster_namespace))
    gone = kaip(
        "delete", spec.parent, "--kubeconfig", kube_cluster.kubeconfig, "-n", cluster_namespace
    )

    assert v1.returncode == 0 and v2.returncode == 0, v1.stderr + v2.stderr
    assert len(old) == 1 and len(new) == 1 and old != new
    (old_name,) = old
    assert f"deployment.apps/{old_name} -n {cluster_namespace} pruned" in v2.stdout
    assert gone.returncode == 0, gone.stderr
    assert deployments(kube_cluster, cluster_namespace) == {}


def test_a_missing_crd_stops_the_apply_before_any_write(
    kube_api: ControlPlane, api_namespace: str
) -> None:
    out = kaip(
        "apply",
        "examples/quickstart",
        "--kubeconfig",
        kube_api.kubeconfig,
        "-n",
        api_namespace,
        "--dry-run=server",
    )

    assert out.returncode == 1
    assert "does not serve HTTPRoute (gateway.networking.k8s.io/v1)" in out.stderr
    assert "nothing was applied" in out.stderr


def test_a_crd_and_its_objects_apply_in_one_run(kube_api: ControlPlane, api_namespace: str) -> None:
    crd = WIDGET_CRD
    widget = {"apiVersion": "example.kaip.dev/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with Session.connect(kube_api.kubeconfig) as session:
        # A session re-asks about a kind it found missing only now and then (for the operator);
        # the apply, waiting for the CRD it just created, asks afresh by itself. (It used to
        # wait for the session's next look: 30 s per apply of a CRD and its objects.)
        session.rediscover_after = 3600.0
        result = apply(session, [widget, crd], part_of="widgets", namespace=api_namespace)

    assert [(c.ref.kind, c.outcome) for c in result.changes] == [
        ("CustomResourceDefinition", Outcome.created),
        ("Widget", Outcome.created),
    ]
