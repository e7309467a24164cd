"""Revisions of the local controller: build one from a spec, record it, apply it.

A mixin of :class:`~kaip.local.controller.loop.Controller`, split from it by responsibility. A
revision is an immutable snapshot of a resource's spec (a registry artifact pinned to one
version). :meth:`Revisions._apply_one` makes a new revision the stable one (first time), resumes
a rollout a restarted kaip left, or starts a rollout to it (superseding or aborting the one in
progress), and records the deployment event in the same transaction; the rollout itself is
:mod:`.rollouts`' job.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from kaip.errors import PlatformError, StorageError
from kaip.local.controller.rollouts import RolloutSteps
from kaip.local.controller.runtime import ControllerConfig, ResourceRun, RevisionRun, RolloutRun
from kaip.local.state import Commit, RevisionRecord
from kaip.local.supervisor import app_launch, model_launch, write_snapshot
from kaip.plan import canonical_spec_json
from kaip.registry import ModelVersion, Registry
from kaip.registry.backends import check_scheme
from kaip.spec import API_VERSION, KINDS, App, Model
from kaip.spec.kinds import registry_reference


class Revisions(RolloutSteps):
    """Revisions built, recorded and applied; the controller provides the attributes below."""

    config: ControllerConfig
    registry: Registry | None

    async def _apply_one(
        self, kind: str, name: str, new: RevisionRun, who: str, commit: Commit | None
    ) -> str:
        now, wall = self._clock(), self.state.now()
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
                            new.revision, commit=commit, version=new.version,
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
                run.rollout = RolloutRun(
                    active, active.step_index, started_at=now,
                    pre_rollout_passed=active.step_index > 0,
                )  # fmt: skip
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
                kind, name, run.stable.revision, new.revision, strategy, self.state.now()
            )
            self._event(
                kind, name, "deploy", change, who, "started", new.revision, detail=strategy,
                commit=commit, version=new.version,
            )  # fmt: skip
        if run.canary is not None:
            self._apply_finish(run, "superseded", f"{who} deployed {new.revision}")
        run.canary = new
        run.rollout = RolloutRun(record, 0, started_at=now, commit=commit)
        self._notify(run, "started", f"{who} deployed {new.revision} ({strategy})")
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
                created_at=self.state.now(),
            )
        )

    def _revision_run(
        self,
        resource: Model | App,
        revision: str,
        source: Path,
        version: ModelVersion | None = None,
    ) -> RevisionRun:
        """How ``revision`` runs; a pinned registry version is read from its stored file."""
        base_dir = source.resolve().parent
        url = self.config.gateway_url
        if isinstance(resource, Model):
            local_uri = None
            if registry_reference(resource.spec.artifact.uri) is not None:
                version = version or self._resolve(resource)
                assert version is not None and self.registry is not None
                cache = self.config.state_dir / "registry" / "cache"
                local_uri = self.registry.local_path(version, cache).resolve().as_uri()
            try:
                snapshot = write_snapshot(
                    self.config.state_dir / "revisions", resource, base_dir, revision, local_uri
                )
            except OSError as exc:
                raise StorageError(
                    f"cannot write the snapshot of revision {revision} under "
                    f"{self.config.state_dir / 'revisions'}: {exc.strerror or exc}"
                ) from None
            launch = model_launch(
                resource, revision, snapshot, base_dir, url, self.config.profile_token,
                traced_by_gateway=self.config.models_start_no_traces,
            )  # fmt: skip
        else:
            launch = app_launch(resource, revision, base_dir, url)
        return RevisionRun(revision, resource, source.resolve(), launch, version=version)

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

    async def _fetch(self, version: ModelVersion | None) -> None:
        """Bring ``version``'s artifact into the cache off the event loop (an MLflow download)."""
        if version is not None and self.registry is not None:
            cache = self.config.state_dir / "registry" / "cache"
            await asyncio.to_thread(self.registry.local_path, version, cache)

    def _resolve(self, model: Model) -> ModelVersion | None:
        """The registered version ``model``'s artifact names now, or None if not a registry's."""
        reference = registry_reference(model.spec.artifact.uri)
        if reference is None:
            return None
        if self.registry is None:
            raise PlatformError(
                f"Model {model.metadata.name}: {model.spec.artifact.uri} needs the model "
                "registry, which this kaip was started without"
            )
        check_scheme(model.spec.artifact.uri, self.registry, f"Model {model.metadata.name}")
        version = self.registry.resolve(*reference)
        if version.format and version.format != model.spec.artifact.format:
            raise PlatformError(
                f"Model {model.metadata.name}: {version.describe()} is format "
                f"{version.format!r}, but artifact.format says {model.spec.artifact.format!r}"
            )
        return version
