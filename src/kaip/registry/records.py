"""What the registry records, and the one Protocol every registry backend implements.

A **run** is one execution of a TrainingJob (all its attempts); a **version** is an artifact a
run produced, numbered per registered model name from 1, with its content digest, format, size,
the metrics and parameters the run reported, the commit the job's spec came from, and the job
and run that made it. **Aliases** (``champion``, ``staging``) name one version each, as MLflow's
aliases do (stages are deprecated there since 2.9). ``latest`` is the highest version.

Pure data and parsing; the backends (:mod:`.embedded`, :mod:`.mlflow_backend`) do the I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from kaip.errors import RegistryError
from kaip.spec import Model

RunStatus = Literal["running", "retrying", "succeeded", "failed", "cancelled", "interrupted"]
FINISHED: frozenset[RunStatus] = frozenset({"succeeded", "failed", "cancelled"})
LATEST = "latest"
_ALIAS = re.compile(r"^[A-Za-z][-A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model."""

    name: str
    version: int
    digest: str
    """sha256 of the artifact's bytes (hex)."""
    format: str
    size: int
    storage_uri: str
    """Where the bytes are: a file:// path in the content-addressed store, s3://, or MLflow's."""
    created_at: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    source_commit: str | None = None
    job: str | None = None
    run_id: int | None = None
    run_name: str | None = None
    """The run as named outside kaip's run store: the Kubernetes Job a cluster run was."""
    aliases: tuple[str, ...] = ()
    registry: str = "registry"
    """``registry`` (kaip's embedded one) or ``mlflow``."""

    @property
    def reference(self) -> str:
        """The pinned URI a Model's artifact takes to serve exactly this version."""
        if self.registry == "mlflow":
            return f"models:/{self.name}/{self.version}"
        return f"registry://{self.name}@{self.version}"

    def describe(self) -> str:
        run = self.run_id if self.run_id is not None else self.run_name
        made = f" from job {self.job} run {run}" if self.job else ""
        return f"{self.name} version {self.version} (sha256 {self.digest[:12]}{made})"


@dataclass(frozen=True)
class Registration:
    """What a run hands the registry to make a new version."""

    name: str
    path: Path | None
    """The artifact file on this machine (copied into the store), or None for ``source_uri``."""
    format: str
    source_uri: str | None = None
    """An artifact already in object storage (``s3://``): recorded where it is, not copied."""
    digest: str | None = None
    """The sha256 of ``source_uri``'s bytes (the caller read them to compute it)."""
    size: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    source_commit: str | None = None
    job: str | None = None
    run_id: int | None = None
    run_name: str | None = None
    """The run as named outside kaip's run store: the Kubernetes Job a cluster run was."""


class Registry(Protocol):
    """A model registry: kaip's embedded one, or MLflow's model registry."""

    kind: str
    """``registry`` or ``mlflow``: which URIs it answers (``registry://`` or ``models:/``)."""

    def register(self, registration: Registration) -> ModelVersion:
        """Store the artifact and record it as the next version of ``registration.name``."""
        ...

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first ([] for an unknown name)."""
        ...

    def resolve(self, name: str, selector: str) -> ModelVersion:
        """The version ``selector`` (``latest``, an alias, a number) names; else RegistryError."""
        ...

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` of ``name`` (moving it if it pointed elsewhere)."""
        ...

    def local_path(self, version: ModelVersion, cache_dir: Path) -> Path:
        """The artifact of ``version`` as a local file, fetched into ``cache_dir`` if need be."""
        ...

    def names(self) -> list[str]:
        """Every registered model's name, sorted."""
        ...

    def close(self) -> None:
        """Let go of what the registry holds open."""
        ...


def pin_version(model: Model, version: ModelVersion) -> Model:
    """``model`` with its artifact pinned to exactly ``version`` (URI and sha256)."""
    artifact = model.spec.artifact.model_copy(
        update={"uri": version.reference, "sha256": version.digest}
    )
    return model.model_copy(update={"spec": model.spec.model_copy(update={"artifact": artifact})})


def check_alias(alias: str) -> str:
    if alias == LATEST or alias.isdigit() or not _ALIAS.fullmatch(alias):
        raise RegistryError(
            f"{alias!r} cannot be an alias: use a letter, then letters, digits, '-' or '_' "
            "(not 'latest', which always means the newest version, nor a number)"
        )
    return alias


def split_reference(text: str) -> tuple[str, str]:
    """``NAME@SELECTOR`` (or ``NAME``, meaning latest) as ``(name, selector)``."""
    name, _, selector = text.partition("@")
    if not name:
        raise RegistryError(f"{text!r} names no model: write NAME, NAME@VERSION or NAME@ALIAS")
    return name, selector or LATEST
