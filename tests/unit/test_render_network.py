"""The rendered NetworkPolicy denies by default both ways (issue 11 #14).

``admits`` below reads a rendered policy the way the NetworkPolicy API defines it (a rule
matches when any of its peers and any of its ports match; an ipBlock matches an address inside
``cidr`` and outside every ``except``), so the tests ask the questions the issue asked: can any
pod reach the serving port, can a model pod reach the cloud metadata endpoint?
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from kaip.errors import SpecError
from kaip.plan import Plan, build_plan, plan_workload
from kaip.render.kube import Backend, render_manifests
from kaip.settings import KubeSettings, Settings
from kaip.spec import load_text

Labels = dict[str, str]
Endpoint = dict[str, Any]
"""Who or where: ``ip``, or a pod's ``namespace`` and ``labels``; ``port``, ``protocol``."""


def _doc(kind: str, name: str, body: str) -> str:
    return f"apiVersion: kaip.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n{body}"


def model(name: str = "m", uri: str = "models/m.onnx", network: str = "") -> str:
    body = f"  owner: team\n  artifact: {{uri: '{uri}', format: onnx}}\n"
    return _doc("Model", name, body + (f"  network: {network}\n" if network else ""))


def app(name: str = "web", network: str = "") -> str:
    body = "  owner: team\n  image: ghcr.io/x/web:1\n  port: 8080\n"
    return _doc("App", name, body + (f"  network: {network}\n" if network else ""))


def plan(*docs: str, **kube: Any) -> Plan:
    specs = load_text("---\n".join(docs), "spec.yaml")
    return build_plan(specs.documents, Settings(kube=KubeSettings(**kube)), "shop")


def policies(rendered: Plan | list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    objects = render_manifests(rendered) if isinstance(rendered, Plan) else rendered
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}


def _selects(selector: dict[str, Any], labels: Labels) -> bool:
    return dict(selector.get("matchLabels") or {}).items() <= labels.items()


def _peer_matches(peer: dict[str, Any], other: Endpoint, own_namespace: str) -> bool:
    if "ipBlock" in peer:
        if "ip" not in other:
            return False
        address = ipaddress.ip_address(other["ip"])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped  # it leaves the pod as an IPv4 packet
        block = peer["ipBlock"]

        def inside(cidr: str) -> bool:
            network = ipaddress.ip_network(cidr, strict=False)
            return address.version == network.version and address in network

        return inside(block["cidr"]) and not any(inside(c) for c in block.get("except", []))
    if "ip" in other:
        return False  # pod and namespace selectors select pods, not addresses
    namespace_ok = (
        _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other["namespace"]})
        if "namespaceSelector" in peer
        else other["namespace"] == own_namespace
    )
    return namespace_ok and _selects(peer.get("podSelector", {}), other.get("labels", {}))


def admits(policy: dict[str, Any], direction: str, other: Endpoint) -> bool:
    """Whether ``policy`` lets traffic from (ingress) or to (egress) ``other`` through."""
    spec = policy["spec"]
    assert direction.capitalize() in spec["policyTypes"]
    key, peers_key = ("ingress", "from") if direction == "ingress" else ("egress", "to")
    own = policy["metadata"]["namespace"]
    for rule in spec.get(key) or []:
        peers = rule.get(peers_key)
        ports = rule.get("ports")
        peer_ok = peers is None or any(_peer_matches(p, other, own) for p in peers)
        port_ok = ports is None or any(
            p["port"] == other["port"] and p.get("protocol", "TCP") == other.get("protocol", "TCP")
            for p in ports
        )
        if peer_ok and port_ok:
            return True
    return False


def pod(namespace: str, port: int, **labels: str) -> Endpoint:
    return {"namespace": namespace, "labels": labels, "port": port}


def address(ip: str, port: int, protocol: str = "TCP") -> Endpoint:
    return {"ip": ip, "port": port, "protocol": protocol}


def kaip_pod(name: str, namespace: str = "shop", port: int = 8000) -> Endpoint:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "kaip"}
    return pod(namespace, port, **labels)


METADATA = ("169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "100.100.100.200")
DNS = pod("kube-system", 53, **{"k8s-app": "kube-dns"})


def test_issue_reproduction_any_pod_could_call_and_pods_could_reach_cloud_metadata() -> None:
    """Before: ``ingress: [{ports: [8000]}]`` (any source) and no egress rules at all."""
    policy = policies(plan(model(uri="https://models.example.com/m.onnx")))["m"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # Ingress: Prometheus (the default ingress namespace) yes; any other pod, no.
    assert admits(policy, "ingress", pod("monitoring", 8000, app="prometheus"))
    assert not admits(policy, "ingress", pod("shop", 8000, app="anything"))
    assert not admits(policy, "ingress", pod("other", 8000))
    assert not admits(policy, "ingress", address("10.0.0.7", 8000))
    assert not admits(policy, "ingress", pod("monitoring", 22))  # the serving port only
    # Egress: DNS, and the artifact's port on public addresses; never a metadata endpoint.
    assert admits(policy, "egress", {**DNS, "protocol": "UDP"})
    assert admits(policy, "egress", address("203.0.113.9", 443))
    assert not admits(policy, "egress", address("203.0.113.9", 80))
    for ip in METADATA:
        for port in (80, 443):
            assert not admits(policy, "egress", address(ip, port)), ip
    for ip in ("10.0.0.1", "172.20.0.1", "192.168.1.1", "127.0.0.1", "fd12::1", "fe80::1"):
        assert not admits(policy, "egress", address(ip, 443)), ip
    assert not admits(policy, "egress", kaip_pod("other-model"))


def test_a_model_whose_artifact_is_in_the_pod_gets_dns_only() -> None:
    policy = policies(plan(model(uri="models/m.onnx")))["m"]
    assert [rule["to"] for rule in policy["spec"]["egress"]] == [
        [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ]
    ]
    assert not admits(policy, "egress", address("203.0.113.9", 443))


def test_allow_from_and_allow_to_name_exactly_who_and_where() -> None:
    found = policies(
        plan(
            model(network="{allowFrom: [{resource: web}, {namespace: batch, podLabels: {a: b}}]}"),
            app(
                network="{allowFrom: [{podLabels: {role: lb}}], allowTo: [{resource: m, "
                "ports: [8000]}, {cidr: 10.20.0.0/16, except: [10.20.9.0/24], ports: [5432]}]}"
            ),
        )
    )
    m, web = found["m"], found["web"]
    assert admits(m, "ingress", kaip_pod("web"))
    assert not admits(m, "ingress", kaip_pod("web", namespace="other"))  # same namespace only
    assert admits(m, "ingress", pod("batch", 8000, a="b"))
    assert not admits(m, "ingress", pod("batch", 8000, a="c"))
    assert admits(web, "ingress", pod("shop", 8080, role="lb"))
    assert not admits(web, "ingress", pod("batch", 8080, role="lb"))
    assert admits(web, "egress", kaip_pod("m"))
    assert not admits(web, "egress", kaip_pod("m", port=9000))
    assert admits(web, "egress", address("10.20.1.5", 5432))
    assert not admits(web, "egress", address("10.20.9.5", 5432))  # excepted
    assert not admits(web, "egress", address("10.20.1.5", 22))


def test_the_platform_names_its_ingress_and_dns() -> None:
    settings = {
        "ingress_namespaces": ["envoy-gateway-system"],
        "dns_namespace": "dns",
        "dns_pod_labels": {"app": "coredns"},
    }
    policy = policies(plan(app(), **settings))["web"]
    assert admits(policy, "ingress", pod("envoy-gateway-system", 8080))
    assert not admits(policy, "ingress", pod("monitoring", 8080))
    assert admits(policy, "egress", pod("dns", 53, app="coredns"))
    assert not admits(policy, "egress", DNS)
    closed = policies(plan(app(), ingress_namespaces=[]))["web"]
    assert closed["spec"]["ingress"] == []  # nobody named: no ingress at all


def test_a_canary_keeps_egress_for_every_live_revisions_artifact() -> None:
    new_plan = plan(model(uri="models/m.onnx"))
    (new,) = new_plan.workloads
    (old_doc,) = load_text(model(uri="http://models.example.com:8081/m.onnx")).documents
    old = plan_workload(old_doc.resource, new_plan.settings, "shop")
    objects = render_manifests(new_plan, {new.key: [Backend(old, 90), Backend(new, 10)]})
    policy = policies(objects)["m"]
    assert admits(policy, "egress", address("203.0.113.9", 8081))  # the stable one still fetches


@pytest.mark.parametrize(
    ("network", "words"),
    [
        ("{allowFrom: [{resource: a, cidr: 10.0.0.0/8}]}", "exactly one of"),
        ("{allowFrom: [{}]}", "exactly one of"),
        ("{allowTo: [{cidr: 10.0.0.0/8, except: [11.0.0.0/16]}]}", "is not inside cidr"),
        ("{allowTo: [{podLabels: {a: b}, except: [10.0.0.0/16]}]}", "narrows a cidr"),
        ("{allowTo: [{cidr: 10.0.0.300/8}]}", "not an IP block"),
        ("{allowTo: [{resource: a, ports: [0]}]}", "must be >= 1"),
        ("{allowFrom: [{resource: a, ports: [80]}]}", "ports"),
    ],
)
def test_bad_peers_are_located_spec_problems(network: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        plan(model(network=network))
    assert any(words in p.message or words in p.path for p in caught.value.problems), [
        p.render() for p in caught.value.problems
    ]
