"""Pod and container building blocks shared by every workload kaip renders for Kubernetes.

Owns what makes a kaip pod acceptable under the Pod Security "restricted" profile (non-root
user, no privilege escalation, no capabilities, RuntimeDefault seccomp, read-only root with an
emptyDir on ``/tmp``), requests and limits on every container (whole GPUs as the
``nvidia.com/gpu`` resource), and how a serving pod stops without losing a request (a
preStop sleep, then the grace period). Where pods run and what the spec adds to them
(environment, volumes, node selection, the GPU toleration) is
:mod:`kaip.render.kube.pod_options`. Pure: returns plain dicts, never talks to a cluster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from kaip.plan import ResolvedResources

RUN_AS_USER: Final = 65532
"""The non-root uid and gid kaip pods run as (the ``kaip`` user of the model-server image)."""

GPU_RESOURCE: Final = "nvidia.com/gpu"
GPU_PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
TMP_VOLUME: Final = "tmp"
SPEC_VOLUME: Final = "spec"
SPEC_DIR: Final = "/etc/kaip"
SPEC_FILE: Final = "spec.yaml"
SPEC_PATH: Final = f"{SPEC_DIR}/{SPEC_FILE}"

Obj = dict[str, Any]


def pod_security_context() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_resources(resources: ResolvedResources) -> Obj:
    """Requests equal to limits (Guaranteed QoS); whole GPUs in both, as the device plugin wants."""
    amounts: dict[str, str] = {"cpu": resources.cpu, "memory": resources.memory}
    if resources.gpu:
        amounts[GPU_RESOURCE] = str(resources.gpu)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def small_resources(cpu: str = "100m", memory: str = "128Mi") -> Obj:
    """Requests and limits of a helper container (init containers)."""
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}


def tmp_volume() -> Obj:
    return {"name": TMP_VOLUME, "emptyDir": {}}


def tmp_mount() -> Obj:
    return {"name": TMP_VOLUME, "mountPath": "/tmp"}


def spec_mount() -> Obj:
    """The pod-local spec (a ConfigMap) that model containers read."""
    return {"name": SPEC_VOLUME, "mountPath": SPEC_DIR, "readOnly": True}


def env_list(env: Mapping[str, str]) -> list[Obj]:
    return [{"name": key, "value": value} for key, value in env.items()]


PRE_STOP_SECONDS: Final = 5
"""How long a serving pod keeps serving after it is told to stop, before its process gets
SIGTERM: the time its removal from the Services' endpoints takes to reach every node's
kube-proxy (and other load balancers), so no new connection is sent to a pod about to close."""


def pre_stop() -> Obj:
    """The kubelet's own sleep (Kubernetes >= 1.30): no shell or binary needed in the image."""
    return {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}}


def termination_grace_seconds(*stages: float) -> int:
    """A grace period covering the preStop sleep, then ``stages`` (drain, in-flight), plus 2 s."""
    return PRE_STOP_SECONDS + math.ceil(sum(stages)) + 2


def http_probe(path: str, port: str, period: int, failures: int) -> Obj:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def spread(selector: Mapping[str, str]) -> list[Obj]:
    """Prefer spreading replicas over nodes; never block scheduling for it."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": dict(selector)},
        }
    ]
