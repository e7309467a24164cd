"""The portal on a cluster with 1,000 Models: how long its first catalog page takes.

Usage: .venv/bin/python bench/portal_kube.py [--models N] [--rounds N]

Starts the test control plane's apiserver (tests/e2e_kube/kube_harness.py: etcd and
kube-apiserver, no nodes), installs kaip's CRDs, creates N Models in one namespace (default
1,000; owners team-0..team-9) and writes each one's ``status`` as the operator writes it (two
revisions, one Ready condition, a stable rollout; every tenth with a canary in flight), then runs
``kaip portal -n NS`` with the admin's kubeconfig and times, one after the other over loopback
with the admin's bearer token (TokenReview and SubjectAccessReview answers are remembered for
30 s, so after the first request they cost nothing):

* ``GET /api/v1/resources`` and ``GET /`` — the first page (50 rows), JSON and HTML, 1.1 s
  apart: each finds the list it has older than 1 s, answers from it and starts a fresh list of
  the N Models (pages of 500) in the background, which runs beside the next request's wait;
* ``GET /`` back to back (within the second a list is fresh);
* ``GET /?page=20`` and ``GET /?q=model-09&owner=team-3``, 1.1 s apart;
* the portal's first request (it waits for the first list), once.

Prints the median and p90 of each (ms), the load average before and after, and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e_kube"))

from kube_harness import start_api  # noqa: E402

NAMESPACE = "bench"
STAMP = "2026-11-30T00:00:00Z"


def status(i: int) -> dict[str, Any]:
    revisions = [{"name": f"s{i:05d}", "weight": 100, "replicas": 2, "readyReplicas": 2}]
    rollout: dict[str, Any] = {"stable": {"revision": f"s{i:05d}", "spec": {}}}
    if i % 10 == 0:
        revisions = [
            {"name": f"s{i:05d}", "weight": 90, "replicas": 2, "readyReplicas": 2},
            {"name": f"c{i:05d}", "weight": 10, "replicas": 1, "readyReplicas": 1},
        ]
        rollout["canary"] = {"revision": f"c{i:05d}", "step": 0, "stepStartedAt": STAMP}
    return {
        "observedGeneration": 1,
        "url": f"http://model-{i:04d}.{NAMESPACE}.svc:8080",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": STAMP,
                        "reason": "ReplicasReady", "message": "ready"}],
        "revisions": revisions,
        "rollout": rollout,
    }  # fmt: skip


def model(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "kaip.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": f"model-{i:04d}"},
        "spec": {"owner": f"team-{i % 10}",
                 "artifact": {"uri": "s3://models/m.joblib", "format": "sklearn",
                              "sha256": "0" * 64}},
    }  # fmt: skip


def timed(client: httpx.Client, path: str, rounds: int, pause: float) -> list[float]:
    took = []
    for _ in range(rounds):
        time.sleep(pause)
        started = time.perf_counter()
        answer = client.get(path)
        took.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kaip-bench-portal-kube-") as tmp:
        work = Path(tmp)
        plane = start_api(work / "plane")
        portal = None
        try:
            crds = subprocess.run(
                [sys.executable, "-m", "kaip.cli", "crd"], capture_output=True, text=True,
                check=True, timeout=120,
            ).stdout  # fmt: skip
            (work / "crds.yaml").write_text(crds)
            plane.kubectl("apply", "--server-side", "-f", str(work / "crds.yaml"))
            plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                          "crd/models.kaip.dev")  # fmt: skip
            plane.kubectl("create", "namespace", NAMESPACE)
            headers = {"Authorization": f"Bearer {plane.token()}"}
            base = f"{plane.server}/apis/kaip.dev/v1alpha1/namespaces/{NAMESPACE}/models"
            started = time.monotonic()
            with httpx.Client(verify=str(plane.ca_file), headers=headers, timeout=60) as api:
                for i in range(args.models):
                    made = api.post(base, json=model(i))
                    assert made.status_code == 201, made.text
                    patched = api.patch(
                        f"{base}/model-{i:04d}/status", json={"status": status(i)},
                        headers={"Content-Type": "application/merge-patch+json"},
                    )  # fmt: skip
                    assert patched.status_code == 200, patched.text
            print(f"{args.models} Models with status written in {time.monotonic() - started:.0f} s")
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            portal = subprocess.Popen(
                [sys.executable, "-m", "kaip.cli", "portal", "--kubeconfig",
                 str(plane.kubeconfig), "-n", NAMESPACE, "--port", str(port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, headers=headers, trust_env=False, timeout=60) as c:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        started = time.perf_counter()
                        if c.get("/api/v1/resources").status_code == 200:
                            first_ms = (time.perf_counter() - started) * 1000
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline or portal.poll() is not None:
                        raise SystemExit("kaip portal did not answer")
                    time.sleep(0.5)
                total = c.get("/api/v1/resources").json()["total"]
                assert total == args.models, total
                rows = [
                    ("first page (JSON API), 1.1 s apart", "/api/v1/resources", 1.1),
                    ("first page (HTML), 1.1 s apart", "/", 1.1),
                    ("first page (HTML), back to back", "/", 0.0),
                    ("page 20 (HTML), 1.1 s apart", "/?page=20", 1.1),
                    ("search + owner (HTML), 1.1 s apart", "/?q=model-09&owner=team-3", 1.1),
                ]
                results = [(label, timed(c, path, args.rounds, wait)) for label, path, wait in rows]
        finally:
            if portal is not None:
                os.killpg(portal.pid, signal.SIGTERM)
                portal.wait(timeout=30)
            plane.stop()
    load_after = os.getloadavg()
    print(f"\n{args.models} Models on the test apiserver, {args.rounds} requests each, ms")
    print(f"first request of the process (waits for the first list): {first_ms:.0f} ms")
    print("| request | median | p90 |\n|---|---:|---:|")
    for label, took in results:
        ordered = sorted(took)
        p90 = ordered[max(0, int(0.9 * len(ordered)) - 1)]
        print(f"| {label} | {statistics.median(took):.0f} | {p90:.0f} |")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"\nload average before {load_before[0]:.1f}, after {load_after[0]:.1f}; {machine}")


if __name__ == "__main__":
    main()
