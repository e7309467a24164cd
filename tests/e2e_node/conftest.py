"""Fixtures of the real-node tier (node_harness.py): one cluster with a real kubelet a session.

``real_cluster`` starts the control plane, the kwok nodes and the real node ``real-0`` (kubelet,
containerd, CNI, kube-proxy, the registry holding kaip's images) and stops all of it, checking
that the host was left as it was. The apiserver audits every request of the operator's
ServiceAccount (``node_harness.OPERATOR_USER``), so tests can count what it was refused.
``prometheus`` scrapes the node's pods (monitoring.py), ``metrics_adapter`` serves the HPAs'
metrics from it (prometheus-adapter, monitoring.py) and ``chart`` installs kaip's chart once
(chart.py), its operator watching one namespace per test module that needs it and reading that
Prometheus: the tier starts one cluster, one Prometheus, one adapter and one operator.

What the tier needs is installed and built by tools/setup.sh (``make test`` runs it first); a
missing part fails the test with the command that provides it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping

import monitoring
import pytest
from chart import install_chart
from node_harness import OPERATOR_USER, RealCluster, missing_parts, start_real_cluster

CHART_NAMESPACES = ("quickstart", "canary", "autoscaling")
"""The test modules whose namespaces the chart's operator watches (chart.install_chart)."""


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    missing = missing_parts() + monitoring.missing_parts()
    if missing:
        pytest.fail(
            f"the real-node tier needs: {'; '.join(missing)}. Run tools/setup.sh, or set "
            "KAIP_SKIP_KUBE=1 to skip the Kubernetes tiers",
            pytrace=False,
        )
    workdir = tmp_path_factory.mktemp("real-node")
    cluster = start_real_cluster(
        workdir,
        audit_users=[OPERATOR_USER],
        apiserver_args=monitoring.aggregation_flags(workdir / "front-proxy"),
        controller_manager_args=monitoring.CONTROLLER_MANAGER_ARGS,
    )
    timings = ", ".join(f"{k} {v:.0f}s" for k, v in cluster.timings.items())
    print(f"\nreal node up: {timings}")
    yield cluster
    # The logs stay in pytest's temporary directory (it keeps the last three sessions' own).
    problems = cluster.stop(keep_logs=True)
    print(f"\nreal node down: {cluster.timings}, {cluster.node.stop_seconds}")
    assert not problems, f"the host was not left as it was: {problems}"


@pytest.fixture
def node_namespace(real_cluster: RealCluster) -> Iterator[str]:
    """A fresh namespace enforcing the restricted Pod Security profile, deleted afterwards."""
    name = f"n-{uuid.uuid4().hex[:8]}"
    real_cluster.kubectl("create", "namespace", name)
    real_cluster.kubectl(
        "label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted"
    )
    yield name
    real_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def prometheus(real_cluster: RealCluster) -> Iterator[str]:
    """Prometheus scraping the node's pods (it stops with the node); its URL on the node's IP."""
    discovery = monitoring.PodDiscovery(real_cluster)
    yield monitoring.start_prometheus(real_cluster, discovery)
    discovery.close()


@pytest.fixture(scope="session")
def metrics_adapter(real_cluster: RealCluster, prometheus: str) -> None:
    """prometheus-adapter serving ``custom.metrics.k8s.io`` and ``metrics.k8s.io`` from that
    Prometheus through the apiserver's aggregation layer (it stops with the node)."""
    monitoring.start_adapter(real_cluster, prometheus)


@pytest.fixture(scope="session")
def chart(real_cluster: RealCluster, prometheus: str) -> Mapping[str, str]:
    """kaip's chart, installed once: test module purpose (CHART_NAMESPACES) -> namespace."""
    return install_chart(real_cluster, CHART_NAMESPACES, prometheus)
