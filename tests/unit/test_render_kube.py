"""kaip.render.kube: invariants of every rendered set, and the problems it reports."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kaip.errors import ConfigError, SpecError
from kaip.plan import Plan, build_plan, plan_workload
from kaip.render.kube import (
    KIND_ORDER,
    Backend,
    kaip_violations,
    manifests_yaml,
    render_manifests,
    restricted_violations,
)
from kaip.render.kube.serving import cookie_pattern
from kaip.settings import KubeSettings, Settings
from kaip.spec import load_text

REQUIRED_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "kaip.dev/owner",
}


def _model(name: str, **spec: Any) -> str:
    lines = [
        "apiVersion: kaip.dev/v1alpha1",
        "kind: Model",
        f"metadata: {{name: '{name}'}}",  # quoted: 'no' or 'null' are not strings in YAML
        "spec:",
        "  owner: team-a",
        f"  artifact: {spec.pop('artifact', '{uri: https://h/m.onnx, format: onnx}')}",
    ]
    lines += [f"  {key}: {value}" for key, value in spec.items()]
    return "\n".join(lines) + "\n"


def _app(name: str, **spec: Any) -> str:
    lines = [
        "apiVersion: kaip.dev/v1alpha1",
        "kind: App",
        f"metadata: {{name: '{name}'}}",  # quoted: 'no' or 'null' are not strings in YAML
        "spec:",
        "  owner: team-b",
    ]
    spec.setdefault("image", "ghcr.io/x/app:1")
    lines += [f"  {key}: {value}" for key, value in spec.items()]
    return "\n".join(lines) + "\n"


def _job(name: str, **spec: Any) -> str:
    lines = [
        "apiVersion: kaip.dev/v1alpha1",
        "kind: TrainingJob",
        f"metadata: {{name: '{name}'}}",  # quoted: 'no' or 'null' are not strings in YAML
        "spec:",
        "  owner: team-c",
        "  command: [python, train.py]",
    ]
    lines += [f"  {key}: {value}" for key, value in spec.items()]
    return "\n".join(lines) + "\n"


def _plan(*docs: str, kube: dict[str, Any] | None = None) -> Plan:
    specs = load_text("---\n".join(docs), "spec.yaml")
    return build_plan(specs.documents, Settings(kube=KubeSettings(**(kube or {}))))


def _pods(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(o, o["spec"]["template"]) for o in objects if o["kind"] in ("Deployment", "Job")]


def check_invariants(objects: list[dict[str, Any]]) -> None:
    """What every rendered set must satisfy, whatever the spec."""
    keys = [(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects]
    assert len(set(keys)) == len(keys), "duplicate objects"
    ranks = [KIND_ORDER.index(kind) for kind, _, _ in keys]
    assert ranks == sorted(ranks)
    assert keys == sorted(keys, key=lambda k: (KIND_ORDER.index(k[0]), k[1], k[2]))
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert set(labels) >= REQUIRED_LABELS, obj["kind"]
        assert len(obj["metadata"]["name"]) <= 63
        if "kaip.dev/revision" in labels:
            assert labels["app.kubernetes.io/version"] == labels["kaip.dev/revision"]
    for obj, template in _pods(objects):
        pod = template["spec"]
        assert restricted_violations(pod) == [], obj["metadata"]["name"]
        assert kaip_violations(pod) == [], obj["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False
        if obj["kind"] == "Deployment":
            selector = obj["spec"]["selector"]["matchLabels"]
            assert selector.items() <= template["metadata"]["labels"].items()
    deployments = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects
                   if o["kind"] == "Deployment"}  # fmt: skip
    services = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects
                if o["kind"] == "Service"}  # fmt: skip
    for obj in objects:
        ns = obj["metadata"]["namespace"]
        if obj["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"):
            assert (ns, obj["spec"]["scaleTargetRef"]["name"]) in deployments
        if obj["kind"] == "HTTPRoute":
            refs = obj["spec"]["rules"][0]["backendRefs"]
            assert sum(ref["weight"] for ref in refs) == 100
            assert all((ns, ref["name"]) in services for ref in refs)
        if obj["kind"] == "Service" and obj["spec"].get("clusterIP") != "None":
            selected = [d for (dns, _), d in deployments.items() if dns == ns and
                        obj["spec"]["selector"].items()
                        <= d["spec"]["template"]["metadata"]["labels"].items()]  # fmt: skip
            assert selected, f"Service {obj['metadata']['name']} selects no pods"


names = st.from_regex(r"[a-z][a-z0-9]{0,20}", fullmatch=True)
cpus = st.sampled_from(["100m", "1", "2.5", "16"])
memories = st.sampled_from(["128Mi", "1Gi", "64Gi"])


@st.composite
def spec_sets(draw: st.DrawFn) -> list[str]:
    count = draw(st.integers(1, 4))
    docs = []
    for index, name in enumerate(draw(st.lists(names, min_size=count, max_size=count,
                                               unique=True))):  # fmt: skip
        gpu = draw(st.integers(0, 8))
        model = "NVIDIA-A100" if gpu and draw(st.booleans()) else None
        resources = f"{{cpu: '{draw(cpus)}', memory: {draw(memories)}, gpu: {gpu}"
        resources += f", gpuModel: {model}}}" if model else "}"
        low = draw(st.integers(0, 3))
        high = draw(st.integers(max(low, 1), 5))
        scaling = f"{{minReplicas: {low}, maxReplicas: {high}}}"
        kind = index % 3 if draw(st.booleans()) else 0
        if kind == 0:
            docs.append(_model(name, resources=resources, scaling=scaling))
        elif kind == 1:
            scaling = f"{{minReplicas: {max(low, 1)}, maxReplicas: {high}}}"
            docs.append(_app(name, resources=resources, scaling=scaling))
        else:
            docs.append(_job(name, resources=resources, nodes=draw(st.integers(1, 4))))
    return docs


@settings(max_examples=40, deadline=None)
@given(spec_sets(), st.sampled_from(["hpa", "keda"]), st.randoms(use_true_random=False))
def test_invariants_hold_for_any_spec_and_any_document_order(
    docs: list[str], autoscaler: str, random: Any
) -> None:
    kube = {"autoscaler": autoscaler, "kueue_queue": "q"}
    objects = render_manifests(_plan(*docs, kube=kube))
    check_invariants(objects)
    text = manifests_yaml(objects)
    assert list(yaml.safe_load_all(text)) == objects
    assert "&id" not in text, "no YAML anchors in reviewed output"
    shuffled = list(docs)
    random.shuffle(shuffled)
    assert render_manifests(_plan(*shuffled, kube=kube)) == objects


def _kinds(objects: list[dict[str, Any]]) -> list[str]:
    return [o["kind"] for o in objects]


def test_model_gpu_requests_and_node_selection() -> None:
    resources = "{cpu: '4', memory: 16Gi, gpu: 2, gpuModel: NVIDIA-H100-80GB-HBM3}"
    objects = render_manifests(_plan(_model("llm", resources=resources)))
    ((_, template),) = _pods(objects)
    pod = template["spec"]
    (server,) = pod["containers"]
    assert server["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    cpu_only = render_manifests(_plan(_model("small")))
    ((_, cpu_template),) = _pods(cpu_only)
    assert "nodeSelector" not in cpu_template["spec"]
    assert "tolerations" not in cpu_template["spec"]


def test_model_server_command_probes_and_artifact_fetch() -> None:
    objects = render_manifests(_plan(_model("digits")))
    ((deployment, template),) = _pods(objects)
    pod = template["spec"]
    (server,) = pod["containers"]
    revision = deployment["metadata"]["labels"]["kaip.dev/revision"]
    assert server["command"] + server["args"] == [
        "python", "-m", "kaip.serving", "/etc/kaip/spec.yaml", "--model", "digits",
        "--host", "0.0.0.0", "--port", "8000", "--revision", revision,
    ]  # fmt: skip
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # Stopping loses no request: endpoints drop the pod while it still serves (preStop), then
    # the server drains, all within the grace period.
    assert server["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    serving = Settings().serving
    assert pod["terminationGracePeriodSeconds"] >= (
        5 + serving.drain_seconds + serving.graceful_shutdown_seconds
    )
    (fetch,) = pod["initContainers"]
    assert fetch["command"] + fetch["args"] == [
        "python", "-m", "kaip.serving.fetch", "/etc/kaip/spec.yaml", "--model", "digits",
        "--report", "/dev/termination-log",
    ]  # fmt: skip
    # what it fetched reaches the pod's status (the operator pins it on first sight)
    assert fetch["terminationMessagePath"] == "/dev/termination-log"
    cache = {"name": "KAIP_SERVING__ARTIFACT_CACHE_DIR", "value": "/var/lib/kaip/artifacts"}
    assert cache in fetch["env"]
    assert cache in server["env"]
    assert {"name": "artifacts", "emptyDir": {}} in pod["volumes"]
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert "uri: https://h/m.onnx" in config["data"]["spec.yaml"]
    assert config["immutable"] is True


def test_relative_artifacts_are_read_from_the_artifact_dir_or_a_pvc() -> None:
    relative = _model("digits", artifact="{uri: models/m.onnx, format: onnx}")
    objects = render_manifests(_plan(relative))
    ((_, template),) = _pods(objects)
    assert "initContainers" not in template["spec"]
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert "uri: file:///var/lib/kaip/artifacts/models/m.onnx" in config["data"]["spec.yaml"]
    with_pvc = _model(
        "digits", artifact="{uri: models/m.onnx, format: onnx, pvc: {claimName: models}}"
    )
    objects = render_manifests(_plan(with_pvc))
    ((_, template),) = _pods(objects)
    volume = {
        "name": "artifacts",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    }
    assert template["spec"]["volumes"][1] == volume
    (server,) = template["spec"]["containers"]
    mount = {"name": "artifacts", "mountPath": "/var/lib/kaip/artifacts", "readOnly": True}
    assert mount in server["volumeMounts"]
    assert "initContainers" not in template["spec"]
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    pod_spec = config["data"]["spec.yaml"]
    assert "uri: file:///var/lib/kaip/artifacts/models/m.onnx" in pod_spec
    assert "pvc" not in pod_spec  # the pod-local spec must load as is in the pod
    load_text(pod_spec, "spec.yaml")


def test_the_artifact_pvc_annotation_mounts_nothing_and_says_what_replaced_it() -> None:
    """Issue 11 #15: the annotation mounted any claim of the namespace, writable in the fetch
    init container. It is refused now, naming the spec field that replaced it."""
    for uri in ("https://h/m.onnx", "models/m.onnx"):
        annotated = _model("digits", artifact=f"{{uri: '{uri}', format: onnx}}").replace(
            "metadata: {name: 'digits'}",
            "metadata: {name: 'digits', annotations: {kaip.dev/artifact-pvc: secrets}}",
        )
        with pytest.raises(SpecError) as caught:
            render_manifests(_plan(annotated))
        (problem,) = caught.value.problems
        assert problem.path == "metadata.annotations.kaip.dev/artifact-pvc"
        assert "spec.artifact.pvc.claimName" in problem.message
        assert "read-only" in problem.message


def test_a_remote_artifact_is_fetched_into_the_pod_never_onto_a_claim() -> None:
    with pytest.raises(SpecError, match="pvc holds the artifact at a path relative"):
        _plan(
            _model(
                "digits", artifact="{uri: 'https://h/m.onnx', format: onnx, pvc: {claimName: c}}"
            )
        )


def test_pinned_replicas_render_no_autoscaler_and_min_zero_renders_keda() -> None:
    pinned = render_manifests(_plan(_model("a", scaling="{minReplicas: 2, maxReplicas: 2}")))
    ((deployment, _),) = _pods(pinned)
    assert deployment["spec"]["replicas"] == 2
    assert not {"HorizontalPodAutoscaler", "ScaledObject"} & set(_kinds(pinned))
    hpa = render_manifests(_plan(_model("b")))
    ((deployment, _),) = _pods(hpa)
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    assert "HorizontalPodAutoscaler" in _kinds(hpa)
    zero = render_manifests(_plan(_model("c", scaling="{minReplicas: 0, maxReplicas: 2}")))
    (scaled,) = [o for o in zero if o["kind"] == "ScaledObject"]
    assert scaled["spec"]["minReplicaCount"] == 0
    assert "HorizontalPodAutoscaler" not in _kinds(zero)


def test_training_job_single_node_is_not_indexed_and_has_no_queue_by_default() -> None:
    objects = render_manifests(_plan(_job("train", maxRetries=5)))
    assert _kinds(objects) == ["ServiceAccount", "Job"]
    (job,) = [o for o in objects if o["kind"] == "Job"]
    assert job["spec"]["backoffLimit"] == 5
    assert "completionMode" not in job["spec"]
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
    assert "suspend" not in job["spec"]


def test_canary_renders_a_deployment_per_revision_and_weights() -> None:
    plan = _plan(_model("fraud"))
    (new,) = plan.workloads
    (old_doc,) = load_text(
        _model("fraud", artifact="{uri: https://h/v1.onnx, format: onnx}")
    ).documents
    old = plan_workload(old_doc.resource, plan.settings)
    objects = render_manifests(plan, {new.key: [Backend(old, 75), Backend(new, 25)]})
    check_invariants(objects)
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    assert names == {old.revision_name, new.revision_name}
    (route,) = [o for o in objects if o["kind"] == "HTTPRoute"]
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [
        (old.revision_name, 75),
        (new.revision_name, 25),
    ]
    with pytest.raises(ConfigError, match="add up to 90"):
        render_manifests(plan, {new.key: [Backend(old, 65), Backend(new, 25)]})
    with pytest.raises(ConfigError, match="listed twice"):
        render_manifests(plan, {new.key: [Backend(new, 50), Backend(new, 50)]})


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        (_model("m" * 53), "metadata.name", "at most 52"),
        (_model("9lives"), "metadata.name", "starts with a digit"),
        (_app("web", image="null", command="[python, app.py]"), "spec.image", "no image"),
        (_app("web", scaling="{minReplicas: 0}"), "spec.scaling.minReplicas", "scale to zero"),
        (_model("m", artifact="{uri: ../m.onnx, format: onnx}"), "spec.artifact.uri", "outside"),
        (_model("m").replace("owner: team-a", "owner: ML Team"), "spec.owner", "label value"),
        (
            _model(
                "m",
                artifact="{uri: 'https://h/m.gguf', format: gguf}",
                serve="{protocols: [openai], engine: {name: llama-server}}",
            ),
            "spec.artifact.uri",
            "serve.engine reads the artifact from a path in the pod",
        ),
    ],
)
def test_what_kubernetes_cannot_hold_is_a_located_spec_problem(
    doc: str, field: str, words: str
) -> None:
    with pytest.raises(SpecError) as info:
        render_manifests(_plan(doc))
    (problem,) = info.value.problems
    assert problem.file == "spec.yaml"
    assert problem.path == field
    assert words in problem.message


def test_two_kinds_with_one_name_are_refused() -> None:
    with pytest.raises(SpecError, match="would own the same objects"):
        render_manifests(_plan(_model("shop"), _app("shop")))


def test_autoscalers_use_the_gauge_and_labels_the_model_server_exports() -> None:
    from prometheus_client import generate_latest

    from kaip.render.kube.serving import IN_FLIGHT_METRIC
    from kaip.serving.metrics import ServerMetrics

    exported = generate_latest(ServerMetrics("fraud", "abc123").registry).decode()
    assert f'{IN_FLIGHT_METRIC}{{model="fraud",revision="abc123"}}' in exported
    keda = render_manifests(_plan(_model("fraud", scaling="{minReplicas: 0, maxReplicas: 2}")))
    (scaled,) = [o for o in keda if o["kind"] == "ScaledObject"]
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    assert query.startswith(f'sum({IN_FLIGHT_METRIC}{{namespace="default",model="fraud",')


def test_a_model_asking_for_it_scales_on_kv_cache_use_too_with_hpa_and_keda() -> None:
    from kaip.render.kube.serving import IN_FLIGHT_METRIC, KV_CACHE_METRIC

    scaling = "{minReplicas: 1, maxReplicas: 4, targetKvCacheUsage: 0.8}"
    (hpa,) = [o for o in render_manifests(_plan(_model("chat", scaling=scaling)))
              if o["kind"] == "HorizontalPodAutoscaler"]  # fmt: skip
    pods = {m["pods"]["metric"]["name"]: m["pods"]["target"] for m in hpa["spec"]["metrics"]
            if m["type"] == "Pods"}  # fmt: skip
    assert pods == {
        IN_FLIGHT_METRIC: {"type": "AverageValue", "averageValue": "8"},
        KV_CACHE_METRIC: {"type": "AverageValue", "averageValue": "0.8"},
    }
    keda = render_manifests(_plan(_model("chat", scaling=scaling.replace("1,", "0,"))))
    (scaled,) = [o for o in keda if o["kind"] == "ScaledObject"]
    triggers = [(t["metadata"]["query"], t["metadata"]["threshold"])
                for t in scaled["spec"]["triggers"]]  # fmt: skip
    selector = '{namespace="default",model="chat",revision="'
    assert [(q.partition(selector)[0], threshold) for q, threshold in triggers] == [
        (f"sum({IN_FLIGHT_METRIC}", "8"),
        (f"sum({KV_CACHE_METRIC}", "0.8"),
    ]
    plain = render_manifests(_plan(_model("chat", scaling="{minReplicas: 1, maxReplicas: 4}")))
    assert KV_CACHE_METRIC not in json.dumps(plain)


def test_an_app_asking_to_scale_on_kv_cache_use_is_refused_naming_the_field() -> None:
    with pytest.raises(SpecError) as info:
        _plan(_app("web", scaling="{maxReplicas: 4, targetKvCacheUsage: 0.8}"))
    (problem,) = info.value.problems
    assert problem.path == "spec.scaling"
    assert "targetKvCacheUsage is for Models" in problem.message


def test_the_http_route_carries_the_models_served_names() -> None:
    names = "{names: [meta-llama/Llama-3.1-8B-Instruct, llama3]}"
    objects = render_manifests(_plan(_model("llama", serve=names), _model("plain")))
    routes = {o["metadata"]["name"]: o for o in objects if o["kind"] == "HTTPRoute"}
    assert routes["llama"]["metadata"]["annotations"] == {
        "kaip.dev/served-names": '["meta-llama/Llama-3.1-8B-Instruct", "llama3"]'
    }
    assert routes["plain"]["metadata"]["annotations"] == {"kaip.dev/served-names": '["plain"]'}


def _previewed(rollout: str) -> tuple[Plan, Any, dict[str, Any]]:
    """Model fraud with ``rollout``, its new revision at weight 0 beside v1: the plan, the new
    workload and the rendered HTTPRoute (every object checked for the invariants)."""
    plan = _plan(_model("fraud", rollout=rollout))
    (new,) = plan.workloads
    (old_doc,) = load_text(
        _model("fraud", artifact="{uri: https://h/v1.onnx, format: onnx}", rollout=rollout)
    ).documents
    old = plan_workload(old_doc.resource, plan.settings)
    objects = render_manifests(plan, {new.key: [Backend(old, 100), Backend(new, 0)]})
    check_invariants(objects)
    (route,) = [o for o in objects if o["kind"] == "HTTPRoute"]
    return plan, new, dict(route)


def test_canary_headers_route_matching_requests_to_the_canary_in_a_rule_of_their_own() -> None:
    traffic = "{steps: [{weight: 0, pause: {}}, {weight: 100}], traffic: {canaryHeaders: " \
        "{X-Canary: 'yes', X-Team: ml}}}"  # fmt: skip
    plan, new, route = _previewed(traffic)
    weighted, matched = route["spec"]["rules"]
    assert matched["matches"] == [
        {"headers": [{"type": "Exact", "name": "X-Canary", "value": "yes"}]},
        {"headers": [{"type": "Exact", "name": "X-Team", "value": "ml"}]},
    ]
    assert matched["backendRefs"] == [{"name": new.revision_name, "port": 8000, "weight": 1}]
    assert [r["weight"] for r in weighted["backendRefs"]] == [100, 0]
    settled = render_manifests(plan, {new.key: [Backend(new, 100)]})  # no rollout: no rule
    (route,) = [o for o in settled if o["kind"] == "HTTPRoute"]
    assert len(route["spec"]["rules"]) == 1


def test_mirror_copies_the_weighted_rule_to_the_canary_only_while_it_rolls_out() -> None:
    mirrored = "{steps: [{weight: 0, pause: {}}, {weight: 100}], traffic: {mirror: true}}"
    plan, new, route = _previewed(mirrored)
    (weighted,) = route["spec"]["rules"]
    assert weighted["filters"] == [{
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": new.revision_name, "port": 8000}},
    }]  # fmt: skip
    settled = render_manifests(plan, {new.key: [Backend(new, 100)]})  # no rollout: no mirror
    (route,) = [o for o in settled if o["kind"] == "HTTPRoute"]
    assert "filters" not in route["spec"]["rules"][0]


def test_canary_cookies_match_the_cookie_header_by_a_regular_expression() -> None:
    traffic = "{steps: [{weight: 0, pause: {}}, {weight: 100}], traffic: {canaryCookies: " \
        "{canary: always, 'ab.c': 'x+y'}}}"  # fmt: skip
    _, _, route = _previewed(traffic)
    _, matched = route["spec"]["rules"]
    assert matched["matches"] == [
        {
            "headers": [
                {"type": "RegularExpression", "name": "Cookie", "value": cookie_pattern(n, v)}
            ]
        }
        for n, v in (("canary", "always"), ("ab.c", "x+y"))
    ]
    pattern = re.compile(cookie_pattern("ab.c", "x+y"))
    for header in ("ab.c=x+y", "a=1; ab.c=x+y", "ab.c=x+y; b=2", "a=1;ab.c=x+y;b=2"):
        assert pattern.fullmatch(header), header
    for header in ("abxc=x+y", "ab.c=xxy", "ab.c=x+yz", "xab.c=x+y", "ab.c=x+y0; b=2"):
        assert not pattern.fullmatch(header), header


def test_strings_that_yaml_1_2_reads_as_numbers_are_quoted_so_kubectl_keeps_them_strings() -> None:
    """A revision id like 710124e060 is a string to PyYAML but 7.1e65 to kubectl (YAML 1.2):
    kubectl then refuses the label ("cannot unmarshal number ... of type string")."""
    from kaip.render.kube import manifests_yaml

    labels = {"kaip.dev/revision": "710124e060", "a": "12", "b": "1.5", "c": "x1e5"}
    text = manifests_yaml([{"metadata": {"labels": labels}}])
    assert "kaip.dev/revision: '710124e060'" in text and "a: '12'" in text
    assert "b: '1.5'" in text and "c: x1e5" in text
    assert yaml.safe_load(text)["metadata"]["labels"] == labels


def test_an_engine_model_runs_the_engine_beside_kaips_relay() -> None:
    doc = _model(
        "chat",
        artifact="{uri: 'file:///models/chat.gguf', format: gguf}",
        serve="{protocols: [openai], names: [org/chat, chat], engine: {name: llama-server, "
        "port: 9001, image: 'registry.example/llama.cpp:server-b1', args: [--ctx-size, '4096']}}",
        resources="{cpu: '4', memory: 8Gi, gpu: 1}",
    )
    [deployment] = [o for o in render_manifests(_plan(doc)) if o["kind"] == "Deployment"]
    server, engine = deployment["spec"]["template"]["spec"]["containers"]
    assert server["args"][-2:] == ["--engine-url", "http://127.0.0.1:9001"]
    assert "nvidia.com/gpu" not in server["resources"]["limits"]  # the engine's, not the relay's
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert engine["image"] == "registry.example/llama.cpp:server-b1"
    argv = [*engine["command"], *engine["args"]]
    assert argv[argv.index("--model") + 1] == "/models/chat.gguf"
    assert argv[argv.index("--alias") + 1] == "org/chat"  # the first served name
    assert argv[argv.index("--host") + 1 : argv.index("--host") + 4] == [
        "127.0.0.1", "--port", "9001",
    ]  # fmt: skip
    assert argv[-2:] == ["--ctx-size", "4096"]
