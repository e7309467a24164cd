"""The registry's SQLite file, ``registry.db`` in the state directory, and its schema.

Its own file rather than tables in the local platform's ``state.db``: the registry is a separate
owner (DESIGN.md puts it beside, not under, the local platform), used by ``kaip train`` and
``kaip models`` without any ``kaip up`` running and by the operator, which has no ``state.db``;
its schema is versioned on its own (``PRAGMA user_version``, :data:`MIGRATIONS`), and a registry
can be backed up or moved without the platform's rollout history. WAL mode lets ``kaip train``
register while ``kaip up`` reads. The file is created 0600 inside a 0700 directory (SQLite gives
its ``-wal`` and ``-shm`` files the same mode). Never starts processes or talks to the network.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from kaip.errors import RegistryError
from kaip.local.private import private_dir

REGISTRY_FILE = "registry.db"

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        digest TEXT NOT NULL,
        format TEXT NOT NULL,
        size INTEGER NOT NULL,
        storage_uri TEXT NOT NULL,
        created_at REAL NOT NULL,
        metrics TEXT NOT NULL DEFAULT '{}',
        params TEXT NOT NULL DEFAULT '{}',
        source_commit TEXT,
        job TEXT,
        run_id INTEGER,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE aliases (
        name TEXT NOT NULL,
        alias TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (name, alias)
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        revision TEXT NOT NULL,
        spec_path TEXT NOT NULL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1,
        max_retries INTEGER NOT NULL,
        progress REAL,
        exit_code INTEGER,
        message TEXT NOT NULL DEFAULT '',
        started_at REAL NOT NULL,
        finished_at REAL,
        updated_at REAL NOT NULL,
        commit_sha TEXT,
        log_path TEXT NOT NULL,
        checkpoint_dir TEXT,
        resumed_from TEXT,
        metrics TEXT NOT NULL DEFAULT '{}',
        params TEXT NOT NULL DEFAULT '{}',
        version_name TEXT,
        version INTEGER,
        pid INTEGER,
        cmdline TEXT
    );
    CREATE INDEX runs_by_job ON runs (job, id);
    """,
    # 2: an attempt's process is named by its start time; its command line reads empty while it
    # execs, so a record taken in that instant named nothing.
    "ALTER TABLE runs ADD COLUMN start_ticks INTEGER",
)
SCHEMA_VERSION = len(MIGRATIONS)


def connect(state_dir: Path) -> sqlite3.Connection:
    """Open (creating and upgrading as needed) ``state_dir/registry.db``."""
    private_dir(state_dir)
    path = state_dir / REGISTRY_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        db = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
    except (OSError, sqlite3.Error) as exc:
        raise RegistryError(f"cannot open the model registry {path}: {exc}") from None
    if version > SCHEMA_VERSION:
        db.close()
        raise RegistryError(
            f"{path} has schema version {version}, newer than this kaip knows "
            f"({SCHEMA_VERSION}): upgrade kaip"
        )
    for number in range(version, SCHEMA_VERSION):
        upgrade = f"{MIGRATIONS[number]}; PRAGMA user_version = {number + 1};"
        db.executescript(f"BEGIN IMMEDIATE; {upgrade} COMMIT;")
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (the connection is in autocommit)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
