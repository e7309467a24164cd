"""Autoscaling for real: the rendered HPA scales a Model's real pods from its own metric.

kaip renders each Model revision an ``autoscaling/v2`` HorizontalPodAutoscaler asking for the
custom metric ``kaip_inflight_requests`` (type Pods, target ``scaling.targetConcurrency``) and
CPU. Neither is there on a bare cluster: prometheus-adapter (monitoring.py, built from the Go
module proxy by tools/prometheus-adapter/build.sh) serves both from the tier's Prometheus with
the rules in ``charts/kaip/extras/prometheus-adapter-rules.yaml``, what the chart's README asks
a cluster to run. Under load the HPA scales the Model from 1 pod to more; once the load stops it
scales back to 1 (the test cluster's controller-manager waits 20 s before scaling in, not the
default 5 minutes: monitoring.CONTROLLER_MANAGER_ARGS).

No request may fail while it scales, and no pod may restart. A connection that the node's
network could not make at all is retried, as a gateway's connect-failure retry would (Envoy's
``retry_on: connect-failure``): a CI run on 2026-12-01 saw 47 of 114 connections refused or timed
out at the TCP level for a few seconds as new pods became ready, which never reproduced in
eight runs of this test alone; such retries are printed with the pods' and endpoints' state.
A kaip replica that dies or refuses once ready would still fail the test (its restart, or its
connection refused for longer than the retry's 15 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from chart import Env, serve_artifacts, wait_for
from node_harness import RealCluster

CLIENTS = Path(__file__).with_name("clients")
SLOW = '''\
import time

import numpy as np


class Slow:
    """Answers after 0.25 s: requests stay in flight long enough to be counted."""

    def __init__(self, artifact_path):
        pass

    def predict(self, inputs):
        time.sleep(0.25)
        (x,) = inputs.values()
        return {"y": np.zeros(len(x), dtype=np.float32)}
'''


def network_state(env: Env, since: float) -> str:
    """What a failed request's path looked like: the Model's pods (IP, when each started and
    became ready, seconds from ``since``, restarts), its EndpointSlices, the node's neighbours."""
    lines = []
    for pod in env.items("pods", "app.kubernetes.io/name=busy"):
        status = pod["status"]
        ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
        restarts = [c.get("restartCount") for c in status.get("containerStatuses") or []]
        stamps = [("started", status.get("startTime")), *[
            (f"ready={c['status']}", c.get("lastTransitionTime")) for c in ready
        ]]  # fmt: skip
        at = " ".join(f"{what} {_seconds(stamp, since)}" for what, stamp in stamps if stamp)
        lines.append(
            f"pod {pod['metadata']['name']} {status.get('podIP')} {status.get('phase')} {at} "
            f"restarts {restarts}"
        )
    for s in env.items("endpointslices", "kubernetes.io/service-name=busy"):
        ends = [(e["addresses"], e.get("conditions")) for e in s.get("endpoints") or []]
        lines.append(f"endpointslice {s['metadata']['name']}: {ends}")
    neigh = env.cluster.in_node(["ip", "neigh", "show"], check=False)
    lines.append(f"ip neigh (node):\n{neigh.stdout}{neigh.stderr}")
    return "\n".join(lines)


def _seconds(stamp: str, since: float) -> str:
    """An RFC 3339 time as seconds after ``since`` (a Unix time), e.g. ``+12s``."""
    at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return f"{at - since:+.0f}s"


@pytest.fixture(scope="module")
def slow_model(
    real_cluster: RealCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The slow model's code served to the pods, as a Model's pinned artifact."""
    root = tmp_path_factory.mktemp("autoscaling-artifacts")
    (root / "slow.py").write_text(SLOW)
    with serve_artifacts(real_cluster, root) as server:
        yield {
            "uri": f"{server.url}/slow.py",
            "format": "python",
            "entrypoint": "slow:Slow",
            "sha256": server.sha256("slow.py"),
        }


@pytest.fixture(scope="module")
def env(
    real_cluster: RealCluster, chart: Mapping[str, str], prometheus: str, metrics_adapter: None
) -> Iterator[Env]:
    """The chart's operator at work in this module's namespace, the HPAs' metrics served."""
    env = Env(real_cluster, chart["autoscaling"], prometheus)
    yield env
    env.clear()


@pytest.mark.timeout(1200)  # a scale-out and a scale-in on real pods, on a loaded machine
def test_the_hpa_scales_a_model_out_under_load_and_back_in(
    env: Env, slow_model: dict[str, Any], tmp_path: Path
) -> None:
    spec = {
        "owner": "e2e",
        "artifact": slow_model,
        "resources": {"cpu": "200m", "memory": "256Mi"},
        "scaling": {"minReplicas": 1, "maxReplicas": 3, "targetConcurrency": 2},
        "serve": {"batching": {"maxBatchSize": 1, "maxDelayMs": 0}},
    }
    model = {"apiVersion": "kaip.dev/v1alpha1", "kind": "Model", "metadata": {"name": "busy"}}
    env.apply([{**model, "spec": spec}])
    env.wait_ready("model", "busy")
    (revision,) = [r["name"] for r in env.get("model", "busy")["status"]["revisions"]]
    deployment = f"busy-{revision}"

    def ready() -> int:
        return int(env.get("deployment", deployment)["status"].get("readyReplicas") or 0)

    asked: dict[str, float] = {}  # when the HPA first set the Deployment's replicas, for bench/

    def scaled(to: int) -> bool:
        """Whether the Deployment has ``to`` ready pods (at least ``to`` when scaling out),
        noting when the HPA first asked for that many."""
        state = env.get("deployment", deployment)
        wanted, have = (
            int(state["spec"]["replicas"]),
            int(state["status"].get("readyReplicas") or 0),
        )
        done = (have >= to) if to > 1 else (have == wanted == to)
        if done or ((wanted >= to) if to > 1 else (wanted == to)):
            asked.setdefault(f"to {to}", time.monotonic())
        return done

    path = (
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{env.namespace}/pods/*/"
        "kaip_inflight_requests"
    )

    def served() -> list[dict[str, Any]]:
        out = env.cluster.kubectl("get", "--raw", path, check=False)
        return list(json.loads(out).get("items") or []) if out.strip() else []

    (metric, *_) = wait_for("custom.metrics.k8s.io serving the metric", served, 180, env.cluster)
    print(f"\ncustom.metrics.k8s.io: {metric['metric']['name']} = {metric['value']}")
    body = tmp_path / "body.json"
    body.write_text(json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    ))  # fmt: skip
    stop, out = tmp_path / "stop", tmp_path / "out.json"
    url = f"http://{env.cluster_ip('busy')}:8000/v2/models/busy/infer"
    started, wall = time.monotonic(), time.time()
    load = subprocess.Popen(
        [
            *env.cluster.node.enter(net_only=True),
            sys.executable, str(CLIENTS / "load.py"), url, str(body),
            "--concurrency", "8", "--seconds", "900", "--stop", str(stop), "--out", str(out),
            "--new-connections", "--connect-timeout", "2", "--retry-connect", "15",
        ],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert load.stdout is not None and load.stdout.readline().strip() == "started"
        wait_for("the HPA to scale out to 2+ ready pods", lambda: scaled(2), 420, env.cluster)
        scaled_out = time.monotonic() - started
        hpa = env.get("hpa", deployment)["status"]
    finally:
        stopped = time.monotonic()
        stop.touch()
        load.wait(120)
    counts = json.loads(out.read_text())
    print(
        f"scale out: the HPA asked for 2+ pods {asked['to 2'] - started:.0f}s and {ready()} "
        f"were ready {scaled_out:.0f}s after the load (c=8) started; "
        f"HPA: {hpa.get('currentMetrics')}; load: {counts}"
    )
    read = [m["pods"] for m in hpa.get("currentMetrics") or [] if m.get("type") == "Pods"]
    assert [m["metric"]["name"] for m in read] == ["kaip_inflight_requests"], hpa
    state = network_state(env, wall)
    if counts["retried"]:  # connections the node's network did not make: on the record
        print(f"connections retried: {counts['retried']}\n{state}")
    assert counts["failed"] == 0, f"{counts}\n{state}"
    restarts = {
        p["metadata"]["name"]: [
            c.get("restartCount") for c in p["status"].get("containerStatuses") or []
        ]
        for p in env.items("pods", "app.kubernetes.io/name=busy")
    }
    assert all(n == 0 for each in restarts.values() for n in each), restarts
    wait_for("the HPA to scale back in to 1 pod", lambda: scaled(1), 420, env.cluster)
    print(
        f"scale in: the HPA asked for 1 pod {asked['to 1'] - stopped:.0f}s and 1 was left "
        f"{time.monotonic() - stopped:.0f}s after the load stopped"
    )
