"""kaip.render.kube.pod_options: the spec's pod-level fields in rendered pods.

Each test renders a real spec through the public render path and reads the pod it produces;
the rendered sets must still meet the restricted Pod Security profile and kaip's own bar
(``check_invariants`` of test_render_kube, less the token rule a chosen ServiceAccount lifts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from spec_strategies import documents
from test_render_kube import _app, _job, _model, _plan, _pods

from kaip.errors import SpecError
from kaip.plan import build_plan
from kaip.render.kube import kaip_violations, render_manifests, restricted_violations
from kaip.settings import Settings
from kaip.spec import SpecDocument, load_document

REF = "{secretKeyRef: {name: creds, key: token}}"
CFG = "{configMapKeyRef: {name: c, key: k, optional: true}}"


def _pod_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    ((_, template),) = _pods(objects)
    pod: dict[str, Any] = template["spec"]
    assert restricted_violations(pod) == []
    assert kaip_violations(pod) == []
    return pod


def _env(container: dict[str, Any]) -> dict[str, Any]:
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), "each variable once (server-side apply keys on name)"
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_env_literal_and_from_references_reach_server_and_fetch() -> None:
    spec = _model(
        "m",
        env="{LOG_LEVEL: debug, HOME: /work, KAIP_SERVING__ARTIFACT_CACHE_DIR: /elsewhere}",
        envValueFrom=f"{{TOKEN: {REF}, CFG: {CFG}}}",
        envFrom="[{secretRef: {name: all}, prefix: S_}]",
    )
    pod = _pod_of(render_manifests(_plan(spec)))
    (server,) = pod["containers"]
    (fetch,) = pod["initContainers"]
    for container in (server, fetch):
        env = _env(container)
        assert env["LOG_LEVEL"] == "debug"
        assert env["HOME"] == "/work", "kaip's defaults give way to the spec"
        assert env["KAIP_SERVING__ARTIFACT_CACHE_DIR"] == "/var/lib/kaip/artifacts", "wiring stays"
        assert env["TOKEN"] == {"secretKeyRef": {"name": "creds", "key": "token"}}
        assert env["CFG"] == {"configMapKeyRef": {"name": "c", "key": "k", "optional": True}}
        assert container["envFrom"] == [{"secretRef": {"name": "all"}, "prefix": "S_"}]


def test_app_port_stays_kaips_whether_set_literally_or_by_reference() -> None:
    for spec in (
        _app("a", port=9000, env="{PORT: '1', A: x}", envValueFrom=f"{{B: {REF}}}"),
        _app("a", port=9000, env="{A: x}", envValueFrom=f"{{PORT: {REF}, B: {REF}}}"),
    ):
        (container,) = _pod_of(render_manifests(_plan(spec)))["containers"]
        env = _env(container)
        assert env["PORT"] == "9000"
        assert env["A"] == "x" and env["B"]["secretKeyRef"]["name"] == "creds"
        assert "envFrom" not in container


def test_scheduling_fields_merge_with_gpu_placement() -> None:
    spec = _model(
        "g",
        resources="{cpu: '1', memory: 1Gi, gpu: 1, gpuModel: NVIDIA-L4}",
        nodeSelector="{pool: gpu}",
        tolerations="[{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}, "
        "{key: spot, operator: Exists}]",
        affinity="{podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: "
        "[{topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {x: y}}}]}}",
        priorityClassName="high",
        imagePullSecrets="[regcred]",
    )
    pod = _pod_of(render_manifests(_plan(spec)))
    assert pod["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists"},
    ], "the GPU toleration is not added twice"
    assert pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == [
        {"labelSelector": {"matchLabels": {"x": "y"}}, "topologyKey": "kubernetes.io/hostname"}
    ]
    assert pod["priorityClassName"] == "high"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_volumes_are_mounted_read_only_except_scratch_and_writable_claims() -> None:
    spec = _app(
        "v",
        volumes="[{name: c, mountPath: /etc/c, configMap: {name: cm}}, "
        "{name: s, mountPath: /etc/s, secret: {secretName: sec}, subPath: tls.crt}, "
        "{name: p, mountPath: /data, persistentVolumeClaim: {claimName: pvc}}, "
        "{name: w, mountPath: /out, persistentVolumeClaim: {claimName: out}, readOnly: false}, "
        "{name: e, mountPath: /scratch, emptyDir: {sizeLimit: 1Gi}}]",
    )
    pod = _pod_of(render_manifests(_plan(spec)))
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["c"] == {"name": "c", "configMap": {"name": "cm"}}
    assert volumes["s"] == {"name": "s", "secret": {"secretName": "sec"}}
    assert volumes["p"] == {"name": "p", "persistentVolumeClaim": {"claimName": "pvc"}}
    assert volumes["e"] == {"name": "e", "emptyDir": {"sizeLimit": "1Gi"}}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["c"] == {"name": "c", "mountPath": "/etc/c", "readOnly": True}
    assert mounts["s"] == {"name": "s", "mountPath": "/etc/s", "subPath": "tls.crt",
                           "readOnly": True}  # fmt: skip
    assert mounts["p"]["readOnly"] is True
    assert "readOnly" not in mounts["w"] and "readOnly" not in mounts["e"]
    assert mounts["tmp"]["mountPath"] == "/tmp", "kaip's own scratch stays"


def test_a_chosen_service_account_replaces_kaips_own() -> None:
    for spec in (_model("m", serviceAccountName="reader"), _job("j", serviceAccountName="reader")):
        objects = render_manifests(_plan(spec))
        pod = _pod_of(objects)
        assert pod["serviceAccountName"] == "reader"
        assert "automountServiceAccountToken" not in pod, "the account decides about its token"
        assert "ServiceAccount" not in [o["kind"] for o in objects], "kaip makes none it won't use"
    objects = render_manifests(_plan(_model("own")))
    assert _pod_of(objects)["serviceAccountName"] == "own"
    assert "ServiceAccount" in [o["kind"] for o in objects]


def test_serve_image_runs_the_server_and_the_fetch() -> None:
    spec = _model("m", serve="{image: registry.example.com/m:1}")
    pod = _pod_of(render_manifests(_plan(spec)))
    assert pod["containers"][0]["image"] == "registry.example.com/m:1"
    assert pod["initContainers"][0]["image"] == "registry.example.com/m:1"


def test_training_rank_is_kaips_and_a_volume_at_checkpoint_dir_is_the_store() -> None:
    spec = _job(
        "t",
        nodes=2,
        checkpointDir="/ckpt",
        env="{RANK: '9', EPOCHS: '3'}",
        volumes="[{name: store, mountPath: /ckpt, persistentVolumeClaim: {claimName: c}, "
        "readOnly: false}]",
    )
    pod = _pod_of(render_manifests(_plan(spec)))
    (train,) = pod["containers"]
    env = _env(train)
    assert env["EPOCHS"] == "3"
    assert "fieldRef" in env["RANK"], "the completion index, not the spec's literal"
    assert env["KAIP_CHECKPOINT_DIR"] == "/ckpt"
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "store"], "no emptyDir checkpoints"
    assert {"name": "store", "mountPath": "/ckpt"} in train["volumeMounts"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_any_valid_document_renders_pods_that_pass_both_checks(doc: dict[str, Any]) -> None:
    """Whatever pod-level fields a valid spec sets, its pods stay restricted and well formed."""
    # Free text the spec allows but Kubernetes names and labels do not (checked elsewhere).
    doc["metadata"]["name"] = ("w" + doc["metadata"]["name"][:20]).rstrip("-")  # a label ends alnum
    doc["spec"]["owner"] = "team"
    if doc["kind"] != "Model":
        doc["spec"]["image"] = "registry.example.com/x:1"
    resource = load_document(doc)
    try:
        objects = render_manifests(build_plan([SpecDocument(resource, Path("s.yaml"), 1)],
                                              Settings()))  # fmt: skip
    except SpecError as exc:  # what Kubernetes cannot hold (names too long, paths outside)
        event(f"refused: {exc.problems[0].path}")
        return
    for _, template in _pods(objects):
        pod = template["spec"]
        assert restricted_violations(pod) == []
        assert kaip_violations(pod) == []
        volume_names = [v["name"] for v in pod["volumes"]]
        assert len(volume_names) == len(set(volume_names))
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            names = [e["name"] for e in container.get("env", [])]
            assert len(names) == len(set(names)), names
            mounts = container.get("volumeMounts", [])
            assert {m["name"] for m in mounts} <= set(volume_names)
            paths = [m["mountPath"] for m in mounts]
            assert len(paths) == len(set(paths)), paths
