"""Reading back what the operator owns: revision Deployments and a TrainingJob's Job or JobSet.

:func:`read` fetches one object; :func:`revision_state`, :func:`job_state` and
:func:`jobset_state` turn what the
cluster reports into :class:`~kaip.kube.operator.status.RevisionState` and
:class:`~kaip.kube.operator.status.JobState` (the judging is :mod:`.status`'s job). Also finds
the objects a resource owns that it no longer renders, so they can be deleted, and lists a
revision's pods (for what their artifact fetch reported: :mod:`.artifact_pins`). All requests go
through :class:`kaip.kube.client.Session`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from kaip.kube.client import MANAGED_BY_LABEL, PART_OF_LABEL, Manifest, ObjectRef, Session
from kaip.kube.operator.status import JobState, RevisionState

OWNED_KINDS: Final[tuple[tuple[str, str], ...]] = (
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "Job"),
    ("jobset.x-k8s.io/v1alpha2", "JobSet"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("inference.networking.k8s.io/v1", "InferencePool"),
)
"""Every kind the renderer makes for a resource: where leftovers are looked for (a test checks
it holds every kind of :data:`kaip.render.kube.manifests.KIND_ORDER` but Namespace)."""


def read(session: Session, api_version: str, kind: str, namespace: str, name: str) -> Manifest:
    """The object as the server has it now; {} when it is missing or its kind is not served."""
    resource = session.resource(api_version, kind)
    if resource is None:
        return {}
    found = session.get(
        resource.path(namespace, name), what=f"read {kind} {namespace}/{name}", missing_ok=True
    )
    return found or {}


def revision_state(obj: Manifest, revision: str, weight: int) -> RevisionState:
    """The state of ``revision`` whose Deployment is ``obj`` ({} when it does not exist)."""
    if not obj:
        return RevisionState(revision, weight, replicas=1, ready_replicas=0, missing=True)
    spec: Mapping[str, Any] = obj.get("spec") or {}
    status: Mapping[str, Any] = obj.get("status") or {}
    generation = int((obj.get("metadata") or {}).get("generation", 0))
    replicas = int(spec.get("replicas", 1))
    caught_up = int(status.get("observedGeneration", 0)) >= generation
    updated = int(status.get("updatedReplicas", 0)) >= replicas
    return RevisionState(
        revision,
        weight,
        replicas=replicas,
        ready_replicas=int(status.get("availableReplicas", 0)),
        up_to_date=caught_up and updated,
    )


def pods(session: Session, namespace: str, selector: Mapping[str, str]) -> list[Manifest]:
    """The pods matching the label ``selector`` (a revision's), as the server has them now."""
    resource = session.resource("v1", "Pod")
    if resource is None:
        return []
    labels = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
    listed = session.request(
        "GET",
        resource.path(namespace),
        query={"labelSelector": labels},
        what=f"list the pods {labels} in namespace {namespace}",
    )
    return list((listed or {}).get("items") or [])


def job_state(obj: Manifest, completions: int) -> JobState:
    """The state of a TrainingJob whose Job is ``obj`` ({} when it does not exist yet)."""
    status: Mapping[str, Any] = obj.get("status") or {}
    conditions = {
        str(c.get("type")): c for c in status.get("conditions") or [] if c.get("status") == "True"
    }
    failed = conditions.get("Failed")
    return JobState(
        completions=completions,
        active=int(status.get("active", 0)),
        succeeded=int(status.get("succeeded", 0)),
        failed=int(status.get("failed", 0)),
        complete="Complete" in conditions,
        failure=None
        if failed is None
        else f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".rstrip(": "),
    )


def jobset_state(obj: Manifest, completions: int) -> JobState:
    """The state of a multi-node TrainingJob whose JobSet is ``obj`` ({} when not made yet).

    JobSet counts Jobs, not pods: its one replicated Job stands for all ``completions`` pods.
    """
    status: Mapping[str, Any] = obj.get("status") or {}
    conditions = {
        str(c.get("type")): c for c in status.get("conditions") or [] if c.get("status") == "True"
    }
    jobs = [j for j in status.get("replicatedJobsStatus") or [] if isinstance(j, Mapping)]
    active = sum(int(j.get("active", 0)) for j in jobs) * completions
    failed = conditions.get("Failed")
    complete = "Completed" in conditions
    return JobState(
        completions=completions,
        active=active,
        succeeded=completions if complete else 0,
        failed=int(status.get("restarts", 0)),
        complete=complete,
        failure=None
        if failed is None
        else f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".rstrip(": "),
    )


def leftovers(
    session: Session, namespace: str, part_of: str, owner_uid: str, keep: Iterable[ObjectRef]
) -> list[ObjectRef]:
    """Objects owned by ``owner_uid`` in the set ``part_of`` that are not in ``keep``."""
    kept = {ref.identity for ref in keep}
    selector = f"{MANAGED_BY_LABEL}=kaip,{PART_OF_LABEL}={part_of}"
    found: list[ObjectRef] = []
    for api_version, kind in OWNED_KINDS:
        resource = session.resource(api_version, kind)
        if resource is None:
            continue
        listed = session.request(
            "GET",
            resource.path(namespace),
            query={"labelSelector": selector},
            what=f"list {kind} in namespace {namespace}",
        )
        for item in (listed or {}).get("items", []):
            metadata = item.get("metadata") or {}
            owners = metadata.get("ownerReferences") or []
            if not any(o.get("uid") == owner_uid for o in owners):
                continue
            ref = ObjectRef(api_version, kind, str(metadata["name"]), namespace)
            if ref.identity not in kept:
                found.append(ref)
    return found


def delete_objects(session: Session, refs: Iterable[ObjectRef]) -> None:
    for ref in refs:
        resource = session.resource(ref.api_version, ref.kind)
        if resource is None:
            continue
        session.request(
            "DELETE",
            resource.path(ref.namespace, ref.name),
            query={"propagationPolicy": "Background"},
            what=f"delete {ref.describe()}",
            missing_ok=True,
        )
