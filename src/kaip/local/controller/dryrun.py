"""``kaip deploy --dry-run``: what a deploy would do to each resource, changing nothing.

Each Model and App is pinned exactly as a deploy pins it (:mod:`~kaip.local.controller.pinning`:
overwritten weights show as a new ``sha256``), its revision id taken, and compared with what
runs: the verdict a deploy would reach (create, unchanged, roll out, abort the running rollout)
and the diff of the spec against the revision it would replace. A Model reading the registry
(``registry://NAME@latest``) is pinned to the version its selector names now, as a deploy pins
it; a version the quality gate refuses is said so. TrainingJobs are listed as runs the deploy
would ask for. Reads the state database, the registry and the controller's memory; never
writes any of them, never starts or stops anything.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

from kaip.errors import KaipError
from kaip.local.controller.loop import Controller
from kaip.local.controller.pinning import Pinned, pin
from kaip.plan import canonical_spec_json, revision_id, spec_diff
from kaip.registry import pin_version
from kaip.spec import App, Model, SpecSet
from kaip.spec.kinds import registry_reference


async def dry_run(controller: Controller, specs: SpecSet) -> list[dict[str, Any]]:
    """One entry per document: kind, name, revision, current, action, message and diff."""
    out: list[dict[str, Any]] = []
    for doc in specs.documents:
        resource = doc.resource
        kind, name = resource.kind, resource.metadata.name
        if not isinstance(resource, Model | App):
            said = (
                "runs once per spec revision"
                if kind == "TrainingJob"
                else "skipped (not run locally)"
            )
            out.append(_entry(kind, name, None, None, "skip", said, ""))
            continue
        if isinstance(resource, Model) and registry_reference(resource.spec.artifact.uri):
            try:
                version = controller._resolve(resource)
            except KaipError as exc:
                out.append(_entry(kind, name, None, None, "wait", exc.message, ""))
                continue
            assert version is not None
            refusal = controller._quality(resource, version)
            if refusal is not None:
                said = f"{version.describe()} would be refused by the quality gate: {refusal}"
                out.append(_entry(kind, name, None, None, "refuse", said, ""))
                continue
            model = pin_version(resource, version)
            pinned = Pinned(model, revision_id(model), version.digest)
        else:
            base_dir = Path(doc.path).resolve().parent
            pinned = await asyncio.to_thread(
                functools.partial(pin, keep=False),
                resource,
                base_dir,
                controller.config.remote_pinning,
            )
        new, new_json = pinned.revision, canonical_spec_json(pinned.resource)
        run = controller.resources.get(name)
        stable = run.stable.revision if run is not None else controller.state.stable(kind, name)
        canary = run.canary.revision if run is not None and run.canary is not None else None
        strategy = pinned.resource.spec.rollout.strategy
        if stable is None:
            action, said = "create", f"would be created at revision {new}"
        elif canary == new:
            action, said = "unchanged", f"revision {new} is already rolling out"
        elif new == stable and canary is not None:
            action, said = "abort", f"would abort the rollout of {canary}, back to {new}"
        elif new == stable:
            action, said = "unchanged", f"unchanged at revision {new}"
        else:
            action, said = "rollout", f"would roll out revision {new} ({strategy}) over {stable}"
            if canary is not None:
                said += f", superseding the rollout of {canary}"
        current = canary or stable
        record = controller.state.revision(kind, name, current) if current else None
        old_json = record.spec_json if record is not None else None
        diff = spec_diff(
            old_json, new_json, f"{kind}/{name}@{current or 'none'}", f"{kind}/{name}@{new}"
        )
        out.append(_entry(kind, name, new, current, action, said, diff))
    return out


def _entry(
    kind: str,
    name: str,
    revision: str | None,
    current: str | None,
    action: str,
    said: str,
    diff: str,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "name": name,
        "revision": revision,
        "current": current,
        "action": action,
        "message": f"{kind} {name}: {said}",
        "diff": diff,
    }


__all__ = ["dry_run"]
