"""What a kaip resource's ``.status`` says, computed from what the operator observed.

The operator reads the objects it owns (Deployments, a Job), sums them up as an
:class:`Observation`, and :func:`compute` turns that into the status to write: the three
conditions, ``observedGeneration``, replicas, the URL inside the cluster, and each live revision
with its weight. Reading objects is :mod:`kaip.kube.operator.observe`'s job; writing is kopf's.

Pure: no I/O; the clock's reading comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kaip.kube.operator.conditions import DEGRADED, PROGRESSING, READY, Condition, merge


@dataclass(frozen=True)
class RevisionState:
    """One live revision of a Model or App, as its Deployment reports it."""

    revision: str
    weight: int
    replicas: int
    ready_replicas: int
    up_to_date: bool = True
    """False while the Deployment controller has not yet seen the Deployment's latest spec."""
    missing: bool = False
    """True when the revision's Deployment does not exist (yet, or any more)."""
    source: Mapping[str, Any] | None = None
    """The registered version it serves and its lineage (:func:`.versions.lineage`)."""
    digest: str | None = None
    """The sha256 of the artifact its pods serve (pinned, or pinned on first sight)."""

    @property
    def ready(self) -> bool:
        return not self.missing and self.up_to_date and self.ready_replicas >= self.replicas

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.revision,
            "weight": self.weight,
            "replicas": self.replicas,
            "readyReplicas": self.ready_replicas,
        }
        if self.source is not None:
            status["source"] = dict(self.source)
        if self.digest is not None:
            status["digest"] = self.digest
        return status


@dataclass(frozen=True)
class JobState:
    """A TrainingJob's ``batch/v1`` Job, as it reports itself."""

    completions: int
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    complete: bool = False
    failure: str | None = None
    """The message of the Job's ``Failed`` condition, once it has failed for good."""


@dataclass(frozen=True)
class Fault:
    """Why the operator could not reconcile: ``reason`` is CamelCase, ``message`` for people.

    A ``permanent`` fault (an invalid spec, an RBAC denial) waits for the user to change
    something; a temporary one is being retried.
    """

    reason: str
    message: str
    permanent: bool


@dataclass(frozen=True)
class Observation:
    """Everything :func:`compute` needs about one resource at one moment."""

    kind: str
    generation: int
    revisions: tuple[RevisionState, ...] = ()
    job: JobState | None = None
    url: str | None = None
    fault: Fault | None = None
    canary: str | None = None
    """While a canary runs: where it stands, e.g. ``step 2/3: 50% to revision abc``."""
    rolled_back: str | None = None
    """After a rollback: the verdict that rolled the new revision back."""
    artifact_changed: str | None = None
    """A pod fetched other bytes than its revision is pinned to (:mod:`.artifact_pins`)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """More status fields to write as they are (the canary's saved state)."""


def conditions_for(seen: Observation) -> list[Condition]:
    """The Ready / Progressing / Degraded conditions that ``seen`` calls for."""
    if seen.fault is not None:
        return _faulted(seen.fault)
    if seen.job is not None:
        return _training(seen.job)
    return _serving(seen)


def _faulted(fault: Fault) -> list[Condition]:
    if fault.permanent:
        return [
            Condition(READY, "False", fault.reason, fault.message),
            Condition(PROGRESSING, "False", fault.reason, "waiting for the resource to change"),
            Condition(DEGRADED, "True", fault.reason, fault.message),
        ]
    return [
        Condition(READY, "Unknown", fault.reason, fault.message),
        Condition(PROGRESSING, "True", fault.reason, f"retrying: {fault.message}"),
        Condition(DEGRADED, "False", "AsExpected"),
    ]


def _training(job: JobState) -> list[Condition]:
    counts = (
        f"{job.succeeded}/{job.completions} succeeded, {job.active} active, {job.failed} failed"
    )
    if job.failure is not None:
        return [
            Condition(READY, "False", "JobFailed", job.failure),
            Condition(PROGRESSING, "False", "JobFailed", counts),
            Condition(DEGRADED, "True", "JobFailed", job.failure),
        ]
    if job.complete:
        return [
            Condition(READY, "True", "JobSucceeded", counts),
            Condition(PROGRESSING, "False", "JobSucceeded", counts),
            Condition(DEGRADED, "False", "AsExpected"),
        ]
    return [
        Condition(READY, "False", "JobRunning", counts),
        Condition(PROGRESSING, "True", "JobRunning", counts),
        Condition(DEGRADED, "False", "AsExpected"),
    ]


def _serving(seen: Observation) -> list[Condition]:
    wanted = sum(r.replicas for r in seen.revisions)
    ready = sum(min(r.ready_replicas, r.replicas) for r in seen.revisions)
    replicas = f"{ready}/{wanted} replicas ready"
    all_ready = bool(seen.revisions) and all(r.ready for r in seen.revisions)
    if all_ready:
        reason = "ScaledToZero" if wanted == 0 else "ReplicasReady"
        ready_condition = Condition(READY, "True", reason, replicas)
    else:
        ready_condition = Condition(READY, "False", "ReplicasNotReady", replicas)
    if seen.canary is not None:
        progressing = Condition(PROGRESSING, "True", "CanaryInProgress", seen.canary)
    elif not all_ready:
        progressing = Condition(PROGRESSING, "True", "ReplicasUpdating", replicas)
    else:
        progressing = Condition(PROGRESSING, "False", "RolloutComplete", replicas)
    if seen.rolled_back is not None:
        degraded = Condition(DEGRADED, "True", "RolledBack", seen.rolled_back)
    elif seen.artifact_changed is not None:
        degraded = Condition(DEGRADED, "True", "ArtifactChanged", seen.artifact_changed)
    else:
        degraded = Condition(DEGRADED, "False", "AsExpected")
    return [ready_condition, progressing, degraded]


def compute(
    seen: Observation,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """The ``.status`` to write, given the one already there (for the transition times)."""
    old_conditions: Sequence[Mapping[str, Any]] = (previous or {}).get("conditions") or []
    status: dict[str, Any] = {
        "observedGeneration": seen.generation,
        "conditions": merge(old_conditions, conditions_for(seen), seen.generation, now),
    }
    if seen.revisions:
        status["replicas"] = sum(r.replicas for r in seen.revisions)
        status["readyReplicas"] = sum(min(r.ready_replicas, r.replicas) for r in seen.revisions)
        status["revisions"] = [r.to_status() for r in seen.revisions]
        # For kubectl's Traffic column, which shows only a list's first match.
        status["traffic"] = ",".join(f"{r.revision}={r.weight}" for r in seen.revisions)
    if seen.job is not None:
        status["succeeded"] = seen.job.succeeded
        status["active"] = seen.job.active
        status["failed"] = seen.job.failed
    if seen.url is not None:
        status["url"] = seen.url
    status.update(seen.extra)
    return status
