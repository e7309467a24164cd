"""Kubernetes rendering: a :class:`~kaip.plan.Plan` -> manifests as plain dicts (pure).

Owns the shape of every object kaip puts on a cluster and checks them (restricted Pod
Security, requests and limits) before anyone applies them. Never talks to a cluster: applying
is :mod:`kaip.kube.client`'s job.
"""

from kaip.render.kube.artifacts import ARTIFACT_DIR, PVC_ANNOTATION
from kaip.render.kube.manifests import KIND_ORDER, Backend, Traffic, render_manifests
from kaip.render.kube.output import kustomize_files, manifests_yaml
from kaip.render.kube.podsecurity import kaip_violations, restricted_violations
from kaip.render.kube.serving import SERVED_NAMES

__all__ = [
    "ARTIFACT_DIR",
    "KIND_ORDER",
    "PVC_ANNOTATION",
    "SERVED_NAMES",
    "Backend",
    "Traffic",
    "kaip_violations",
    "kustomize_files",
    "manifests_yaml",
    "render_manifests",
    "restricted_violations",
]
