"""The controller's state as plain data: what ``kaip status`` and the admin API show.

Reads the controller's records and the supervisor's replicas; changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from kaip.registry import ModelVersion

if TYPE_CHECKING:
    from kaip.local.controller.loop import Controller
    from kaip.local.controller.runtime import ResourceRun
    from kaip.local.gateway import Route


def status(controller: Controller) -> dict[str, Any]:
    url = controller.config.gateway_url
    resources = resource_rows(controller, controller.resources.values())
    return {
        "pid": os.getpid(),
        "gateway": url,
        "ready": controller.applied and all(r["ready"] for r in resources),
        "degraded": [asdict(trouble) for trouble in controller.troubles.current()],
        "resources": resources,
        "jobs": controller.training.status() if controller.training else [],
    }


def resource_rows(controller: Controller, runs: Iterable[ResourceRun]) -> list[dict[str, Any]]:
    """The status of each of ``runs`` (the routes are read once for all of them)."""
    routes = {r.name: r for r in controller.routes()}
    return [_resource(controller, run, routes) for run in runs]


def _source(version: ModelVersion | None) -> dict[str, Any] | None:
    """Where a revision's artifact came from: lineage at a glance."""
    if version is None:
        return None
    return {
        "version": version.reference,
        "digest": version.digest,
        "job": version.job,
        "run": version.run_id,
        "metrics": dict(version.metrics),
    }


def _resource(
    controller: Controller, run: ResourceRun, routes: Mapping[str, Route]
) -> dict[str, Any]:
    base = controller.config.gateway_url
    route = routes.get(run.name)
    replicas = []
    for replica in controller.supervisor.replicas(run.name):
        replicas.append(
            {
                "id": replica.id,
                "revision": replica.revision,
                "pid": replica.pid,
                "port": replica.port,
                "phase": replica.phase,
                "health": replica.describe(),
                "restarts": replica.restarts,
                "routed": bool(route and any(b.replica == replica.id for b in route.backends)),
                "log": str(replica.log_path),
            }
        )
    rollout = None
    if run.rollout is not None and run.canary is not None:
        steps = run.rollout_spec.steps
        verdict = run.rollout.last_verdict
        rollout = {
            "id": run.rollout.record.id,
            "strategy": run.rollout.strategy,
            "from": run.stable.revision,
            "to": run.canary.revision,
            "step": run.rollout.step_index + 1,
            "steps": [s.weight for s in steps],
            "paused": run.rollout.strategy != "replace"
            and steps[min(run.rollout.step_index, len(steps) - 1)].pause is not None
            and not run.rollout.released_by,
            "canary": {
                "requests": run.rollout.canary.requests,
                "errors": run.rollout.canary.errors,
                "p99_ms": run.rollout.canary.p99_ms(),
            },
            "verdict": None
            if verdict is None
            else {"action": verdict.action, "reason": verdict.reason},
        }
    names = list(run.served_names.get(run.current.revision, ()))
    url = f"{base}/v2/models/{names[0]}/infer" if names else f"{base}/apps/{run.name}/"
    serving = [r for r in replicas if r["routed"]]
    return {
        "kind": run.kind,
        "name": run.name,
        "names": names,
        "url": url,
        "stable": run.stable.revision,
        "canary": run.canary.revision if run.canary else None,
        "source": {
            r.revision: _source(r.version) for r in run.revisions() if r.version is not None
        },
        "weights": dict(route.weights) if route else {run.stable.revision: 100},
        "desired": run.desired_total,
        "scaling": run.scale_reason,
        "ready": bool(serving) or run.desired_total == 0,
        "replicas": replicas,
        "rollout": rollout,
    }
