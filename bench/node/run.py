"""The real node, measured: what a pod costs against a bare process, and what kube-proxy costs.

Starts the real-node cluster of the e2e_node tier (tests/e2e_node/node_harness.py: control
plane, kubelet, containerd, CNI bridge, kube-proxy, kaip's images in the node's registry),
renders the quickstart's sklearn Model with ``kaip render`` (artifact over http from this
process, sha256 pinned; 1 CPU, 1 GiB) and applies it, then measures in one run:

1. **Pod created -> Ready**, image already pulled: the Deployment scaled 0 -> 1, timed from the
   pod's ADDED watch event to the event that shows it Ready (scheduling, sandbox and CNI, the
   init container fetching the artifact, the server loading it, the first passing readiness
   probe). Against ``kaip serve`` started bare on the host with the same spec: process start
   to the first 200 of ``/v2/health/ready``, polled every 10 ms.
2. **ClusterIP vs pod IP** at 8 connections: wrk (``bench/serving/post.lua``, one row per
   request) from inside the node's network namespace against the Model's Service ClusterIP
   (kube-proxy's iptables DNAT) and against the pod IP, alternating, ``--rounds`` each.
3. **Pod deletion under load**: 2 replicas; a counting load (``tests/e2e_node/clients/
   load.py``, 8 connections) while one pod is deleted and replaced, ``--deletions`` times;
   failed requests counted.

    .venv/bin/python bench/node/run.py [--rounds 5] [--duration 10] [--starts 5] [--deletions 3]

Needs root and what ``make test`` sets up for the e2e_node tier, plus wrk (apt-get install
wrk). Prints markdown; medians, with the load average before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e_node"))
sys.path.insert(0, str(ROOT / "bench" / "serving"))
from load import LoadResult, parse_summary  # noqa: E402
from node_harness import RealCluster, start_real_cluster  # noqa: E402

LUA = ROOT / "bench" / "serving" / "post.lua"
CLIENTS = ROOT / "tests" / "e2e_node" / "clients"
NAMESPACE = "bench"
MODEL = "digits"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def kubectl_json(cluster: RealCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("-n", NAMESPACE, *args, "-o", "json"))


@contextmanager
def artifact_server(directory: Path, host: str) -> Iterator[str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()


def spec(artifact: str, digest: str, replicas: int) -> dict[str, Any]:
    docs = yaml.safe_load_all((ROOT / "examples" / "quickstart" / "kaip.yaml").read_text())
    model = next(d for d in docs if d and d["kind"] == "Model")
    model["spec"]["artifact"] = {"uri": artifact, "format": "sklearn", "sha256": digest}
    model["spec"]["scaling"] = {"minReplicas": replicas, "maxReplicas": replicas}
    model["spec"]["resources"] = {"cpu": "1", "memory": "1Gi"}
    return dict(model)


def render_and_apply(cluster: RealCluster, model: dict[str, Any], work: Path) -> None:
    path = work / "kaip.yaml"
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    env = {**os.environ, "KAIP_KUBE__IMAGE": cluster.images["server"]}
    rendered = subprocess.run(
        [sys.executable, "-m", "kaip.cli", "render", str(path), "--namespace", NAMESPACE],
        capture_output=True, text=True, check=True, env=env,
    ).stdout  # fmt: skip
    out = work / "rendered.yaml"
    out.write_text(rendered)
    cluster.kubectl("apply", "--server-side", "-f", str(out))


def deployment(cluster: RealCluster) -> str:
    items = kubectl_json(cluster, "get", "deployments", "-l", f"app.kubernetes.io/name={MODEL}")
    return str(items["items"][0]["metadata"]["name"])


def ready_pods(cluster: RealCluster) -> list[dict[str, Any]]:
    pods = kubectl_json(cluster, "get", "pods", "-l", f"app.kubernetes.io/name={MODEL}")["items"]
    return [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]


def wait(what: str, probe: Any, timeout: float = 600) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def pod_start_seconds(cluster: RealCluster, name: str) -> float:
    """Scale to 0, then to 1: seconds from the new pod's ADDED event to its Ready event."""
    from kubernetes import client, watch

    cluster.kubectl("-n", NAMESPACE, "scale", f"deployment/{name}", "--replicas=0")
    wait(
        "no pods",
        lambda: (
            not kubectl_json(cluster, "get", "pods", "-l", f"app.kubernetes.io/name={MODEL}")[
                "items"
            ]
        ),
    )
    with cluster.plane.api_client() as api:
        core = client.CoreV1Api(api)
        stream = watch.Watch()
        added: float | None = None
        threading.Timer(
            0.5, cluster.kubectl, ("-n", NAMESPACE, "scale", f"deployment/{name}", "--replicas=1")
        ).start()
        for event in stream.stream(
            core.list_namespaced_pod, NAMESPACE, label_selector=f"app.kubernetes.io/name={MODEL}",
            timeout_seconds=600,
        ):  # fmt: skip
            now = time.monotonic()
            pod = event["object"]
            if event["type"] == "ADDED" and added is None:
                added = now
            conditions = pod.status.conditions or []
            if added is not None and any(
                c.type == "Ready" and c.status == "True" for c in conditions
            ):
                stream.stop()
                return now - added
    raise SystemExit("the pod never got Ready")


def bare_start_seconds(model: dict[str, Any], artifact: Path, work: Path) -> float:
    """``kaip serve`` on the host, same spec with the artifact as a local file."""
    local = json.loads(json.dumps(model))
    local["spec"]["artifact"]["uri"] = artifact.name
    spec_dir = work / "bare"
    spec_dir.mkdir(exist_ok=True)
    shutil.copy(artifact, spec_dir / artifact.name)
    (spec_dir / "kaip.yaml").write_text(yaml.safe_dump(local, sort_keys=False))
    port = 18000 + os.getpid() % 1000
    started = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-m", "kaip.cli", "serve", str(spec_dir), "--model", MODEL,
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/v2/health/ready", timeout=1
                ) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            if server.poll() is not None:
                raise SystemExit("kaip serve exited before it was ready")
            time.sleep(0.01)
    finally:
        server.terminate()
        server.wait(30)


def wrk_in_node(cluster: RealCluster, address: str, body: Path, duration: float) -> LoadResult:
    out = Path(tempfile.mkdtemp(prefix="bench-node-")) / "summary.json"
    env = {**os.environ, "BENCH_BODY": str(body), "BENCH_PATH": f"/v2/models/{MODEL}/infer",
           "BENCH_OUT": str(out)}  # fmt: skip
    argv = [*cluster.node.enter(net_only=True), "wrk", "-t1", "-c8", f"-d{duration:g}s",
            "--timeout=5s", "-s", str(LUA), f"http://{address}"]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"wrk failed: {done.stderr or done.stdout}")
    return parse_summary(json.loads(out.read_text()))


def deletion_failures(cluster: RealCluster, name: str, body: Path, work: Path) -> dict[str, Any]:
    cluster.kubectl("-n", NAMESPACE, "scale", f"deployment/{name}", "--replicas=2")
    wait("2 ready pods", lambda: len(ready_pods(cluster)) == 2)
    ip = kubectl_json(cluster, "get", "service", MODEL)["spec"]["clusterIP"]
    stop, result = work / "stop", work / "deletion.json"
    stop.unlink(missing_ok=True)
    load = subprocess.Popen(
        [*cluster.node.enter(net_only=True), sys.executable, str(CLIENTS / "load.py"),
         f"http://{ip}:8000/v2/models/{MODEL}/infer", str(body), "--concurrency", "8",
         "--seconds", "600", "--stop", str(stop), "--out", str(result)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert load.stdout is not None and load.stdout.readline().strip() == "started"
    time.sleep(2)
    victim = ready_pods(cluster)[0]["metadata"]["name"]
    cluster.kubectl("-n", NAMESPACE, "delete", "pod", victim, "--wait=false")
    wait(
        "the pod replaced",
        lambda: (
            len([p for p in ready_pods(cluster) if p["metadata"]["name"] != victim]) == 2
            and victim
            not in {
                p["metadata"]["name"]
                for p in kubectl_json(
                    cluster, "get", "pods", "-l", f"app.kubernetes.io/name={MODEL}"
                )["items"]
            }
        ),
    )
    time.sleep(3)
    stop.touch()
    load.wait(60)
    return dict(json.loads(result.read_text()))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--deletions", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    load_before = loadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-node-"))
    artifact = work / "model.joblib"
    train = ROOT / "examples" / "quickstart" / "train.py"
    subprocess.run(
        [sys.executable, str(train), str(artifact)], check=True, stdout=subprocess.DEVNULL
    )
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    cluster = start_real_cluster(work / "cluster")
    try:
        cluster.kubectl("create", "namespace", NAMESPACE)
        with artifact_server(work, cluster.node.host_ip) as url:
            model = spec(f"{url}/model.joblib", digest, replicas=1)
            render_and_apply(cluster, model, work)
            name = deployment(cluster)
            wait("the first pod Ready (image pull)", lambda: len(ready_pods(cluster)) == 1)
            pod_starts = [pod_start_seconds(cluster, name) for _ in range(args.starts)]
            bare_starts = [bare_start_seconds(model, artifact, work) for _ in range(args.starts)]

            body = work / "body.json"
            body.write_text(
                json.dumps(
                    {
                        "inputs": [
                            {
                                "name": "input-0",
                                "shape": [1, 64],
                                "datatype": "FP32",
                                "data": [0.0] * 64,
                            }
                        ]
                    }
                )
            )
            wait("one ready pod", lambda: len(ready_pods(cluster)) == 1)
            pod_ip = ready_pods(cluster)[0]["status"]["podIP"]
            cluster_ip = kubectl_json(cluster, "get", "service", MODEL)["spec"]["clusterIP"]
            results: dict[str, list[LoadResult]] = {"ClusterIP": [], "pod IP": []}
            wrk_in_node(cluster, f"{pod_ip}:8000", body, 3)  # warm up
            for _ in range(args.rounds):
                results["ClusterIP"].append(
                    wrk_in_node(cluster, f"{cluster_ip}:8000", body, args.duration)
                )
                results["pod IP"].append(
                    wrk_in_node(cluster, f"{pod_ip}:8000", body, args.duration)
                )
            deletions = [
                deletion_failures(cluster, name, body, work) for _ in range(args.deletions)
            ]
    finally:
        problems = cluster.stop()
    load_after = loadavg()

    print(f"Real node, one run; load average before {load_before}, after {load_after}.\n")
    print("| start | median s | runs |\n|---|---|---|")
    print(
        f"| pod created -> Ready (image pulled) | {median(pod_starts):.2f} | "
        f"{', '.join(f'{s:.2f}' for s in pod_starts)} |"
    )
    print(
        f"| `kaip serve` bare on the host -> ready | {median(bare_starts):.2f} | "
        f"{', '.join(f'{s:.2f}' for s in bare_starts)} |\n"
    )
    print("| target (c=8) | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|")
    for target, runs in results.items():
        print(
            f"| {target} | {median([r.rps for r in runs]):.0f} | "
            f"{median([r.p50_ms for r in runs]):.2f} | {median([r.p99_ms for r in runs]):.2f} | "
            f"{sum(r.errors for r in runs)} |"
        )
    ratio = median([r.rps for r in results["ClusterIP"]]) / median(
        [r.rps for r in results["pod IP"]]
    )
    print(f"\nClusterIP / pod IP throughput: {ratio:.3f}\n")
    print("| pod deletion under load (c=8) | ok | failed |\n|---|---|---|")
    for i, d in enumerate(deletions, 1):
        print(f"| deletion {i} | {d['ok']} | {d['failed']} {d.get('why') or ''} |")
    if problems:
        print(f"\nteardown could not undo: {problems}")


if __name__ == "__main__":
    main()
