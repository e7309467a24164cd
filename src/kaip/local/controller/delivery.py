"""Continuous delivery of models: a registered version becomes a revision, gated by quality.

The rules it follows:

* **Pinning.** A Model whose ``artifact.uri`` is ``registry://NAME@SELECTOR`` is run pinned to
  the version the selector names now: its revision's spec says ``registry://NAME@N`` with the
  version's ``sha256``, so a revision always means one artifact, the replicas verify the bytes
  they load, and a restarted ``kaip up`` serves the same version.
* **Following.** With ``promotion: auto`` (the default) and a selector that can move
  (``latest`` or an alias), the registry is read again about once a second; a newly selected
  version becomes a new revision and goes through the Model's rollout (canary steps and gates),
  as a ``kaip deploy`` would. ``promotion: manual`` waits for ``kaip deploy``/``kaip up``.
* **Waiting for a first version.** A Model that follows a registered name with no version yet,
  while a TrainingJob of the same spec registers under that name, waits (no replicas) and starts
  once a version that passes its gate appears; without such a job, a missing version is an error.
* **Quality gate.** Before a version becomes a revision, :func:`kaip.policy.judge_quality`
  checks the metrics its run reported against ``qualityGate``. A refused version stays
  registered but never gets a replica or a request; the refusal is a deployment event (once per
  version) and is not proposed again. With nothing serving yet and no job to wait for, a refused
  version is an error: there is nothing safe to serve.
* **Records.** Deployment events carry the version (``registry://NAME@N``), its digest and when
  it was registered, so lead time from a new artifact to 100 % traffic can be measured.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from kaip.errors import KaipError, PlatformError
from kaip.local.controller.revisions import Revisions
from kaip.local.controller.runtime import PendingModel, ResourceRun
from kaip.plan import revision_id
from kaip.policy import judge_quality
from kaip.registry import ModelVersion, pin_version
from kaip.spec import App, Model, SpecSet, TrainingJob
from kaip.spec.kinds import registry_reference

FOLLOW_SECONDS = 1.0
REGISTRY_WHO = "kaip (registry)"


class Delivery(Revisions):
    """Registered versions delivered as revisions; the controller provides the attributes below."""

    pending: dict[str, PendingModel]

    def wake(self, _name: str = "") -> None:
        raise NotImplementedError  # the controller's

    def _follows(self, model: Model) -> tuple[str, str] | None:
        reference = registry_reference(model.spec.artifact.uri)
        if reference is None or reference[1].isdigit():
            return None
        return reference

    def _refused_before(self, name: str, version: ModelVersion) -> bool:
        return any(
            e.action == "deploy"
            and e.outcome == "refused"
            and e.artifact_version == version.reference
            for e in self.state.events(limit=200, names=[name])
        )

    def _refuse(self, run_name: str, version: ModelVersion, reason: str, who: str) -> str:
        line = f"Model {run_name}: {version.describe()} refused by the quality gate: {reason}"
        if not self._refused_before(run_name, version):
            self._event(
                "Model", run_name, "deploy", f"refused {version.reference}", who, "refused",
                None, detail=reason, version=version,
            )  # fmt: skip
            self.report(line)
        return line

    def _quality(self, model: Model, version: ModelVersion) -> str | None:
        """None when ``version`` passes ``model``'s quality gate, else why not."""
        verdict = judge_quality(model.spec.quality_gate, version.metrics)
        return None if verdict.passed else verdict.reason

    async def _follow(self, run: ResourceRun, now: float) -> None:
        """Roll out the version a moving selector names now, if it is new and passes."""
        declared = run.declared
        if (
            run.follow is None
            or declared is None
            or declared.spec.promotion == "manual"
            or self.registry is None
            or now < run.next_follow_at
        ):
            return
        run.next_follow_at = now + FOLLOW_SECONDS
        try:
            version = await asyncio.to_thread(self.registry.resolve, *run.follow)
        except KaipError:
            return
        current = run.current.version
        if current is not None and (current.name, current.version) == (
            version.name,
            version.version,
        ):
            return
        if version.version in run.refused:
            return
        reason = self._quality(declared, version)
        if reason is not None:
            run.refused.add(version.version)
            self._refuse(run.name, version, reason, REGISTRY_WHO)
            return
        self.report(f"Model {run.name}: {version.describe()} is new in the registry")
        await self._deliver(pin_version(declared, version), version, run)

    def registered(self, version: ModelVersion) -> None:
        """A run just registered ``version``: look at the registry again now."""
        for run in self.resources.values():
            if run.follow is not None and run.follow[0] == version.name:
                run.next_follow_at = 0.0
        self.wake()

    async def _refuse_at_apply(
        self,
        model: Model,
        version: ModelVersion,
        reason: str,
        who: str,
        source: Path,
        feeder: str | None,
    ) -> list[str]:
        """The selected version fails the gate: keep serving the stable revision, if any."""
        name = model.metadata.name
        run = self.resources.get(name)
        stable_id = self.state.stable("Model", name) if run is None else None
        lines = [self._refuse(name, version, reason, who)]
        if run is None and stable_id is None:
            if feeder is None:
                raise PlatformError(
                    f"Model {name}: nothing to serve: {model.spec.artifact.uri} is "
                    f"{version.describe()}, refused by the quality gate ({reason}); register a "
                    "version that passes, or point artifact.uri at one (registry://NAME@N)"
                )
            self.pending[name] = PendingModel(model, source, feeder, refused={version.version})
            lines.append(f"Model {name}: waiting for a version that passes its quality gate")
            return lines
        if run is None and stable_id is not None:
            stable = self._restore("Model", name, stable_id)
            lines.append(await self._apply_one("Model", name, stable, who, None))
        run = self.resources[name]
        run.refused.add(version.version)
        run.declared, run.follow = model, self._follows(model)
        return lines

    def _feeder(self, resource: Model | App, specs: SpecSet) -> str | None:
        """The TrainingJob of ``specs`` that registers the versions ``resource`` follows."""
        if not isinstance(resource, Model) or self._follows(resource) is None:
            return None
        reference = registry_reference(resource.spec.artifact.uri)
        for doc in specs.of_kind("TrainingJob"):
            job = doc.resource
            if isinstance(job, TrainingJob) and job.spec.output is not None:
                registered = job.spec.output.model or job.metadata.name
                if reference is not None and registered == reference[0]:
                    return job.metadata.name
        return None

    def _wait_for_first(self, model: Model, source: Path, feeder: str, why: str) -> str:
        name = model.metadata.name
        if name in self.resources:
            raise PlatformError(f"Model {name}: {why}")
        self.pending[name] = PendingModel(model, source, feeder)
        return (
            f"Model {name}: waiting for its first version ({model.spec.artifact.uri}), which "
            f"TrainingJob {feeder} registers"
        )

    async def _adopt_pending(self, now: float) -> None:
        """Start a waiting Model once a version that passes its gate is registered."""
        for name, pending in list(self.pending.items()):
            if now < pending.next_look_at:
                continue
            pending.next_look_at = now + 1.0
            try:
                version = await asyncio.to_thread(self._resolve, pending.declared)
            except KaipError:
                continue
            if version is None or version.version in pending.refused:
                continue
            reason = self._quality(pending.declared, version)
            if reason is not None:
                pending.refused.add(version.version)
                self._refuse(name, version, reason, "kaip (registry)")
                continue
            del self.pending[name]
            model = pin_version(pending.declared, version)
            revision = revision_id(model)
            self._record_revision(model, revision, pending.source)
            try:
                await self._fetch(version)
            except KaipError as exc:
                self.report(f"Model {name}: {exc.message}")
                continue
            new = self._revision_run(model, revision, pending.source, version)
            self.report(await self._apply_one("Model", name, new, "kaip (registry)", None))
            run = self.resources[name]
            run.declared, run.follow = pending.declared, self._follows(pending.declared)

    def _feeds(self, job: TrainingJob, specs: SpecSet) -> list[str]:
        """A warning when the job feeds a Model of this spec that does not read the registry."""
        output = job.spec.output
        if output is None or output.model is None:
            return []
        target = specs.find("Model", output.model)
        if target is None or not isinstance(target.resource, Model):
            return []
        reference = registry_reference(target.resource.spec.artifact.uri)
        if reference is not None and reference[0] == output.model:
            return []
        return [
            f"TrainingJob {job.metadata.name}: feeds Model {output.model}, but its artifact.uri "
            f"is {target.resource.spec.artifact.uri!r}: the versions the job registers are "
            f"served once it reads registry://{output.model}@latest"
        ]

    async def _deliver(self, model: Model, version: ModelVersion, run: ResourceRun) -> None:
        revision = revision_id(model)
        self._record_revision(model, revision, run.current.source)
        await self._fetch(version)
        new = self._revision_run(model, revision, run.current.source, version)
        await self._apply_one("Model", run.name, new, "kaip (registry)", None)
