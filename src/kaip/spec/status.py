"""The shape of ``.status`` on kaip's custom resources, as the operator writes it.

These models exist so that ``kaip crd`` can declare the status schema (the apiserver prunes
every status field its CRD does not declare) and so that readers of a status have types. The
operator (:mod:`kaip.kube.operator.status` and ``canary``) is what fills it; conditions follow
the Kubernetes API conventions (``metav1.Condition``). Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from kaip.spec.base import SpecModel


class StatusModel(SpecModel):
    """Status is written by programs, not people: timestamps arrive as strings, so not strict."""

    model_config = ConfigDict(strict=False)


class Condition(StatusModel):
    """One aspect of the resource's state (``Ready``, ``Progressing``, ``Degraded``)."""

    type: str = Field(
        min_length=1,
        max_length=316,
        json_schema_extra={
            "pattern": r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
        },
    )
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = Field(
        None, ge=0, description="the .metadata.generation this condition was set for"
    )
    last_transition_time: datetime = Field(
        description="when status last changed from one value to another"
    )
    reason: str = Field(
        min_length=1,
        max_length=1024,
        description="CamelCase, machine-readable why",
        json_schema_extra={"pattern": r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"},
    )
    message: str = Field(max_length=32768, description="for people")


class VersionSource(StatusModel):
    """Lineage of a registered version: the job and run that made it, and its bytes."""

    version: str = Field(max_length=2048, description="the registered version, models:/NAME/N")
    digest: str = Field(max_length=64, description="sha256 of the artifact")
    job: str | None = Field(None, max_length=253, description="the TrainingJob that made it")
    run: str | None = Field(None, max_length=253, description="its run (the Job on a cluster)")


class RevisionStatus(StatusModel):
    """One live revision and the share of traffic it gets."""

    name: str = Field(min_length=1, max_length=63)
    weight: int = Field(ge=0, le=100, description="percent of traffic")
    replicas: int | None = Field(None, ge=0)
    ready_replicas: int | None = Field(None, ge=0)
    source: VersionSource | None = Field(
        None, description="Model: the registered version this revision serves, and its lineage"
    )
    digest: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of the artifact its pods serve: the spec's pin, or for an unpinned "
        "remote artifact the one its first pod fetched (pinned on first sight)",
    )


class TrainingOutputStatus(VersionSource):
    """TrainingJob: the version its Job's output was registered as."""

    uri: str = Field(max_length=2048, description="where the job wrote it (output.uri)")
    registered_at: datetime | None = None
    metrics: dict[str, float] | None = Field(
        None,
        description="the metrics the job reported (its pod's termination message), registered "
        "with the version; the quality gate reads them",
    )
    problem: str | None = Field(
        None,
        max_length=1024,
        description="why the version has no metrics (no report, a malformed one): a quality "
        "gate refuses it",
    )


class RefusedVersion(StatusModel):
    """Model: the newest version its quality gate refused, while the stable one keeps serving."""

    version: str = Field(max_length=2048, description="models:/NAME/N")
    reason: str = Field(max_length=1024, description="the gate's verdict: 'accuracy 0.8 < 0.95'")


class StableState(StatusModel):
    revision: str
    spec: dict[str, Any] = Field(description="the stable revision's spec, to render it again")


class CheckState(StatusModel):
    """An analysis check's latest answer during this step (a query's value, a webhook's vote)."""

    check: str = Field(max_length=200, description="e.g. 'query error-ratio'")
    status: Literal["pass", "fail", "pending"]
    evidence: str = Field(max_length=1024)
    value: float | None = None


class CanaryState(StatusModel):
    revision: str
    step: int = Field(ge=0)
    step_started_at: datetime
    released_by: str | None = Field(
        None, max_length=200, description="who released this step's manual pause (promote)"
    )
    checks: list[CheckState] | None = Field(
        None, max_length=32, description="the analysis checks' latest answers in this step"
    )
    checked_at: datetime | None = Field(None, description="when the checks were last asked")
    pre_rollout: Literal["pending"] | None = Field(
        None,
        description="pending: held at 0% until the pre-rollout webhooks say yes (absent: they did, "
        "or there are none)",
    )


class RolledBack(StatusModel):
    revision: str
    reason: str = ""


class RolloutDecision(StatusModel):
    action: str
    reason: str
    revision: str
    at: datetime
    evidence: dict[str, Any] = Field(
        default_factory=dict, description="the measurements behind the verdict"
    )


class RolloutStatus(StatusModel):
    """Where a rollout stands; the operator reads it back after a restart."""

    stable: StableState | None = None
    canary: CanaryState | None = None
    rolled_back: RolledBack | None = None
    last_decision: RolloutDecision | None = None
    last_command: str | None = Field(
        None,
        max_length=200,
        description="the id of the last kaip.dev/rollout-command annotation acted on",
    )
    previous: StableState | None = Field(
        None, description="the revision stable before the last promotion: what undo restores"
    )


class ResourceStatus(StatusModel):
    """``.status`` of a Model, App or TrainingJob."""

    observed_generation: int | None = Field(
        None, ge=0, description="the .metadata.generation the operator last acted on"
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    replicas: int | None = Field(None, ge=0, description="replicas wanted, all revisions")
    ready_replicas: int | None = Field(None, ge=0)
    url: str | None = Field(None, description="where the service answers inside the cluster")
    served_names: list[str] | None = Field(
        None, max_length=16, description="Model: the names clients use (serve.names)"
    )
    revisions: list[RevisionStatus] = Field(default_factory=list)
    traffic: str | None = Field(
        None,
        max_length=1024,
        description="the split for people and kubectl, e.g. 'abc123=90,def456=10'",
    )
    rollout: RolloutStatus | None = None
    active: int | None = Field(None, ge=0, description="TrainingJob: pods running")
    succeeded: int | None = Field(None, ge=0, description="TrainingJob: pods succeeded")
    failed: int | None = Field(None, ge=0, description="TrainingJob: pods failed")
    output: TrainingOutputStatus | None = Field(
        None, description="TrainingJob: the version its output was registered as"
    )
    follows: str | None = Field(
        None,
        max_length=2048,
        description="Model: the registry selector it follows (models:/NAME@latest), re-read "
        "while settled",
    )
    refused: RefusedVersion | None = Field(
        None,
        description="Model: the newest version its qualityGate refused (it takes no traffic)",
    )
