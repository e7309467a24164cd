"""The controller's rollouts: each canary walked through its steps, and the records they leave.

A mixin of :class:`~kaip.local.controller.loop.Controller`, split from it by responsibility: at
each tick :meth:`RolloutSteps._step_rollout` feeds the gateway's per-revision stats for this
step to :func:`kaip.policy.rollout` (then, with a cost budget, the verdict and what each
revision's requests cost since the canary's first step began to
:func:`kaip.policy.cost.cost_gate`) and acts on the verdict (hold, advance, promote, roll back);
``kaip rollout promote|abort|undo`` come here too (promote releases a manual pause, undo rolls
out an earlier revision again). Every decision is written to the state database in one
transaction *before* memory changes (:meth:`~RolloutSteps._record_finish`, then
:meth:`~RolloutSteps._apply_finish`), so a write that fails leaves both as they were and the
next tick decides again. Deployment events are recorded here for the whole controller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol

from kaip.accounting import ReplicaWindow
from kaip.analysis import StepContext, run_checks, run_hooks
from kaip.errors import PlatformError
from kaip.local.controller.genai_evidence import SCRAPE_INTERVAL_S, ReplicaHistograms, scrape
from kaip.local.controller.runtime import ResourceRun, RevisionRun
from kaip.local.gateway import Gateway
from kaip.local.state import Commit, EventRecord, State, StepRecord
from kaip.local.supervisor import Replica, Supervisor
from kaip.notify import EventName, Notifier, RolloutEvent
from kaip.policy import (
    CheckResult,
    Evidence,
    Verdict,
    not_asked,
    not_ready_verdict,
    pre_rollout_verdict,
    rollout,
)
from kaip.policy.cost import CostEvidence, cost_gate, has_budget
from kaip.registry import ModelVersion
from kaip.spec import Model
from kaip.spec.rollout import Analysis, HookType


class CostSource(Protocol):
    """What each revision's requests cost (kaip up's :class:`~.costs.CostBook`)."""

    def mark(self, kind: str, resource: str) -> Mapping[str, ReplicaWindow]:
        """Each replica's cost window of the resource so far."""
        ...

    def per_revision(
        self, kind: str, resource: str, since: Mapping[str, ReplicaWindow] | None = None
    ) -> Mapping[str, CostEvidence]:
        """Requests and their cost per revision since ``since`` (a :meth:`mark`)."""
        ...


class RolloutSteps:
    """Rollout decisions and records; the controller provides the attributes declared here."""

    state: State
    supervisor: Supervisor
    gateway: Gateway | None
    notifier: Notifier
    resources: dict[str, ResourceRun]
    report: Callable[[str], None]
    _clock: Callable[[], float]
    costs: CostSource | None = None
    """What each revision's requests cost, for the cost gate; kaip up sets it (None: a cost
    budget is not judged, and the verdicts say so)."""
    _hook_tasks: set[asyncio.Task[None]]
    """Post-rollout webhook calls on their way (held so they are not collected mid-call)."""

    def _retire(self, replica: Replica, now: float) -> None:
        raise NotImplementedError  # the controller's

    def _ready(self, name: str, revision: str) -> list[Replica]:
        raise NotImplementedError  # the controller's

    def _restore(self, kind: str, name: str, revision: str) -> RevisionRun:
        raise NotImplementedError  # the controller's

    async def _apply_one(
        self, kind: str, name: str, new: RevisionRun, who: str, commit: Commit | None
    ) -> str:
        raise NotImplementedError  # the controller's

    def wake(self, _name: str = "") -> None:
        raise NotImplementedError  # the controller's

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
        spec = run.rollout_spec
        late = not_ready_verdict(now - rollout_run.started_at, spec.progress_deadline_seconds)
        if run.awaiting_pre_rollout:  # no traffic by weight until the pre-rollout hooks say yes
            if canary_ready:
                self._pre_rollout(run, now)
            elif late is not None:
                self._verdict(run, late, now)
            return
        if rollout_run.strategy == "replace":
            ready = len(canary_ready)
            if ready >= max(1, canary.desired):
                self._verdict(run, Verdict("promote", f"{ready} new replica(s) ready"), now)
            elif late is not None:
                self._verdict(run, late, now)
            return
        if spec.gates.judges_genai:
            self._read_genai(run, now)
        if rollout_run.step_started_at is None:
            if canary_ready:
                rollout_run.step_started_at = now
                if self.costs is not None and has_budget(spec.gates):
                    rollout_run.cost_since = self.costs.mark(run.route_kind, run.name)
                self._announce_step(run)
            elif late is not None:
                self._verdict(run, late, now)
            return
        for revision, window in stats.items():
            evidence = Evidence(window.requests, window.errors, window.latencies_ms)
            if revision == canary.revision:
                rollout_run.canary = rollout_run.canary.plus(evidence)
            elif revision == run.stable.revision:
                rollout_run.stable = rollout_run.stable.plus(evidence)
        if spec.gates.judges_genai:
            genai = rollout_run.genai
            rollout_run.canary = _with_p95s(rollout_run.canary, genai.p95_ms(canary.revision))
            rollout_run.stable = _with_p95s(rollout_run.stable, genai.p95_ms(run.stable.revision))
        verdict = rollout(
            step_index=rollout_run.step_index,
            steps=spec.steps,
            seconds_in_step=now - rollout_run.step_started_at,
            canary=rollout_run.canary,
            stable=rollout_run.stable,
            gates=spec.gates,
            slo=canary.resource.spec.slo if isinstance(canary.resource, Model) else None,
            progress_deadline_seconds=spec.progress_deadline_seconds,
            on_no_evidence=spec.no_evidence,
            released_by=rollout_run.released_by,
            checks=self._checks(run, now),
        )
        if has_budget(spec.gates):
            verdict = self._cost_gate(run, verdict)
        self._verdict(run, verdict, now)

    def _read_genai(self, run: ResourceRun, now: float) -> None:
        """Fold the last read of the replicas' GenAI histograms in; read again when due.

        The read runs as a task beside the loop, as the checks do; a tick never waits for it.
        """
        rollout_run, canary = run.rollout, run.canary
        assert rollout_run is not None and canary is not None
        task = rollout_run.genai_task
        if task is not None and task.done():
            rollout_run.genai_task = None
            if not task.cancelled():
                problem = task.exception()
                if problem is None:
                    rollout_run.genai.fold(task.result())
                else:
                    self.report(f"{run.kind} {run.name}: reading GenAI metrics failed: {problem!r}")
        read_at = rollout_run.genai_read_at
        if rollout_run.genai_task is None and (
            read_at is None or now - read_at >= SCRAPE_INTERVAL_S
        ):
            targets = [
                (r.id, r.revision, r.port)
                for revision in (canary.revision, run.stable.revision)
                for r in self.supervisor.replicas(run.name, revision)
                if r.serving and r.port
            ]
            rollout_run.genai_read_at = now
            rollout_run.genai_task = asyncio.get_running_loop().create_task(
                self._scrape_genai(targets)
            )

    async def _scrape_genai(
        self, targets: list[tuple[str, str, int]]
    ) -> dict[str, ReplicaHistograms]:
        try:
            return await scrape(targets)
        finally:
            self.wake()

    def _cost_gate(self, run: ResourceRun, verdict: Verdict) -> Verdict:
        """The verdict after the rollout's cost budget, judged on what each revision's requests
        cost since the canary's first step began: both over the same time, under the same load,
        the canary's start-up and stable's earlier traffic (other concurrency, other hours)
        left out."""
        assert run.canary is not None and run.rollout is not None
        costs = None
        if self.costs is not None:
            costs = self.costs.per_revision(run.route_kind, run.name, run.rollout.cost_since)
        canary = stable = None
        if costs is not None:
            canary = costs.get(run.canary.revision, CostEvidence())
            stable = costs.get(run.stable.revision, CostEvidence())
        steps = run.rollout_spec.steps
        weight = steps[min(run.rollout.step_index, len(steps) - 1)].weight
        return cost_gate(
            verdict,
            canary=canary,
            stable=stable,
            gates=run.rollout_spec.gates,
            stable_gets_traffic=weight < 100,
        )

    def _checks(self, run: ResourceRun, now: float) -> tuple[CheckResult, ...]:
        """The latest answers of the step's analysis checks; asks again when they are due.

        The checks run as a task beside the loop (a webhook may take its whole timeout), so a
        tick never waits for them: until their first answers arrive they are pending.
        """
        analysis = run.rollout_spec.analysis
        rollout_run, canary = run.rollout, run.canary
        assert rollout_run is not None and canary is not None
        if analysis is None or not analysis.judges_steps:
            return ()
        task = rollout_run.checks_task
        if task is not None and task.done():
            rollout_run.checks_task = None
            if not task.cancelled():
                problem = task.exception()
                if problem is None:
                    rollout_run.checks = task.result()
                else:
                    self.report(f"{run.kind} {run.name}: analysis checks failed: {problem!r}")
        asked = rollout_run.checks_asked_at
        if rollout_run.checks_task is None and (
            asked is None or now - asked >= analysis.interval_seconds
        ):
            steps = run.rollout_spec.steps
            index = min(rollout_run.step_index, len(steps) - 1)
            context = StepContext(
                run.kind, run.name, "", canary.revision, run.stable.revision,
                index + 1, len(steps), steps[index].weight,
            )  # fmt: skip
            rollout_run.checks_asked_at = now
            rollout_run.checks_task = asyncio.get_running_loop().create_task(
                self._ask(analysis, context)
            )
        return rollout_run.checks or not_asked(analysis)

    async def _ask(self, analysis: Analysis, context: StepContext) -> tuple[CheckResult, ...]:
        try:
            return await run_checks(analysis, context)
        finally:
            self.wake()  # the next tick judges the answers at once

    def _pre_rollout(self, run: ResourceRun, now: float) -> None:
        """Call the ``pre-rollout`` webhooks once the new revision is ready (it has no traffic by
        weight yet), then act on their answers: one refusal rolls it back, all yes lets the
        first step begin. The call runs beside the loop, as the checks do."""
        rollout_run, canary, analysis = run.rollout, run.canary, run.rollout_spec.analysis
        assert rollout_run is not None and canary is not None and analysis is not None
        task = rollout_run.hooks_task
        names = ", ".join(w.name for w in analysis.hooks("pre-rollout"))
        rollout_run.last_verdict = Verdict("hold", f"waiting for the pre-rollout webhooks: {names}")
        if task is None:
            steps = run.rollout_spec.steps
            context = StepContext(
                run.kind, run.name, "", canary.revision, run.stable.revision, 0, len(steps), 0
            )
            rollout_run.hooks_task = asyncio.get_running_loop().create_task(
                self._ask_hooks(analysis, "pre-rollout", context)
            )
            self.report(
                f"{run.kind} {run.name}: pre-rollout webhooks asked about {canary.revision}"
            )
            return
        if not task.done():
            return
        rollout_run.hooks_task = None
        problem = None if task.cancelled() else task.exception()
        if task.cancelled() or problem is not None:
            results: tuple[CheckResult, ...] = (
                CheckResult("webhooks", "fail", f"not asked: {problem!r}"),
            )
        else:
            results = task.result()
        verdict = pre_rollout_verdict(results)
        if verdict is not None:
            self._verdict(run, verdict, now)
            return
        rollout_run.pre_rollout_passed = True
        said = "; ".join(r.describe() for r in results)
        self.report(f"{run.kind} {run.name}: pre-rollout passed ({said})")
        self.wake()

    async def _ask_hooks(
        self, analysis: Analysis, phase: HookType, context: StepContext
    ) -> tuple[CheckResult, ...]:
        try:
            return await run_hooks(analysis, phase, context)
        finally:
            self.wake()

    def _post_rollout(self, run: ResourceRun, outcome: str, reason: str) -> None:
        """Tell the ``post-rollout`` webhooks how the rollout ended (never waited for; what they
        answer is reported, and changes nothing)."""
        rollout_run, canary, analysis = run.rollout, run.canary, run.rollout_spec.analysis
        if rollout_run is None or canary is None or analysis is None:
            return
        if not analysis.hooks("post-rollout"):
            return
        steps = run.rollout_spec.steps
        index = min(rollout_run.step_index, len(steps) - 1)
        canary_steps = rollout_run.strategy != "replace"
        context = StepContext(
            run.kind, run.name, "", canary.revision, rollout_run.record.from_revision,
            index + 1, len(steps) if canary_steps else 1,
            steps[index].weight if canary_steps else 100, outcome=outcome, reason=reason,
        )  # fmt: skip
        label = f"{run.kind} {run.name}"

        async def tell() -> None:
            for result in await run_hooks(analysis, "post-rollout", context):
                self.report(f"{label}: post-rollout {result.describe()}")

        task = asyncio.get_running_loop().create_task(tell())
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_tasks.discard)

    def _verdict(self, run: ResourceRun, verdict: Verdict, now: float) -> None:
        rollout_run = run.rollout
        assert rollout_run is not None and run.canary is not None
        rollout_run.last_verdict = verdict
        if verdict.action == "hold":
            return
        steps = run.rollout_spec.steps
        index = min(rollout_run.step_index, len(steps) - 1)
        canary, stable = rollout_run.canary, rollout_run.stable
        outcome = {"promote": "promoted", "advance": "", "abort": "aborted"}.get(
            verdict.action, "rolled_back"
        )
        with self.state.atomically():
            self.state.record_step(
                rollout_run.record.id,
                StepRecord(
                    step_index=index,
                    weight=steps[index].weight if rollout_run.strategy != "replace" else 100,
                    action=verdict.action,
                    reason=verdict.reason,
                    canary_requests=canary.requests,
                    canary_errors=canary.errors,
                    canary_p99_ms=canary.p99_ms(),
                    stable_requests=stable.requests,
                    stable_errors=stable.errors,
                    stable_p99_ms=stable.p99_ms(),
                    at=self.state.now(),
                ),
            )
            if outcome:
                self._record_finish(run, outcome, verdict.reason, "kaip")
        self.report(f"{run.kind} {run.name}: {verdict.action}: {verdict.reason}")
        if outcome:
            self._apply_finish(run, outcome, verdict.reason)
        else:
            rollout_run.step_index += 1
            rollout_run.step_started_at = now
            rollout_run.released_by = ""
            rollout_run.canary, rollout_run.stable = Evidence(), Evidence()
            rollout_run.forget_checks()
            self._announce_step(run)
            self._notify(run, "step", verdict.reason)

    def _notify(self, run: ResourceRun, event: EventName, reason: str) -> None:
        """Tell the rollout's notification webhooks (queued: the rollout never waits)."""
        rollout_run, spec = run.rollout, run.rollout_spec
        if rollout_run is None or not spec.notifications:
            return
        record, steps = rollout_run.record, spec.steps
        at_step = event in ("started", "step")
        index = min(rollout_run.step_index, len(steps) - 1)
        canary = rollout_run.strategy != "replace"
        self.notifier.send(
            spec.notifications,
            RolloutEvent(
                event, run.kind, run.name, record.from_revision, record.to_revision, reason,
                step=index + 1 if at_step else None,
                steps=len(steps) if canary else 1,
                weight=(steps[index].weight if canary else 100) if at_step else None,
            ),
        )  # fmt: skip

    def _announce_step(self, run: ResourceRun) -> None:
        assert run.rollout is not None and run.canary is not None
        step = run.rollout_spec.steps[run.rollout.step_index]
        self.report(
            f"{run.kind} {run.name}: step {run.rollout.step_index + 1}/"
            f"{len(run.rollout_spec.steps)}: {step.weight}% to {run.canary.revision}"
        )

    def _finish_rollout(self, run: ResourceRun, outcome: str, reason: str, who: str) -> None:
        """End the rollout: the canary becomes stable (promoted) or goes away (anything else)."""
        with self.state.atomically():
            self._record_finish(run, outcome, reason, who)
        self._apply_finish(run, outcome, reason)

    def _record_finish(self, run: ResourceRun, outcome: str, reason: str, who: str) -> None:
        """The database's half of :meth:`_finish_rollout` (call it inside a transaction)."""
        rollout_run, canary = run.rollout, run.canary
        assert rollout_run is not None and canary is not None
        wall = self.state.now()
        record = rollout_run.record
        self.state.finish_rollout(record.id, outcome, reason, wall)  # type: ignore[arg-type]
        if outcome == "promoted":
            self.state.set_stable(run.kind, run.name, canary.revision, wall)
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
            version=canary.version,
        )

    def _apply_finish(self, run: ResourceRun, outcome: str, reason: str) -> None:
        """The in-memory half of :meth:`_finish_rollout`, once the database has it."""
        canary = run.canary
        assert canary is not None
        leaving = run.stable if outcome == "promoted" else canary
        if run.rollout is not None:
            run.rollout.forget_checks()
            ended: EventName = "aborted"  # and superseded
            if outcome in ("promoted", "rolled_back"):
                ended = "promoted" if outcome == "promoted" else "rolled_back"
            told = reason if outcome != "superseded" else f"superseded: {reason}"
            self._notify(run, ended, told)
            self._post_rollout(run, ended, told)
        if outcome == "promoted":
            run.stable = canary
        run.canary, run.rollout = None, None
        for replica in self.supervisor.replicas(run.name, leaving.revision):
            self._retire(replica, self._clock())
        self.report(f"{run.kind} {run.name}: rollout {outcome.replace('_', ' ')} ({reason})")

    async def promote(self, name: str, who: str, full: bool = False) -> str:
        """Release the manual pause the rollout waits at; else (or ``full``) promote it now."""
        run = self._rolling(name)
        rollout_run = run.rollout
        assert rollout_run is not None and run.canary is not None
        steps = run.rollout_spec.steps
        step = steps[min(rollout_run.step_index, len(steps) - 1)]
        if full or rollout_run.strategy == "replace" or step.pause is None:
            self._verdict(run, Verdict("promote", f"promoted by {who}"), self._clock())
            return f"{run.kind} {name}: promoted to revision {run.stable.revision}"
        rollout_run.released_by = who
        if rollout_run.step_started_at is None:
            return (
                f"{run.kind} {name}: the pause at {step.weight}% is released; the canary "
                f"{run.canary.revision} is not ready yet and passes it once it is"
            )
        self._step_rollout(run, self._clock())  # the policy decides, as at any tick
        verdict = rollout_run.last_verdict
        said = f"{verdict.action}: {verdict.reason}" if verdict else "released"
        return f"{run.kind} {name}: pause at {step.weight}% released by {who}: {said}"

    async def undo(self, name: str, who: str, to_revision: str | None = None) -> str:
        """Roll out an earlier revision again (the one before stable, or ``to_revision``)."""
        run = self.resources.get(name)
        if run is None:
            raise PlatformError(f"no Model or App named {name!r} runs here")
        if run.rollout is not None:
            raise PlatformError(
                f"{run.kind} {name} has a rollout in progress: `kaip rollout abort {name}` "
                "sends all traffic back to the stable revision"
            )
        target = self._undo_target(run, to_revision)
        restored = self._restore(run.kind, name, target)
        said = await self._apply_one(run.kind, name, restored, who, None)
        self.wake()
        return f"undo: {said}"

    def _undo_target(self, run: ResourceRun, to_revision: str | None) -> str:
        stable = run.stable.revision
        if to_revision is None:
            for record in self.state.rollouts(run.kind, run.name, limit=100):
                if record.status == "promoted" and record.to_revision == stable:
                    return record.from_revision
            raise PlatformError(
                f"{run.kind} {run.name}: no earlier revision was promoted before {stable}; "
                "name one with --to-revision (see `kaip rollout status NAME`)"
            )
        known = [r.revision for r in self.state.revisions(run.kind, run.name)]
        matches = [r for r in known if r.startswith(to_revision)]
        if len(matches) != 1:
            what = "matches none" if not matches else f"matches {len(matches)}"
            raise PlatformError(
                f"{run.kind} {run.name}: --to-revision {to_revision!r} {what} of its "
                f"revisions ({', '.join(known[-10:])})"
            )
        if matches[0] == stable:
            raise PlatformError(f"{run.kind} {run.name}: revision {stable} is already stable")
        return matches[0]

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
        version: ModelVersion | None = None,
    ) -> None:
        self.state.record_event(
            EventRecord(
                self.state.now(),
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
                version.reference if version else None,
                version.digest if version else None,
                version.created_at if version else None,
            )
        )


def _with_p95s(evidence: Evidence, p95s: tuple[float | None, float | None]) -> Evidence:
    """``evidence`` with this step's p95 time to first token and per output token."""
    return replace(evidence, ttft_p95_ms=p95s[0], tpot_p95_ms=p95s[1])
