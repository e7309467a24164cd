"""The local process supervisor: replicas as real child processes on loopback ports.

Owns every child process of ``kaip up``: starting it on a free ``127.0.0.1`` port with its log
file under ``.kaip/logs/``, health-checking it over HTTP, restarting it with exponential backoff
when it dies, telling a crash loop apart from a one-off death, and draining it (SIGTERM, then
SIGKILL after a deadline) on scale-down or replacement.

It decides nothing about *how many* replicas to run or where traffic goes: the controller asks
(:meth:`Supervisor.add`, :meth:`Supervisor.drain`) and reads :meth:`Supervisor.replicas`.
Following uvicorn's supervisor, events only enqueue: a child's exit appends to a list and wakes
the controller through ``on_change``; the controller's loop calls :meth:`Supervisor.tick`, the
one place that acts on them. Never imports the gateway or the state database.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import httpx

from kaip.errors import PlatformError
from kaip.local.private import open_private, private_dir, write_private

Phase = Literal["starting", "ready", "unhealthy", "backoff", "crash-loop", "draining", "stopped"]
SERVING_PHASES: frozenset[Phase] = frozenset({"ready"})


@dataclass(frozen=True)
class Timings:
    """How patient the supervisor is, in seconds."""

    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    crash_loop_after: int = 3
    """Consecutive failed starts before a replica is reported in a crash loop."""
    healthy_resets_after: float = 20.0
    """Ready this long and its failure count starts again from zero."""
    startup_timeout: float = 120.0
    unhealthy_after_failures: int = 3
    unhealthy_restart_after: float = 30.0
    health_timeout: float = 2.0
    health_interval: float = 1.0
    """Between checks of a ready replica; a starting one is checked at every tick."""
    drain_timeout: float = 15.0


@dataclass(frozen=True)
class Launch:
    """How to run one replica of one revision. ``{port}`` in argv becomes its port."""

    name: str
    revision: str
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    health_path: str
    startup_timeout: float | None = None
    """How long it may take to turn healthy, when it needs longer than
    :attr:`Timings.startup_timeout` (a Model whose engine loads its weights first)."""


@dataclass
class Replica:
    """One replica, as the supervisor tracks it. Read it; only the supervisor changes it."""

    id: str
    launch: Launch
    log_path: Path
    phase: Phase = "starting"
    pid: int | None = None
    port: int | None = None
    started_at: float = 0.0
    ready_at: float | None = None
    restarts: int = 0
    failures: int = 0
    health_failures: int = 0
    unhealthy_since: float | None = None
    last_exit: int | None = None
    next_start_at: float | None = None
    next_health_at: float = 0.0
    drain_deadline: float | None = None
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.launch.name

    @property
    def revision(self) -> str:
        return self.launch.revision

    @property
    def serving(self) -> bool:
        return self.phase in SERVING_PHASES

    def describe(self) -> str:
        if self.phase == "crash-loop":
            return (
                f"crash loop: exited {self.failures} times in a row (last code {self.last_exit}),"
                f" see {self.log_path}"
            )
        return self.phase


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Supervisor:
    """Starts, watches, restarts and drains replicas. Call :meth:`tick` from one loop."""

    def __init__(
        self,
        log_dir: Path,
        *,
        on_change: Callable[[], None] = lambda: None,
        timings: Timings = Timings(),
        clock: Callable[[], float] = time.monotonic,
        pid_file: Path | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.pid_file = pid_file
        self.timings = timings
        self._on_change = on_change
        self._clock = clock
        self._replicas: dict[str, Replica] = {}
        self._exited: list[str] = []
        self._watchers: set[asyncio.Task[None]] = set()
        self._counter = itertools.count(1)
        self._http = httpx.AsyncClient(timeout=timings.health_timeout, trust_env=False)
        self.storage_problem: str | None = None
        """Why the last write under ``.kaip/`` failed (a full disk, say); None once one works."""

    # what the controller asks

    async def add(self, launch: Launch) -> Replica:
        """Start a new replica of ``launch`` now."""
        replica_id = f"{launch.name}-{launch.revision[:6]}-{next(self._counter)}"
        replica = Replica(replica_id, launch, self.log_dir / f"{replica_id}.log")
        self._replicas[replica_id] = replica
        await self._start(replica)
        return replica

    def drain(self, replica_id: str) -> None:
        """Ask a replica to finish its requests and exit; SIGKILL after the drain timeout."""
        replica = self._replicas.get(replica_id)
        if replica is None or replica.phase in ("draining", "stopped"):
            return
        replica.phase = "draining"
        replica.drain_deadline = self._clock() + self.timings.drain_timeout
        if replica.process is None or replica.process.returncode is not None:
            self._forget(replica)
            return
        _signal_group(replica.process.pid, signal.SIGTERM)

    @property
    def starting(self) -> bool:
        """Whether some replica is starting (the loop should tick fast to see it ready)."""
        return any(r.phase == "starting" for r in self._replicas.values())

    def replicas(self, name: str | None = None, revision: str | None = None) -> list[Replica]:
        return [
            r
            for r in self._replicas.values()
            if (name is None or r.name == name) and (revision is None or r.revision == revision)
        ]

    def kill(self, replica_id: str) -> None:
        """SIGKILL a replica now, as a crash would (for fault drills)."""
        replica = self._replicas.get(replica_id)
        if replica and replica.process and replica.process.returncode is None:
            _signal_group(replica.process.pid, signal.SIGKILL)

    # the loop's one entry point

    async def tick(self) -> bool:
        """Act on exits, health, backoff and drain deadlines. True if any replica changed."""
        now = self._clock()
        if self.storage_problem is not None:
            self._save_pids()  # try the record again: there may be room by now
        changed = self._reap(now)
        checks = [
            r for r in self._replicas.values() if r.phase in ("starting", "ready", "unhealthy")
        ]
        results = await asyncio.gather(*(self._healthy(r) for r in checks))
        for replica, healthy in zip(checks, results, strict=True):
            changed |= self._judge(replica, healthy, now)
        for replica in list(self._replicas.values()):
            if replica.phase in ("backoff", "crash-loop") and (replica.next_start_at or 0) <= now:
                replica.restarts += 1
                await self._start(replica)
                changed = True
            elif (
                replica.phase == "draining"
                and (replica.drain_deadline or 0) <= now
                and replica.process is not None
                and replica.process.returncode is None
            ):
                _signal_group(replica.process.pid, signal.SIGKILL)
        return changed

    async def shutdown(self) -> None:
        """Drain every replica and wait for all of them to exit."""
        for replica in list(self._replicas.values()):
            self.drain(replica.id)
        deadline = self._clock() + self.timings.drain_timeout + 5.0
        while self._replicas and self._clock() < deadline:
            await self.tick()
            await asyncio.sleep(0.05)
        for replica in list(self._replicas.values()):
            if replica.process is not None and replica.process.returncode is None:
                _signal_group(replica.process.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    await replica.process.wait()
        await self._http.aclose()

    # inside

    async def _start(self, replica: Replica) -> None:
        launch = replica.launch
        port = free_port()
        argv = [arg.replace("{port}", str(port)) for arg in launch.argv]
        env = {**os.environ, **launch.env, "PORT": str(port)}
        replica.port, replica.ready_at, replica.health_failures = port, None, 0
        replica.unhealthy_since, replica.next_start_at = None, None
        replica.started_at = self._clock()
        try:
            private_dir(self.log_dir)
            log = open_private(replica.log_path)
        except OSError as exc:
            self.storage_problem = f"cannot open {replica.log_path}: {exc.strerror or exc}"
            replica.process, replica.pid = None, None
            self._failed(replica, None, self._clock())
            return
        with log:
            _note(log, f"--- kaip: starting {' '.join(argv)} (port {port})")
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=launch.cwd,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,  # our own process group: Ctrl-C reaches only kaip
                )
            except OSError as exc:
                _note(log, f"--- kaip: cannot start: {exc}")
                replica.process, replica.pid = None, None
                self._failed(replica, None, self._clock())
                return
        replica.process, replica.pid, replica.phase = process, process.pid, "starting"
        watcher = asyncio.get_running_loop().create_task(self._watch(replica.id, process))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        self._save_pids()

    async def _watch(self, replica_id: str, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        self._exited.append(replica_id)
        self._on_change()

    def _reap(self, now: float) -> bool:
        changed = False
        exited, self._exited = self._exited, []
        for replica_id in exited:
            replica = self._replicas.get(replica_id)
            if replica is None or replica.process is None:
                continue
            code = replica.process.returncode
            if code is None:  # an older process of a restarted replica; already handled
                continue
            with contextlib.suppress(OSError), open_private(replica.log_path) as log:
                _note(log, f"--- kaip: exited with code {code}")
            replica.last_exit = code
            changed = True
            if replica.phase == "draining":
                self._forget(replica)
            else:
                self._failed(replica, code, now)
        return changed

    def _failed(self, replica: Replica, code: int | None, now: float) -> None:
        replica.process = None
        replica.pid = None
        replica.last_exit = code
        replica.failures += 1
        delay = min(
            self.timings.backoff_max, self.timings.backoff_initial * 2 ** (replica.failures - 1)
        )
        replica.next_start_at = now + delay
        looping = replica.failures >= self.timings.crash_loop_after
        replica.phase = "crash-loop" if looping else "backoff"

    def _forget(self, replica: Replica) -> None:
        replica.phase = "stopped"
        self._replicas.pop(replica.id, None)
        self._save_pids()

    def _save_pids(self) -> None:
        """Record live children, so a later kaip can stop them if this one dies unannounced."""
        if self.pid_file is None:
            return
        live = [
            {"pid": r.pid, "start_ticks": start_ticks(r.pid)}
            for r in self._replicas.values()
            if r.pid is not None
        ]
        try:
            write_private(self.pid_file, json.dumps(live))
        except OSError as exc:  # a full disk, say: replicas keep running, the record lags
            self.storage_problem = (
                f"cannot record replica pids in {self.pid_file}: {exc.strerror or exc} (a kaip "
                "that dies now may leave replicas running)"
            )
            return
        self.storage_problem = None

    async def _healthy(self, replica: Replica) -> bool:
        if replica.process is None or replica.process.returncode is not None:
            return False
        url = f"http://127.0.0.1:{replica.port}{replica.launch.health_path}"
        try:
            response = await self._http.get(url)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _judge(self, replica: Replica, healthy: bool, now: float) -> bool:
        """Move a running replica between starting, ready and unhealthy."""
        timings = self.timings
        if replica.phase == "starting":
            if healthy:
                replica.phase, replica.ready_at = "ready", now
                return True
            patience = max(timings.startup_timeout, replica.launch.startup_timeout or 0.0)
            if now - replica.started_at > patience and replica.process:
                _signal_group(replica.process.pid, signal.SIGKILL)  # exit handling restarts it
            return False
        if healthy:
            replica.health_failures, replica.unhealthy_since = 0, None
            if (
                replica.ready_at is not None
                and now - replica.ready_at > timings.healthy_resets_after
            ):
                replica.failures = 0
            if replica.phase == "unhealthy":
                replica.phase = "ready"
                return True
            return False
        replica.health_failures += 1
        if replica.phase == "ready" and replica.health_failures >= timings.unhealthy_after_failures:
            replica.phase, replica.unhealthy_since = "unhealthy", now
            return True
        if (
            replica.phase == "unhealthy"
            and replica.unhealthy_since is not None
            and now - replica.unhealthy_since > timings.unhealthy_restart_after
            and replica.process is not None
        ):
            _signal_group(replica.process.pid, signal.SIGKILL)
        return False


def _note(log: BinaryIO, line: str) -> None:
    """Add a line of kaip's own to a replica log; on a full disk the line is lost, not the run."""
    with contextlib.suppress(OSError):
        log.write(f"{line}\n".encode())
        log.flush()


def kill_orphans(pid_file: Path) -> int:
    """SIGKILL the replicas a previous kaip recorded and left running; return how many.

    A pid counts only while it is still the process recorded (:func:`is_recorded`), so a pid
    reused by an unrelated process is left alone.
    """
    try:
        recorded = json.loads(pid_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    killed = 0
    for entry in recorded if isinstance(recorded, list) else []:
        pid = entry.get("pid") if isinstance(entry, dict) else None
        if isinstance(pid, int) and is_recorded(
            pid, entry.get("start_ticks"), entry.get("cmdline")
        ):
            _signal_group(pid, signal.SIGKILL)
            killed += 1
    pid_file.unlink(missing_ok=True)
    return killed


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks after boot (/proc/PID/stat), None if gone.

    This, not the command line, is what names a child for a later kaip: it is set at fork and
    exec leaves it alone, while ``/proc/PID/cmdline`` reads empty for a moment during exec (a
    child just started can be read in that moment) and a program may rewrite it. Ticks, not a
    wall-clock time: the boot time a wall-clock start is worked out from moves with the clock.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        # the fields after the command name, which is in parentheses and may hold anything;
        # starttime is field 22 of proc(5), the 20th after it
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def is_recorded(pid: int, ticks: object, cmdline: object = None) -> bool:
    """Whether ``pid`` is still the process recorded as started at ``ticks``.

    A record written before start times were kept has only a ``cmdline``: it is compared as then.
    """
    if isinstance(ticks, int):
        return start_ticks(pid) == ticks
    return isinstance(cmdline, str) and bool(cmdline) and cmdline_of(pid) == cmdline


def cmdline_of(pid: int) -> str:
    """The command line of process ``pid`` as /proc has it ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the replica's process group (it leads its own session), or the pid alone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise PlatformError(f"cannot signal replica process {pid}: {exc}") from None
