"""The local platform's memory: one SQLite file under ``.kaip/``.

Owns every read and write of ``.kaip/state.db``: the revisions of each resource (with the spec
that made them and its digest), which revision is stable, rollouts with each step's verdict and
evidence, and deployment events (when, what changed, who, outcome, duration, the git commit and
the registered model version it carried) -- the raw data for deployment frequency, lead time,
change failure rate and time to restore. ``kaip up`` resumes from it after a restart.

The schema is versioned with ``PRAGMA user_version`` and upgraded by :data:`MIGRATIONS` in order.
Times are seconds since the epoch (wall clock): they outlive the process. The state is where
they are read: whoever records something asks :meth:`State.now`, the system clock unless the
state was opened with another :data:`WallClock` (:class:`FileClock`, for scripted delivery
histories). Never starts processes, never talks to the network, never imports the supervisor or
the gateway.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

from kaip.errors import PlatformError, StorageError
from kaip.local.private import make_private, open_private, private_dir

STATE_FILE = "state.db"

WallClock = Callable[[], float]
"""Seconds since the epoch: what :meth:`State.now` answers (``time.time`` unless told otherwise)."""

CLOCK_FILE_MAX_BYTES = 64


class FileClock:
    """A wall clock read from a file holding seconds since the epoch (``1800000000.5``).

    For delivery histories scripted through the real CLI (``KAIP_LOCAL__WALL_CLOCK_FILE``): a
    test writes the simulated time to the file before each step, and everything ``kaip up``
    records carries it. Read on every call; a file that cannot be read or parsed later keeps the
    last good time (it was checked once at start by :meth:`check`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last = self.check()

    def check(self) -> float:
        """The file's time now, or a PlatformError naming the file and what it must hold."""
        try:
            with self.path.open("rb") as handle:
                raw = handle.read(CLOCK_FILE_MAX_BYTES + 1)
        except OSError as exc:
            raise PlatformError(f"wall clock file {self.path}: {exc.strerror or exc}") from None
        try:
            if len(raw) > CLOCK_FILE_MAX_BYTES:
                raise ValueError
            value = float(raw.decode("ascii").strip())
            if not 0 <= value < 1e11:
                raise ValueError
        except ValueError:
            raise PlatformError(
                f"wall clock file {self.path}: expected seconds since the epoch such as "
                f"1800000000.5 (at most {CLOCK_FILE_MAX_BYTES} bytes), found {raw[:40]!r}"
            ) from None
        return value

    def __call__(self) -> float:
        with suppress(PlatformError):
            self._last = self.check()
        return self._last


RolloutStatus = Literal["running", "promoted", "rolled_back", "aborted", "superseded"]

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE revisions (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        revision TEXT NOT NULL,
        spec_digest TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (kind, name, revision)
    );
    CREATE TABLE resources (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        stable_revision TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        from_revision TEXT NOT NULL,
        to_revision TEXT NOT NULL,
        strategy TEXT NOT NULL,
        status TEXT NOT NULL,
        step_index INTEGER NOT NULL DEFAULT 0,
        started_at REAL NOT NULL,
        finished_at REAL,
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX rollouts_by_resource ON rollouts (kind, name, status);
    CREATE TABLE rollout_steps (
        id INTEGER PRIMARY KEY,
        rollout_id INTEGER NOT NULL REFERENCES rollouts (id),
        step_index INTEGER NOT NULL,
        weight INTEGER NOT NULL,
        action TEXT NOT NULL,
        reason TEXT NOT NULL,
        canary_requests INTEGER NOT NULL,
        canary_errors INTEGER NOT NULL,
        canary_p99_ms REAL,
        stable_requests INTEGER NOT NULL,
        stable_errors INTEGER NOT NULL,
        stable_p99_ms REAL,
        at REAL NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        action TEXT NOT NULL,
        change TEXT NOT NULL,
        revision TEXT,
        who TEXT NOT NULL,
        outcome TEXT NOT NULL,
        duration_s REAL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX events_by_time ON events (at);
    """,
    # v2: the commit a deployment came from, for lead time (commit -> running).
    """
    ALTER TABLE events ADD COLUMN commit_sha TEXT;
    ALTER TABLE events ADD COLUMN committed_at REAL;
    """,
    # v3: the registered model version a deployment carries, for lead time (registered -> 100%).
    """
    ALTER TABLE events ADD COLUMN artifact_version TEXT;
    ALTER TABLE events ADD COLUMN artifact_digest TEXT;
    ALTER TABLE events ADD COLUMN artifact_registered_at REAL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
HISTORY_LIMIT = 100_000
"""The most events one read of the history returns (the delivery metrics' input)."""
BUSY_TIMEOUT_S = 0.2
"""How long a write waits for another process's lock on the database: the controller's loop
(which also runs the gateway) must not stall on it; a write that cannot wait is retried."""

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class RevisionRecord:
    kind: str
    name: str
    revision: str
    spec_digest: str
    spec_json: str
    source: str
    """The spec file this revision was loaded from (relative artifact paths resolve next to it)."""
    created_at: float


@dataclass(frozen=True)
class RolloutRecord:
    id: int
    kind: str
    name: str
    from_revision: str
    to_revision: str
    strategy: str
    status: RolloutStatus
    step_index: int
    started_at: float
    finished_at: float | None
    reason: str


@dataclass(frozen=True)
class StepRecord:
    """One verdict of the rollout policy and the evidence it was given."""

    step_index: int
    weight: int
    action: str
    reason: str
    canary_requests: int
    canary_errors: int
    canary_p99_ms: float | None
    stable_requests: int
    stable_errors: int
    stable_p99_ms: float | None
    at: float


@dataclass(frozen=True)
class Commit:
    """A git commit that a deployed spec came from."""

    sha: str
    committed_at: float


@dataclass(frozen=True)
class EventRecord:
    """A deployment event: what changed, who asked, how it ended and how long it took."""

    at: float
    kind: str
    name: str
    action: str
    change: str
    who: str
    outcome: str
    revision: str | None = None
    duration_s: float | None = None
    detail: str = ""
    commit_sha: str | None = None
    """The git commit of the spec that was deployed, when it lives in a git repository."""
    committed_at: float | None = None
    artifact_version: str | None = None
    """The registered model version deployed (``registry://digits@2``, ``models:/digits/2``)."""
    artifact_digest: str | None = None
    artifact_registered_at: float | None = None
    """When that version was registered: lead time from a new artifact to 100 % traffic."""


def storage_error(what: str, path: Path, exc: sqlite3.Error) -> StorageError:
    """What failed and why, in words: a lock held elsewhere, a full disk, or SQLite's own."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        why = f"{path} is locked by another process ({text})"
    elif "full" in text:
        why = f"the disk holding {path} is full ({text}); free some space"
    else:
        why = f"{path}: {text}"
    return StorageError(f"cannot {what}: {why}")


def _storage(
    what: str,
) -> Callable[[Callable[Concatenate[State, P], R]], Callable[Concatenate[State, P], R]]:
    """Turn SQLite's errors in a State method into a :class:`StorageError` saying ``what``."""

    def wrap(method: Callable[Concatenate[State, P], R]) -> Callable[Concatenate[State, P], R]:
        def guarded(self: State, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise storage_error(what, self.path, exc) from None

        guarded.__name__, guarded.__doc__ = method.__name__, method.__doc__
        return guarded

    return wrap


class State:
    """The open state database. One writer: the controller of the running ``kaip up``.

    Every method raises :class:`~kaip.errors.StorageError` when the database cannot be read or
    written now (another process holds its lock past :data:`BUSY_TIMEOUT_S`, the disk is full):
    the caller decides whether to retry; nothing is half-written.
    """

    def __init__(
        self, connection: sqlite3.Connection, path: Path, clock: WallClock = time.time
    ) -> None:
        self._db = connection
        self.path = path
        self._clock = clock

    def now(self) -> float:
        """The wall time to record, seconds since the epoch (the clock the state was opened by)."""
        return self._clock()

    @classmethod
    def open(cls, state_dir: Path, clock: WallClock = time.time) -> State:
        """Open (creating and upgrading as needed) ``state_dir/state.db``; ``clock`` stamps what
        is recorded without a time of its own (:meth:`now`).

        The directory is 0700 and the database 0600 (it holds App env values); SQLite gives its
        ``-wal`` and ``-shm`` files the database's mode, and older ones are tightened here.
        """
        path = state_dir / STATE_FILE
        try:
            private_dir(state_dir)
            open_private(path).close()
            for extra in ("-wal", "-shm"):
                make_private(path.with_name(path.name + extra))
        except OSError as exc:
            raise PlatformError(f"cannot create the state database {path}: {exc}") from None
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=5.0)  # opening may wait
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise PlatformError(f"cannot open the state database {path}: {exc}") from None
        if version > SCHEMA_VERSION:
            db.close()
            raise PlatformError(
                f"{path} has schema version {version}, newer than this kaip knows "
                f"({SCHEMA_VERSION}): upgrade kaip, or move {state_dir} away to start afresh"
            )
        for number in range(version, SCHEMA_VERSION):
            # executescript commits first, so the script carries its own transaction.
            upgrade = f"{MIGRATIONS[number]}; PRAGMA user_version = {number + 1};"
            db.executescript(f"BEGIN IMMEDIATE; {upgrade} COMMIT;")
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return cls(db, path, clock)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def atomically(self) -> Iterator[None]:
        """Every write inside happens, or none does (nested uses join the outer one)."""
        if self._db.in_transaction:
            yield
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise storage_error("start a transaction", self.path, exc) from None
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise storage_error("commit", self.path, exc) from None

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # revisions

    @_storage("record a revision")
    def record_revision(self, record: RevisionRecord) -> bool:
        """Store a revision; False if it was already known (revisions are immutable)."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO revisions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                record.kind,
                record.name,
                record.revision,
                record.spec_digest,
                record.spec_json,
                record.source,
                record.created_at,
            ),
        )
        return cursor.rowcount == 1

    @_storage("read a revision")
    def revision(self, kind: str, name: str, revision: str) -> RevisionRecord | None:
        row = self._db.execute(
            "SELECT * FROM revisions WHERE kind = ? AND name = ? AND revision = ?",
            (kind, name, revision),
        ).fetchone()
        return None if row is None else RevisionRecord(**dict(row))

    @_storage("read revisions")
    def revisions(self, kind: str, name: str) -> list[RevisionRecord]:
        rows = self._db.execute(
            "SELECT * FROM revisions WHERE kind = ? AND name = ? ORDER BY created_at",
            (kind, name),
        ).fetchall()
        return [RevisionRecord(**dict(row)) for row in rows]

    # stable revisions

    @_storage("read the stable revision")
    def stable(self, kind: str, name: str) -> str | None:
        row = self._db.execute(
            "SELECT stable_revision FROM resources WHERE kind = ? AND name = ?", (kind, name)
        ).fetchone()
        return None if row is None else str(row[0])

    @_storage("record the stable revision")
    def set_stable(self, kind: str, name: str, revision: str, at: float | None = None) -> None:
        self._db.execute(
            "INSERT INTO resources VALUES (?, ?, ?, ?) ON CONFLICT (kind, name) "
            "DO UPDATE SET stable_revision = excluded.stable_revision, "
            "updated_at = excluded.updated_at",
            (kind, name, revision, self.now() if at is None else at),
        )

    @_storage("read resources")
    def resources(self) -> list[tuple[str, str, str]]:
        """(kind, name, stable revision) of every resource ever run here."""
        rows = self._db.execute(
            "SELECT kind, name, stable_revision FROM resources ORDER BY kind, name"
        ).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    # rollouts

    @_storage("start a rollout")
    def start_rollout(
        self,
        kind: str,
        name: str,
        from_revision: str,
        to_revision: str,
        strategy: str,
        at: float,
    ) -> RolloutRecord:
        """Start a rollout; a running one of the same resource is marked superseded."""
        with self.atomically():
            self._db.execute(
                "UPDATE rollouts SET status = 'superseded', finished_at = ?, "
                "reason = 'a newer revision was deployed' "
                "WHERE kind = ? AND name = ? AND status = 'running'",
                (at, kind, name),
            )
            cursor = self._db.execute(
                "INSERT INTO rollouts (kind, name, from_revision, to_revision, strategy, status,"
                " started_at) VALUES (?, ?, ?, ?, ?, 'running', ?)",
                (kind, name, from_revision, to_revision, strategy, at),
            )
        rollout = self.rollout(int(cursor.lastrowid or 0))
        assert rollout is not None
        return rollout

    @_storage("read a rollout")
    def rollout(self, rollout_id: int) -> RolloutRecord | None:
        row = self._db.execute("SELECT * FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        return None if row is None else RolloutRecord(**dict(row))

    @_storage("read the active rollout")
    def active_rollout(self, kind: str, name: str) -> RolloutRecord | None:
        row = self._db.execute(
            "SELECT * FROM rollouts WHERE kind = ? AND name = ? AND status = 'running' "
            "ORDER BY id DESC LIMIT 1",
            (kind, name),
        ).fetchone()
        return None if row is None else RolloutRecord(**dict(row))

    @_storage("read rollouts")
    def rollouts(self, kind: str, name: str, limit: int = 20) -> list[RolloutRecord]:
        rows = self._db.execute(
            "SELECT * FROM rollouts WHERE kind = ? AND name = ? ORDER BY id DESC LIMIT ?",
            (kind, name, limit),
        ).fetchall()
        return [RolloutRecord(**dict(row)) for row in rows]

    @_storage("record a rollout step")
    def record_step(self, rollout_id: int, step: StepRecord) -> None:
        """Store a verdict; an ``advance`` also moves the rollout's current step."""
        with self.atomically():
            self._db.execute(
                "INSERT INTO rollout_steps (rollout_id, step_index, weight, action, reason,"
                " canary_requests, canary_errors, canary_p99_ms, stable_requests, stable_errors,"
                " stable_p99_ms, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rollout_id,
                    step.step_index,
                    step.weight,
                    step.action,
                    step.reason,
                    step.canary_requests,
                    step.canary_errors,
                    step.canary_p99_ms,
                    step.stable_requests,
                    step.stable_errors,
                    step.stable_p99_ms,
                    step.at,
                ),
            )
            if step.action == "advance":
                self._db.execute(
                    "UPDATE rollouts SET step_index = ? WHERE id = ?",
                    (step.step_index + 1, rollout_id),
                )

    @_storage("read rollout steps")
    def steps(self, rollout_id: int) -> list[StepRecord]:
        rows = self._db.execute(
            "SELECT * FROM rollout_steps WHERE rollout_id = ? ORDER BY id", (rollout_id,)
        ).fetchall()
        return [StepRecord(**_without(row, "id", "rollout_id")) for row in rows]

    @_storage("finish a rollout")
    def finish_rollout(
        self, rollout_id: int, status: RolloutStatus, reason: str, at: float
    ) -> None:
        self._db.execute(
            "UPDATE rollouts SET status = ?, reason = ?, finished_at = ? WHERE id = ?",
            (status, reason, at, rollout_id),
        )

    # events

    @_storage("record an event")
    def record_event(self, event: EventRecord) -> int:
        cursor = self._db.execute(
            "INSERT INTO events (at, kind, name, action, change, revision, who, outcome,"
            " duration_s, detail, commit_sha, committed_at, artifact_version, artifact_digest,"
            " artifact_registered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.at,
                event.kind,
                event.name,
                event.action,
                event.change,
                event.revision,
                event.who,
                event.outcome,
                event.duration_s,
                event.detail,
                event.commit_sha,
                event.committed_at,
                event.artifact_version,
                event.artifact_digest,
                event.artifact_registered_at,
            ),
        )
        return int(cursor.lastrowid or 0)

    @_storage("read events")
    def events(self, limit: int = 100, names: Sequence[str] = ()) -> list[EventRecord]:
        """The latest events, oldest first; only those of ``names`` when given."""
        where = f"WHERE name IN ({', '.join('?' * len(names))})" if names else ""
        rows = self._db.execute(
            f"SELECT * FROM (SELECT * FROM events {where} ORDER BY id DESC LIMIT ?) ORDER BY id",
            (*names, limit),
        ).fetchall()
        return [EventRecord(**_without(row, "id")) for row in rows]

    @_storage("read the event history")
    def history(self, until: float, limit: int = HISTORY_LIMIT) -> list[tuple[int, EventRecord]]:
        """Events before ``until`` with their ids, oldest first: the latest ``limit`` of them."""
        rows = self._db.execute(
            "SELECT * FROM (SELECT * FROM events WHERE at < ? ORDER BY at DESC, id DESC LIMIT ?)"
            " ORDER BY at, id",
            (until, limit),
        ).fetchall()
        return [(int(row["id"]), EventRecord(**_without(row, "id"))) for row in rows]


def _without(row: sqlite3.Row, *columns: str) -> dict[str, Any]:
    values = dict(row)
    for column in columns:
        del values[column]
    return values
