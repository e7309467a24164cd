"""``render_manifests``: a plan (and the live revisions' weights) -> Kubernetes objects.

The entry point of Kubernetes rendering. It checks what Kubernetes adds to the spec's rules
(:mod:`kaip.render.kube.checks`), renders each workload, checks every pod it produced against
the restricted profile, and returns plain dicts in a stable order: by kind in install order
(policies and identities before configuration, Services before workloads, routes last), then
namespace, then name. The order does not depend on the order of files or documents.

Traffic: a Model or App renders one Deployment (and Service, PDB, autoscaler) per live
revision and one HTTPRoute with each revision's weight. Which revisions are live and their
weights come from the caller (the rollout, later the operator) as :class:`Backend` lists; by
default the plan's revision takes 100%.

Pure: no I/O, no cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from kaip.errors import ConfigError, KaipError, Problem, SpecError
from kaip.plan import Plan, Workload
from kaip.render.kube.checks import collision_problems, workload_problems
from kaip.render.kube.pods import Obj
from kaip.render.kube.podsecurity import kaip_violations, restricted_violations
from kaip.render.kube.serving import serving_objects
from kaip.render.kube.training import job_objects
from kaip.spec import TrainingJob

KIND_ORDER: Final = (
    "Namespace",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Service",
    "Deployment",
    "HorizontalPodAutoscaler",
    "ScaledObject",
    "Job",
    "HTTPRoute",
    "InferencePool",
)
_RANK: Final = {kind: rank for rank, kind in enumerate(KIND_ORDER)}

WorkloadKey = tuple[str, str, str]


@dataclass(frozen=True)
class Backend:
    """A live revision of a workload and the percent of its traffic it gets."""

    workload: Workload
    weight: int


Traffic = Mapping[WorkloadKey, Sequence[Backend]]


def object_sort_key(obj: Mapping[str, Any]) -> tuple[int, str, str]:
    meta = obj["metadata"]
    return (_RANK.get(obj["kind"], len(KIND_ORDER)), meta.get("namespace", ""), meta["name"])


def _backends(workload: Workload, traffic: Traffic) -> list[tuple[Workload, int]]:
    live = traffic.get(workload.key)
    if live is None:
        return [(workload, 100)]
    where = f"traffic for {workload.kind} {workload.namespace}/{workload.name}"
    if not live:
        raise ConfigError(f"{where}: no live revision")
    revisions = [b.workload.revision for b in live]
    if len(set(revisions)) != len(revisions):
        raise ConfigError(f"{where}: a revision is listed twice ({', '.join(revisions)})")
    for backend in live:
        if backend.workload.key != workload.key:
            raise ConfigError(f"{where}: got a revision of {backend.workload.key}")
        if not 0 <= backend.weight <= 100:
            raise ConfigError(f"{where}: weight {backend.weight} is not within 0..100")
    total = sum(b.weight for b in live)
    if total != 100:
        raise ConfigError(f"{where}: weights add up to {total}, not 100")
    return [(b.workload, b.weight) for b in live]


def _pod_specs(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    template = (obj.get("spec") or {}).get("template")
    return [template["spec"]] if template else []


def render_manifests(plan: Plan, traffic: Traffic | None = None) -> list[Obj]:
    """Every Kubernetes object of ``plan``, in a stable order.

    Raises SpecError when a resource cannot exist on Kubernetes as written, ConfigError when
    ``traffic`` is inconsistent.
    """
    traffic = traffic or {}
    known = {w.key for w in plan.workloads}
    unknown = sorted(set(traffic) - known)
    if unknown:
        raise ConfigError(f"traffic names resources that are not in the plan: {unknown}")
    problems: list[Problem] = collision_problems(plan.workloads)
    for workload in plan.workloads:
        problems += workload_problems(workload)
        for backend in traffic.get(workload.key, ()):
            if backend.workload is not workload:
                problems += workload_problems(backend.workload)
    if problems:
        raise SpecError(problems)
    objects: list[Obj] = []
    for workload in plan.workloads:
        if isinstance(workload.resource, TrainingJob):
            if workload.key in traffic:
                raise ConfigError(f"TrainingJob {workload.name!r} takes no traffic")
            objects += job_objects(workload, plan.settings)
        else:
            objects += serving_objects(workload, _backends(workload, traffic), plan.settings)
    for obj in objects:
        for pod in _pod_specs(obj):
            violations = restricted_violations(pod) + kaip_violations(pod)
            if violations:  # a kaip bug, never the user's: fail before anything is applied
                raise KaipError(
                    f"internal error: {obj['kind']} {obj['metadata']['name']} would be "
                    "rejected: " + "; ".join(violations)
                )
    return sorted(objects, key=object_sort_key)
