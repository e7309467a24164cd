"""The record of training runs, in ``registry.db``: the first link of every version's lineage.

A run is created when a TrainingJob starts (under ``kaip up`` or ``kaip train``) and updated by
whoever runs it: its attempt, progress, exit code and message, the metrics and parameters it
reported, and the version it registered. ``kaip jobs`` reads it without any ``kaip up`` running.
A run whose recorded process is gone while its status still says running was interrupted (its
runner died); the next runner of the same job revision resumes it. Never starts processes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kaip.registry.database import transaction
from kaip.registry.records import RunStatus


@dataclass(frozen=True)
class RunRecord:
    id: int
    job: str
    revision: str
    """The revision of the TrainingJob's spec this run executes."""
    spec_path: str
    status: RunStatus
    attempt: int
    max_retries: int
    progress: float | None
    exit_code: int | None
    message: str
    started_at: float
    finished_at: float | None
    updated_at: float
    commit_sha: str | None
    log_path: str
    checkpoint_dir: str | None
    resumed_from: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    version_name: str | None = None
    version: int | None = None
    pid: int | None = None
    cmdline: str | None = None
    """Only in records of a kaip before ``start_ticks``; compared when that is missing."""
    start_ticks: int | None = None
    """When the attempt's process started (clock ticks after boot), naming it with ``pid``."""


_COLUMNS = frozenset(RunRecord.__dataclass_fields__) - {"id"}


class RunStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def start(
        self,
        *,
        job: str,
        revision: str,
        spec_path: str,
        max_retries: int,
        log_path: str,
        checkpoint_dir: str | None,
        commit_sha: str | None,
    ) -> RunRecord:
        now = time.time()
        with transaction(self.db):
            cursor = self.db.execute(
                "INSERT INTO runs (job, revision, spec_path, status, attempt, max_retries,"
                " started_at, updated_at, commit_sha, log_path, checkpoint_dir)"
                " VALUES (?, ?, ?, 'running', 1, ?, ?, ?, ?, ?, ?)",
                (job, revision, spec_path, max_retries, now, now, commit_sha, log_path,
                 checkpoint_dir),
            )  # fmt: skip
            run_id = int(cursor.lastrowid or 0)
            # The log file is named after the run, which only now has its number.
            self.db.execute(
                "UPDATE runs SET log_path = replace(log_path, '{run}', ?) WHERE id = ?",
                (str(run_id), run_id),
            )
        record = self.get(run_id)
        assert record is not None
        return record

    def update(self, run_id: int, **values: Any) -> RunRecord:
        unknown = set(values) - _COLUMNS
        if unknown:
            raise ValueError(f"runs has no column {sorted(unknown)}")
        values["updated_at"] = time.time()
        for key in ("metrics", "params"):
            if key in values:
                values[key] = json.dumps(dict(values[key]), sort_keys=True)
        assignments = ", ".join(f"{key} = ?" for key in values)
        self.db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values.values(), run_id))
        record = self.get(run_id)
        assert record is not None
        return record

    def get(self, run_id: int) -> RunRecord | None:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _record(row)

    def latest(self, job: str, revision: str | None = None) -> RunRecord | None:
        """The newest run of ``job`` (of that spec revision, when given)."""
        if revision is None:
            row = self.db.execute(
                "SELECT * FROM runs WHERE job = ? ORDER BY id DESC LIMIT 1", (job,)
            ).fetchone()
        else:
            row = self.db.execute(
                "SELECT * FROM runs WHERE job = ? AND revision = ? ORDER BY id DESC LIMIT 1",
                (job, revision),
            ).fetchone()
        return None if row is None else _record(row)

    def list(self, job: str | None = None, limit: int = 50) -> list[RunRecord]:
        """The newest runs first (of ``job`` only, when given)."""
        if job is None:
            rows = self.db.execute(
                "SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self.db.execute(
                "SELECT * FROM runs WHERE job = ? ORDER BY id DESC LIMIT ?", (job, limit)
            ).fetchall()
        return [_record(r) for r in rows]


def _record(row: sqlite3.Row) -> RunRecord:
    data: dict[str, Any] = dict(row)
    data["metrics"] = json.loads(data["metrics"])
    data["params"] = json.loads(data["params"])
    return RunRecord(**data)
