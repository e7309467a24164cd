"""The real Kueue controller manager against a test control plane (this tier's or the node's).

Kueue's controller manager is built from the Go module proxy by ``tools/kueue/build.sh``, its
CRDs from the same module. :func:`start_kueue` applies the CRDs (and kaip's, whose TrainingJob
Kueue's Workloads point back to through the Job), starts the manager for ``batch/job`` only
(Jobs without a queue label are left alone) and stops it on exit. :func:`queues` is a
ResourceFlavor, a ClusterQueue with the given CPU quota and a LocalQueue ``team`` in a namespace.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kube_harness import ControlPlane, free_port

REPO = Path(__file__).resolve().parents[2]
LOCAL_QUEUE = "team"


def kueue_dir() -> Path:
    result = subprocess.run(
        [str(REPO / "tools" / "kueue" / "build.sh"), "--check"], capture_output=True, text=True
    )
    where = Path(result.stdout.strip()).parent  # the binary's directory, crds/ beside it
    if result.returncode != 0:
        # `make setup` builds it (tools/setup.d/47-kueue.sh); the skip guard turns this skip
        # into a failure of `make test`, so it only helps someone running the tier by hand.
        pytest.skip(f"Kueue is not built in {where}: run tools/setup.sh kueue")
    return where


def self_signed(directory: Path) -> None:
    """A certificate and key (tls.crt, tls.key) for Kueue's webhook server, which it serves
    even though no webhook configuration points at it here."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=kueue-webhook-service.kueue-system.svc",
         "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt")],
        check=True, capture_output=True,
    )  # fmt: skip


@dataclass
class Kueue:
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def until(check: Callable[[], Any], what: str, tail: Callable[[], str], limit: float = 300) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"gave up after {limit:.0f}s waiting for {what}\n{tail()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def apply_kaip_crds(plane: ControlPlane) -> None:
    crds = REPO / "charts" / "kaip" / "crds" / "kaip.dev.yaml"  # the TrainingJob kind
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=120s",
        "crd/trainingjobs.kaip.dev",
        "crd/models.kaip.dev",
    )


@contextmanager
def start_kueue(plane: ControlPlane, work: Path) -> Iterator[Kueue]:
    """Kueue's CRDs applied and its controller manager running against ``plane``."""
    built = kueue_dir()
    work.mkdir(parents=True, exist_ok=True)
    plane.kubectl("apply", "--server-side", "-f", str(built / "crds"))
    names = [
        f"crd/{path.stem.split('_', 1)[1]}.kueue.x-k8s.io" for path in built.glob("crds/*.yaml")
    ]
    until(
        lambda: all(
            '"Established"' in plane.kubectl("get", name, "-o", "json", check=False)
            for name in names
        ),
        "Kueue's CRDs to be established",
        lambda: "",
    )
    plane.kubectl("create", "namespace", "kueue-system", check=False)
    certs = work / "webhook-certs"
    self_signed(certs)
    probe = free_port()
    config = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{probe}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": free_port(), "host": "127.0.0.1", "certDir": str(certs)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
    }  # fmt: skip
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    log = work / "kueue.log"
    with log.open("wb") as out:
        # Without internal certificate management Kueue reads its metrics certificate from a
        # fixed /etc/kueue/metrics/certs: in a private mount namespace a tmpfs over /etc holds
        # it there, and the host's /etc is never written (a static Go binary needs nothing else
        # of /etc to reach the apiserver).
        place = (
            "mount -t tmpfs kueue-etc /etc && mkdir -p /etc/kueue/metrics/certs && "
            'cp "$0"/tls.crt "$0"/tls.key /etc/kueue/metrics/certs/ && exec "$@"'
        )
        as_user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
        process = subprocess.Popen(
            ["unshare", *as_user, "--mount", "--propagation", "private", "sh", "-c", place,
             str(certs), str(built / "kueue"), f"--config={work / 'config.yaml'}",
             f"--kubeconfig={plane.kubeconfig}", "--feature-gates=VisibilityOnDemand=false"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    running = Kueue(process, log)
    try:
        until(lambda: process.poll() is None and _ready(probe), "Kueue ready", running.tail)
        yield running
    finally:
        stop(process)


def queues(namespace: str, cpu: int) -> str:
    """A ResourceFlavor, a ClusterQueue ``cq-NAMESPACE`` with ``cpu`` CPUs of quota (and 1Gi)
    and the LocalQueue ``team`` in ``namespace`` pointing at it, as YAML."""
    flavor = {"name": "default-flavor", "resources": [
        {"name": "cpu", "nominalQuota": cpu}, {"name": "memory", "nominalQuota": "1Gi"},
    ]}  # fmt: skip
    return yaml.safe_dump_all([
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
         "metadata": {"name": "default-flavor"}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue",
         "metadata": {"name": f"cq-{namespace}"},
         "spec": {"namespaceSelector": {}, "resourceGroups": [
             {"coveredResources": ["cpu", "memory"], "flavors": [flavor]}]}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
         "metadata": {"name": LOCAL_QUEUE, "namespace": namespace},
         "spec": {"clusterQueue": f"cq-{namespace}"}},
    ])  # fmt: skip


def _condition(obj: dict[str, Any], type_: str, status: str, reason: str | None = None) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(
        c["type"] == type_ and c["status"] == status and reason in (None, c.get("reason"))
        for c in conditions
    )


def admitted(workload: dict[str, Any]) -> bool:
    return _condition(workload, "Admitted", "True")


def without_quota(workload: dict[str, Any]) -> bool:
    """Kueue looked at the Workload and reserved it no quota (it stays pending)."""
    return _condition(workload, "QuotaReserved", "False")


def job_succeeded(training_job: dict[str, Any]) -> bool:
    """The operator says the TrainingJob's Job succeeded."""
    return _condition(training_job, "Ready", "True", "JobSucceeded")
