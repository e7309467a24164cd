"""kaip render for a Model routed by prefix affinity (issue 17 #5): an InferencePool of the
Model's pods and its endpoint picker, as the Gateway API Inference Extension's chart renders them;
nothing of it for any other Model. The golden (tests/golden/rendered/inference-pool.yaml) holds
the whole set and tests/e2e_kube/test_render_dry_run.py sends it to a real kube-apiserver."""

from __future__ import annotations

from typing import Any

import pytest

from kaip import telemetry
from kaip.errors import SpecError
from kaip.plan import build_plan
from kaip.render.kube import render_manifests
from kaip.render.kube.inference_pool import EPP_IMAGE
from kaip.render.kube.podsecurity import restricted_violations
from kaip.settings import Settings
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
