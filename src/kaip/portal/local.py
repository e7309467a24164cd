"""The portal's source on ``kaip up``: the controller's memory and ``.kaip/state.db``.

:class:`LocalSource` reads the controller's state in the event loop's own turn and never
changes it but through the controller's own actions (promote, abort, undo, submitted to its
loop). Whether a principal may act is decided here by role and owner: the deployer role or
above, and for a deployer scoped to owners, one of them. Traffic numbers come from the
gateway's cumulative counters (:class:`~kaip.local.gateway.signals.GatewaySignals`) when the
gateway keeps them, and are left out when it does not.

:func:`local_portal` is the portal ``kaip up`` serves on its control port (everything but
``/_kaip/``), behind :class:`~kaip.portal.app.PortalGuard`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaip.local.controller.admin import v1_openapi_paths
from kaip.local.controller.auth import Authenticator, Principal, require, require_owner
from kaip.local.controller.guard import ASGIApp, GuardPolicy
from kaip.local.controller.profile import profile_replica
from kaip.local.controller.sessions import SessionStore
from kaip.local.controller.status import resource_rows
from kaip.portal.app import LoginText, PortalGuard, portal_app
from kaip.portal.delivery import history
from kaip.portal.live import MIN_LOOK_S
from kaip.portal.logs import tail
from kaip.portal.profile import RATE_HZ
from kaip.portal.source import Action, Deployments, Entry, Overview, Playground, Row
from kaip.portal.traffic import TrafficReader
from kaip.registry.records import FINISHED
from kaip.spec import Model
from kaip.spec.loader import dump_resource

if TYPE_CHECKING:
    from kaip.local.controller.loop import Controller

_VERBS: Mapping[Action, str] = {"promote": "promote", "abort": "abort", "undo": "roll back"}


class LocalSource:
    """A :class:`~kaip.portal.source.PortalSource` over a running controller."""

    def __init__(self, controller: Controller) -> None:
        self._controller = controller
        self._traffic = TrafficReader()

    @property
    def live_every_s(self) -> float:
        return max(self._controller.config.tick_seconds, MIN_LOOK_S)

    @property
    def profiles(self) -> bool:
        return True

    @property
    def traffic_note(self) -> str:
        return (
            "Traffic is counted by the gateway since <code>kaip up</code> started; req/s is over"
            " the time since this page was last loaded; p99 is the histogram bucket it falls in;"
            " errors are 5xx answers and requests cut short; cost and energy are the replicas'"
            " busy time shared among their requests (usage basis, as <code>kaip cost</code>"
            " reports them; ≈ marks an estimate)."
        )

    async def entries(self) -> Sequence[Entry]:
        served = [
            Entry(name, run.current.resource.spec.owner)
            for name, run in self._controller.resources.items()
        ]
        return served + [Entry(name, owner) for name, owner in self._jobs().items()]

    def _jobs(self) -> dict[str, str]:
        """Each TrainingJob's name and owner (a Model or App of the same name hides it)."""
        training = self._controller.training
        if training is None:
            return {}
        return {
            name: owner
            for name, owner in training.owners.items()
            if name not in self._controller.resources
        }

    async def rows(self, names: Sequence[str]) -> list[Row]:
        controller = self._controller
        numbers = self._traffic.read(controller)
        runs = [controller.resources[n] for n in names if n in controller.resources]
        served = {
            row["name"]: {
                **row,
                "owner": run.current.resource.spec.owner,
                "traffic": numbers.get(row["name"]),
            }
            for run, row in zip(runs, resource_rows(controller, runs), strict=True)
        }
        jobs = self._jobs()
        statuses = {
            str(s["job"]): s for s in (controller.training.status() if controller.training else [])
        }
        out: list[Row] = []
        for name in names:
            if name in served:
                out.append(served[name])
            elif name in jobs:
                out.append(_job_row(name, jobs[name], statuses.get(name)))
        return out

    async def history(self, name: str, limit: int) -> list[Row]:
        run = self._controller.resources.get(name)
        if run is None:
            return []
        state = self._controller.state
        out: list[Row] = []
        for record in state.rollouts(run.kind, name, limit=limit):
            item: dict[str, Any] = asdict(record)
            item["verdicts"] = [asdict(s) for s in state.steps(record.id)]
            out.append(item)
        return out

    async def verdicts(self, name: str) -> list[Row]:
        run = self._controller.resources.get(name)
        if run is None or run.rollout is None:
            return []
        return [asdict(s) for s in self._controller.state.steps(run.rollout.record.id)]

    async def deployments(self, until: float) -> Deployments:
        return Deployments(history(self._controller.state, until), self._owners())

    def _owners(self) -> dict[str, str]:
        """Each resource's owner: the running spec's, else its latest recorded revision's."""
        state = self._controller.state
        out: dict[str, str] = {}
        for kind, name, _stable in state.resources():
            recorded = state.revisions(kind, name)
            if recorded:
                spec = json.loads(recorded[-1].spec_json).get("spec", {})
                out[name] = str(spec.get("owner", "")) if isinstance(spec, dict) else ""
        for name, run in self._controller.resources.items():
            out[name] = run.current.resource.spec.owner
        return out

    async def act(
        self,
        row: Row,
        action: Action,
        principal: Principal,
        to_revision: str | None,
        *,
        who: str | None = None,
        full: bool = False,
    ) -> str:
        controller = self._controller
        name, kind, verb = str(row["name"]), str(row["kind"]), _VERBS[action]
        what = (
            f"{verb} {kind} {name}" if action == "undo" else f"{verb} the rollout of {kind} {name}"
        )
        require(principal, "deployer", what)
        require_owner(principal, str(row["owner"]), what)
        actor = who or principal.name
        run: Callable[[], Awaitable[str]]
        if action == "promote":
            run = lambda: controller.promote(name, actor, full=full)  # noqa: E731
        elif action == "abort":
            run = lambda: controller.abort(name, actor)  # noqa: E731
        else:
            run = lambda: controller.undo(name, actor, to_revision)  # noqa: E731
        return await controller.submit(run)

    async def playground(self, name: str) -> Playground | None:
        """A Model, through the gateway, under its current revision's first served name."""
        run = self._controller.resources.get(name)
        if run is None or not isinstance(run.current.resource, Model):
            return None
        names = run.served_names.get(run.current.revision, ())
        if not names:
            return None
        protocols = tuple(run.current.resource.spec.serve.protocols)
        return Playground(self._controller.config.gateway_url, names[0], protocols)

    async def profile(
        self, name: str, principal: Principal, seconds: float
    ) -> tuple[str, str, str] | None:
        """As ``kaip profile``: a deployer of the owner, a Model's ready replica."""
        run = self._controller.resources.get(name)
        if run is None or run.kind != "Model":
            return None
        what = f"profile Model {name}"
        require(principal, "deployer", what)
        require_owner(principal, run.current.resource.spec.owner, what)
        got = await profile_replica(self._controller, name, None, seconds, RATE_HZ, "collapsed")
        return str(got["replica"]), str(got["revision"]), str(got["profile"])

    async def traffic_series(self, name: str) -> tuple[list[Row] | None, str]:
        gateway = self._controller.gateway
        history = gateway.history if gateway is not None else None
        if history is None or name not in self._controller.resources:
            return None, "No charts: the gateway keeps no traffic numbers in this kaip up."
        return [asdict(p) for p in history.series(name)], ""

    async def log_tail(self, name: str) -> tuple[list[tuple[str, str]], str] | None:
        """The tail of each running replica's log file under ``.kaip/logs/``; a job's latest
        run's."""
        files: list[tuple[str, Path]]
        if name in self._controller.resources:
            files = [(r.id, r.log_path) for r in self._controller.supervisor.replicas(name)]
        elif name in self._jobs():
            training = self._controller.training
            runs = [s for s in (training.status() if training else []) if s["job"] == name]
            files = [(f"{name} run {s['run']}", Path(str(s["log"]))) for s in runs if s["log"]]
        else:
            return None

        def read() -> list[tuple[str, str]]:
            return [(replica, line) for replica, path in files for line in tail(path)]

        return await asyncio.to_thread(read), ""

    async def overview(self, name: str) -> Overview | None:
        """The running revision's spec; a Model through the gateway, an App under ``/apps/``."""
        run = self._controller.resources.get(name)
        if run is None:
            return None
        resource = run.current.resource
        base = self._controller.config.gateway_url
        manifest = dump_resource(resource)
        if not isinstance(resource, Model):
            return Overview(resource.kind, manifest, f"{base}/apps/{name}/", (), ())
        served = tuple(run.served_names.get(run.current.revision, ())) or resource.served_names
        return Overview("Model", manifest, base, served, tuple(resource.spec.serve.protocols))


def _job_row(name: str, owner: str, status: Mapping[str, Any] | None) -> Row:
    """A TrainingJob's catalog row: its latest run's state and the version it registered."""
    state = "not started" if status is None else str(status["status"])
    if (
        status is not None
        and status["status"] not in FINISHED
        and status.get("progress") is not None
    ):
        state += f" ({float(status['progress']) * 100:.0f} %)"
    return {
        "kind": "TrainingJob",
        "name": name,
        "owner": owner,
        "names": [],
        "url": "",
        "stable": str((status or {}).get("version") or "—"),
        "canary": None,
        "weights": {},
        "desired": 0,
        "ready": status is not None and status["status"] == "succeeded",
        "state": state,
        "replicas": [],
        "rollout": None,
        "traffic": None,
    }


def local_portal(
    controller: Controller,
    bearer: Authenticator,
    policy: GuardPolicy,
    sessions: SessionStore,
    token_file: str,
) -> ASGIApp:
    """The portal of a ``kaip up`` run: its tokens, its controller, its Host and Origin rules."""

    async def authenticate(headers: Mapping[str, str]) -> Principal | None:
        return bearer.authenticate(headers)

    text = LoginText(
        hint=f"Paste this run's token: the contents of {token_file}, or a role token.",
        refused="That is not this run's token: copy it again from the file named below.",
    )
    return PortalGuard(
        portal_app(
            LocalSource(controller),
            authenticate,
            sessions,
            text,
            clock=controller.state.now,
            more_api=v1_openapi_paths(),
        ),
        policy,
    )
