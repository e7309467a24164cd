"""Fixtures for tests against a real Kubernetes control plane (see kube_harness.py).

Session-scoped so the whole suite pays each start-up once:

* ``kube_api`` — etcd + kube-apiserver (CRDs, server-side apply, dry-run, RBAC);
* ``kube_cluster`` — plus controller-manager, scheduler and kwok with CPU and GPU fake nodes,
  and the Gateway API CRDs (standard channel) installed; the chart's operator account
  (:data:`OPERATOR_ACCOUNT`) is audited.

Both declare the RBAC users in :data:`RBAC_USERS` (the token file is read once at start); a test
grants them what it needs and authenticates with ``plane.kubeconfig_for(user)``.

Missing binaries fail the test with the command that builds them; set ``KAIP_SKIP_KUBE=1`` to
skip these tests instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_harness import (
    API_BINARIES,
    BINARIES,
    ControlPlane,
    HarnessError,
    binary_dir,
    cluster_crds,
    missing_binaries,
    start_api,
    start_cluster,
)

# user -> groups; tests bind roles to them as they need.
RBAC_USERS: dict[str, list[str]] = {
    "alice": ["kaip-developers"],
    "bob": ["kaip-viewers"],
    "nobody": [],
}

OPERATOR_ACCOUNT = "system:serviceaccount:kaip-system:kaip-operator"
"""The chart's operator, audited on ``kube_cluster`` (what it wrote, and as which replica)."""

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.kube)


def _require_binaries(needed: tuple[str, ...]) -> None:
    missing = missing_binaries(binary_dir(), needed)
    if "kwok" in needed and not cluster_crds(binary_dir()):
        missing.append("crds/gateway-api")
    if not missing:
        return
    message = (
        f"Kubernetes test binaries missing in {binary_dir()} ({', '.join(missing)}): "
        "run tools/k8s/build.sh"
    )
    if os.environ.get("KAIP_SKIP_KUBE") == "1":
        pytest.skip(f"{message} (skipped because KAIP_SKIP_KUBE=1)")
    pytest.fail(f"{message}, or set KAIP_SKIP_KUBE=1 to skip the kube tests", pytrace=False)


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    _require_binaries(API_BINARIES)
    try:
        plane = start_api(tmp_path_factory.mktemp("kube-api"), users=RBAC_USERS)
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    _require_binaries(BINARIES)
    try:
        plane = start_cluster(
            tmp_path_factory.mktemp("kube-cluster"),
            users=RBAC_USERS,
            audit_users=[OPERATOR_ACCOUNT],
        )
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield plane
    plane.stop()


def _namespace(plane: ControlPlane) -> Iterator[str]:
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    with plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": name}})
        yield name
        core.delete_namespace(name)


@pytest.fixture
def cluster_namespace(kube_cluster: ControlPlane) -> Iterator[str]:
    """A fresh namespace on ``kube_cluster``, deleted afterwards."""
    yield from _namespace(kube_cluster)


@pytest.fixture
def api_namespace(kube_api: ControlPlane) -> Iterator[str]:
    """A fresh namespace on ``kube_api`` (left Terminating: no namespace controller runs)."""
    yield from _namespace(kube_api)
