"""The local controller: one asyncio loop that keeps what runs equal to the spec.

At every tick it lets the supervisor act on exits and health, lets the training runner
supervise its runs (:mod:`~kaip.local.controller.training`), rolls out newly registered model
versions (:mod:`~kaip.local.controller.delivery`), asks :func:`kaip.policy.autoscale`
how many replicas each resource needs (from the gateway's load) and :func:`kaip.policy.rollout`
what each canary does next (from the gateway's per-revision stats), starts or drains replicas to
match, hands the gateway routes that name only ready replicas, and records revisions, rollout
verdicts and deployment events in the state database.

Requests from outside (the admin API, signals) never act directly: they are queued as commands
and run by the loop between ticks, so exactly one place decides.

No error stops the loop: a tick that raises is retried with backoff and shown by ``kaip status``
(:mod:`~kaip.local.controller.troubles`) while the gateway serves on. Writes to the state
database come before the in-memory change they record, in one transaction per decision, so a
write that fails (a locked ``state.db``, a full disk) leaves both as they were and the next tick
makes the same decision again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kaip.errors import PlatformError, RegistryError, StorageError
from kaip.local.controller.delivery import Delivery
from kaip.local.controller.pinning import Pinned, pin
from kaip.local.controller.runtime import ControllerConfig, PendingModel, ResourceRun
from kaip.local.controller.training import TrainingRunner
from kaip.local.controller.troubles import Troubles
from kaip.local.gateway import Backend, Gateway, Route
from kaip.local.state import Commit, State
from kaip.local.supervisor import Replica, Supervisor
from kaip.notify import Notifier
from kaip.plan import revision_id
from kaip.policy import LoadObservation, autoscale
from kaip.registry import Registry, pin_version
from kaip.spec import App, Model, SpecSet, TrainingJob, first_clash
from kaip.spec.kinds import registry_reference

log = logging.getLogger("kaip.local.controller")
T = TypeVar("T")
RETIRE_GRACE_SECONDS = 0.5
"""A replica leaves the routes this long before it gets SIGTERM, so no request is sent to it."""
NOTIFY_GRACE_SECONDS = 3.0
"""At shutdown, how long rollout notifications still queued may take to go out."""
__all__ = ["Controller", "ControllerConfig"]


class Controller(Delivery):
    """Reconciles resources, replicas, routes, rollouts and training runs.

    Run :meth:`run` in the event loop. The rollout half lives in
    :class:`~kaip.local.controller.rollouts.RolloutSteps`, building and applying revisions in
    :class:`~kaip.local.controller.revisions.Revisions`, delivery of registered versions in
    :class:`~kaip.local.controller.delivery.Delivery`; training runs are the
    :class:`~kaip.local.controller.training.TrainingRunner`'s.
    """

    def __init__(
        self,
        config: ControllerConfig,
        state: State,
        supervisor: Supervisor,
        *,
        report: Callable[[str], None] = lambda line: None,
        clock: Callable[[], float] = time.monotonic,
        registry: Registry | None = None,
        training: TrainingRunner | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.supervisor = supervisor
        self.registry = registry
        self.training = training
        self.gateway: Gateway | None = None
        self.report = _never_raises(report)
        self.notifier = Notifier(self.report)
        self._clock = clock
        self.troubles = Troubles(self.report, period_s=config.tick_seconds)
        self.resources: dict[str, ResourceRun] = {}
        self.pending: dict[str, PendingModel] = {}
        self._commands: list[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._retiring: dict[str, float] = {}
        self._routes: list[Route] | None = None
        self._announced_ready = False
        self.applied = False
        """Whether kaip up's first apply of its specs has ended: until then, status is not ready
        (resources are added as the apply resolves them, a registry's versions first)."""
        self._phases: dict[str, str] = {}
        self._hook_tasks: set[asyncio.Task[None]] = set()

    # -- outside world: everything goes through the queue ---------------------------------------

    def wake(self, _name: str = "") -> None:
        """Tick now (a replica exited, a request is held, a command is queued)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def submit(self, command: Callable[[], Awaitable[T]]) -> T:
        """Run ``command`` in the loop between ticks and return its result."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._commands.append((command, future))
        self._wake.set()
        return await future

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Tick until :meth:`stop`; then drain every replica."""
        try:
            while not self._stopping:
                await self._run_commands()
                period = await self._safe_tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), period)
                self._wake.clear()
        finally:
            for _, future in self._commands:
                if not future.done():
                    future.set_exception(PlatformError("kaip is shutting down"))
            if self.gateway is not None:
                self.gateway.set_routes([])
            if self.training is not None:
                await self.training.shutdown()
            await self.notifier.flush(NOTIFY_GRACE_SECONDS)
            await self.supervisor.shutdown()

    async def _safe_tick(self) -> float:
        """One tick that cannot stop the loop; returns how long to wait before the next."""
        try:
            await self.tick()
        except Exception as exc:
            if not isinstance(exc, StorageError):
                log.exception("controller tick failed")
            message = exc.message if isinstance(exc, PlatformError) else f"{exc!r}"
            return self.troubles.failed("controller tick", message)
        self.troubles.cleared("controller tick")
        problem = self.supervisor.storage_problem
        if problem is None:
            self.troubles.cleared("replica records")
        else:
            self.troubles.failed("replica records", problem)
        fast = self.supervisor.starting or any(r.rollout for r in self.resources.values())
        return min(self.config.tick_seconds, 0.1) if fast else self.config.tick_seconds

    async def _run_commands(self) -> None:
        commands, self._commands = self._commands, []
        for command, future in commands:
            try:
                result = await command()
            except Exception as exc:  # the caller gets it; the loop goes on
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)

    async def tick(self) -> None:
        """One pass: supervise, train, decide, converge, route."""
        changed = await self.supervisor.tick()
        if changed:
            self._report_replicas()
        if self.training is not None:
            await self.training.tick()
        now = self._clock()
        await self._adopt_pending(now)
        for run in list(self.resources.values()):
            await self._follow(run, now)
            self._step_rollout(run, now)
            self._scale(run, now)
            await self._converge(run, now)
        await self._retire_due(now)
        if changed or self._routes is None or self._routes != self._build_routes():
            self._push_routes()
            self._announce_readiness()

    def _report_replicas(self) -> None:
        """Say when a replica becomes ready, unhealthy, dies or loops: progress and forensics."""
        seen: dict[str, str] = {}
        for replica in self.supervisor.replicas():
            seen[replica.id] = replica.phase
            before = self._phases.get(replica.id)
            if before == replica.phase or replica.phase in ("starting", "draining"):
                continue
            if replica.phase in ("backoff", "crash-loop"):
                self.report(
                    f"replica {replica.id} exited (code {replica.last_exit}): {replica.describe()}"
                    f", restarting"
                )
            else:
                self.report(f"replica {replica.id} is {replica.phase} (port {replica.port})")
        self._phases = seen

    def _announce_readiness(self) -> None:
        ready = {
            name
            for name, run in self.resources.items()
            if run.desired_total == 0 or self._ready(name, run.stable.revision)
        }
        if ready == set(self.resources) and not self._announced_ready and self.resources:
            self._announced_ready = True
            self.report(f"ready: {len(ready)} resource(s) serving on {self.config.gateway_url}")
        elif ready != set(self.resources):
            self._announced_ready = False

    # -- applying a spec ------------------------------------------------------------------------

    async def apply(self, specs: SpecSet, who: str, commit: Commit | None = None) -> list[str]:
        """Make ``specs`` the desired state of the resources it names; say what changed.

        ``who`` asked for it and ``commit`` is the git commit the spec came from, if any: both
        go into the deployment events.
        """
        changes: list[str] = []
        kinds = {name: run.kind for name, run in self.resources.items()}
        for doc in specs.documents:
            resource = doc.resource
            name = resource.metadata.name
            if isinstance(resource, Model | App) and kinds.setdefault(name, resource.kind) != (
                resource.kind
            ):
                raise PlatformError(
                    f"a Model and an App are both named {name!r} ({doc.path}): the local gateway "
                    "tells them apart by name, so rename one of them"
                )
        self._check_served_names(specs)
        pinned: dict[int, Pinned] = {}
        for index, doc in enumerate(specs.documents):  # local artifacts hashed before any change
            resource = doc.resource
            uri = resource.spec.artifact.uri if isinstance(resource, Model) else ""
            if isinstance(resource, Model | App) and registry_reference(uri) is None:
                base_dir = doc.path.resolve().parent
                pinned[index] = await asyncio.to_thread(
                    pin, resource, base_dir, self.config.remote_pinning
                )
        for index, doc in enumerate(specs.documents):
            resource = doc.resource
            if isinstance(resource, TrainingJob):
                changes += self._feeds(resource, specs)
                if self.training is None:
                    changes.append(f"TrainingJob {resource.metadata.name}: skipped (no runner)")
                    continue
                sha = commit.sha if commit else None
                changes.append(
                    await self.training.desire(resource, revision_id(resource), doc.path, sha)
                )
                continue
            assert isinstance(resource, Model | App)
            declared = resource
            self.pending.pop(resource.metadata.name, None)
            feeder = self._feeder(resource, specs)
            try:
                version = (
                    await asyncio.to_thread(self._resolve, resource)
                    if isinstance(resource, Model)
                    else None
                )
            except RegistryError as exc:
                if not isinstance(resource, Model) or feeder is None:
                    raise
                changes.append(self._wait_for_first(resource, doc.path, feeder, exc.message))
                continue
            if isinstance(resource, Model) and version is not None:
                refusal = self._quality(resource, version)
                if refusal is not None:
                    changes += await self._refuse_at_apply(
                        resource, version, refusal, who, doc.path, feeder
                    )
                    continue
                # The version's sha256 goes into the spec: the revision id names the weights.
                resource = pin_version(resource, version)
                revision = revision_id(resource)
            else:
                resource, revision = pinned[index].resource, pinned[index].revision
            self._record_revision(resource, revision, doc.path)
            await self._fetch(version)
            snapshot = self._revision_run(resource, revision, doc.path, version)
            changes.append(
                await self._apply_one(resource.kind, resource.metadata.name, snapshot, who, commit)
            )
            if isinstance(declared, Model):
                run = self.resources[declared.metadata.name]
                run.declared, run.follow = declared, self._follows(declared)
        self.wake()
        return changes

    def _check_served_names(self, specs: SpecSet) -> None:
        """One gateway serves every Model: no served name may reach two of them."""
        owners = {name: run.served_names for name, run in self.resources.items()}
        for doc in specs.of_kind("Model"):
            assert isinstance(doc.resource, Model)
            name = doc.resource.metadata.name  # its live revisions keep serving theirs too
            owners[name] = {**owners.get(name, {}), "new": doc.resource.served_names}
        clash = first_clash(
            (owner, [n for names in by_revision.values() for n in names])
            for owner, by_revision in owners.items()
        )
        if clash is not None:
            model, name, other, taken = clash
            what = "serves it too" if name == taken else f"serves {taken!r}, which overlaps it"
            raise PlatformError(
                f"Model {model!r} would serve the name {name!r}, but Model {other!r} {what}: "
                "the local gateway finds a Model by its served names; change serve.names"
            )

    # -- scaling and processes ------------------------------------------------------------------

    def _scale(self, run: ResourceRun, now: float) -> None:
        sample = self.gateway.load(run.name) if self.gateway else None
        in_flight, held = (sample.in_flight, sample.held) if sample else (0, 0)
        last = sample.last_request_at if sample and sample.last_request_at else None
        activity = max(last or run.started_at, run.started_at)
        kv_cache = None
        if run.scaling.target_kv_cache_usage is not None:
            ports = [
                r.port
                for live in (run.stable, run.canary)
                if live is not None
                for r in self.supervisor.replicas(run.name, live.revision)
                if r.serving and r.port
            ]
            kv_cache = run.kv_cache.poll(ports, now, self.wake)
        decision = autoscale(
            run.scaling,
            current=run.desired_total,
            load=LoadObservation(in_flight, held, activity, kv_cache),
            now=now,
            memory=run.scale_memory,
            stabilization_seconds=self.config.stabilization_seconds,
        )
        run.scale_memory = decision.memory
        if decision.desired != run.desired_total:
            self.report(
                f"{run.kind} {run.name}: scaling {run.desired_total} -> {decision.desired} "
                f"({decision.reason})"
            )
            run.desired_total, run.scale_reason = decision.desired, decision.reason
        weight = 0
        if run.canary is not None:
            weight = run.canary_weight(bool(self._ready(run.name, run.canary.revision)))
            if run.rollout is not None and run.rollout.strategy != "replace":
                steps = run.rollout_spec.steps
                weight = max(weight, steps[min(run.rollout.step_index, len(steps) - 1)].weight)
        stable, canary = run.split(run.desired_total, weight)
        run.stable.desired = stable
        if run.canary is not None:
            run.canary.desired = canary

    async def _converge(self, run: ResourceRun, now: float) -> None:
        for revision in run.revisions():
            live = [
                r
                for r in self.supervisor.replicas(run.name, revision.revision)
                if r.phase != "draining" and r.id not in self._retiring
            ]
            missing = revision.desired - len(live)
            for _ in range(missing):
                replica = await self.supervisor.add(revision.launch)
                self.report(
                    f"{run.kind} {run.name}: starting replica {replica.id} on port {replica.port}"
                )
            if missing < 0:
                order = {"crash-loop": 0, "backoff": 1, "starting": 2, "unhealthy": 3, "ready": 4}
                extra = sorted(live, key=lambda r: (order.get(r.phase, 5), -r.started_at))
                for replica in extra[:-missing]:
                    self._retire(replica, now)
        leftovers = {r.revision for r in run.revisions()}
        for replica in self.supervisor.replicas(run.name):
            if (
                replica.revision not in leftovers
                and replica.id not in self._retiring
                and replica.phase != "draining"
            ):
                self._retire(replica, now)

    def _retire(self, replica: Replica, now: float) -> None:
        """Take a replica out of the routes now and drain it a moment later."""
        if replica.id not in self._retiring and replica.phase != "draining":
            self._retiring[replica.id] = now + RETIRE_GRACE_SECONDS
            self.wake()

    async def _retire_due(self, now: float) -> None:
        for replica_id, due in list(self._retiring.items()):
            if due <= now:
                del self._retiring[replica_id]
                self.supervisor.drain(replica_id)

    def _ready(self, name: str, revision: str) -> list[Replica]:
        return [
            r
            for r in self.supervisor.replicas(name, revision)
            if r.serving and r.id not in self._retiring
        ]

    # -- routes ---------------------------------------------------------------------------------

    def _build_routes(self) -> list[Route]:
        routes = []
        for run in self.resources.values():
            backends: list[Backend] = []
            weights: dict[str, int] = {}
            canary_ready = False
            for revision in run.revisions():
                ready = self._ready(run.name, revision.revision)
                backends += [Backend(r.id, r.revision, "127.0.0.1", r.port or 0) for r in ready]
                if revision is run.canary:
                    canary_ready = bool(ready)
            weight = run.canary_weight(canary_ready)
            weights[run.stable.revision] = 100 - weight
            if run.canary is not None:
                weights[run.canary.revision] = weight
            routes.append(
                Route(
                    run.route_kind,
                    run.name,
                    weights,
                    tuple(backends),
                    run.response_timeout_s,
                    run.max_request_bytes,
                    revision_names=run.served_names,
                    openai=run.openai,
                    created=run.created_at,
                    owner=run.current.resource.spec.owner,
                    canary=run.canary.revision if run.canary is not None else "",
                    canary_headers=run.canary_headers,
                    canary_cookies=run.canary_cookies,
                    mirror=run.mirror,
                    prefix_affinity=run.prefix_affinity,
                )
            )
        return routes

    def routes(self) -> list[Route]:
        """The routes the gateway was last given."""
        return list(self._routes or [])

    def _push_routes(self) -> None:
        routes = self._build_routes()
        self._routes = routes
        if self.gateway is not None:
            self.gateway.set_routes(routes)


def _never_raises(report: Callable[[str], None]) -> Callable[[str], None]:
    """``report``, minus its failures: a progress line lost (stdout on a full disk) is no error."""

    def safe(line: str) -> None:
        try:
            report(line)
        except Exception:
            log.warning("could not report: %s", line)

    return safe
