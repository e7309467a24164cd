"""Lineage of a registered model, as plain data: job -> run -> version -> revisions -> traffic.

Joins what three owners recorded: the registry (the version: digest, metrics, parameters, the
job and run that made it), the run record (attempts, exit code, commit, where it resumed from)
and the local platform's state database (the Model revisions that pinned the version, the
rollouts that moved traffic to them step by step, and the deployment events that name it).
Reads only (bounded: the newest :data:`MAX_VERSIONS` versions, 1,000 events); ``kaip lineage``
prints it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from kaip.local.state import State
from kaip.registry import ModelVersion, Registry, RunStore
from kaip.spec.kinds import registry_reference

MAX_VERSIONS = 50


def lineage(
    registry: Registry,
    runs: RunStore,
    state: State,
    name: str,
    selector: str | None = None,
) -> list[dict[str, Any]]:
    """One entry per version of ``name`` (only the one ``selector`` names, when given)."""
    if selector is None:
        versions = registry.versions(name)[-MAX_VERSIONS:]
        if not versions:
            registry.resolve(name, "latest")  # raises, saying what there is
    else:
        versions = [registry.resolve(name, selector)]
    revisions = _revisions_by_reference(state)
    return [_entry(v, runs, state, revisions.get(v.reference, [])) for v in versions]


def _revisions_by_reference(state: State) -> dict[str, list[tuple[str, str]]]:
    """reference -> [(Model name, revision)] for every Model revision that pinned a version."""
    found: dict[str, list[tuple[str, str]]] = {}
    for kind, name, _ in state.resources():
        if kind != "Model":
            continue
        for record in state.revisions("Model", name):
            uri = json.loads(record.spec_json).get("artifact", {}).get("uri", "")
            if registry_reference(uri) is not None:
                found.setdefault(uri, []).append((name, record.revision))
    return found


def _entry(
    version: ModelVersion, runs: RunStore, state: State, revisions: list[tuple[str, str]]
) -> dict[str, Any]:
    run = runs.get(version.run_id) if version.run_id is not None else None
    served = []
    for model, revision in revisions:
        rollouts = [
            r for r in state.rollouts("Model", model, limit=100) if r.to_revision == revision
        ]
        served.append(
            {
                "model": model,
                "revision": revision,
                "stable_now": state.stable("Model", model) == revision,
                "rollouts": [
                    {**asdict(r), "steps": [asdict(s) for s in state.steps(r.id)]}
                    for r in reversed(rollouts)
                ],
            }
        )
    events = [
        asdict(e) for e in state.events(limit=1000) if e.artifact_version == version.reference
    ]
    return {
        "version": {
            "name": version.name,
            "version": version.version,
            "uri": version.reference,
            "sha256": version.digest,
            "format": version.format,
            "size": version.size,
            "storage": version.storage_uri,
            "created_at": version.created_at,
            "aliases": list(version.aliases),
            "metrics": dict(version.metrics),
            "params": dict(version.params),
            "commit": version.source_commit,
        },
        "job": version.job,
        "run": None
        if run is None
        else {
            "id": run.id,
            "revision": run.revision,
            "status": run.status,
            "attempt": run.attempt,
            "attempts": run.max_retries + 1,
            "exit_code": run.exit_code,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "commit": run.commit_sha,
            "resumed_from": run.resumed_from,
            "message": run.message,
        },
        "revisions": served,
        "events": events,
    }
