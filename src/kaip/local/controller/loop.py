"""The local controller: one asyncio loop that keeps what runs equal to the spec.

At every tick it lets the supervisor act on exits and health, asks :func:`kaip.policy.autoscale`
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
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kaip.errors import PlatformError, StorageError
from kaip.local.controller.pinning import Pinned, pin
from kaip.local.controller.rollouts import RolloutSteps
from kaip.local.controller.runtime import ResourceRun, RevisionRun, RolloutRun
from kaip.local.controller.troubles import Troubles
from kaip.local.gateway import Backend, Gateway, Route
from kaip.local.state import Commit, RevisionRecord, State
from kaip.local.supervisor import Replica, Supervisor, app_launch, model_launch, write_snapshot
from kaip.plan import canonical_spec_json
from kaip.policy import LoadObservation, autoscale
from kaip.spec import API_VERSION, KINDS, App, Model, SpecSet, first_clash

log = logging.getLogger("kaip.local.controller")
T = TypeVar("T")
RETIRE_GRACE_SECONDS = 0.5
"""A replica leaves the routes this long before it gets SIGTERM, so no request is sent to it."""


@dataclass(frozen=True)
class ControllerConfig:
    state_dir: Path
    gateway_url: str
    tick_seconds: float = 1.0
    stabilization_seconds: float = 30.0


class Controller(RolloutSteps):
    """Reconciles resources, replicas, routes and rollouts. Run :meth:`run` in the event loop.

    The rollout half lives in :class:`~kaip.local.controller.rollouts.RolloutSteps`.
    """

    def __init__(
        self,
        config: ControllerConfig,
        state: State,
        supervisor: Supervisor,
        *,
        report: Callable[[str], None] = lambda line: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.state = state
        self.supervisor = supervisor
        self.gateway: Gateway | None = None
        self.report = _never_raises(report)
        self._clock = clock
        self.troubles = Troubles(self.report, period_s=config.tick_seconds)
        self.resources: dict[str, ResourceRun] = {}
        self._commands: list[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._retiring: dict[str, float] = {}
        self._routes: list[Route] | None = None
        self._announced_ready = False
        self._phases: dict[str, str] = {}

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
        """One pass: supervise, decide, converge, route."""
        changed = await self.supervisor.tick()
        if changed:
            self._report_replicas()
        now = self._clock()
        for run in list(self.resources.values()):
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
        pinned: list[tuple[Pinned, Path] | str] = []
        for doc in specs.documents:  # every artifact is hashed before anything changes
            resource = doc.resource
            if not isinstance(resource, Model | App):
                pinned.append(
                    f"{resource.kind} {resource.metadata.name}: skipped (not run locally)"
                )
                continue
            base_dir = doc.path.resolve().parent
            pinned.append((await asyncio.to_thread(pin, resource, base_dir), doc.path))
        for item in pinned:
            if isinstance(item, str):
                changes.append(item)
                continue
            new, path = item
            self._record_revision(new.resource, new.revision, path)
            snapshot = self._revision_run(new.resource, new.revision, path)
            changes.append(
                await self._apply_one(
                    new.resource.kind, new.resource.metadata.name, snapshot, who, commit
                )
            )
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

    async def _apply_one(
        self, kind: str, name: str, new: RevisionRun, who: str, commit: Commit | None
    ) -> str:
        now, wall = self._clock(), time.time()
        run = self.resources.get(name)
        label = f"{kind} {name}"
        if run is None:
            stable_id = self.state.stable(kind, name)
            if stable_id is None or stable_id == new.revision:
                first = stable_id is None
                with self.state.atomically():
                    self.state.set_stable(kind, name, new.revision, wall)
                    if first:
                        self._event(
                            kind, name, "create", f"new at {new.revision}", who, "created",
                            new.revision, commit=commit,
                        )  # fmt: skip
                self.resources[name] = self._new_run(kind, name, new, now)
                if first:
                    return f"{label}: created at revision {new.revision}"
                return f"{label}: running revision {new.revision}"
            stable = self._restore(kind, name, stable_id)
            run = self.resources[name] = self._new_run(kind, name, stable, now)
            active = self.state.active_rollout(kind, name)
            if active is not None and active.to_revision == new.revision:
                run.canary = new
                run.rollout = RolloutRun(active, active.step_index, started_at=now)
                return f"{label}: resuming the rollout {stable_id} -> {new.revision}"
        if run.canary is not None and run.canary.revision == new.revision:
            return f"{label}: revision {new.revision} is already rolling out"
        if run.canary is None and run.stable.revision == new.revision:
            return f"{label}: unchanged at revision {new.revision}"
        if run.canary is not None and run.stable.revision == new.revision:
            self._finish_rollout(run, "aborted", f"{who} deployed the stable revision again", who)
            return f"{label}: rollout aborted, back to revision {new.revision}"
        strategy = new.resource.spec.rollout.strategy
        change = f"{run.stable.revision} -> {new.revision}"
        with self.state.atomically():
            if run.canary is not None:
                self._record_finish(run, "superseded", f"{who} deployed {new.revision}", who)
            record = self.state.start_rollout(
                kind, name, run.stable.revision, new.revision, strategy, time.time()
            )
            self._event(
                kind, name, "deploy", change, who, "started", new.revision, detail=strategy,
                commit=commit,
            )  # fmt: skip
        if run.canary is not None:
            self._apply_finish(run, "superseded", f"{who} deployed {new.revision}")
        run.canary = new
        run.rollout = RolloutRun(record, 0, started_at=now, commit=commit)
        self.report(f"{label}: rolling out {run.stable.revision} -> {new.revision} ({strategy})")
        return (
            f"{label}: rolling out revision {new.revision} ({strategy}) over {run.stable.revision}"
        )

    def _new_run(self, kind: str, name: str, stable: RevisionRun, now: float) -> ResourceRun:
        assert kind in ("Model", "App")
        run = ResourceRun(kind, name, stable, started_at=now)  # type: ignore[arg-type]
        run.created_at = min((r.created_at for r in self.state.revisions(kind, name)), default=None)
        run.desired_total = max(1, stable.resource.spec.scaling.min_replicas)
        return run

    def _record_revision(self, resource: Model | App, revision: str, source: Path) -> None:
        spec_json = canonical_spec_json(resource)
        self.state.record_revision(
            RevisionRecord(
                kind=resource.kind,
                name=resource.metadata.name,
                revision=revision,
                spec_digest=hashlib.sha256(spec_json.encode()).hexdigest(),
                spec_json=spec_json,
                source=str(source.resolve()),
                created_at=time.time(),
            )
        )

    def _revision_run(self, resource: Model | App, revision: str, source: Path) -> RevisionRun:
        base_dir = source.resolve().parent
        url = self.config.gateway_url
        if isinstance(resource, Model):
            try:
                snapshot = write_snapshot(
                    self.config.state_dir / "revisions", resource, base_dir, revision
                )
            except OSError as exc:
                raise StorageError(
                    f"cannot write the snapshot of revision {revision} under "
                    f"{self.config.state_dir / 'revisions'}: {exc.strerror or exc}"
                ) from None
            launch = model_launch(resource, revision, snapshot, base_dir, url)
        else:
            launch = app_launch(resource, revision, base_dir, url)
        return RevisionRun(revision, resource, source.resolve(), launch)

    def _restore(self, kind: str, name: str, revision: str) -> RevisionRun:
        """Rebuild a revision from the state database (the spec file may have changed since)."""
        record = self.state.revision(kind, name, revision)
        if record is None:
            raise PlatformError(
                f"{kind} {name}: revision {revision} is missing from {self.state.path}"
            )
        data = {
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": {"name": name},
            "spec": json.loads(record.spec_json),
        }
        resource = KINDS[kind].model_validate(data)
        assert isinstance(resource, Model | App)
        return self._revision_run(resource, revision, Path(record.source))

    # -- scaling and processes ------------------------------------------------------------------

    def _scale(self, run: ResourceRun, now: float) -> None:
        sample = self.gateway.load(run.name) if self.gateway else None
        in_flight, held = (sample.in_flight, sample.held) if sample else (0, 0)
        last = sample.last_request_at if sample and sample.last_request_at else None
        activity = max(last or run.started_at, run.started_at)
        decision = autoscale(
            run.scaling,
            current=run.desired_total,
            load=LoadObservation(in_flight, held, activity),
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
            if run.rollout is not None and run.rollout.strategy == "canary":
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
