"""Prometheus beside the real node: kaip's metrics as a cluster has them.

Prometheus (Debian's package, tools/setup.d/43-prometheus.sh) scrapes the pods annotated
``prometheus.io/scrape`` with the job in ``charts/kaip/extras/prometheus-scrape.yaml`` (the file
the chart's README hands to users), its relabelling used as it is, so every series carries
``namespace`` and ``pod``. It runs in the node's network namespace: it reaches pod IPs there, and
pods (the operator's canary gates) reach it on the node's IP.

Debian builds Prometheus without ``kubernetes_sd_configs`` (its Go client is not packaged):
the job's Kubernetes discovery is replaced by an ``http_sd_configs`` endpoint this module serves
on the host's end of the node's link (:class:`PodDiscovery`). It lists pods from the apiserver
and gives each container port the ``__address__`` and ``__meta_kubernetes_*`` labels
kubernetes_sd's ``pod`` role gives, so the job's relabel rules see what they see on a cluster.

prometheus-adapter (tools/prometheus-adapter/build.sh, from the Go module proxy) serves
``custom.metrics.k8s.io`` (``kaip_inflight_requests``, the metric kaip's HPAs ask for) and
``metrics.k8s.io`` (CPU, memory: the HPA's other target) from that Prometheus, with the rules in
``charts/kaip/extras/prometheus-adapter-rules.yaml``. The apiserver reaches it through the
aggregation layer: an APIService per group, a Service without selector whose Endpoints name the
adapter on the node's IP, and the apiserver's front-proxy flags (:func:`aggregation_flags`,
given at start, with :data:`CONTROLLER_MANAGER_ARGS`).

Nothing listens anywhere but the node's link; Prometheus and the adapter die with the node.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import yaml
from node_harness import REPO_ROOT, NodeError, RealCluster

EXTRAS = REPO_ROOT / "charts" / "kaip" / "extras"
PROMETHEUS = Path("/usr/bin/prometheus")
PROMETHEUS_PORT = 9090
ADAPTER_SCRIPT = REPO_ROOT / "tools" / "prometheus-adapter" / "build.sh"
ADAPTER_PORT = 6443
MONITORING = "monitoring"
ADAPTER_APIS = (
    ("custom.metrics.k8s.io", "v1beta1"),
    ("custom.metrics.k8s.io", "v1beta2"),
    ("metrics.k8s.io", "v1beta1"),
)
CONTROLLER_MANAGER_ARGS = (
    # The HPA acts every 5 s and scales in 20 s after the load is gone (defaults: 15 s, 5 min).
    "--horizontal-pod-autoscaler-sync-period=5s",
    "--horizontal-pod-autoscaler-downscale-stabilization=20s",
)


def missing_parts() -> list[str]:
    missing = []
    if not PROMETHEUS.exists():
        missing.append("prometheus (Debian package prometheus)")
    if subprocess.run([str(ADAPTER_SCRIPT), "--check"], capture_output=True).returncode != 0:
        missing.append("prometheus-adapter (tools/prometheus-adapter/build.sh)")
    return missing


# -- the aggregation layer's certificates --------------------------------------------------------


def aggregation_flags(pki: Path) -> list[str]:
    """kube-apiserver flags of the aggregation layer, with a front-proxy CA and client made here.

    The apiserver proves to an extension apiserver (the adapter) who is asking with a client
    certificate from the front-proxy CA; ``--enable-aggregator-routing`` makes it dial the
    Service's endpoint (the node's IP) instead of its ClusterIP, which only the node routes.
    """
    pki.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = pki / "front-proxy-ca.key", pki / "front-proxy-ca.crt"
    key, csr = pki / "front-proxy-client.key", pki / "front-proxy-client.csr"
    crt = pki / "front-proxy-client.crt"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=front-proxy-ca", "-keyout", str(ca_key), "-out", str(ca_crt))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=front-proxy-client",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-out", str(crt))  # fmt: skip
    return [
        f"--requestheader-client-ca-file={ca_crt}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        f"--proxy-client-cert-file={crt}",
        f"--proxy-client-key-file={key}",
        "--enable-aggregator-routing=true",
    ]


# -- discovery -----------------------------------------------------------------------------------


def _label_name(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def pod_targets(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """kubernetes_sd's ``pod`` role for ``pods``: one target group per container port."""
    groups = []
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status") or {}
        if not status.get("podIP"):
            continue
        labels = {
            "__meta_kubernetes_namespace": meta["namespace"],
            "__meta_kubernetes_pod_name": meta["name"],
            "__meta_kubernetes_pod_phase": status.get("phase", ""),
            "__meta_kubernetes_pod_ip": status["podIP"],
        }
        for key, value in (meta.get("annotations") or {}).items():
            labels[f"__meta_kubernetes_pod_annotation_{_label_name(key)}"] = value
            labels[f"__meta_kubernetes_pod_annotationpresent_{_label_name(key)}"] = "true"
        for key, value in (meta.get("labels") or {}).items():
            labels[f"__meta_kubernetes_pod_label_{_label_name(key)}"] = value
        for container in pod["spec"]["containers"]:
            for port in container.get("ports") or []:
                groups.append({
                    "targets": [f"{status['podIP']}:{port['containerPort']}"],
                    "labels": {
                        **labels,
                        "__meta_kubernetes_pod_container_name": container["name"],
                        "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                    },
                })  # fmt: skip
    return groups


class PodDiscovery:
    """Prometheus's ``http_sd`` endpoint: the cluster's pods, as :func:`pod_targets` shows them."""

    def __init__(self, cluster: RealCluster) -> None:
        plane = cluster.plane
        self._client = httpx.Client(
            base_url=plane.server,
            verify=ssl.create_default_context(cafile=str(plane.ca_file)),
            headers={"Authorization": f"Bearer {plane.token()}"},
            timeout=10,
        )
        client = self._client

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    answer = client.get("/api/v1/pods")
                    answer.raise_for_status()
                    body = json.dumps(pod_targets(answer.json()["items"])).encode()
                    code = 200
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    body, code = str(exc).encode(), 503
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((cluster.node.host_ip, 0), Handler)
        self.url = f"http://{cluster.node.host_ip}:{self._server.server_port}/targets"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()


# -- Prometheus ----------------------------------------------------------------------------------


def prometheus_config(discovery_url: str) -> dict[str, Any]:
    """prometheus.yml: the chart's scrape job every 2 s, its pods found at ``discovery_url``."""
    scrape = yaml.safe_load((EXTRAS / "prometheus-scrape.yaml").read_text())
    (job,) = scrape["scrape_configs"]
    job["scrape_interval"] = "2s"
    job["scrape_timeout"] = "1s"
    del job["kubernetes_sd_configs"]
    job["http_sd_configs"] = [{"url": discovery_url, "refresh_interval": "2s"}]
    every = {"scrape_interval": "2s", "evaluation_interval": "2s"}
    return {"global": every, "scrape_configs": [job]}


def start_prometheus(cluster: RealCluster, discovery: PodDiscovery) -> str:
    """Prometheus in the node's network; returns its URL (on the node's IP)."""
    work = cluster.workdir / "prometheus"
    (work / "data").mkdir(parents=True, exist_ok=True)
    config = work / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(discovery.url), sort_keys=False))
    address = f"{cluster.layout.node_ip}:{PROMETHEUS_PORT}"
    cluster.daemons["prometheus"] = cluster.node.spawn(
        [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address={address}",
            "--storage.tsdb.retention.time=2h",
            "--log.level=warn",
        ],
        cluster.log("prometheus"),
    )
    url = f"http://{address}"
    deadline = time.monotonic() + 60
    while get_in_node(cluster, f"{url}/-/ready") is None:
        cluster.check_alive()
        if time.monotonic() > deadline:
            log = cluster.log("prometheus")
            raise NodeError(f"Prometheus not ready at {url} in 60s: see {log}")
        time.sleep(1)
    return url


def start_adapter(cluster: RealCluster, prometheus: str) -> None:
    """prometheus-adapter on the node's IP, registered with the aggregation layer."""
    # Built by tools/setup.sh; missing_parts() has checked it is there.
    binary = subprocess.run(
        [str(ADAPTER_SCRIPT), "--check"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    work = cluster.workdir / "prometheus-adapter"
    work.mkdir(parents=True, exist_ok=True)
    kubeconfig = cluster.plane.kubeconfig
    cluster.daemons["prometheus-adapter"] = cluster.node.spawn(
        [
            binary,
            f"--prometheus-url={prometheus}",
            f"--config={EXTRAS / 'prometheus-adapter-rules.yaml'}",
            f"--lister-kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={cluster.layout.node_ip}",
            f"--secure-port={ADAPTER_PORT}",
            f"--cert-dir={work}",
            # Series appear to the HPA within seconds, not the default ten minutes.
            "--metrics-relist-interval=5s",
            "--v=1",
        ],
        cluster.log("prometheus-adapter"),
    )
    ports = [{"name": "https", "port": ADAPTER_PORT}]
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": MONITORING}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "prometheus-adapter", "namespace": MONITORING},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": ADAPTER_PORT}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "prometheus-adapter", "namespace": MONITORING},
            "subsets": [{"addresses": [{"ip": cluster.layout.node_ip}], "ports": ports}],
        },
    ]
    for group, version in ADAPTER_APIS:
        objects.append({
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"{version}.{group}"},
            "spec": {
                "group": group,
                "version": version,
                "service": {"name": "prometheus-adapter", "namespace": MONITORING, "port": 443},
                # The adapter's serving certificate is self-signed (--cert-dir).
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        })  # fmt: skip
    path = work / "apis.yaml"
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    cluster.kubectl("apply", "-f", str(path))
    wanted = {f"{version}.{group}" for group, version in ADAPTER_APIS}

    def available() -> bool:
        out = cluster.kubectl("get", "apiservices", "-o", "json", check=False)
        ok = {
            item["metadata"]["name"]
            for item in (json.loads(out)["items"] if out.strip() else [])
            if any(
                c["type"] == "Available" and c["status"] == "True"
                for c in (item.get("status") or {}).get("conditions") or []
            )
        }
        return wanted <= ok

    deadline = time.monotonic() + 180
    while not available():
        cluster.check_alive()
        if time.monotonic() > deadline:
            log = cluster.log("prometheus-adapter")
            raise NodeError(f"prometheus-adapter's APIServices not Available in 180s: see {log}")
        time.sleep(1)


def query(cluster: RealCluster, prometheus: str, promql: str) -> list[dict[str, Any]]:
    """An instant query's result vector (asked from inside the node's network)."""
    answer = get_in_node(cluster, f"{prometheus}/api/v1/query?{urlencode({'query': promql})}")
    if answer is None:
        return []
    return list(json.loads(answer)["data"]["result"])


def get_in_node(cluster: RealCluster, url: str) -> str | None:
    """GET ``url`` from inside the node's network: the body, or None when it failed."""
    probe = (
        "import sys, urllib.request\n"
        "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
    )
    done = cluster.in_node([sys.executable, "-c", probe, url], check=False, timeout=30)
    return done.stdout if done.returncode == 0 else None
