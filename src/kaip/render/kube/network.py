"""The NetworkPolicy of a Model or App: deny by default, in both directions.

One policy per resource, selecting the pods of all its revisions. What it lets through:

* **Ingress**, on the serving port only, from the namespaces the platform names
  (``KAIP_KUBE__INGRESS_NAMESPACES``: the gateway or ingress controller's, and Prometheus's,
  which scrapes ``/metrics`` for the autoscaler and the canary gates) and from the peers in
  ``spec.network.allowFrom`` (and, for a Model routed by prefix affinity, from its endpoint
  pickers, which read the pods' ``/metrics``). No peer at all: no ingress.
* **Egress** to cluster DNS (UDP and TCP 53 on the pods ``KAIP_KUBE__DNS_POD_LABELS`` selects
  in ``KAIP_KUBE__DNS_NAMESPACE``); for a Model whose artifact (of any live revision) is remote,
  to that URI's port on public addresses only -- never link-local (cloud metadata endpoints such
  as 169.254.169.254), private, loopback or carrier-grade NAT ranges, nor NAT64 forms of them;
  and to the peers in ``spec.network.allowTo``. (IPv4-mapped IPv6 addresses leave the pod as
  IPv4 packets, which the IPv4 exceptions cover; the API refuses ``::ffff:0:0/96`` as an
  exception of ``::/0`` anyway.)

A peer becomes a NetworkPolicy peer as is: ``resource`` selects that Model's or App's pods by
the labels kaip gives them, ``namespace`` by ``kubernetes.io/metadata.name``. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from kaip.plan import LABEL_MANAGED_BY, LABEL_NAME, Workload
from kaip.render.kube.artifacts import REMOTE_SCHEMES
from kaip.render.kube.inference_pool import pools, uses_inference_pool
from kaip.render.kube.pods import Obj
from kaip.settings import Settings
from kaip.spec import App, Model
from kaip.spec.network import Peer

NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
NOT_PUBLIC_V4: Final = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
)
NOT_PUBLIC_V6: Final = (
    "::/96",  # unspecified, loopback and IPv4-compatible
    "64:ff9b::/96",  # NAT64
    "64:ff9b:1::/48",  # local-use NAT64
    "fc00::/7",  # unique local (AWS metadata: fd00:ec2::254)
    "fe80::/10",  # link-local
)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "s3": 443, "gs": 443}


def _namespace(name: str) -> Obj:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


def peer(spec: Peer) -> Obj:
    """One ``spec.network`` peer as a NetworkPolicy peer."""
    if spec.resource is not None:
        labels = {LABEL_NAME: spec.resource, LABEL_MANAGED_BY: "kaip"}
        return {"podSelector": {"matchLabels": labels}}
    if spec.cidr is not None:
        block: Obj = {"cidr": spec.cidr}
        if spec.except_:
            block["except"] = list(spec.except_)
        return {"ipBlock": block}
    out: Obj = _namespace(spec.namespace) if spec.namespace is not None else {}
    if spec.pod_labels is not None:
        out["podSelector"] = {"matchLabels": dict(spec.pod_labels)}
    return out


def _artifact_ports(revisions: Sequence[Workload]) -> list[int]:
    ports = set()
    for live in revisions:
        resource = live.resource
        if isinstance(resource, Model) and resource.spec.artifact.uri.startswith(REMOTE_SCHEMES):
            parts = urlsplit(resource.spec.artifact.uri)
            try:
                port = parts.port
            except ValueError:  # not a port: the download says so, in the pod
                port = None
            ports.add(port or _DEFAULT_PORTS[parts.scheme])
    return sorted(ports)


def _tcp(ports: Sequence[int]) -> list[Obj]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def network_policy(
    workload: Workload, port: int, revisions: Sequence[Workload], settings: Settings
) -> Obj:
    """The policy of ``workload``'s pods (every live revision in ``revisions``) on ``port``."""
    resource = workload.resource
    assert isinstance(resource, Model | App)
    network = resource.spec.network
    kube = settings.kube
    callers = [_namespace(ns) for ns in kube.ingress_namespaces]
    callers += [peer(p) for p in network.allow_from] if network else []
    if uses_inference_pool(workload):  # its endpoint pickers read the pods' /metrics
        for pool in pools(workload, revisions, kube.inference_gateway):
            callers.append({"podSelector": {"matchLabels": dict(pool.picker_selector)}})
    ingress = [{"from": callers, "ports": _tcp([port])}] if callers else []
    dns: Obj = {
        **_namespace(kube.dns_namespace),
        "podSelector": {"matchLabels": dict(kube.dns_pod_labels)},
    }
    egress: list[Obj] = [
        {
            "to": [dns],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }
    ]
    artifact_ports = _artifact_ports(revisions)
    if artifact_ports:
        public = [
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(NOT_PUBLIC_V4)}},
            {"ipBlock": {"cidr": "::/0", "except": list(NOT_PUBLIC_V6)}},
        ]
        egress.append({"to": public, "ports": _tcp(artifact_ports)})
    for target in network.allow_to if network else []:
        rule: Obj = {"to": [peer(target)]}
        if target.ports:
            rule["ports"] = _tcp(target.ports)
        egress.append(rule)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": workload.name,
            "namespace": workload.namespace,
            "labels": dict(workload.common_labels),
        },
        "spec": {
            "podSelector": {"matchLabels": dict(workload.selector)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }
