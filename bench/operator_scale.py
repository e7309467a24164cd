"""The kaip operator at scale: N Models over >= 100 kwok nodes on the real control plane.

    .venv/bin/python bench/operator_scale.py --models 1000 --nodes 100 --gpu-nodes 10

Starts the test control plane (tests/e2e_kube/kube_harness.py: etcd, kube-apiserver,
controller-manager, scheduler, kwok and the Gateway API CRDs), installs the chart's CRDs,
creates the fake nodes, runs ``kaip operator`` as a real process, applies N Models and waits
until every one is Ready for its current generation. Reports wall time, the operator's CPU
seconds and peak RSS, and apiserver request counts for the run -- every client's
(``apiserver_request_total``) and the operator's own (it runs as user ``kaip-operator``, whose
requests the apiserver's audit log records) -- then the same for an idle window with nothing
changing. Prints a markdown table and writes it to bench/results/operator-scale-<time>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e_kube"))

from kube_harness import ControlPlane, FakeNode, start_cluster  # noqa: E402

OPERATOR_USER = "kaip-operator"

MODEL = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: m{index:04d}, namespace: {namespace}}}
spec:
  owner: bench
  artifact: {{uri: https://models.example.com/m{index:04d}.onnx, format: onnx}}
  resources: {{cpu: 10m, memory: 16Mi{gpu}}}
  scaling: {{minReplicas: 1, maxReplicas: 1}}
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def rss_mib(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def apiserver_requests(plane: ControlPlane) -> float:
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    request = urllib.request.Request(
        f"{plane.server}/metrics", headers={"Authorization": f"Bearer {plane.token()}"}
    )
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apiserver_request_total{")
    )


def total(counts: Counter[tuple[str, str]]) -> int:
    return sum(counts.values())


def ready_count(plane: ControlPlane, namespace: str) -> int:
    items = json.loads(plane.kubectl("-n", namespace, "get", "models", "-o", "json"))["items"]
    ready = 0
    for item in items:
        status = item.get("status") or {}
        if status.get("observedGeneration") != item["metadata"]["generation"]:
            continue
        for condition in status.get("conditions") or []:
            if condition["type"] == "Ready" and condition["status"] == "True":
                ready += 1
    return ready


def portal_rows(plane: ControlPlane, namespace: str) -> list[tuple[str, str]]:
    """``kaip portal`` on the converged cluster: how many Models its catalog lists and shows
    Ready (from the status the operator wrote), and how long its first page takes."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    portal = subprocess.Popen(
        [sys.executable, "-m", "kaip.cli", "portal", "--kubeconfig", str(plane.kubeconfig),
         "-n", namespace, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {plane.token()}"}
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers=headers, trust_env=False, timeout=120
        ) as client:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if client.get("/api/v1/resources").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or portal.poll() is not None:
                    return [("portal", "did not answer")]
                time.sleep(0.5)
            listed, ready, page = 0, 0, 1
            while True:
                got = client.get("/api/v1/resources", params={"per_page": 200, "page": page})
                items = got.json()["items"]
                if not items:
                    break
                listed += len(items)
                ready += sum(1 for row in items if row["ready"])
                page += 1
            took = []
            for _ in range(5):
                time.sleep(1.1)
                started = time.perf_counter()
                assert client.get("/").status_code == 200
                took.append((time.perf_counter() - started) * 1000)
    finally:
        os.killpg(portal.pid, signal.SIGTERM)
        portal.wait(timeout=30)
    return [
        ("portal: Models listed / Ready in the catalog", f"{listed} / {ready}"),
        ("portal: first catalog page (HTML), median of 5", f"{statistics.median(took):.0f} ms"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--gpu-nodes", type=int, default=10)
    parser.add_argument("--gpu-models", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=180,
        help="give up when no Model got Ready for this long",
    )
    parser.add_argument(
        "--portal",
        action="store_true",
        help="then run kaip portal on the cluster and read the catalog the operator's status fills",
    )
    args = parser.parse_args()

    nodes = [FakeNode(f"kwok-cpu-{i}", pods="200") for i in range(args.nodes - args.gpu_nodes)]
    nodes += [FakeNode(f"kwok-gpu-{i}", gpus=8, pods="200") for i in range(args.gpu_nodes)]
    # Each Model has two Services and a pod: the harness's default /24 ranges hold ~250.
    plane = start_cluster(
        nodes=nodes,
        service_cidr="10.96.0.0/16",
        pod_cidr="10.244.0.1/16",
        users={OPERATOR_USER: ["system:masters"]},
        audit_users=[OPERATOR_USER],
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below
    operator: subprocess.Popen[bytes] | None = None
    try:
        crds = [
            d for d in yaml.safe_load_all((REPO / "charts/kaip/crds/kaip.dev.yaml").read_text())
        ]
        path = plane.workdir / "crds.yaml"
        path.write_text(yaml.safe_dump_all(crds))
        plane.kubectl("apply", "--server-side", "-f", str(path))
        for doc in crds:
            plane.kubectl(
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                f"crd/{doc['metadata']['name']}",
            )
        namespace = "bench"
        plane.kubectl("create", "namespace", namespace)
        log = (plane.workdir / "operator.log").open("wb")
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kaip.cli",
                "operator",
                "--kubeconfig",
                str(plane.kubeconfig_for(OPERATOR_USER)),
                "--namespace",
                namespace,
                "--prometheus-url",
                "http://127.0.0.1:9",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        time.sleep(5)
        chunks = []
        for first in range(0, args.models, 100):
            chunk = plane.workdir / f"models-{first:04d}.yaml"
            chunk.write_text(
                "---\n".join(
                    MODEL.format(
                        index=i, namespace=namespace, gpu=", gpu: 1" if i < args.gpu_models else ""
                    )
                    for i in range(first, min(first + 100, args.models))
                )
            )
            chunks.append(chunk)
        load = os.getloadavg()[0]
        cpu0, requests0, start = cpu_seconds(operator.pid), apiserver_requests(plane), time.time()
        own0 = plane.audited_requests(OPERATOR_USER)
        for chunk in chunks:  # kubectl gets 60 s per call in the harness: 100 Models at a time
            plane.kubectl("apply", "--server-side", "-f", str(chunk))
        peak_rss, ready, best, since = 0.0, 0, -1, time.time()
        while time.time() - start < args.timeout:
            peak_rss = max(peak_rss, rss_mib(operator.pid))
            ready = ready_count(plane, namespace)
            if ready == args.models:
                break
            if ready > best:
                best, since = ready, time.time()
            elif time.time() - since > args.stall_seconds:
                break  # e.g. Deployments whose status the controller-manager never updated
            time.sleep(5)
        wall = time.time() - start
        cpu1, requests1 = cpu_seconds(operator.pid), apiserver_requests(plane)
        time.sleep(2)  # the audit log is written in batches of at most a second
        own1 = plane.audited_requests(OPERATOR_USER)
        time.sleep(args.idle_seconds)
        cpu2, requests2 = cpu_seconds(operator.pid), apiserver_requests(plane)
        own2 = plane.audited_requests(OPERATOR_USER)
        not_ready = json.loads(
            plane.kubectl(
                "get", "events", "-A", "--field-selector=reason=NodeNotReady", "-o", "json"
            )
        )["items"]
        peak_rss = max(peak_rss, rss_mib(operator.pid))
        gpu_pods = json.loads(plane.kubectl("-n", namespace, "get", "pods", "-o", "json"))["items"]
        misplaced = [
            p["metadata"]["name"]
            for p in gpu_pods
            if any(
                "nvidia.com/gpu" in (c.get("resources", {}).get("limits") or {})
                for c in p["spec"]["containers"]
            )
            and not str(p["spec"].get("nodeName", "")).startswith("kwok-gpu-")
        ]
        rows = [
            ("models Ready", f"{ready} / {args.models}"),
            ("fake nodes (GPU)", f"{args.nodes} ({args.gpu_nodes})"),
            ("GPU pods on non-GPU nodes", str(len(misplaced))),
            ("wall time to all Ready", f"{wall:.0f} s"),
            ("operator CPU while converging", f"{cpu1 - cpu0:.1f} s"),
            ("operator peak RSS", f"{peak_rss:.0f} MiB"),
            ("apiserver requests while converging (all clients)", f"{requests1 - requests0:.0f}"),
            ("apiserver requests while converging (the operator)", f"{total(own1 - own0)}"),
            (f"operator CPU idle over {args.idle_seconds:.0f} s", f"{cpu2 - cpu1:.2f} s"),
            (
                f"apiserver requests idle over {args.idle_seconds:.0f} s (all / the operator)",
                f"{requests2 - requests1:.0f} / {total(own2 - own1)}",
            ),
            ("node NotReady events", str(len(not_ready))),
            ("load average (1 min) at start", f"{load:.1f}"),
        ]
        if args.portal:
            rows += portal_rows(plane, namespace)
        table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
        table += "\n\nThe operator's requests while converging, by verb and resource:\n\n"
        table += "| verb | resource | requests |\n|---|---|---:|\n" + "\n".join(
            f"| {verb} | {resource} | {n} |" for (verb, resource), n in (own1 - own0).most_common()
        )
        print(table)
        out = REPO / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"operator-scale-{time.strftime('%Y%m%dT%H%M%S')}.md").write_text(table + "\n")
        return 0 if ready == args.models else 1
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(30)
        plane.stop()


if __name__ == "__main__":
    raise SystemExit(main())
