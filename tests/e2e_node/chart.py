"""kaip's Helm chart on the real node, installed once a session, and how tests reach its work.

:func:`install_chart` runs a real ``helm install`` of ``charts/kaip`` with the images from the
node's registry, watching the namespaces the tier's test modules use, its canary gates reading
the tier's Prometheus (monitoring.py). :class:`Env` is one test module's namespace of it;
:func:`serve_artifacts` serves the models its pods fetch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from node_harness import OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, REPO_ROOT, NodeError, RealCluster

HELM_SCRIPT = REPO_ROOT / "tools" / "helm" / "build.sh"


@dataclass
class Env:
    """The operator's work in one namespace: kubectl there, waiting for what it makes."""

    cluster: RealCluster
    namespace: str
    prometheus: str

    def kubectl(self, *args: str, check: bool = True) -> str:
        return self.cluster.kubectl("-n", self.namespace, *args, check=check)

    def apply(self, docs: list[dict[str, Any]]) -> None:
        path = self.cluster.workdir / f"apply-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self.kubectl("apply", "-f", str(path))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", kind, name, "-o", "json")))

    def items(self, kind: str, selector: str) -> list[dict[str, Any]]:
        return list(json.loads(self.kubectl("get", kind, "-l", selector, "-o", "json"))["items"])

    def wait_ready(self, kind: str, name: str, timeout: int = 300) -> None:
        done = self.kubectl(
            "wait", "--for=condition=Ready", f"{kind}/{name}", f"--timeout={timeout}s", check=False
        )
        if "condition met" not in done:
            pods = self.kubectl("get", "pods", "-o", "wide", check=False)
            events = self.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False)
            status = self.kubectl("get", kind, name, "-o", "yaml", check=False)
            pytest.fail(
                f"{kind} {name} not Ready in {timeout}s\n{status}\n{pods}\n{events[-4000:]}\n"
                f"operator log:\n{operator_log(self.cluster)[-3000:]}"
            )

    def cluster_ip(self, service: str) -> str:
        return str(self.get("service", service)["spec"]["clusterIP"])

    def clear(self) -> None:
        """Delete what a test module made here (the namespace and its RBAC stay the operator's
        until the session ends: a Role deleted under a running watch would be a 403)."""
        for kind in ("models", "apps", "trainingjobs"):
            self.kubectl("delete", kind, "--all", "--wait=false", check=False)


@dataclass
class ArtifactServer:
    """A directory served over http on the host's end of the node's link (pods reach it)."""

    url: str
    root: Path
    requests: list[str] = field(default_factory=list)
    """The paths asked for, in order."""

    def sha256(self, name: str) -> str:
        return hashlib.sha256((self.root / name).read_bytes()).hexdigest()


@contextlib.contextmanager
def serve_artifacts(cluster: RealCluster, root: Path) -> Iterator[ArtifactServer]:
    seen: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            seen.append(self.path)

    server = ThreadingHTTPServer((cluster.node.host_ip, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield ArtifactServer(f"http://{cluster.node.host_ip}:{server.server_port}", root, seen)
    finally:
        server.shutdown()
        server.server_close()


def operator_log(cluster: RealCluster) -> str:
    """The operator pod's log, through the kubelet (or why it could not be read)."""
    try:
        return cluster.kubectl("-n", OPERATOR_NAMESPACE, "logs", f"deployment/{OPERATOR_ACCOUNT}")
    except NodeError as exc:
        return f"(no operator log: {exc})"


def restricted_namespace(cluster: RealCluster, name: str) -> None:
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl(
        "label", "namespace", name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip


def install_chart(
    cluster: RealCluster, purposes: tuple[str, ...], prometheus: str
) -> Mapping[str, str]:
    """``helm install`` the chart watching one fresh restricted namespace per purpose; returns
    purpose -> namespace."""
    helm = subprocess.run(
        [str(HELM_SCRIPT)], capture_output=True, text=True, check=True, timeout=1800
    ).stdout.strip()
    tag = uuid.uuid4().hex[:6]
    namespaces = {purpose: f"{purpose[:2]}-{tag}" for purpose in purposes}
    restricted_namespace(cluster, OPERATOR_NAMESPACE)
    for name in namespaces.values():
        restricted_namespace(cluster, name)
    repository, image_tag = cluster.images["operator"].rsplit(":", 1)
    install = subprocess.run(
        [
            helm, "install", "kaip", str(REPO_ROOT / "charts" / "kaip"),
            "--kubeconfig", str(cluster.plane.kubeconfig),
            "--namespace", OPERATOR_NAMESPACE,
            "--set", f"image.repository={repository}",
            "--set", f"image.tag={image_tag}",
            "--set", f"servingImage={cluster.images['server']}",
            "--set", f"watchNamespaces={{{','.join(namespaces.values())}}}",
            "--set", f"metrics.prometheusUrl={prometheus}",
            "--set", "interval=2",
            "--wait", "--timeout", "5m",
        ],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    if install.returncode != 0:
        pods = cluster.kubectl("-n", OPERATOR_NAMESPACE, "get", "pods", "-o", "yaml")
        pytest.fail(f"helm install failed: {install.stderr}\n{pods}\n{operator_log(cluster)}")
    return namespaces


def wait_for(what: str, probe: Any, timeout: float, cluster: RealCluster | None = None) -> Any:
    """``probe()``'s first truthy value within ``timeout`` seconds (else fail, with the
    operator's log when ``cluster`` is given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    log = f"\noperator log:\n{operator_log(cluster)[-3000:]}" if cluster else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{log}")
