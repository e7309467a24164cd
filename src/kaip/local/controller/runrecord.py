"""The running ``kaip up`` as the other commands find it: ``.kaip/run.json`` and its admin token.

``kaip up`` writes ``run.json`` (its pid, the traffic and control ports and URLs, and who the
process is: its start time and command line, as the operating system reports them) and a fresh
random ``admin.token``, both 0600. A reader trusts a record only while the pid still names that
same process: same start time, same command line. A record whose pid has exited, or has been
reused by another program, is stale, so ``kaip down`` can never signal an unrelated process
and the CLI never sends the token to whatever now listens on a recorded port.

Never starts or signals processes itself; the CLI decides what to do with what it finds here.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from kaip.local.private import private_dir, write_private

RUN_FILE = "run.json"
TOKEN_FILE = "admin.token"
START_TIME_TOLERANCE_S = 0.01
"""Start times are read from the OS twice (at write and at check); they agree to the tick."""


@dataclass(frozen=True)
class ProcessIdentity:
    """Who a pid is: the same pid with another start time or command line is another process."""

    pid: int
    started: float
    """Seconds since the epoch, as the OS reports the process's creation."""
    cmdline: tuple[str, ...]

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The identity of ``pid`` now; None if there is no such process (or it is a zombie)."""
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                if process.status() == psutil.STATUS_ZOMBIE:
                    return None
                return cls(pid, process.create_time(), tuple(process.cmdline()))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def same_as(self, other: ProcessIdentity) -> bool:
        return (
            self.pid == other.pid
            and abs(self.started - other.started) <= START_TIME_TOLERANCE_S
            and self.cmdline == other.cmdline
        )

    def describe(self) -> str:
        command = " ".join(self.cmdline)
        return command if len(command) <= 80 else command[:77] + "..."


@dataclass(frozen=True)
class RunRecord:
    """What ``kaip up`` wrote about itself."""

    process: ProcessIdentity
    port: int
    url: str
    admin_port: int
    admin_url: str
    started_at: float

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(frozen=True)
class RunLookup:
    """The live record, or why there is none (``reason`` reads after "kaip is not running here")."""

    record: RunRecord | None
    reason: str


def write_run_record(state_dir: Path, record: RunRecord) -> Path:
    """Write ``run.json`` (0600); returns its path."""
    private_dir(state_dir)
    path = state_dir / RUN_FILE
    data = asdict(record)
    data["pid"] = record.pid  # for people and scripts reading the file
    write_private(path, json.dumps(data, indent=2) + "\n")
    return path


def this_process_record(*, port: int, url: str, admin_port: int, admin_url: str) -> RunRecord:
    """The record of the calling process (``kaip up`` itself)."""
    identity = ProcessIdentity.of(psutil.Process().pid)
    assert identity is not None  # this process exists
    return RunRecord(identity, port, url, admin_port, admin_url, time.time())


def find_running(state_dir: Path) -> RunLookup:
    """The record in ``state_dir`` if its process is still the ``kaip up`` that wrote it."""
    path = state_dir / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        recorded = data["process"]
        identity = ProcessIdentity(
            int(recorded["pid"]), float(recorded["started"]), tuple(map(str, recorded["cmdline"]))
        )
        record = RunRecord(
            identity,
            int(data["port"]),
            str(data["url"]),
            int(data["admin_port"]),
            str(data["admin_url"]),
            float(data["started_at"]),
        )
    except FileNotFoundError:
        return RunLookup(None, f"no {path}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return RunLookup(None, f"{path} is unreadable or from another kaip version ({exc!r})")
    now = ProcessIdentity.of(identity.pid)
    if now is None:
        return RunLookup(None, f"the kaip up of {path} (pid {identity.pid}) has exited")
    if not now.same_as(identity):
        return RunLookup(
            None,
            f"pid {identity.pid} of {path} is now another process ({now.describe()}), "
            "not the kaip up that wrote it",
        )
    return RunLookup(record, "")


def read_run_record(state_dir: Path) -> RunRecord | None:
    """The live record, or None (see :func:`find_running` for why not)."""
    return find_running(state_dir).record


def remove_run_record(state_dir: Path, record: RunRecord) -> None:
    """Remove ``run.json`` and the token if they are still ``record``'s (a later run's stay)."""
    current = find_running(state_dir).record
    if current is not None and current != record:
        return
    for name in (RUN_FILE, TOKEN_FILE):
        (state_dir / name).unlink(missing_ok=True)


def new_admin_token(state_dir: Path) -> str:
    """A fresh random token for this run, written to ``admin.token`` (0600)."""
    private_dir(state_dir)
    token = secrets.token_urlsafe(32)
    write_private(state_dir / TOKEN_FILE, token + "\n")
    return token


def read_admin_token(state_dir: Path) -> str | None:
    try:
        token = (state_dir / TOKEN_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None
