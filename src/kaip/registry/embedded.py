"""kaip's own model registry: versions and aliases in ``registry.db``, bytes in the store.

Implements :class:`~kaip.registry.records.Registry` for ``registry://NAME@SELECTOR`` URIs.
Version numbers are allocated inside one ``BEGIN IMMEDIATE`` transaction, so two runs finishing
at once (``kaip train`` beside ``kaip up``) get different numbers. Never starts processes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from kaip.errors import RegistryError
from kaip.registry.database import connect, transaction
from kaip.registry.records import LATEST, ModelVersion, Registration, check_alias
from kaip.registry.store import ArtifactStore

ARTIFACTS_DIR = "registry/artifacts"


class EmbeddedRegistry:
    """The registry under ``state_dir``: ``registry.db`` and ``registry/artifacts/``."""

    kind = "registry"

    def __init__(self, db: sqlite3.Connection, store: ArtifactStore) -> None:
        self.db = db
        self.store = store

    @classmethod
    def open(cls, state_dir: Path) -> EmbeddedRegistry:
        return cls(connect(state_dir), ArtifactStore(state_dir / ARTIFACTS_DIR))

    def close(self) -> None:
        self.db.close()

    def register(self, registration: Registration) -> ModelVersion:
        if registration.path is not None:
            digest, size, stored = self.store.put(registration.path)
            storage_uri = stored.resolve().as_uri()
        elif registration.source_uri and registration.digest and registration.size is not None:
            digest, size, storage_uri = (
                registration.digest,
                registration.size,
                registration.source_uri,
            )
        else:
            raise RegistryError("a registration needs a local file, or a URI with its digest")
        now = time.time()
        with transaction(self.db):
            row = self.db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM versions WHERE name = ?",
                (registration.name,),
            ).fetchone()
            number = int(row[0]) + 1
            self.db.execute(
                "INSERT INTO versions (name, version, digest, format, size, storage_uri,"
                " created_at, metrics, params, source_commit, job, run_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    registration.name,
                    number,
                    digest,
                    registration.format,
                    size,
                    storage_uri,
                    now,
                    json.dumps(dict(registration.metrics), sort_keys=True),
                    json.dumps(dict(registration.params), sort_keys=True),
                    registration.source_commit,
                    registration.job,
                    registration.run_id,
                ),
            )
        return self.resolve(registration.name, str(number))

    def versions(self, name: str) -> list[ModelVersion]:
        rows = self.db.execute(
            "SELECT * FROM versions WHERE name = ? ORDER BY version", (name,)
        ).fetchall()
        aliases = self._aliases(name)
        return [self._version(row, aliases) for row in rows]

    def names(self) -> list[str]:
        rows = self.db.execute("SELECT DISTINCT name FROM versions ORDER BY name").fetchall()
        return [str(r[0]) for r in rows]

    def resolve(self, name: str, selector: str) -> ModelVersion:
        if selector == LATEST:
            row = self.db.execute(
                "SELECT * FROM versions WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
            ).fetchone()
            what = "no versions"
        elif selector.isdigit():
            row = self.db.execute(
                "SELECT * FROM versions WHERE name = ? AND version = ?", (name, int(selector))
            ).fetchone()
            what = f"no version {selector}"
        else:
            row = self.db.execute(
                "SELECT v.* FROM versions v JOIN aliases a ON a.name = v.name AND "
                "a.version = v.version WHERE a.name = ? AND a.alias = ?",
                (name, selector),
            ).fetchone()
            what = f"no alias {selector!r}"
        if row is None:
            known = self._known(name)
            raise RegistryError(f"the registry has {what} for model {name!r}{known}")
        return self._version(row, self._aliases(name))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        check_alias(alias)
        self.resolve(name, str(version))
        self.db.execute(
            "INSERT INTO aliases VALUES (?, ?, ?, ?) ON CONFLICT (name, alias) DO UPDATE SET "
            "version = excluded.version, updated_at = excluded.updated_at",
            (name, alias, version, time.time()),
        )

    def local_path(self, version: ModelVersion, cache_dir: Path) -> Path:
        if not version.storage_uri.startswith("file://"):
            raise RegistryError(
                f"{version.describe()} is stored at {version.storage_uri}, not on this machine"
            )
        path = Path(unquote(urlparse(version.storage_uri).path))
        if not path.is_file():
            raise RegistryError(f"{version.describe()}: its artifact {path} is missing")
        return path

    def _aliases(self, name: str) -> dict[int, list[str]]:
        by_version: dict[int, list[str]] = {}
        for row in self.db.execute(
            "SELECT alias, version FROM aliases WHERE name = ? ORDER BY alias", (name,)
        ):
            by_version.setdefault(int(row[1]), []).append(str(row[0]))
        return by_version

    def _known(self, name: str) -> str:
        versions = [int(r[0]) for r in self.db.execute(
            "SELECT version FROM versions WHERE name = ? ORDER BY version", (name,)
        )]  # fmt: skip
        if not versions:
            names = ", ".join(self.names()[:10]) or "none yet"
            return f" (registered models: {names}; a run registers one, see `kaip models`)"
        aliases = sorted({a for alist in self._aliases(name).values() for a in alist})
        alias_text = f", aliases {', '.join(aliases)}" if aliases else ""
        return f" (versions 1..{versions[-1]}{alias_text})"

    def _version(self, row: sqlite3.Row, aliases: dict[int, list[str]]) -> ModelVersion:
        data: dict[str, Any] = dict(row)
        return ModelVersion(
            name=data["name"],
            version=int(data["version"]),
            digest=data["digest"],
            format=data["format"],
            size=int(data["size"]),
            storage_uri=data["storage_uri"],
            created_at=float(data["created_at"]),
            metrics=json.loads(data["metrics"]),
            params=json.loads(data["params"]),
            source_commit=data["source_commit"],
            job=data["job"],
            run_id=data["run_id"],
            aliases=tuple(aliases.get(int(data["version"]), ())),
        )
