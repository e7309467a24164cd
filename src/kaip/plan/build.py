"""The resolved plan: what each resource of a spec becomes once settings are applied.

:func:`build_plan` turns validated spec documents and the settings into one :class:`Workload`
per resource: its namespace, revision id, labels, selector, image and resources. Both targets
start from it (the local platform and :mod:`kaip.render`), so nothing here is specific to one.

Pure: no I/O, no environment. A namespace conflict is the only error it raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

from kaip.errors import Problem, SpecError
from kaip.plan.revision import revision_id
from kaip.settings import Settings
from kaip.spec import Model, Resource, SpecDocument, TrainingJob

Component = Literal["model", "app", "training"]

DEFAULT_NAMESPACE: Final = "default"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_VERSION: Final = "app.kubernetes.io/version"
LABEL_REVISION: Final = "kaip.dev/revision"
LABEL_OWNER: Final = "kaip.dev/owner"

_COMPONENTS: Final[dict[str, Component]] = {
    "Model": "model",
    "App": "app",
    "TrainingJob": "training",
}


@dataclass(frozen=True)
class ResolvedResources:
    """Compute of one replica (or one training node); requests equal limits."""

    cpu: str
    memory: str
    gpu: int
    gpu_model: str | None


@dataclass(frozen=True)
class Workload:
    """One resource of the spec, resolved: everything a target needs to run one revision."""

    resource: Resource
    component: Component
    namespace: str
    revision: str
    image: str | None
    resources: ResolvedResources
    common_labels: Mapping[str, str]
    """Labels of objects shared by every revision (ServiceAccount, stable Service, routes)."""
    labels: Mapping[str, str]
    """Labels of this revision's objects: ``common_labels`` plus revision and version."""
    selector: Mapping[str, str]
    """Selects the pods of every revision of this resource, and nothing else."""
    source: Path | None = None
    line: int = 1
    artifact_sha256: str | None = None
    """The sha256 the operator pinned an unpinned remote artifact to on first sight (the
    digest its first pod reported); rendered into the fetch, not part of the revision id."""

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def name(self) -> str:
        return self.resource.metadata.name

    @property
    def owner(self) -> str:
        return self.resource.spec.owner

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind, namespace, name): unique within a plan."""
        return (self.kind, self.namespace, self.name)

    @property
    def revision_name(self) -> str:
        """The name of this revision's objects: ``NAME-REVISION``."""
        return f"{self.name}-{self.revision}"

    @property
    def revision_selector(self) -> Mapping[str, str]:
        """Selects the pods of this revision only."""
        return MappingProxyType({**self.selector, LABEL_REVISION: self.revision})


@dataclass(frozen=True)
class Plan:
    """Every workload of one spec set, in spec order, and the settings they were resolved with."""

    workloads: tuple[Workload, ...]
    settings: Settings

    def find(self, kind: str, name: str) -> Workload | None:
        for workload in self.workloads:
            if workload.kind == kind and workload.name == name:
                return workload
        return None


def _image(resource: Resource, settings: Settings) -> str | None:
    if isinstance(resource, Model):
        return resource.spec.serve.image or settings.kube.image
    if isinstance(resource, TrainingJob):
        return resource.spec.image or settings.kube.image
    return resource.spec.image


def plan_workload(
    resource: Resource,
    settings: Settings,
    namespace: str = DEFAULT_NAMESPACE,
    source: Path | None = None,
    line: int = 1,
) -> Workload:
    """Resolve one resource in ``namespace`` (its own ``metadata.namespace`` wins)."""
    meta = resource.metadata
    component = _COMPONENTS[resource.kind]
    revision = revision_id(resource)
    common = {
        **meta.labels,
        LABEL_NAME: meta.name,
        LABEL_INSTANCE: meta.name,
        LABEL_COMPONENT: component,
        LABEL_PART_OF: "kaip",
        LABEL_MANAGED_BY: "kaip",
        LABEL_OWNER: resource.spec.owner,
    }
    labels = {**common, LABEL_VERSION: revision, LABEL_REVISION: revision}
    spec_resources = resource.spec.resources
    return Workload(
        resource=resource,
        component=component,
        namespace=meta.namespace or namespace,
        revision=revision,
        image=_image(resource, settings),
        resources=ResolvedResources(
            cpu=spec_resources.cpu,
            memory=spec_resources.memory,
            gpu=spec_resources.gpu,
            gpu_model=spec_resources.gpu_model,
        ),
        common_labels=MappingProxyType(common),
        labels=MappingProxyType(labels),
        selector=MappingProxyType(pod_selector(meta.name)),
        source=source,
        line=line,
    )


def pod_selector(name: str) -> dict[str, str]:
    """Selects the pods of every revision of the resource ``name`` (in its namespace), and
    nothing else: :attr:`Workload.selector`, for readers that have only the name."""
    return {LABEL_NAME: name, LABEL_MANAGED_BY: "kaip"}


def build_plan(
    documents: Iterable[SpecDocument],
    settings: Settings,
    namespace: str | None = None,
) -> Plan:
    """Resolve every document; ``namespace`` is where resources without one go.

    A resource whose ``metadata.namespace`` differs from an explicit ``namespace`` is refused,
    as ``kubectl apply --namespace`` refuses it, rather than silently moved.
    """
    problems: list[Problem] = []
    workloads: list[Workload] = []
    for doc in documents:
        own = doc.resource.metadata.namespace
        if namespace is not None and own is not None and own != namespace:
            problems.append(
                Problem(
                    str(doc.path),
                    doc.line,
                    1,
                    "metadata.namespace",
                    f"{doc.resource.kind} {doc.resource.metadata.name!r} is in namespace "
                    f"{own!r}, but --namespace asks for {namespace!r}",
                    "drop --namespace or remove metadata.namespace from the spec",
                )
            )
            continue
        workloads.append(
            plan_workload(
                doc.resource,
                settings,
                namespace or DEFAULT_NAMESPACE,
                source=doc.path,
                line=doc.line,
            )
        )
    if problems:
        raise SpecError(problems)
    return Plan(tuple(workloads), settings)


__all__ = [
    "DEFAULT_NAMESPACE",
    "LABEL_COMPONENT",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_NAME",
    "LABEL_OWNER",
    "LABEL_PART_OF",
    "LABEL_REVISION",
    "LABEL_VERSION",
    "Component",
    "Plan",
    "ResolvedResources",
    "Workload",
    "build_plan",
    "plan_workload",
]
