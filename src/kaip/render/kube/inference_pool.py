"""The Gateway API Inference Extension's objects for a Model that routes by prefix affinity.

A Model with ``serve.routing: prefix-affinity`` gets, on Kubernetes, what ``kaip up``'s gateway
does for it locally, from the upstream project instead of from kaip: an ``InferencePool``
(``inference.networking.k8s.io/v1``) selecting the Model's pods (every live revision's) on the
serving port, and its endpoint picker (EPP), which any conformant gateway (Istio, kgateway,
Envoy AI Gateway, NGINX Gateway Fabric, GKE) asks which pod each request should go to: scored by
the prompt prefixes it sent each pod (``prefix-cache-scorer``) and by their queues
(``queue-scorer``, read from the pods' ``kaip_inflight_requests``: requests being served,
generations included for as long as they stream, so the ones waiting for the engine too; the
batcher's ``kaip_queue_depth_requests`` never holds a generation). An HTTPRoute of yours whose
backendRef is the pool then routes cache-aware. kaip's own HTTPRoute (weights per revision, the
canary's) is rendered as before; on the pool's path the EPP chooses among all revisions' pods,
so a canary's weight holds on kaip's route only.

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


def _meta(name: str, workload: Workload, labels: dict[str, str]) -> Obj:
    return {"name": name, "namespace": workload.namespace, "labels": labels}


def inference_pool_objects(workload: Workload, port: int) -> list[Obj]:
    """The InferencePool of ``workload``'s pods on ``port`` and its endpoint picker."""
    name, picker = workload.name, picker_name(workload)
    pool_labels = dict(workload.common_labels)
    labels = {
        **pool_labels,
        **picker_selector(workload),
        LABEL_COMPONENT: "endpoint-picker",
        "app.kubernetes.io/version": EPP_VERSION,
    }
    pool: Obj = {
        "apiVersion": INFERENCE_API,
        "kind": "InferencePool",
        "metadata": _meta(name, workload, pool_labels),
        "spec": {
            "selector": {"matchLabels": dict(workload.selector)},
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
            "selector": picker_selector(workload),
            "ports": [
                {"name": "grpc-ext-proc", "protocol": "TCP", "port": EXT_PROC_PORT,
                 "appProtocol": "kubernetes.io/h2c"},
                {"name": "http-metrics", "protocol": "TCP", "port": METRICS_PORT},
            ],
        },
    }  # fmt: skip
    return [pool, account, role, binding, config, service, _deployment(workload, labels)]


def _deployment(workload: Workload, labels: dict[str, str]) -> Obj:
    picker = picker_name(workload)
    args = [
        "--pool-name", workload.name,
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
            "selector": {"matchLabels": picker_selector(workload)},
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
    "inference_pool_objects",
    "picker_name",
    "picker_selector",
    "uses_inference_pool",
]
