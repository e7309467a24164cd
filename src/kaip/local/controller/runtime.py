"""What the controller holds in memory for each resource it runs, and its configuration.

Plain mutable records, owned by the controller's one loop: the stable revision and, during a
rollout, the canary with the rollout's progress and evidence; Models waiting for a first
registered version. Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kaip.accounting import ReplicaWindow
from kaip.local.controller.genai_evidence import GenAIWindow, ReplicaHistograms
from kaip.local.controller.pinning import RemotePinning
from kaip.local.controller.replica_metrics import KvCacheReader
from kaip.local.state import Commit, RolloutRecord
from kaip.local.supervisor import Launch
from kaip.policy import CheckResult, Evidence, ScaleMemory, Verdict
from kaip.registry import ModelVersion
from kaip.spec import App, Model
from kaip.spec.base import Scaling
from kaip.spec.rollout import Rollout

RouteKind = Literal["model", "app"]

MODEL_ANSWER_GRACE_SECONDS = 5.0
"""How much longer than ``serve.timeoutSeconds`` the gateway waits for a model replica's answer.

The model server answers 503 by itself once a request has waited ``timeoutSeconds``; the gateway
gives up on a replica only when that answer does not come either (the replica hangs), so the
replica's own, more precise message wins whenever it can be given."""


@dataclass(frozen=True)
class ControllerConfig:
    state_dir: Path
    gateway_url: str
    tick_seconds: float = 1.0
    stabilization_seconds: float = 30.0
    profile_token: str = ""  # given to each Model replica: its POST /_kaip/profile needs it
    models_start_no_traces: bool = False
    """Model replicas run with ``KAIP_TRACE_ROOTS=off``: the gateway traces, and passes a
    ``traceparent`` on for every trace that goes on (kaip.local.gateway.trace)."""
    remote_pinning: RemotePinning | None = None  # unpinned remote artifacts: pinned at deploy


@dataclass
class RevisionRun:
    """One revision of a resource that should have processes."""

    revision: str
    resource: Model | App
    source: Path
    launch: Launch
    desired: int = 0
    version: ModelVersion | None = None
    """The registered version this revision serves, when its artifact comes from a registry."""


@dataclass
class RolloutRun:
    """A rollout in progress: where it stands and what the gateway has seen during this step."""

    record: RolloutRecord
    step_index: int
    started_at: float
    step_started_at: float | None = None
    """When the canary began taking this step's traffic; None until it has a ready replica."""
    canary: Evidence = field(default_factory=Evidence)
    stable: Evidence = field(default_factory=Evidence)
    last_verdict: Verdict | None = None
    commit: Commit | None = None
    released_by: str = ""
    """Who ran ``kaip rollout promote`` while this step waits at (or for) a manual pause."""
    checks: tuple[CheckResult, ...] = ()
    """The latest answers of this step's analysis checks (empty until the first arrive)."""
    checks_asked_at: float | None = None
    checks_task: asyncio.Task[tuple[CheckResult, ...]] | None = field(default=None, repr=False)
    pre_rollout_passed: bool = False
    """Whether the ``pre-rollout`` webhooks said yes (until then the new revision gets no
    traffic by weight); a rollout resumed past its first step has passed them."""
    hooks_task: asyncio.Task[tuple[CheckResult, ...]] | None = field(default=None, repr=False)
    genai: GenAIWindow = field(default_factory=GenAIWindow, repr=False)
    """The revisions' GenAI histograms this step (read only when a GenAI gate is set)."""
    genai_read_at: float | None = None
    cost_since: Mapping[str, ReplicaWindow] | None = field(default=None, repr=False)
    """Each replica's cost window when the canary's first step began (with a cost budget): the
    cost gate counts both revisions from there."""
    genai_task: asyncio.Task[dict[str, ReplicaHistograms]] | None = field(default=None, repr=False)

    def forget_checks(self) -> None:
        """A new step (or the end): the checks are asked afresh, an answer on its way is dropped."""
        if self.checks_task is not None:
            self.checks_task.cancel()
        if self.hooks_task is not None:
            self.hooks_task.cancel()
            self.hooks_task = None
        self.checks, self.checks_asked_at, self.checks_task = (), None, None
        if self.genai_task is not None:
            self.genai_task.cancel()
            self.genai_task = None
        self.genai.new_step()

    @property
    def strategy(self) -> str:
        return self.record.strategy


@dataclass
class PendingModel:
    """A Model whose first registered version does not exist yet (a job will make it)."""

    declared: Model
    source: Path
    feeder: str
    """The TrainingJob of the same spec that registers it."""
    refused: set[int] = field(default_factory=set)
    next_look_at: float = 0.0


@dataclass
class ResourceRun:
    """A Model or App under the controller's care."""

    kind: Literal["Model", "App"]
    name: str
    stable: RevisionRun
    started_at: float
    canary: RevisionRun | None = None
    rollout: RolloutRun | None = None
    scale_memory: ScaleMemory = field(default_factory=ScaleMemory)
    kv_cache: KvCacheReader = field(default_factory=KvCacheReader)
    """Its replicas' KV-cache use, read while ``scaling.targetKvCacheUsage`` is set."""
    desired_total: int = 1
    scale_reason: str = ""
    created_at: float | None = None
    """When the resource was first created (its oldest revision's record), seconds since epoch."""
    declared: Model | None = None
    """The Model as its spec says it (``registry://NAME@latest``), before pinning a version."""
    follow: tuple[str, str] | None = None
    """(registered name, selector) whose newest resolution becomes a new revision by itself."""
    refused: set[int] = field(default_factory=set)
    """Versions the quality gate refused: never proposed again."""
    next_follow_at: float = 0.0

    @property
    def route_kind(self) -> RouteKind:
        return "model" if self.kind == "Model" else "app"

    @property
    def current(self) -> RevisionRun:
        """The revision whose spec decides scaling and rollout rules: the newest one."""
        return self.canary or self.stable

    @property
    def scaling(self) -> Scaling:
        return self.current.resource.spec.scaling

    @property
    def rollout_spec(self) -> Rollout:
        return self.current.resource.spec.rollout

    @property
    def canary_headers(self) -> dict[bytes, bytes]:
        """The rollout's header matches for the gateway (lower-cased names), none without one."""
        traffic = self.rollout_spec.traffic
        if self.canary is None or traffic is None:
            return {}
        return {k.lower().encode(): v.encode() for k, v in traffic.canary_headers.items()}

    @property
    def canary_cookies(self) -> dict[bytes, bytes]:
        """The rollout's cookie matches for the gateway, none without one."""
        traffic = self.rollout_spec.traffic
        if self.canary is None or traffic is None:
            return {}
        return {k.encode(): v.encode() for k, v in traffic.canary_cookies.items()}

    @property
    def mirror(self) -> bool:
        """Whether the gateway copies stable's requests to the canary (``traffic.mirror``)."""
        traffic = self.rollout_spec.traffic
        return self.canary is not None and traffic is not None and traffic.mirror

    @property
    def awaiting_pre_rollout(self) -> bool:
        """A rollout whose ``pre-rollout`` webhooks have not said yes yet."""
        analysis = self.rollout_spec.analysis
        return (
            self.rollout is not None
            and not self.rollout.pre_rollout_passed
            and analysis is not None
            and bool(analysis.hooks("pre-rollout"))
        )

    def canary_weight(self, canary_ready: bool) -> int:
        """Percent of traffic the canary gets now."""
        if self.canary is None or self.rollout is None or not canary_ready:
            return 0
        if self.awaiting_pre_rollout:
            return 0
        if self.rollout.strategy == "replace":
            return 100
        if self.rollout.step_started_at is None:
            return 0
        return self.rollout_spec.steps[self.rollout.step_index].weight

    def split(self, total: int, weight: int) -> tuple[int, int]:
        """(stable, canary) replica counts for ``total`` with the canary at ``weight`` percent."""
        if self.canary is None:
            return total, 0
        total = max(total, 1)
        if self.rollout is not None and self.rollout.strategy in ("replace", "blueGreen"):
            return total, total  # the new revision at full size (blueGreen: behind its preview)
        canary = max(1, math.ceil(total * weight / 100))
        stable = max(1, math.ceil(total * (100 - weight) / 100))
        return stable, canary

    def revisions(self) -> list[RevisionRun]:
        return [self.stable] if self.canary is None else [self.stable, self.canary]

    @property
    def served_names(self) -> dict[str, tuple[str, ...]]:
        """Each live revision's served names (Models; an App has none)."""
        return {
            r.revision: r.resource.served_names
            for r in self.revisions()
            if isinstance(r.resource, Model)
        }

    @property
    def openai(self) -> bool:
        """Does the newest revision serve the OpenAI API?"""
        resource = self.current.resource
        return isinstance(resource, Model) and "openai" in resource.spec.serve.protocols

    @property
    def prefix_affinity(self) -> bool:
        """Does the newest revision ask for prefix-affinity routing (``serve.routing``)?"""
        resource = self.current.resource
        return isinstance(resource, Model) and resource.spec.serve.routing == "prefix-affinity"

    @property
    def response_timeout_s(self) -> float | None:
        """How long the gateway waits for a replica's response head; None: its default (Apps).

        Models: the longest ``serve.timeoutSeconds`` of the live revisions plus
        :data:`MODEL_ANSWER_GRACE_SECONDS`.
        """
        timeouts = [
            r.resource.spec.serve.timeout_seconds
            for r in self.revisions()
            if isinstance(r.resource, Model)
        ]
        return max(timeouts) + MODEL_ANSWER_GRACE_SECONDS if timeouts else None

    @property
    def max_request_bytes(self) -> int | None:
        """The largest request body the gateway takes for it; None: its default (Apps).

        Models: the largest ``serve.maxRequestBytes`` of the live revisions.
        """
        limits = [
            r.resource.spec.serve.max_request_bytes
            for r in self.revisions()
            if isinstance(r.resource, Model)
        ]
        return max(limits) if limits else None
