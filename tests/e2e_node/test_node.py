"""The real node itself: a pod pulled from the node's registry runs, gets an IP on the CNI bridge,
answers on it and through its Service's ClusterIP (kube-proxy), reaches the apiserver through
the ``kubernetes`` Service, and its logs and exec go through the kubelet."""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from typing import Any

from node_config import POD_CIDR
from node_harness import NODE_NAME, RealCluster
from node_namespace import NodeNamespaceError

RESTRICTED = """\
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        runAsNonRoot: true
        capabilities: {drop: [ALL]}
        seccompProfile: {type: RuntimeDefault}"""

HELLO = (
    """\
apiVersion: v1
kind: Pod
metadata: {name: hello, labels: {app: hello}}
spec:
  securityContext: {runAsUser: 65532, runAsGroup: 65532}
  containers:
    - name: hello
      image: IMAGE
      command: [python, -m, http.server, "8080", --directory, /opt/kaip]
      ports: [{name: http, containerPort: 8080}]
      readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
"""
    + RESTRICTED
    + """
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  selector: {app: hello}
  ports: [{port: 80, targetPort: http}]
"""
)

VERSION_THROUGH_SERVICE = """\
import os, ssl, urllib.request
ca = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
context = ssl.create_default_context(cafile=ca)
print(urllib.request.urlopen(f"https://{host}:{port}/version", context=context).read().decode())
"""


def apply(cluster: RealCluster, namespace: str, text: str) -> None:
    path = cluster.workdir / f"apply-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    cluster.kubectl("-n", namespace, "apply", "-f", str(path))


def get(cluster: RealCluster, namespace: str, *what: str) -> Any:
    return json.loads(cluster.kubectl("-n", namespace, "get", *what, "-o", "json"))


def http_get(cluster: RealCluster, url: str) -> tuple[int, str]:
    """GET ``url`` from inside the node's network namespace (a real client in a real process)."""
    script = (
        "import sys, urllib.request\n"
        "with urllib.request.urlopen(sys.argv[1], timeout=10) as r:\n"
        "    print(r.status); print(r.read().decode(errors='replace'))\n"
    )
    out = cluster.in_node([sys.executable, "-c", script, url])
    status, _, body = out.stdout.partition("\n")
    return int(status), body


def service_get(cluster: RealCluster, url: str, wait_s: float = 120.0) -> tuple[int, str]:
    """GET a ClusterIP ``url``, waiting for kube-proxy to program the new Service (it syncs its
    rules after the Service and its endpoints appear: a first try can be refused)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return http_get(cluster, url)
        except NodeNamespaceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def test_the_real_node_is_ready_beside_tainted_kwok_nodes(real_cluster: RealCluster) -> None:
    node = json.loads(real_cluster.kubectl("get", "node", NODE_NAME, "-o", "json"))
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == real_cluster.layout.node_ip
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.6")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.4"
    kwok = json.loads(real_cluster.kubectl("get", "nodes", "-l", "type=kwok", "-o", "json"))
    assert kwok["items"], "the kwok nodes are still there"
    for fake in kwok["items"]:
        assert any(t["effect"] == "NoSchedule" for t in fake["spec"]["taints"])


def test_a_pod_pulled_from_the_node_registry_serves_on_its_ip_and_service(
    real_cluster: RealCluster, node_namespace: str
) -> None:
    image = real_cluster.images["server"]
    assert image.startswith("localhost:5000/kaip/server:")
    apply(real_cluster, node_namespace, HELLO.replace("IMAGE", image))
    real_cluster.kubectl(
        "-n", node_namespace, "wait", "--for=condition=Ready", "pod/hello", "--timeout=180s"
    )
    pod = get(real_cluster, node_namespace, "pod", "hello")
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["status"]["containerStatuses"][0]["image"] == image
    pod_ip = pod["status"]["podIP"]
    assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(POD_CIDR)

    status, body = http_get(real_cluster, f"http://{pod_ip}:8080/")
    assert status == 200 and "bin/" in body, "python's http.server lists /opt/kaip"
    cluster_ip = get(real_cluster, node_namespace, "service", "hello")["spec"]["clusterIP"]
    status, body = service_get(real_cluster, f"http://{cluster_ip}/")
    assert status == 200 and "bin/" in body

    logs = real_cluster.kubectl("-n", node_namespace, "logs", "hello")
    assert '"GET / HTTP/1.1" 200' in logs, "kubectl logs goes through the kubelet"
    version = real_cluster.kubectl(
        "-n", node_namespace, "exec", "hello", "--", "python", "-c", VERSION_THROUGH_SERVICE
    )
    assert json.loads(version)["gitVersion"] == "v1.35.4", (
        "the pod reached the apiserver through the kubernetes Service and trusted its CA"
    )
