"""MLflow's model registry as kaip's registry: ``models:/NAME/VERSION`` and ``models:/NAME@ALIAS``.

Implements :class:`~kaip.registry.records.Registry` with MLflow's own client (``mlflow-skinny``,
``pip install 'kaip[mlflow]'``) against one tracking server (``KAIP_REGISTRY__MLFLOW_URI``, else
MLflow's ``MLFLOW_TRACKING_URI``; credentials the MLflow way). Registering a run's output:

1. an MLflow run in experiment ``kaip`` named ``JOB-RUN``, tagged ``kaip.job``, ``kaip.run`` and
   ``mlflow.source.git.commit``, with the run's parameters and metrics;
2. the artifact file logged under ``kaip-artifact/`` (through the server's artifact proxy when
   it has one, so the server's artifact store, S3 say, holds the bytes);
3. a model version of NAME from that run's ``kaip-artifact/FILE``, tagged ``kaip.sha256``,
   ``kaip.format`` and ``kaip.size``: the digest a kaip revision pins and every download is
   checked against.

``latest`` is the newest version, as in ``registry://NAME@latest``; other selectors are version
numbers or MLflow aliases (stages are deprecated there since 2.9). A version registered outside
kaip has no ``kaip.sha256`` tag: its digest is computed from a download. Every client failure
becomes a :class:`~kaip.errors.RegistryError` naming the server. Blocking calls: callers in an
event loop run them in a thread.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from kaip.errors import RegistryError
from kaip.registry.records import LATEST, ModelVersion, Registration, check_alias
from kaip.serving.artifacts import sha256_file

EXPERIMENT = "kaip"
ARTIFACT_PATH = "kaip-artifact"
MAX_VERSIONS = 1000
"""Versions of one model read per listing (MLflow pages; kaip reads one page)."""


class MlflowRegistry:
    """A tracking server's model registry, through ``mlflow.MlflowClient``."""

    kind = "mlflow"

    def __init__(self, client: Any, tracking_uri: str) -> None:
        self.client = client
        self.tracking_uri = tracking_uri

    @classmethod
    def open(cls, tracking_uri: str | None) -> MlflowRegistry:
        try:
            import mlflow
        except ImportError:
            raise RegistryError(
                "the MLflow registry needs MLflow's client: pip install 'kaip[mlflow]'"
            ) from None
        uri = tracking_uri or str(mlflow.get_tracking_uri())
        if not uri.startswith(("http://", "https://")):
            raise RegistryError(
                f"the MLflow registry needs a tracking server, not {uri!r}: set "
                "KAIP_REGISTRY__MLFLOW_URI (or MLFLOW_TRACKING_URI) to its http(s):// URL"
            )
        return cls(mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri), uri)

    def close(self) -> None:
        """Nothing to close: the client holds no connection between calls."""

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as exc:
            raise RegistryError(f"MLflow at {self.tracking_uri}: {what}: {exc.message}") from None
        except OSError as exc:
            raise RegistryError(f"MLflow at {self.tracking_uri}: {what}: {exc}") from None

    def names(self) -> list[str]:
        with self._errors("listing registered models"):
            found = self.client.search_registered_models(max_results=MAX_VERSIONS)
        return sorted(str(m.name) for m in found)

    def register(self, registration: Registration) -> ModelVersion:
        from mlflow.entities import Metric, Param

        source_uri = registration.source_uri
        if registration.path is not None:
            path: Path | None = registration.path
            digest, size = sha256_file(registration.path), registration.path.stat().st_size
        elif source_uri and registration.digest and registration.size is not None:
            path, digest, size = None, registration.digest, registration.size
        else:
            raise RegistryError(
                f"MLflow at {self.tracking_uri}: registering {registration.name} needs the "
                "artifact as a local file to log, or its object-store URI with its digest"
            )
        name = registration.name
        run_tag = registration.run_name or str(registration.run_id or "")
        with self._errors(f"registering a version of {name}"):
            experiment = self.client.get_experiment_by_name(EXPERIMENT)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(EXPERIMENT)
            )
            tags = {"kaip.job": registration.job or "", "kaip.run": run_tag}
            if registration.source_commit:
                tags["mlflow.source.git.commit"] = registration.source_commit
            run_name = registration.run_name or (
                f"{registration.job or name}-{registration.run_id or 'manual'}"
            )
            run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
            run_id = run.info.run_id
            now = int(time.time() * 1000)
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, v, now, 0) for k, v in sorted(registration.metrics.items())],
                params=[Param(k, str(v)[:6000]) for k, v in sorted(registration.params.items())],
            )
            if path is not None:
                self.client.log_artifact(run_id, str(path), ARTIFACT_PATH)
                source = f"{run.info.artifact_uri}/{ARTIFACT_PATH}/{path.name}"
            else:
                assert source_uri is not None
                source = source_uri  # where the job wrote it: pods fetch it from there
            self.client.set_terminated(run_id)
            if not self.client.search_registered_models(f"name = '{_quote(name)}'"):
                self.client.create_registered_model(name, tags={"kaip.managed": "true"})
            version = self.client.create_model_version(
                name,
                source=source,
                run_id=run_id,
                tags={
                    "kaip.sha256": digest,
                    "kaip.format": registration.format,
                    "kaip.size": str(size),
                    "kaip.run": run_tag,
                },
            )
        return self._convert(version)

    def registered_by(self, name: str, run_name: str) -> ModelVersion | None:
        """The version of ``name`` that run ``run_name`` registered, if it did (so a run that
        registered and then lost its record is not registered twice)."""
        query = f"name = '{_quote(name)}' and tag.`kaip.run` = '{_quote(run_name)}'"
        with self._errors(f"looking for the version run {run_name} registered"):
            found = list(self.client.search_model_versions(query, max_results=1))
        return self._convert(found[0]) if found else None

    def versions(self, name: str) -> list[ModelVersion]:
        with self._errors(f"listing the versions of {name}"):
            found = self._search(name)
        return sorted((self._convert(v) for v in found), key=lambda v: v.version)

    def resolve(self, name: str, selector: str) -> ModelVersion:
        with self._errors(f"resolving {name}@{selector}"):
            if selector == LATEST:
                found = self._search(name)
                if not found:
                    raise RegistryError(
                        f"MLflow at {self.tracking_uri} has no version of model {name!r}"
                        f"{self._known()}"
                    )
                version = max(found, key=lambda v: int(v.version))
            elif selector.isdigit():
                version = self.client.get_model_version(name, selector)
            else:
                version = self.client.get_model_version_by_alias(name, selector)
        return self._convert(version)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        check_alias(alias)
        with self._errors(f"pointing {name}@{alias} at version {version}"):
            self.client.set_registered_model_alias(name, alias, str(version))

    def local_path(self, version: ModelVersion, cache_dir: Path) -> Path:
        """The version's file in ``cache_dir/sha256/DIGEST/``, downloaded once and verified."""
        target = cache_dir / "sha256" / version.digest / (Path(version.storage_uri).name or "a")
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryDirectory(prefix=".mlflow-", dir=target.parent) as tmp:
            downloaded = self._download(version, Path(tmp))
            got = sha256_file(downloaded)
            if got != version.digest:
                raise RegistryError(
                    f"{version.describe()}: MLflow at {self.tracking_uri} served bytes with "
                    f"sha256 {got}, not the registered {version.digest}: refusing them"
                )
            shutil.move(downloaded, target)
        return target

    def _download(self, version: ModelVersion, into: Path) -> Path:
        from mlflow.artifacts import download_artifacts

        with self._errors(f"downloading {version.reference}"):
            local = Path(
                download_artifacts(
                    artifact_uri=version.storage_uri,
                    dst_path=str(into),
                    tracking_uri=self.tracking_uri,
                )
            )
        if local.is_dir():
            files = sorted(p for p in local.rglob("*") if p.is_file())
            if len(files) != 1:
                raise RegistryError(
                    f"{version.describe()}: {version.storage_uri} holds {len(files)} files; "
                    "kaip serves a version whose source is one file"
                )
            local = files[0]
        return local

    def _search(self, name: str) -> list[Any]:
        return list(
            self.client.search_model_versions(f"name = '{_quote(name)}'", max_results=MAX_VERSIONS)
        )

    def _known(self) -> str:
        try:
            names = self.names()
        except RegistryError:
            return ""
        return f" (registered models: {', '.join(names[:10]) or 'none yet'})"

    def _convert(self, version: Any) -> ModelVersion:
        tags = dict(version.tags or {})
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        job, run_number, run_name, commit = None, None, None, None
        if version.run_id:
            with self._errors(f"reading run {version.run_id} of {version.name}"):
                run = self.client.get_run(version.run_id)
            metrics = {k: float(v) for k, v in run.data.metrics.items()}
            params = {k: str(v) for k, v in run.data.params.items()}
            job = run.data.tags.get("kaip.job") or None
            number = run.data.tags.get("kaip.run", "")
            run_number = int(number) if number.isdigit() else None
            run_name = None if number.isdigit() else (number or None)
            commit = run.data.tags.get("mlflow.source.git.commit")
        converted = ModelVersion(
            name=str(version.name),
            version=int(version.version),
            digest=tags.get("kaip.sha256", ""),
            format=tags.get("kaip.format", ""),
            size=int(tags.get("kaip.size", "0") or 0),
            storage_uri=str(version.source),
            created_at=float(version.creation_timestamp or 0) / 1000,
            metrics=metrics,
            params=params,
            source_commit=commit,
            job=job,
            run_id=run_number,
            run_name=run_name,
            aliases=tuple(sorted(getattr(version, "aliases", None) or ())),
            registry="mlflow",
        )
        if converted.digest:
            return converted
        with tempfile.TemporaryDirectory(prefix="kaip-mlflow-") as tmp:
            digest = sha256_file(self._download(converted, Path(tmp)))
        return replace(converted, digest=digest)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
