"""The local controller: one asyncio loop that keeps what runs equal to the spec.

At every tick it lets the supervisor act on exits and health, asks :func:`kaip.policy.autoscale`
how many replicas each resource needs (from the gateway's load) and :func:`kaip.policy.rollout`
what each canary does next (from the gateway's per-revision stats), starts or drains replicas to
match, hands the gateway routes that name only ready replicas, and records revisions, rollout
verdicts and deployment events in the state database.

Requests from outside (the admin API, signals) never act directly: they are queued as commands
and run by the loop between ticks, so exactly one place decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kaip.errors import PlatformError
from kaip.local.controller.pinning import Pinned, pin
from kaip.local.controller.runtime import ResourceRun, RevisionRun, RolloutRun
from kaip.local.gateway import Backend, Gateway, Route
from kaip.local.state import Commit, EventRecord, RevisionRecord, State, StepRecord
from kaip.local.supervisor import Replica, Supervisor, app_launch, model_launch, write_snapshot
from kaip.plan import canonical_spec_json
from kaip.policy import Evidence, LoadObservation, Verdict, autoscale, rollout
from kaip.spec import API_VERSION, KINDS, App, Model, SpecSet, first_clash

T = TypeVar("T")
RETIRE_GRACE_SECONDS = 0.5
"""A replica leaves the routes this long before it gets SIGTERM, so no request is sent to it."""


@dataclass(frozen=True)
class ControllerConfig:
    state_dir: Path
    gateway_url: str
    tick_seconds: float = 1.0
    stabilization_seconds: float = 30.0


class Controller:
    """Reconciles resources, replicas, routes and rollouts. Run :meth:`run` in the event loop."""

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
        self.report = report
        self._clock = clock
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
                await self.tick()
                fast = self.supervisor.starting or any(r.rollout for r in self.resources.values())
                period = min(self.config.tick_seconds, 0.1) if fast else self.config.tick_seconds
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
                self.resources[name] = self._new_run(kind, name, new, now)
                self.state.set_stable(kind, name, new.revision, wall)
                if first:
                    self._event(
                        kind, name, "create", f"new at {new.revision}", who, "created",
                        new.revision, commit=commit,
                    )  # fmt: skip
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
        if run.canary is not None:
            self._finish_rollout(run, "superseded", f"{who} deployed {new.revision}", who)
        strategy = new.resource.spec.rollout.strategy
        record = self.state.start_rollout(
            kind, name, run.stable.revision, new.revision, strategy, time.time()
        )
        run.canary = new
        run.rollout = RolloutRun(record, 0, started_at=now, commit=commit)
        change = f"{run.stable.revision} -> {new.revision}"
        self._event(
            kind, name, "deploy", change, who, "started", new.revision, detail=strategy,
            commit=commit,
        )  # fmt: skip
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
            snapshot = write_snapshot(
                self.config.state_dir / "revisions", resource, base_dir, revision
            )
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

    # -- rollouts -------------------------------------------------------------------------------

    def _step_rollout(self, run: ResourceRun, now: float) -> None:
        stats = self.gateway.take_stats(run.name) if self.gateway else {}
        rollout_run, canary = run.rollout, run.canary
        if rollout_run is None or canary is None:
            return
        canary_ready = self._ready(run.name, canary.revision)
        canary_replicas = self.supervisor.replicas(run.name, canary.revision)
        if canary_replicas and all(r.phase == "crash-loop" for r in canary_replicas):
            reason = f"the canary is in a crash loop: {canary_replicas[0].describe()}"
            self._verdict(run, Verdict("rollback", reason), now)
            return
        if rollout_run.strategy == "replace":
            ready = len(canary_ready)
            if ready >= max(1, canary.desired):
                self._verdict(run, Verdict("promote", f"{ready} new replica(s) ready"), now)
            return
        if rollout_run.step_started_at is None:
            if canary_ready:
                rollout_run.step_started_at = now
                self._announce_step(run)
            return
        for revision, window in stats.items():
            evidence = Evidence(window.requests, window.errors, window.latencies_ms)
            if revision == canary.revision:
                rollout_run.canary = rollout_run.canary.plus(evidence)
            elif revision == run.stable.revision:
                rollout_run.stable = rollout_run.stable.plus(evidence)
        spec = run.rollout_spec
        verdict = rollout(
            step_index=rollout_run.step_index,
            steps=spec.steps,
            seconds_in_step=now - rollout_run.step_started_at,
            canary=rollout_run.canary,
            stable=rollout_run.stable,
            gates=spec.gates,
            slo=canary.resource.spec.slo if isinstance(canary.resource, Model) else None,
        )
        self._verdict(run, verdict, now)

    def _verdict(self, run: ResourceRun, verdict: Verdict, now: float) -> None:
        rollout_run = run.rollout
        assert rollout_run is not None and run.canary is not None
        rollout_run.last_verdict = verdict
        if verdict.action == "hold":
            return
        steps = run.rollout_spec.steps
        index = min(rollout_run.step_index, len(steps) - 1)
        canary, stable = rollout_run.canary, rollout_run.stable
        self.state.record_step(
            rollout_run.record.id,
            StepRecord(
                step_index=index,
                weight=steps[index].weight if rollout_run.strategy == "canary" else 100,
                action=verdict.action,
                reason=verdict.reason,
                canary_requests=canary.requests,
                canary_errors=canary.errors,
                canary_p99_ms=canary.p99_ms(),
                stable_requests=stable.requests,
                stable_errors=stable.errors,
                stable_p99_ms=stable.p99_ms(),
                at=time.time(),
            ),
        )
        self.report(f"{run.kind} {run.name}: {verdict.action}: {verdict.reason}")
        if verdict.action == "advance":
            rollout_run.step_index += 1
            rollout_run.step_started_at = now
            rollout_run.canary, rollout_run.stable = Evidence(), Evidence()
            self._announce_step(run)
        elif verdict.action == "promote":
            self._finish_rollout(run, "promoted", verdict.reason, "kaip")
        else:
            self._finish_rollout(run, "rolled_back", verdict.reason, "kaip")

    def _announce_step(self, run: ResourceRun) -> None:
        assert run.rollout is not None and run.canary is not None
        step = run.rollout_spec.steps[run.rollout.step_index]
        self.report(
            f"{run.kind} {run.name}: step {run.rollout.step_index + 1}/"
            f"{len(run.rollout_spec.steps)}: {step.weight}% to {run.canary.revision}"
        )

    def _finish_rollout(self, run: ResourceRun, outcome: str, reason: str, who: str) -> None:
        """End the rollout: the canary becomes stable (promoted) or goes away (anything else)."""
        rollout_run, canary = run.rollout, run.canary
        assert rollout_run is not None and canary is not None
        wall = time.time()
        record = rollout_run.record
        self.state.finish_rollout(record.id, outcome, reason, wall)  # type: ignore[arg-type]
        old = run.stable
        if outcome == "promoted":
            run.stable = canary
            self.state.set_stable(run.kind, run.name, canary.revision, wall)
            leaving = old
        else:
            leaving = canary
        run.canary, run.rollout = None, None
        for replica in self.supervisor.replicas(run.name, leaving.revision):
            self._retire(replica, self._clock())
        self._event(
            run.kind,
            run.name,
            "rollout",
            f"{record.from_revision} -> {record.to_revision}",
            who,
            outcome,
            record.to_revision,
            duration_s=wall - record.started_at,
            detail=reason,
            commit=rollout_run.commit,
        )
        self.report(f"{run.kind} {run.name}: rollout {outcome.replace('_', ' ')} ({reason})")

    async def promote(self, name: str, who: str) -> str:
        run = self._rolling(name)
        self._verdict(run, Verdict("promote", f"promoted by {who}"), self._clock())
        return f"{run.kind} {name}: promoted to revision {run.stable.revision}"

    async def abort(self, name: str, who: str) -> str:
        run = self._rolling(name)
        assert run.rollout is not None and run.canary is not None
        canary = run.canary.revision
        self._finish_rollout(run, "aborted", f"aborted by {who}", who)
        return f"{run.kind} {name}: rollout of {canary} aborted, stable stays {run.stable.revision}"

    def _rolling(self, name: str) -> ResourceRun:
        run = self.resources.get(name)
        if run is None:
            raise PlatformError(f"no Model or App named {name!r} runs here")
        if run.rollout is None:
            raise PlatformError(f"{run.kind} {name} has no rollout in progress")
        return run

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

    # -- records --------------------------------------------------------------------------------

    def _event(
        self,
        kind: str,
        name: str,
        action: str,
        change: str,
        who: str,
        outcome: str,
        revision: str | None = None,
        *,
        duration_s: float | None = None,
        detail: str = "",
        commit: Commit | None = None,
    ) -> None:
        self.state.record_event(
            EventRecord(
                time.time(),
                kind,
                name,
                action,
                change,
                who,
                outcome,
                revision,
                duration_s,
                detail,
                commit.sha if commit else None,
                commit.committed_at if commit else None,
            )
        )
