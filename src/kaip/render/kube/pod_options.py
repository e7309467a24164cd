"""The spec's pod-level fields (:mod:`kaip.spec.pod`) as parts of a Kubernetes pod spec.

Merging rules, where kaip sets the same thing itself:

* **Environment.** kaip's defaults (``HOME``, ``OTEL_SERVICE_NAME``, ...) give way to the
  spec's ``env`` and ``envValueFrom``; the variables kaip's own wiring depends on (an App's
  ``PORT``, the model server's artifact cache, a training job's rank and rendezvous) are kaip's
  and a spec entry of the same name is left out. Each name appears once, as server-side apply
  requires of a list keyed by name.
* **Scheduling.** A GPU workload's ``nvidia.com/gpu.product`` selector and ``nvidia.com/gpu``
  toleration are added to the spec's ``nodeSelector`` and ``tolerations`` (the spec cannot
  contradict the selector: :class:`~kaip.spec.pod.PodOptions` refuses that).
* **Volumes.** Each spec volume becomes a pod volume and a mount on the workload's container
  (not on kaip's init containers); ConfigMaps, Secrets and claims are mounted read-only unless
  a claim says ``readOnly: false``.
* **ServiceAccount.** With ``serviceAccountName`` the pod runs as that (existing) account, and
  kaip neither renders its own nor decides whether the token is mounted.

Pure: plain dicts out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

from kaip.plan import ResolvedResources
from kaip.render.kube.pods import GPU_PRODUCT_LABEL, GPU_RESOURCE, Obj
from kaip.spec.pod import PodOptions

GPU_TOLERATION: Final[Obj] = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def _dump(model: Any) -> Obj:
    return model.model_dump(by_alias=True, exclude_defaults=True)  # type: ignore[no-any-return]


def container_env(
    options: PodOptions,
    *,
    defaults: Mapping[str, str] = {},
    fixed: Mapping[str, str] = {},
    reserved: Collection[str] = (),
) -> list[Obj]:
    """``defaults``, then the spec's variables, then ``fixed`` (which nothing replaces).

    ``reserved`` names are set by the caller in another way (a ``fieldRef``): the spec's
    entries of those names are left out too.
    """
    kaips = {*fixed, *reserved}
    literal: dict[str, str] = dict(defaults)
    refs: dict[str, Obj] = {}
    for name, value in options.env.items():
        if name not in kaips:
            literal[name] = value
    for name, source in options.env_value_from.items():
        if name not in kaips:
            literal.pop(name, None)
            refs[name] = _dump(source)
    literal |= fixed
    return [
        *({"name": name, "value": value} for name, value in literal.items()),
        *({"name": name, "valueFrom": source} for name, source in refs.items()),
    ]


def container_env_from(options: PodOptions) -> Obj:
    """``{"envFrom": [...]}``, or nothing when the spec has none."""
    if not options.env_from:
        return {}
    return {"envFrom": [_dump(source) for source in options.env_from]}


def scheduling(options: PodOptions, resources: ResolvedResources) -> Obj:
    """The pod-spec fields that decide where it runs: the spec's, plus GPU placement."""
    out: Obj = {}
    selector = dict(options.node_selector)
    tolerations = [_dump(t) for t in options.tolerations]
    if resources.gpu:
        if resources.gpu_model:
            selector[GPU_PRODUCT_LABEL] = resources.gpu_model
        if GPU_TOLERATION not in tolerations:
            tolerations.append(dict(GPU_TOLERATION))
    if selector:
        out["nodeSelector"] = selector
    if tolerations:
        out["tolerations"] = tolerations
    if options.affinity is not None:
        affinity = _dump(options.affinity)
        if affinity:
            out["affinity"] = affinity
    if options.priority_class_name:
        out["priorityClassName"] = options.priority_class_name
    if options.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": name} for name in options.image_pull_secrets]
    return out


def service_account(options: PodOptions, own: str) -> Obj:
    """Which ServiceAccount the pod runs as: the spec's, else kaip's own without a token."""
    if options.service_account_name:
        return {"serviceAccountName": options.service_account_name}
    return {"serviceAccountName": own, "automountServiceAccountToken": False}


def volumes(options: PodOptions) -> tuple[list[Obj], list[Obj]]:
    """The spec's volumes, as (pod volumes, the workload container's mounts)."""
    pod: list[Obj] = []
    mounts: list[Obj] = []
    for volume in options.volumes:
        source = volume.source
        pod.append({"name": volume.name, source: _dump(getattr(volume, _FIELDS[source]))})
        mount: Obj = {"name": volume.name, "mountPath": volume.mount_path}
        if volume.sub_path:
            mount["subPath"] = volume.sub_path
        if volume.mounted_read_only:
            mount["readOnly"] = True
        mounts.append(mount)
    return pod, mounts


_FIELDS: Final = {
    "configMap": "config_map",
    "secret": "secret",
    "persistentVolumeClaim": "persistent_volume_claim",
    "emptyDir": "empty_dir",
}
