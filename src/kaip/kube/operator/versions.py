"""Registered versions on a cluster: a TrainingJob's output registered, a Model pinned to one.

The rules the operator follows (the same as ``kaip up``'s, :mod:`kaip.local.controller.delivery`):

* **Registration.** When a TrainingJob's Job succeeds and the job has ``output``, its output
  (``s3://BUCKET/KEY``: the only place a pod can leave an artifact for others) is read once
  through :func:`kaip.registry.outputs.local_copy` -- bounded in size and time, hashed on the
  way, as the model server reads artifacts -- and registered as the next version of
  ``output.model`` (else of the job's name) in the operator's registry: MLflow, configured with
  ``KAIP_REGISTRY__BACKEND=mlflow`` and ``KAIP_REGISTRY__MLFLOW_URI``. The bytes that were
  hashed are stored once more at a content-addressed key beside the output
  (:func:`kaip.registry.outputs.keep`): that object is the version's source, so the next run
  writing the same ``output.uri`` changes no version. The version is tagged with its sha256,
  size and format, with the job and run (the Job's name) that made it, and with the metrics and
  parameters the job reported in its pod's termination message (:mod:`.job_report`); it is
  written in the TrainingJob's ``status.output``. A Job registers at most one version: the
  registry is asked first whether its run already did (an operator that died between
  registering and writing the status).
* **Pinning.** A Model whose ``artifact.uri`` is ``models:/NAME@latest`` or an alias is pinned,
  at every pass, to the version the selector names now (``models:/NAME/N`` and its sha256), so a
  newly registered version is a new revision that goes through the Model's rollout. With
  ``promotion: manual`` the version the stable revision serves is kept until the spec changes.
  The registry is asked at most once every :data:`FOLLOW_SECONDS` per Model.
* **Quality gate.** A version whose run's metrics (in MLflow) fail ``qualityGate`` is not
  pinned: the stable revision's version stays, and :class:`Pinned` says which version was
  refused and why (the Model's ``status.refused``, an Event ``VersionRefused``); with none, the
  Model waits for a better one and its conditions say why.
* **Fetching.** A revision's pods read the pinned version from its source (``s3://`` or
  ``http(s)://``) with the init container every remote artifact uses, and verify its sha256.
* **Lineage.** Each pinned revision's ``source`` -- ``{job, run, version, digest}`` -- is read
  from the registry (a version never changes: each is read once per operator).

kaip's embedded registry (``registry://``) lives in one machine's state directory: a Model on a
cluster that names it is refused with what to use instead. Blocking: the operator's passes run
on worker threads.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from kaip.errors import ConfigError, RegistryError
from kaip.policy import judge_quality
from kaip.registry import ModelVersion, Registration, pin_version
from kaip.registry.mlflow_backend import MlflowRegistry
from kaip.registry.outputs import keep, local_copy
from kaip.serving.artifacts import fetch_limits, sha256_file
from kaip.settings import Settings
from kaip.spec import Model, TrainingJob
from kaip.spec.kinds import mlflow_reference
from kaip.training import FinalReport

FOLLOW_SECONDS: Final = 1.0
FETCHABLE: Final = ("s3://", "https://", "http://")
_SET_MLFLOW: Final = (
    "set KAIP_REGISTRY__BACKEND=mlflow and KAIP_REGISTRY__MLFLOW_URI in the operator's "
    "environment (chart values registry.mlflowUri)"
)


class ClusterRegistry(Protocol):
    """What the operator asks of its registry (:class:`MlflowRegistry` implements it)."""

    def register(self, registration: Registration) -> ModelVersion: ...

    def resolve(self, name: str, selector: str) -> ModelVersion: ...

    def registered_by(self, name: str, run_name: str) -> ModelVersion | None: ...


def lineage(version: ModelVersion) -> dict[str, Any]:
    """``status.revisions[].source`` of a revision serving ``version``."""
    source: dict[str, Any] = {"version": version.reference, "digest": version.digest}
    if version.job:
        source["job"] = version.job
    run = version.run_name or (str(version.run_id) if version.run_id is not None else None)
    if run:
        source["run"] = run
    return source


@dataclass(frozen=True)
class Pinned:
    """A Model pinned to a version, and the newer version the quality gate refused, if any."""

    model: Model
    refused: dict[str, str] | None = None
    """``{version: models:/NAME/N, reason}`` (the Model's ``status.refused``)."""


@dataclass
class ClusterVersions:
    """The operator's registry, opened on first use; shared by every pass (thread-safe)."""

    settings: Settings
    clock: Callable[[], float] = field(default=time.monotonic)
    _registry: ClusterRegistry | None = field(default=None, repr=False)
    _pinned: dict[str, ModelVersion] = field(default_factory=dict, repr=False)
    """Versions by ``models:/NAME/N``: a version never changes, so each is read once."""
    _followed: dict[tuple[str, str], tuple[float, ModelVersion]] = field(
        default_factory=dict, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def registry(self, why: str) -> ClusterRegistry:
        with self._lock:
            if self._registry is None:
                if self.settings.registry.backend != "mlflow":
                    raise ConfigError(f"{why} needs a model registry on the cluster: {_SET_MLFLOW}")
                self._registry = MlflowRegistry.open(self.settings.registry.mlflow_uri)
            return self._registry

    # -- TrainingJobs --

    def register_output(
        self, job: TrainingJob, run: str, report: FinalReport | None = None
    ) -> ModelVersion:
        """Register what ``run`` (the Job that succeeded) wrote, with what it ``report``-ed;
        the version it already registered if it did. ConfigError for what waits for a change,
        RegistryError or ArtifactError for what may pass (a store or registry not answering)."""
        report = report or FinalReport()
        output = job.spec.output
        assert output is not None
        where = f"TrainingJob {job.metadata.name}: output.uri"
        if not output.uri.startswith("s3://"):
            raise ConfigError(
                f"{where} is {output.uri!r}; a Job on a cluster shares its artifact through "
                "object storage: write s3://BUCKET/KEY (the job is told it as KAIP_OUTPUT_URI)"
            )
        registry = self.registry(f"TrainingJob {job.metadata.name}'s output")
        name = output.model or job.metadata.name
        self._forget_followed(name)  # the next pass over a Model reads the registry again
        done = registry.registered_by(name, run)
        if done is not None:
            return done
        limits = fetch_limits(self.settings.serving)
        with tempfile.TemporaryDirectory(prefix="kaip-output-") as scratch:
            path = local_copy(output.uri, Path(scratch), limits)
            digest, size = sha256_file(path), path.stat().st_size
            source = keep(path, output.uri, digest)
        version = registry.register(
            Registration(
                name=name,
                path=None,
                format=output.format,
                source_uri=source,
                digest=digest,
                size=size,
                metrics=dict(report.metrics),
                params=dict(report.params),
                job=job.metadata.name,
                run_name=run,
            )
        )
        self._forget_followed(name)
        return version

    def _forget_followed(self, name: str) -> None:
        with self._lock:
            for key in [k for k in self._followed if k[0] == name]:
                del self._followed[key]

    # -- Models --

    def pin(self, model: Model, stable_spec: Mapping[str, Any] | None, changed: bool) -> Pinned:
        """``model`` pinned to the version its artifact selects (itself when it names none).

        ``stable_spec`` is the spec the stable revision runs; ``changed`` says whether the
        Model's spec changed since the last pass (what ``promotion: manual`` waits for).
        """
        uri = model.spec.artifact.uri
        if uri.startswith("registry://"):
            raise ConfigError(
                f"Model {model.metadata.name}: artifact.uri {uri} names kaip's embedded registry, "
                "which lives in one machine's state directory: on a cluster name an MLflow "
                f"version (models:/NAME@latest, models:/NAME/N) and {_SET_MLFLOW}"
            )
        reference = mlflow_reference(uri)
        if reference is None:
            return Pinned(model)
        name, selector = reference
        kept = _stable_version(stable_spec, name)
        if model.spec.promotion == "manual" and kept is not None and not changed:
            selector = kept
        registry = self.registry(f"Model {model.metadata.name}'s artifact {uri}")
        if selector.isdigit():
            return Pinned(pin_version(model, self.version(name, selector)))
        now = self.clock()
        with self._lock:
            cached = self._followed.get((name, selector))
        if cached is not None and now - cached[0] < FOLLOW_SECONDS:
            version = cached[1]
        else:
            version = registry.resolve(name, selector)
            with self._lock:
                self._followed[(name, selector)] = (now, version)
                self._pinned.setdefault(version.reference, version)
        verdict = judge_quality(model.spec.quality_gate, version.metrics)
        if not verdict.passed:
            if kept is not None and kept != str(version.version):
                refused = {"version": version.reference, "reason": verdict.reason[:1024]}
                return Pinned(pin_version(model, self.version(name, kept)), refused)
            if kept is None:
                raise RegistryError(
                    f"Model {model.metadata.name}: {version.describe()} is refused by the "
                    f"quality gate ({verdict.reason}) and no earlier version serves"
                )
        return Pinned(pin_version(model, version))

    def version(self, name: str, number: str) -> ModelVersion:
        reference = f"models:/{name}/{number}"
        with self._lock:
            known = self._pinned.get(reference)
        if known is not None:
            return known
        version = self.registry(reference).resolve(name, number)
        with self._lock:
            self._pinned[reference] = version
        return version

    def pinned(self, model: Model) -> ModelVersion | None:
        """The version a pinned ``model`` (``models:/NAME/N``) serves; None for other URIs."""
        reference = mlflow_reference(model.spec.artifact.uri)
        if reference is None or not reference[1].isdigit():
            return None
        return self.version(*reference)

    def fetchable(self, model: Model) -> Model:
        """``model`` as its pods read it: a pinned version's source in place of its
        ``models:/`` URI (the sha256 stays, so the pods verify the bytes)."""
        version = self.pinned(model)
        if version is None:
            return model
        if not version.storage_uri.startswith(FETCHABLE):
            raise ConfigError(
                f"Model {model.metadata.name}: {version.describe()} is stored at "
                f"{version.storage_uri}, which a pod cannot fetch: register versions whose "
                "source is in object storage (s3://) or at an http(s):// URL"
            )
        artifact = model.spec.artifact.model_copy(
            update={"uri": version.storage_uri, "sha256": version.digest}
        )
        spec = model.spec.model_copy(update={"artifact": artifact})
        return model.model_copy(update={"spec": spec})


def _stable_version(stable_spec: Mapping[str, Any] | None, name: str) -> str | None:
    """The version number of ``name`` the stable revision's spec is pinned to, if it is."""
    artifact = (stable_spec or {}).get("artifact")
    if not isinstance(artifact, Mapping):
        return None
    reference = mlflow_reference(str(artifact.get("uri", "")))
    if reference is None or reference[0] != name or not reference[1].isdigit():
        return None
    return reference[1]
