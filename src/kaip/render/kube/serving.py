"""Kubernetes objects for the long-running kinds, ``Model`` and ``App``.

Per resource (shared by its revisions): ServiceAccount (no token), NetworkPolicy (deny by
default both ways, :mod:`kaip.render.kube.network`), a stable Service selecting every
revision, and a Gateway API HTTPRoute attached to that Service (GAMMA, mesh traffic) that
splits requests over the live revisions by weight (during a rollout with
``traffic.canaryHeaders`` or ``canaryCookies``, a rule of its own sends requests with those
headers or cookies to the canary;
with ``traffic.mirror``, the weighted rule's ``RequestMirror`` filter copies its requests to the
canary's Service).
Per live revision (``NAME-REVISION``): Deployment, Service, PodDisruptionBudget, an autoscaler
(HPA ``autoscaling/v2``, or a KEDA ScaledObject) and, for a Model, an immutable ConfigMap
holding the pod-local spec. A Model with ``serve.routing: prefix-affinity`` also gets an
InferencePool and its endpoint picker (:mod:`kaip.render.kube.inference_pool`), and with
``KAIP_KUBE__INFERENCE_GATEWAY`` one pool per live revision and a second HTTPRoute,
``NAME-inference``, attached to that Gateway, whose backendRefs weight the pools as the first
route weights the Services (its header, cookie and mirror rules alike).

Scaling: ``minReplicas == maxReplicas`` pins ``replicas`` and renders no autoscaler. Otherwise
the Deployment leaves ``replicas`` to the autoscaler (so ``kaip apply`` never fights it). HPA
cannot scale to zero, so a Model with ``minReplicas: 0`` renders a KEDA ScaledObject whatever
the ``autoscaler`` setting says. Models scale on in-flight requests per pod (the
``kaip_inflight_requests`` gauge, labelled ``model`` and ``revision``: served to the HPA by a
custom-metrics adapter such as prometheus-adapter, to KEDA from Prometheus), the HPA also on
CPU. A Model with ``scaling.targetKvCacheUsage`` also scales on its engine's KV-cache use per
pod (``kaip_kv_cache_usage_ratio``, tokens in the context over its size, which llama.cpp
replicas export): a second Pods metric of the HPA, or a second Prometheus trigger of KEDA, so
the autoscaler takes the larger of the two replica counts. Apps export no kaip metrics and
scale on CPU, so they cannot scale to zero on Kubernetes.

Pure: plain dicts in, plain dicts out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

import yaml

from kaip.plan import Workload
from kaip.render.kube import engine, pod_options
from kaip.render.kube.artifacts import place_artifact, pod_local_model
from kaip.render.kube.inference_pool import (
    Pool,
    gateway_parent,
    inference_pool_objects,
    pool_ref,
    pools,
    route_name,
    uses_inference_pool,
)
from kaip.render.kube.network import network_policy
from kaip.render.kube.pods import (
    SPEC_FILE,
    SPEC_PATH,
    SPEC_VOLUME,
    Obj,
    container_resources,
    container_security_context,
    http_probe,
    pod_security_context,
    pre_stop,
    small_resources,
    spec_mount,
    spread,
    termination_grace_seconds,
    tmp_mount,
    tmp_volume,
)
from kaip.settings import Settings
from kaip.spec import App, Model, Scaling, dump_resource

MODEL_PORT: Final = 8000
SERVED_NAMES: Final = "kaip.dev/served-names"
"""HTTPRoute annotation: the JSON list of names the Model answers to (``serve.names``)."""
IN_FLIGHT_METRIC: Final = "kaip_inflight_requests"
KV_CACHE_METRIC: Final = "kaip_kv_cache_usage_ratio"
"""The engine's KV-cache use per pod, 0 to 1 (kaip.telemetry's KV_CACHE_USAGE), scaled on when a
Model sets ``scaling.targetKvCacheUsage``."""
CPU_TARGET_PERCENT: Final = 80


def metadata(name: str, workload: Workload, labels: Any, annotations: bool = False) -> Obj:
    meta: Obj = {"name": name, "namespace": workload.namespace, "labels": dict(labels)}
    if annotations and workload.resource.metadata.annotations:
        meta["annotations"] = dict(workload.resource.metadata.annotations)
    return meta


def quantity(value: float) -> str:
    """A float as a Kubernetes quantity string (16.0 -> "16", 0.5 -> "0.5")."""
    return str(int(value)) if float(value).is_integer() else format(value, "g")


def service_port(workload: Workload) -> int:
    resource = workload.resource
    return resource.spec.port if isinstance(resource, App) else MODEL_PORT


def service_account(workload: Workload) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(workload.name, workload, workload.common_labels),
        "automountServiceAccountToken": False,
    }


def _service(name: str, workload: Workload, labels: Any, selector: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, workload, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [
                {
                    "name": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                    "port": service_port(workload),
                    "targetPort": "http",
                }
            ],
        },
    }


def stable_service(workload: Workload) -> Obj:
    return _service(workload.name, workload, workload.common_labels, workload.selector)


def revision_service(workload: Workload) -> Obj:
    return _service(workload.revision_name, workload, workload.labels, workload.revision_selector)


def _route_rules(
    workload: Workload,
    backends: Sequence[tuple[Workload, int]],
    ref: Callable[[Workload], Obj],
) -> list[Obj]:
    """The rules of a route over ``backends``: one weighted rule, and the canary's own rule
    for ``traffic.canaryHeaders``/``canaryCookies``; ``ref`` names a revision's backend."""
    port = service_port(workload)
    rules: list[Obj] = [
        {"backendRefs": [{**ref(live), "weight": weight} for live, weight in backends]}
    ]
    resource = workload.resource
    traffic = resource.spec.rollout.traffic if isinstance(resource, Model | App) else None
    canary = backends[-1][0] if len(backends) > 1 else None
    if canary is None or canary.revision != workload.revision:
        traffic = None  # only the new revision's spec shapes its rollout's traffic
    if traffic and traffic.mirror and canary:
        # Core Gateway API mirrors per rule: every request of the weighted rule is copied (to
        # the canary's Service: a mirrored request needs no cache-aware pick)
        rules[0]["filters"] = [{
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": canary.revision_name, "port": port}},
        }]  # fmt: skip
    if traffic and (traffic.canary_headers or traffic.canary_cookies) and canary:
        # Gateway API ranks a rule with header matches above one without, whatever the order;
        # one match per header or cookie: matches are ORed, the headers within one match ANDed
        rules.append({
            "matches": [
                {"headers": [{"type": "Exact", "name": name, "value": value}]}
                for name, value in traffic.canary_headers.items()
            ] + [
                {"headers": [{"type": "RegularExpression", "name": "Cookie",
                              "value": cookie_pattern(name, value)}]}
                for name, value in traffic.canary_cookies.items()
            ],
            "backendRefs": [{**ref(canary), "weight": 1}],
        })  # fmt: skip
    return rules


def _route(workload: Workload, name: str, parent: Obj, rules: list[Obj]) -> Obj:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(name, workload, workload.common_labels),
        "spec": {"parentRefs": [parent], "rules": rules},
    }


def http_route(workload: Workload, backends: Sequence[tuple[Workload, int]]) -> Obj:
    """The route attached to the stable Service (GAMMA) over the revisions' Services."""
    port = service_port(workload)
    rules = _route_rules(
        workload, backends, lambda live: {"name": live.revision_name, "port": port}
    )
    parent = {"group": "", "kind": "Service", "name": workload.name, "port": port}
    route = _route(workload, workload.name, parent, rules)
    if isinstance(workload.resource, Model):  # this route only: kaip apply reads one per Model
        names = json.dumps(list(workload.resource.served_names))
        route["metadata"]["annotations"] = {SERVED_NAMES: names}
    return route


def inference_route(
    workload: Workload,
    backends: Sequence[tuple[Workload, int]],
    pools: Sequence[Pool],
    gateway: str,
) -> Obj:
    """The route attached to ``gateway`` over ``pools`` (one per revision in ``backends``),
    with the rollout's weights: a canary's share holds on the cache-aware path."""
    by_revision = {pool.revision.revision: pool for pool in pools}
    rules = _route_rules(workload, backends, lambda live: pool_ref(by_revision[live.revision]))
    return _route(workload, route_name(workload), gateway_parent(gateway), rules)


def cookie_pattern(name: str, value: str) -> str:
    """A regular expression (RE2, as Envoy and most Gateway API implementations read it)
    matching a ``Cookie`` header that carries the cookie ``name`` with exactly ``value``
    (Gateway API has no cookie match of its own)."""
    return f"^(.*;[ ]*)?{re.escape(name)}={re.escape(value)}(;.*)?$"


def spec_config_map(workload: Workload, model: Model) -> Obj:
    text = yaml.safe_dump(dump_resource(model), sort_keys=False, default_flow_style=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(workload.revision_name, workload, workload.labels),
        "immutable": True,
        "data": {SPEC_FILE: text},
    }


def _model_pod(workload: Workload, model: Model, settings: Settings) -> tuple[Obj, Model]:
    image = workload.image or settings.kube.image
    placement = place_artifact(model, image, workload.artifact_sha256)
    options = model.spec
    wiring = {e["name"]: e["value"] for e in placement.server_env}
    user_volumes, user_mounts = pod_options.volumes(options)
    container: Obj = {
        "name": "server",
        "image": image,
        "command": ["python", "-m", "kaip.serving"],
        "args": [
            SPEC_PATH,
            "--model",
            workload.name,
            "--host",
            "0.0.0.0",
            "--port",
            str(MODEL_PORT),
            "--revision",
            workload.revision,
        ],
        "env": pod_options.container_env(
            options,
            defaults={
                "HOME": "/tmp",
                "OTEL_SERVICE_NAME": workload.name,
                "OTEL_RESOURCE_ATTRIBUTES": f"service.version={workload.revision}",
            },
            fixed=wiring,
        ),
        **pod_options.container_env_from(options),
        "ports": [{"name": "http", "containerPort": MODEL_PORT, "protocol": "TCP"}],
        "lifecycle": pre_stop(),
        "startupProbe": http_probe("/v2/health/live", "http", period=5, failures=60),
        "livenessProbe": http_probe("/v2/health/live", "http", period=10, failures=3),
        "readinessProbe": http_probe("/v2/health/ready", "http", period=5, failures=3),
        "resources": container_resources(workload.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [
            spec_mount(),
            *placement.server_mounts,
            tmp_mount(),
            *user_mounts,
        ],
    }
    volumes = [
        {"name": SPEC_VOLUME, "configMap": {"name": workload.revision_name}},
        *placement.volumes,
        tmp_volume(),
        *user_volumes,
    ]
    containers = [container]
    if options.serve.engine is not None:
        # kaip's container relays to the engine's beside it, which gets the Model's resources
        container["args"] += ["--engine-url", engine.engine_url(model)]
        container["resources"] = small_resources(engine.RELAY_CPU, engine.RELAY_MEMORY)
        containers.append(
            engine.engine_container(
                model,
                placement,
                container_resources(workload.resources),
                pod_options.container_env(options, defaults=engine.CACHE_ENV),
                pod_options.container_env_from(options),
            )
        )
        volumes.append(engine.shm_volume())
    pod: Obj = {}
    if placement.init_containers:
        # The fetch may need the same credentials (e.g. from a Secret) as the server.
        pod["initContainers"] = [
            {
                **init,
                "env": pod_options.container_env(
                    options,
                    defaults={e["name"]: e["value"] for e in init.get("env", [])},
                    fixed=wiring,
                ),
                **pod_options.container_env_from(options),
            }
            for init in placement.init_containers
        ]
    pod |= {"containers": containers, "volumes": volumes}
    return pod, pod_local_model(model, placement.pod_uri)


def _app_pod(workload: Workload, app: App) -> Obj:
    spec = app.spec
    user_volumes, user_mounts = pod_options.volumes(spec)
    container: Obj = {
        "name": "app",
        "image": workload.image,
        "env": pod_options.container_env(spec, fixed={"PORT": str(spec.port)}),
        **pod_options.container_env_from(spec),
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "lifecycle": pre_stop(),
        "livenessProbe": http_probe(spec.health_path, "http", period=10, failures=3),
        "readinessProbe": http_probe(spec.health_path, "http", period=5, failures=3),
        "resources": container_resources(workload.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [tmp_mount(), *user_mounts],
    }
    return {"containers": [container], "volumes": [tmp_volume(), *user_volumes]}


def scaling_of(workload: Workload) -> Scaling:
    resource = workload.resource
    if isinstance(resource, Model | App):
        return resource.spec.scaling
    raise TypeError(f"{resource.kind} does not scale")


def deployment(workload: Workload, pod: Obj, settings: Settings) -> Obj:
    scaling = scaling_of(workload)
    template_meta: Obj = {"labels": dict(workload.labels)}
    if isinstance(workload.resource, Model):
        template_meta["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(MODEL_PORT),
            "prometheus.io/path": "/metrics",
        }
    options = workload.resource.spec
    pod_spec: Obj = {
        **pod_options.service_account(options, workload.name),
        "enableServiceLinks": False,
        # preStop sleep, then the model server's drain and in-flight requests (server.py).
        "terminationGracePeriodSeconds": termination_grace_seconds(
            settings.serving.drain_seconds, settings.serving.graceful_shutdown_seconds
        ),
        "securityContext": pod_security_context(),
        "topologySpreadConstraints": spread(workload.revision_selector),
        **pod_options.scheduling(options, workload.resources),
        **pod,
    }
    spec: Obj = {}
    if scaling.min_replicas == scaling.max_replicas:
        spec["replicas"] = scaling.min_replicas
    spec |= {
        "revisionHistoryLimit": 2,
        "selector": {"matchLabels": dict(workload.revision_selector)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
        },
        "template": {"metadata": template_meta, "spec": pod_spec},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(workload.revision_name, workload, workload.labels, annotations=True),
        "spec": spec,
    }


def pod_disruption_budget(workload: Workload) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(workload.revision_name, workload, workload.labels),
        "spec": {
            "maxUnavailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": dict(workload.revision_selector)},
        },
    }


def autoscaler(workload: Workload, settings: Settings) -> list[Obj]:
    scaling = scaling_of(workload)
    if scaling.min_replicas == scaling.max_replicas:
        return []
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload.revision_name}
    is_model = isinstance(workload.resource, Model)
    # (gauge, target per pod): in-flight requests always, the KV cache's use when asked
    per_pod = [(IN_FLIGHT_METRIC, quantity(scaling.target_concurrency))]
    if scaling.target_kv_cache_usage is not None:
        per_pod.append((KV_CACHE_METRIC, quantity(scaling.target_kv_cache_usage)))
    cpu_metric: Obj = {
        "type": "Resource",
        "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": CPU_TARGET_PERCENT},
        },
    }
    if settings.kube.autoscaler == "keda" or scaling.min_replicas == 0:
        selector = (
            f'namespace="{workload.namespace}",'
            f'model="{workload.name}",revision="{workload.revision}"'
        )
        triggers: list[Obj]
        if is_model:
            triggers = [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": settings.kube.prometheus_url,
                        "query": f"sum({metric}{{{selector}}})",
                        "threshold": threshold,
                    },
                }
                for metric, threshold in per_pod
            ]
        else:
            # An App exports no kaip metrics; CPU is what KEDA can see of it.
            triggers = [
                {
                    "type": "cpu",
                    "metricType": "Utilization",
                    "metadata": {"value": str(CPU_TARGET_PERCENT)},
                }
            ]
        return [
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": metadata(workload.revision_name, workload, workload.labels),
                "spec": {
                    "scaleTargetRef": target,
                    "minReplicaCount": scaling.min_replicas,
                    "maxReplicaCount": scaling.max_replicas,
                    "cooldownPeriod": int(scaling.scale_to_zero_after_seconds),
                    "triggers": triggers,
                },
            }
        ]
    in_flight: list[Obj] = [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": metric},
                "target": {"type": "AverageValue", "averageValue": threshold},
            },
        }
        for metric, threshold in (per_pod if is_model else [])
    ]
    return [
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(workload.revision_name, workload, workload.labels),
            "spec": {
                "scaleTargetRef": target,
                "minReplicas": scaling.min_replicas,
                "maxReplicas": scaling.max_replicas,
                "metrics": [*in_flight, cpu_metric],
            },
        }
    ]


def revision_objects(workload: Workload, settings: Settings) -> list[Obj]:
    """The objects of one live revision of a Model or App."""
    resource = workload.resource
    objects: list[Obj] = []
    if isinstance(resource, Model):
        pod, local_model = _model_pod(workload, resource, settings)
        objects.append(spec_config_map(workload, local_model))
    elif isinstance(resource, App):
        pod = _app_pod(workload, resource)
    else:
        raise TypeError(f"{resource.kind} is not served")
    objects += [
        deployment(workload, pod, settings),
        revision_service(workload),
        pod_disruption_budget(workload),
        *autoscaler(workload, settings),
    ]
    return objects


def serving_objects(
    workload: Workload, backends: Sequence[tuple[Workload, int]], settings: Settings
) -> list[Obj]:
    """Every object of a Model or App: the shared ones, then each live revision's."""
    objects = [
        *([] if workload.resource.spec.service_account_name else [service_account(workload)]),
        network_policy(workload, service_port(workload), [b for b, _ in backends], settings),
        stable_service(workload),
        http_route(workload, backends),
    ]
    if uses_inference_pool(workload):
        gateway = settings.kube.inference_gateway
        model_pools = pools(workload, [live for live, _ in backends], gateway)
        for pool in model_pools:
            objects += inference_pool_objects(workload, service_port(workload), pool)
        if gateway is not None:
            objects.append(inference_route(workload, backends, model_pools, gateway))
    for live, _weight in backends:
        objects += revision_objects(live, settings)
    return objects
