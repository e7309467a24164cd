"""Plain data about Kubernetes objects: references, outcomes, apply order, labels, readiness.

Pure: no I/O and no Kubernetes client import; :mod:`kaip.kube.client.session` does the talking.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "kaip"
PART_OF_LABEL = "kaip.dev/part-of"

Manifest = dict[str, Any]


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Which object: identity is group + kind + namespace + name (the version may change)."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def identity(self) -> tuple[str, str, str | None, str]:
        return (self.group, self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        """kubectl's spelling: ``deployment.apps/web`` (``-n ns`` is shown apart)."""
        kind = self.kind.lower()
        return f"{kind}.{self.group}/{self.name}" if self.group else f"{kind}/{self.name}"

    def describe(self) -> str:
        return f"{self} in namespace {self.namespace}" if self.namespace else str(self)


class Outcome(enum.StrEnum):
    created = "created"
    adopted = "adopted"
    """It existed without being kaip's, and ``apply(adopt=True)`` took it over."""
    configured = "configured"
    unchanged = "unchanged"
    applied = "applied"
    """Applied without reading it first (``apply(report=False)``): created or configured."""
    pruned = "pruned"
    deleted = "deleted"
    absent = "not found"


@dataclass(frozen=True)
class Change:
    ref: ObjectRef
    outcome: Outcome
    live: Manifest | None = field(default=None, compare=False, repr=False)
    """The object as the server answered the apply (None for a deletion or a prune)."""


@dataclass(frozen=True)
class Result:
    """What ``apply`` or ``delete`` did (or, with ``dry_run``, would do), in order."""

    changes: tuple[Change, ...]
    dry_run: bool = False

    def counts(self) -> dict[Outcome, int]:
        counted = Counter(c.outcome for c in self.changes)
        return {o: counted[o] for o in Outcome if counted[o]}

    def summary(self) -> str:
        counts = self.counts()
        text = ", ".join(f"{n} {o.value}" for o, n in counts.items()) or "nothing to do"
        return f"{text} (server dry run)" if self.dry_run else text


def ref_of(manifest: Manifest, namespace: str | None) -> ObjectRef:
    """The reference of ``manifest`` in ``namespace`` (None for a cluster-scoped kind)."""
    return ObjectRef(
        api_version=str(manifest["apiVersion"]),
        kind=str(manifest["kind"]),
        name=str(manifest["metadata"]["name"]),
        namespace=namespace,
    )


def check_manifest(manifest: Any, index: int) -> list[str]:
    """Why ``manifest`` cannot be applied (empty when it can)."""
    if not isinstance(manifest, dict):
        return [f"manifest #{index}: not a mapping"]
    problems = [
        f"manifest #{index}: missing {k}" for k in ("apiVersion", "kind") if not manifest.get(k)
    ]
    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        problems.append(f"manifest #{index}: missing metadata.name")
    return problems


def with_ownership(manifest: Manifest, part_of: str, namespace: str | None) -> Manifest:
    """A copy of ``manifest`` labelled as kaip's, part of ``part_of``, in ``namespace``."""
    metadata = dict(manifest.get("metadata") or {})
    labels = dict(metadata.get("labels") or {})
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    labels[PART_OF_LABEL] = part_of
    metadata["labels"] = labels
    if namespace is None:
        metadata.pop("namespace", None)
    else:
        metadata["namespace"] = namespace
    return {**manifest, "metadata": metadata}


Refusal = Callable[[Manifest], str | None]
"""Given an object as the server has it: why kaip may not write over it (None: it may)."""


def field_managers(live: Manifest) -> list[str]:
    """The field managers of ``live`` (``metadata.managedFields``), each named once, in order."""
    names: list[str] = []
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        name = str(entry.get("manager", "")) if isinstance(entry, dict) else ""
        if name and name not in names:
            names.append(name)
    return names


def controller_of(live: Manifest) -> dict[str, Any] | None:
    """The ``ownerReference`` of ``live`` marked ``controller``, if any."""
    for ref in (live.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def made_by(live: Manifest) -> str:
    """Who ``live`` comes from, in words: its controller, else its field managers."""
    controller = controller_of(live)
    if controller is not None:
        return f"it belongs to {controller.get('kind')} {controller.get('name')}"
    managers = field_managers(live)
    if managers:
        return f"its fields are managed by {', '.join(managers)}"
    return "no field manager is recorded"


def unmanaged(field_manager: str) -> Refusal:
    """What ``kaip apply`` refuses to write over: an object with neither kaip's
    ``app.kubernetes.io/managed-by`` label nor a ``field_manager`` entry in its managed fields."""

    def refusal(live: Manifest) -> str | None:
        labels = (live.get("metadata") or {}).get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) == MANAGED_BY or field_manager in field_managers(live):
            return None
        return f"kaip did not create it ({made_by(live)})"

    return refusal


def ownership_selector(part_of: str) -> str:
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{PART_OF_LABEL}={part_of}"


# Kinds that others depend on go first (as Helm orders them); the rest keep their given order.
_APPLY_FIRST = (
    "Namespace",
    "CustomResourceDefinition",
    "PriorityClass",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "PersistentVolumeClaim",
    "Service",
)


def apply_order(manifests: list[Manifest]) -> list[Manifest]:
    rank = {kind: i for i, kind in enumerate(_APPLY_FIRST)}
    last = len(_APPLY_FIRST)
    return sorted(manifests, key=lambda m: rank.get(str(m.get("kind")), last))


def delete_order(manifests: list[Manifest]) -> list[Manifest]:
    return list(reversed(apply_order(manifests)))


# Kinds kaip renders or users commonly add next to them; pruning looks at these and at every kind
# being applied. A kind the server does not serve is skipped.
PRUNE_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("inference.networking.k8s.io/v1", "InferencePool"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
)


def same_content(before: Manifest, after: Manifest) -> bool:
    """True when an apply left the object as it was (bookkeeping fields aside)."""
    return _content(before) == _content(after)


def _content(obj: Manifest) -> Manifest:
    metadata = {
        k: v
        for k, v in (obj.get("metadata") or {}).items()
        if k not in ("managedFields", "resourceVersion", "generation")
    }
    rest = {k: v for k, v in obj.items() if k not in ("status", "metadata")}
    return {**rest, "metadata": metadata}


def readiness(obj: Manifest) -> str | None:
    """None when ``obj`` is ready; otherwise what it is still waiting for.

    Workloads are ready when the controller has seen the latest spec and every replica is updated
    and available; CRDs when Established. Kinds without a notion of readiness are ready.
    """
    kind = obj.get("kind")
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    generation = metadata.get("generation", 0)
    if kind in ("Deployment", "StatefulSet"):
        want = spec.get("replicas", 1)
        if status.get("observedGeneration", 0) < generation:
            return "the controller has not seen the latest spec yet"
        updated = status.get("updatedReplicas", 0)
        ready_key = "availableReplicas" if kind == "Deployment" else "readyReplicas"
        ready = status.get(ready_key, 0)
        if updated < want or ready < want:
            detail = _condition_message(status, "Progressing")
            return f"{ready}/{want} replicas ready, {updated}/{want} updated" + (
                f" ({detail})" if detail else ""
            )
        return None
    if kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled", 0)
        ready = status.get("numberReady", 0)
        if status.get("observedGeneration", 0) < generation or ready < desired:
            return f"{ready}/{desired} pods ready"
        return None
    if kind == "CustomResourceDefinition":
        if _condition_status(status, "Established") != "True":
            return "not Established yet"
        return None
    return None


def _condition_status(status: Manifest, kind: str) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


def _condition_message(status: Manifest, kind: str) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("message") or "")
    return ""
