"""The Gateway API Inference Extension's objects for a Model that routes by prefix affinity.

A Model with ``serve.routing: prefix-affinity`` gets, on Kubernetes, what ``kaip up``'s gateway
does for it locally, from the upstream project instead of from kaip: an ``InferencePool``
(``inference.networking.k8s.io/v1``) selecting the Model's pods on the serving port, and its
endpoint picker (EPP), which any conformant gateway (Istio, kgateway, Envoy AI Gateway, NGINX
Gateway Fabric, GKE) asks which pod each request should go to: scored by the prompt prefixes it
sent each pod (``prefix-cache-scorer``) and by their queues (``queue-scorer``, read from the
pods' ``kaip_inflight_requests``: requests being served, generations included for as long as
they stream, so the ones waiting for the engine too; the batcher's ``kaip_queue_depth_requests``
never holds a generation).

Canaries (``KAIP_KUBE__INFERENCE_GATEWAY``). A picker chooses among every pod its pool selects,
so one pool over all revisions cannot hold a canary's weight. With the setting naming a Gateway,
kaip renders one pool per live revision, as the upstream InferencePool rollout guide does (a
second pool with its own picker, and an HTTPRoute whose ``backendRefs`` weight the pools): the
first (stable) revision's pool keeps the Model's name and picker ``NAME-epp``, selecting only
its pods while a canary runs; each other revision gets a pool ``NAME-REVISION`` with a picker
``NAME-epp-`` and six hex digits of its revision (``NAME-REVISION-epp`` would pass the 63
characters of a Service name). The route ``NAME-inference`` is attached to that Gateway and
carries the rollout's weights (:func:`kaip.render.kube.serving.inference_route`), so each pool
routes cache-aware within its revision and the canary gets its share. With one live revision
the objects are as without a canary (the pool ``NAME`` selects the Model's pods, its picker
keeps running), so a stable Model's names never change: when a canary is promoted its pool
and picker are removed and ``NAME``'s picker, whose prefix index knew only the old revision's
pods, learns the new pods' prefixes from their first requests on (the engines' caches are not
lost, only the picker's memory of which pod holds which prefix). Without the setting a Model
has one pool over every live revision and no route to it: an HTTPRoute of the user's own
points at it, and a canary's weight holds on kaip's Service route only.

The EPP is rendered as the upstream chart v1.5.0 (``config/charts/inferencepool`` and
``epplib``) renders it: a Deployment of one replica (``Recreate``: the prefix index lives in its
memory), its Service (gRPC ext-proc 9002, metrics 9090), a ServiceAccount, a Role to read pods
and inference pools, and the plugins' ConfigMap; the image is pinned to the same version
(:data:`EPP_IMAGE`), its container held to kaip's rules (restricted Pod Security, requests equal
limits, a read-only root with an emptyDir ``/tmp``). The picker's profile is the upstream
default, queue 2, KV-cache utilization 2, prefix cache 3: the KV-cache scorer reads
``kaip_kv_cache_usage_ratio`` (tokens in the engine's context over its size, 0 to 1, as vLLM's
``vllm:kv_cache_usage_perc``; a llama.cpp replica exports it, and a pod without it scores as
an empty cache). LoRA and cache-info metrics are not scraped (empty names). Pure: plain dicts
in, plain dicts out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import yaml

from kaip.plan import LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME, Workload
from kaip.render.kube.pods import Obj, tmp_mount, tmp_volume
from kaip.spec import Model

QUEUE_METRIC: Final = "kaip_inflight_requests"
RUNNING_METRIC: Final = "kaip_inflight_requests"
"""The model server's gauge the picker reads as queued and as running requests (kaip.telemetry's
INFLIGHT; render sits below telemetry, so a test keeps the two equal)."""
KV_CACHE_METRIC: Final = "kaip_kv_cache_usage_ratio"
"""The model server's gauge the picker reads as KV-cache utilization (kaip.telemetry's
KV_CACHE_USAGE, kept equal by a test)."""
INFERENCE_API: Final = "inference.networking.k8s.io/v1"
INFERENCE_GROUP: Final = "inference.networking.k8s.io"
EPP_VERSION: Final = "v1.5.0"
EPP_IMAGE: Final = f"registry.k8s.io/gateway-api-inference-extension/epp:{EPP_VERSION}"
GATEWAY_GROUP: Final = "gateway.networking.k8s.io"
EPP_NAME: Final = "epp.kaip.dev"
"""The EPP pods' ``app.kubernetes.io/name``: a dot no Model name can hold, so no Model's
selector (its name and ``managed-by``) ever selects an endpoint picker."""
EXT_PROC_PORT: Final = 9002
HEALTH_PORT: Final = 9003
METRICS_PORT: Final = 9090
CONFIG_FILE: Final = "plugins.yaml"
EPP_RESOURCES: Final = {"cpu": "1", "memory": "1Gi"}
"""Requests equal limits, as for every kaip container (the upstream chart asks 4 CPUs and 8 GiB,
sized for high QPS at a p90 scheduling latency under 100 ms; one Model's picker needs far less)."""
PLUGINS: Final = {
    "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
    "kind": "EndpointPickerConfig",
    "plugins": [
        {"type": "queue-scorer"},
        {"type": "kv-cache-utilization-scorer"},
        {"type": "prefix-cache-scorer"},
    ],
    "schedulingProfiles": [
        {
            "name": "default",
            "plugins": [
                {"pluginRef": "queue-scorer", "weight": 2},
                {"pluginRef": "kv-cache-utilization-scorer", "weight": 2},
                {"pluginRef": "prefix-cache-scorer", "weight": 3},
            ],
        }
    ],
}
"""The upstream default profile: queue 2, KV-cache utilization 2, prefix cache 3."""


def uses_inference_pool(workload: Workload) -> bool:
    resource = workload.resource
    return isinstance(resource, Model) and resource.spec.serve.routing == "prefix-affinity"


def picker_name(workload: Workload) -> str:
    return f"{workload.name}-epp"


def picker_selector(workload: Workload) -> dict[str, str]:
    """Selects the EPP pods of this Model and nothing else."""
    return {LABEL_NAME: EPP_NAME, LABEL_INSTANCE: workload.name, LABEL_MANAGED_BY: "kaip"}


def route_name(workload: Workload) -> str:
    """The HTTPRoute that weights a Model's pools, when a Gateway is set to attach it to."""
    return f"{workload.name}-inference"


REVISION_PICKER_DIGITS: Final = 6


@dataclass(frozen=True)
class Pool:
    """One InferencePool of a Model: the pods it selects and the picker that scores them."""

    name: str
    revision: Workload
    """The live revision whose weight the pool gets on the Model's inference route."""
    selector: Mapping[str, str]
    picker: str
    picker_selector: Mapping[str, str]


def pools(workload: Workload, revisions: Sequence[Workload], gateway: str | None) -> list[Pool]:
    """The pools of ``workload`` while ``revisions`` are live (the stable one first).

    One pool ``NAME`` over every revision's pods unless a Gateway is set and more than one
    revision is live; then one per revision (see the module's docstring).
    """
    first = revisions[0] if revisions else workload
    stable = Pool(
        workload.name, first, workload.selector, picker_name(workload), picker_selector(workload)
    )
    if gateway is None or len(revisions) < 2:
        return [stable]
    out = [Pool(stable.name, first, first.revision_selector, stable.picker, stable.picker_selector)]
    for live in revisions[1:]:
        out.append(
            Pool(
                live.revision_name,
                live,
                live.revision_selector,
                f"{picker_name(workload)}-{live.revision[:REVISION_PICKER_DIGITS]}",
                {**picker_selector(workload), LABEL_INSTANCE: live.revision_name},
            )
        )
    return out


def gateway_parent(gateway: str) -> Obj:
    """``NAMESPACE/NAME`` or ``NAME`` (the route's own namespace) as an HTTPRoute parentRef."""
    namespace, _, name = gateway.rpartition("/")
    ref: Obj = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": name}
    if namespace:
        ref["namespace"] = namespace
    return ref


def pool_ref(pool: Pool) -> Obj:
    """An HTTPRoute backendRef naming ``pool`` (an InferencePool takes no port there)."""
    return {"group": INFERENCE_GROUP, "kind": "InferencePool", "name": pool.name}


def _meta(name: str, workload: Workload, labels: dict[str, str]) -> Obj:
    return {"name": name, "namespace": workload.namespace, "labels": labels}


def inference_pool_objects(workload: Workload, port: int, pool: Pool) -> list[Obj]:
    """The InferencePool ``pool`` of ``workload``'s pods on ``port`` and its endpoint picker."""
    name, picker = pool.name, pool.picker
    pool_labels = dict(workload.common_labels)
    labels = {
        **pool_labels,
        **pool.picker_selector,
        LABEL_COMPONENT: "endpoint-picker",
        "app.kubernetes.io/version": EPP_VERSION,
    }
    inference_pool: Obj = {
        "apiVersion": INFERENCE_API,
        "kind": "InferencePool",
        "metadata": _meta(name, workload, pool_labels),
        "spec": {
            "selector": {"matchLabels": dict(pool.selector)},
            "targetPorts": [{"number": port}],
            "appProtocol": "http",
            "endpointPickerRef": {
                "name": picker,
                "port": {"number": EXT_PROC_PORT},
                "failureMode": "FailOpen",
            },
        },
    }
    account: Obj = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(picker, workload, labels),
    }
    role: Obj = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(picker, workload, labels),
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "list"]},
            {
                "apiGroups": [INFERENCE_GROUP],
                "resources": ["inferencepools"],
                "verbs": ["get", "watch", "list"],
            },
            {
                "apiGroups": ["inference.networking.x-k8s.io"],
                "resources": ["inferenceobjectives", "inferencemodelrewrites"],
                "verbs": ["get", "watch", "list"],
            },
        ],
    }
    binding: Obj = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(picker, workload, labels),
        "subjects": [{"kind": "ServiceAccount", "name": picker, "namespace": workload.namespace}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": picker},
    }
    config: Obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(picker, workload, labels),
        "data": {CONFIG_FILE: yaml.safe_dump(PLUGINS, sort_keys=False)},
    }
    service: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(picker, workload, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(pool.picker_selector),
            "ports": [
                {"name": "grpc-ext-proc", "protocol": "TCP", "port": EXT_PROC_PORT,
                 "appProtocol": "kubernetes.io/h2c"},
                {"name": "http-metrics", "protocol": "TCP", "port": METRICS_PORT},
            ],
        },
    }  # fmt: skip
    return [inference_pool, account, role, binding, config, service,
            _deployment(workload, pool, labels)]  # fmt: skip


def _deployment(workload: Workload, pool: Pool, labels: dict[str, str]) -> Obj:
    picker = pool.picker
    args = [
        "--pool-name", pool.name,
        "--pool-namespace", workload.namespace,
        "--pool-group", INFERENCE_GROUP,
        "--config-file", f"/config/{CONFIG_FILE}",
        "--total-queued-requests-metric", QUEUE_METRIC,
        "--total-running-requests-metric", RUNNING_METRIC,
        "--kv-cache-usage-percentage-metric", KV_CACHE_METRIC,
        "--lora-info-metric", "",
        "--cache-info-metric", "",
        "--zap-encoder", "json",
        "--tracing=false",
        "--metrics-endpoint-auth=false",
    ]  # fmt: skip
    probe = {"grpc": {"port": HEALTH_PORT, "service": "inference-extension"}}
    container: Obj = {
        "name": "epp",
        "image": EPP_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "ports": [
            {"name": "grpc", "containerPort": EXT_PROC_PORT},
            {"name": "grpc-health", "containerPort": HEALTH_PORT},
            {"name": "metrics", "containerPort": METRICS_PORT},
        ],
        "livenessProbe": {**probe, "initialDelaySeconds": 5, "periodSeconds": 10},
        "readinessProbe": {**probe, "periodSeconds": 2},
        "env": [
            {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "resources": {"requests": dict(EPP_RESOURCES), "limits": dict(EPP_RESOURCES)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "plugins", "mountPath": "/config", "readOnly": True},
            tmp_mount(),
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(picker, workload, labels),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(pool.picker_selector)},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": picker,
                    "terminationGracePeriodSeconds": 130,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "plugins", "configMap": {"name": picker}}, tmp_volume()],
                },
            },
        },
    }


__all__ = [
    "EPP_IMAGE",
    "EPP_VERSION",
    "REVISION_PICKER_DIGITS",
    "Pool",
    "gateway_parent",
    "inference_pool_objects",
    "picker_name",
    "picker_selector",
    "pool_ref",
    "pools",
    "route_name",
    "uses_inference_pool",
]
