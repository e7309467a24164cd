"""kaip render for a Model routed by prefix affinity (issue 17 #5): an InferencePool of the
Model's pods and its endpoint picker, as the Gateway API Inference Extension's chart renders them;
nothing of it for any other Model. The golden (tests/golden/rendered/inference-pool.yaml) holds
the whole set and tests/e2e_kube/test_render_dry_run.py sends it to a real kube-apiserver."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kaip import telemetry
from kaip.errors import SpecError
from kaip.plan import build_plan
from kaip.render.kube import SERVED_NAMES, Backend, render_manifests
from kaip.render.kube.inference_pool import EPP_IMAGE
from kaip.render.kube.podsecurity import restricted_violations
from kaip.settings import KubeSettings, Settings
from kaip.spec import load_text

SPEC = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: {name}, namespace: llm}}
spec:
  owner: llm
  artifact: {{uri: https://h/m.gguf, format: gguf, sha256: {digest}}}
  serve: {{protocols: [openai]{routing}}}
"""
DIGEST = "a" * 64


def render(*models: tuple[str, str]) -> list[dict[str, Any]]:
    text = "---\n".join(
        SPEC.format(name=name, digest=DIGEST, routing=f", routing: {routing}" if routing else "")
        for name, routing in models
    )
    return render_manifests(build_plan(load_text(text, "spec.yaml").documents, Settings()))


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_only_a_prefix_affinity_model_gets_a_pool_and_a_picker() -> None:
    objects = render(("chat", "prefix-affinity"), ("plain", "least-request"), ("other", ""))
    pools = [o["metadata"]["name"] for o in objects if o["kind"] == "InferencePool"]
    assert pools == ["chat"]
    pickers = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"
               and o["metadata"]["name"].endswith("-epp")]  # fmt: skip
    assert pickers == ["chat-epp"]
    assert {o["kind"] for o in objects if o["metadata"]["name"] == "chat-epp"} == {
        "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Service", "Deployment",
    }  # fmt: skip


def test_the_pool_selects_the_models_pods_and_names_its_picker() -> None:
    objects = render(("chat", "prefix-affinity"))
    pool = named(objects, "InferencePool", "chat")
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    assert (
        pool["spec"]["selector"]["matchLabels"]
        == named(objects, "Service", "chat")["spec"]["selector"]
    )
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    ref = pool["spec"]["endpointPickerRef"]
    service = named(objects, "Service", ref["name"])
    assert ref["port"]["number"] in [p["port"] for p in service["spec"]["ports"]]
    picker = named(objects, "Deployment", "chat-epp")
    template = picker["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    args = template["spec"]["containers"][0]["args"]
    assert args[args.index("--pool-name") + 1] == "chat"
    assert args[args.index("--pool-namespace") + 1] == "llm"
    assert args[args.index("--total-queued-requests-metric") + 1] == telemetry.INFLIGHT
    assert args[args.index("--total-running-requests-metric") + 1] == telemetry.INFLIGHT


def test_no_models_selector_selects_a_picker_and_the_picker_may_scrape_the_pods() -> None:
    objects = render(("chat", "prefix-affinity"), ("epp", ""), ("kaip", ""))
    picker = named(objects, "Deployment", "chat-epp")["spec"]["template"]["metadata"]["labels"]
    for service in (o for o in objects if o["kind"] == "Service" and o["metadata"]["name"]
                    != "chat-epp"):  # fmt: skip
        assert not service["spec"]["selector"].items() <= picker.items(), service["metadata"]
    policy = named(objects, "NetworkPolicy", "chat")
    callers = policy["spec"]["ingress"][0]["from"]
    assert any(p.get("podSelector", {}).get("matchLabels", {}).items() <= picker.items()
               for p in callers if "podSelector" in p)  # fmt: skip
    assert not any("epp" in str(p) for p in named(objects, "NetworkPolicy", "epp")["spec"]
                   ["ingress"][0]["from"])  # fmt: skip


def test_a_resource_named_like_the_picker_is_refused_naming_both() -> None:
    with pytest.raises(SpecError) as refused:
        render(("chat", "prefix-affinity"), ("chat-epp", ""))
    message = str(refused.value)
    assert message.startswith("spec.yaml:9:1: metadata.name: ")  # the clashing Model's own line
    assert "Model 'chat-epp' would share its Service and ServiceAccount with the endpoint " in (
        message
    )
    assert "rename 'chat-epp', or rename Model 'chat'" in message


def test_the_picker_pod_is_restricted_and_its_image_pinned() -> None:
    objects = render(("chat", "prefix-affinity"))
    template = named(objects, "Deployment", "chat-epp")["spec"]["template"]
    assert restricted_violations(template["spec"]) == []
    image = template["spec"]["containers"][0]["image"]
    assert image == EPP_IMAGE and image.rpartition(":")[2].startswith("v1.")


GATEWAY = "gateways/inference"


def render_rollout(weights: tuple[int, ...], gateway: str | None) -> list[dict[str, Any]]:
    """``chat`` (prefix affinity) with its first ``len(weights)`` revisions live, the stable
    first, each revision a different artifact digest; the last is the plan's."""
    settings = Settings(kube=KubeSettings(inference_gateway=gateway))
    plans = [
        build_plan(load_text(SPEC.format(name="chat", digest=digest,
                                         routing=", routing: prefix-affinity"),
                             "spec.yaml").documents, settings)
        for digest in [DIGEST, "b" * 64, "c" * 64][: len(weights)]
    ]  # fmt: skip
    live = [Backend(p.workloads[0], weight) for p, weight in zip(plans, weights, strict=True)]
    return render_manifests(plans[-1], {plans[-1].workloads[0].key: live})


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_a_canary_gets_a_pool_and_picker_per_revision_and_a_route_weighting_them() -> None:
    objects = render_rollout((90, 10), GATEWAY)
    services = {s["metadata"]["name"]: s["spec"]["selector"] for s in of_kind(objects, "Service")}
    pools = {p["metadata"]["name"]: p["spec"] for p in of_kind(objects, "InferencePool")}
    assert len(pools) == 2 and "chat" in pools, "the stable revision's pool keeps its name"
    (canary_pool,) = set(pools) - {"chat"}
    # each pool selects exactly one revision's pods: what that revision's Service selects
    assert pools[canary_pool]["selector"]["matchLabels"] == services[canary_pool]
    assert pools["chat"]["selector"]["matchLabels"] != services["chat"]
    assert pools["chat"]["selector"]["matchLabels"] in services.values()
    pickers = {p["endpointPickerRef"]["name"] for p in pools.values()}
    assert len(pickers) == 2 and "chat-epp" in pickers
    for picker in pickers:
        deployment = named(objects, "Deployment", picker)
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        pool = args[args.index("--pool-name") + 1]
        assert pools[pool]["endpointPickerRef"]["name"] == picker
        # one picker's Service selects its own pod only
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selecting = [s for s in services if services[s].items() <= labels.items()]
        assert selecting == [picker]
        assert len(picker) <= 63
    route = named(objects, "HTTPRoute", "chat-inference")
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "inference",
         "namespace": "gateways"}
    ]  # fmt: skip
    (rule,) = route["spec"]["rules"]
    assert [(b["kind"], b["name"], b["weight"]) for b in rule["backendRefs"]] == [
        ("InferencePool", "chat", 90),
        ("InferencePool", canary_pool, 10),
    ]
    assert all(b["group"] == "inference.networking.k8s.io" for b in rule["backendRefs"])
    # kaip apply finds a Model's served names on one route per Model: the Service route's
    annotated = [r["metadata"]["name"] for r in of_kind(objects, "HTTPRoute")
                 if SERVED_NAMES in r["metadata"].get("annotations", {})]  # fmt: skip
    assert annotated == ["chat"]
    # the Service route still weights the revisions' Services
    services_route = named(objects, "HTTPRoute", "chat")["spec"]["rules"][0]["backendRefs"]
    assert [b["weight"] for b in services_route] == [90, 10]
    # the NetworkPolicy lets both pickers read the pods' /metrics
    callers = named(objects, "NetworkPolicy", "chat")["spec"]["ingress"][0]["from"]
    for picker in pickers:
        labels = named(objects, "Deployment", picker)["spec"]["template"]["metadata"]["labels"]
        assert any(c.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items()
                   for c in callers if "podSelector" in c)  # fmt: skip


def test_one_live_revision_renders_as_before_plus_the_route_to_its_pool() -> None:
    with_gateway = render_rollout((100,), GATEWAY)
    without = render_rollout((100,), None)
    route = named(with_gateway, "HTTPRoute", "chat-inference")
    assert route["spec"]["rules"] == [{"backendRefs": [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "chat",
         "weight": 100}
    ]}]  # fmt: skip
    assert [o for o in with_gateway if o is not route] == without, "no other object changes"
    (pool,) = of_kind(without, "InferencePool")
    assert pool["metadata"]["name"] == "chat"
    assert (
        pool["spec"]["selector"]["matchLabels"]
        == named(without, "Service", "chat")["spec"]["selector"]
    )


def test_without_a_gateway_a_canary_keeps_one_pool_over_every_revision_and_no_route() -> None:
    objects = render_rollout((80, 20), None)
    (pool,) = of_kind(objects, "InferencePool")
    assert pool["metadata"]["name"] == "chat"
    assert (
        pool["spec"]["selector"]["matchLabels"]
        == named(objects, "Service", "chat")["spec"]["selector"]
    )
    assert [r["metadata"]["name"] for r in of_kind(objects, "HTTPRoute")] == ["chat"]


def test_a_gateway_in_the_routes_own_namespace_is_named_alone() -> None:
    route = named(render_rollout((50, 50), "inference"), "HTTPRoute", "chat-inference")
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "inference"}
    ]


@pytest.mark.parametrize("bad", ["a/b/c", "Gateway", "/x", "x/", "gw_1"])
def test_a_gateway_that_is_no_name_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="inference_gateway"):
        KubeSettings(inference_gateway=bad)


def test_a_resource_named_like_the_inference_route_is_refused_naming_both() -> None:
    with pytest.raises(SpecError) as refused:
        render(("chat", "prefix-affinity"), ("chat-inference", ""))
    message = str(refused.value)
    assert "Model 'chat-inference' would share its HTTPRoute with the inference route of " in (
        message
    )
    assert "rename 'chat-inference', or rename Model 'chat'" in message


def test_a_resource_named_like_a_canarys_picker_is_refused_before_the_canary_starts() -> None:
    with pytest.raises(SpecError) as refused:
        render(("chat", "prefix-affinity"), ("chat-epp-0a1b2c", ""))
    message = str(refused.value)
    assert (
        "Model 'chat-epp-0a1b2c' would share its Service and ServiceAccount with a canary's "
        in (message)
    )
    render(("chat", "prefix-affinity"), ("chat-epp-web", ""))  # no revision's digits: fine
