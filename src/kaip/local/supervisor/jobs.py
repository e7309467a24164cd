"""Training job processes: one attempt of a job as a real child process, and its reports.

Owns starting an attempt (its own session, stdout and stderr appended to the run's log file,
``PYTHONUNBUFFERED`` so reports arrive as they are printed), the resource limits applied where
the OS can, waiting for and signalling it, and reading the report lines it printed
(:func:`kaip.training.parse_line`) from the log file as it grows.

Resources are best effort, and said so: ``cpu`` pins the process to ``ceil(cpu)`` of the CPUs
this process may use (``sched_setaffinity``) and sets ``OMP_NUM_THREADS`` and friends unless the
job's env does; ``memory`` becomes ``RLIMIT_DATA`` (an allocation past it fails inside the job,
typically as MemoryError; :meth:`JobProcess.out_of_memory` tells from its log that it did, so
the run's status can name the limit). Both are applied in the child between fork and exec
(:func:`_in_child`: two system calls, nothing else), so the job's first instruction already runs
under them (applied from the parent after the start, a job could allocate past its limit
before the ``prlimit`` came: the e2e test of it failed so once under load); GPUs are not
isolated locally. The log is read, not piped:
a job survives the death of the ``kaip`` that started it, and the next one finds its pid in the
run record. Decides nothing about retries or registration (that is the controller's runner).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import resource
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kaip.local.supervisor.process import is_recorded
from kaip.training import Report, parse_line

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
MAX_REPORT_BYTES_PER_READ = 4 * 2**20
"""At most this much new log is read per look, so a chatty job cannot stall the loop."""
OUT_OF_MEMORY_TAIL_BYTES = 64 * 2**10
"""How much of an attempt's log end :meth:`JobProcess.out_of_memory` reads."""
OUT_OF_MEMORY_SIGNS = (b"MemoryError", b"Cannot allocate memory", b"std::bad_alloc")
"""What a process whose allocation the limit refused prints: Python (numpy's
``_ArrayMemoryError`` included), the C library's ENOMEM message, C++."""


@dataclass(frozen=True)
class JobLaunch:
    """How to run one attempt."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    log_path: Path
    cpu: float | None = None
    memory_bytes: int | None = None


class JobProcess:
    """A running (or finished) attempt. Create with :meth:`start`."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path, offset: int) -> None:
        self._process = process
        self.log_path = log_path
        self._offset = offset
        self._start_offset = offset
        self._partial = b""
        self.limits: list[str] = []
        self.memory_limit: int | None = None
        """The RLIMIT_DATA applied, in bytes (None: none was)."""

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @classmethod
    async def start(cls, launch: JobLaunch, header: str) -> JobProcess:
        """Start the attempt; OSError if the command cannot be run (the caller reports it)."""
        _private(launch.log_path.parent)
        env = {**os.environ, **launch.env, "PYTHONUNBUFFERED": "1"}
        cpus = _cpus(launch.cpu)
        if cpus is not None:
            for variable in THREAD_VARIABLES:
                if variable not in launch.env:
                    env[variable] = str(len(cpus))
        fd = os.open(launch.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log:
            log.write(f"--- kaip: {header}\n".encode())
            log.flush()
            offset = log.tell()
            limits = _limits(cpus, launch.memory_bytes)
            process = await asyncio.create_subprocess_exec(
                *launch.argv,
                cwd=launch.cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=limits.in_child,
            )
        job = cls(process, launch.log_path, offset)
        job.limits, job.memory_limit = limits.applied, limits.memory_bytes
        return job

    async def wait(self) -> int:
        return await self._process.wait()

    def signal(self, sig: signal.Signals) -> None:
        """Signal the attempt's whole process group (it leads its own session)."""
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, sig)

    def reports(self) -> list[Report]:
        """The report lines printed since the last call."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._offset)
                data = log.read(MAX_REPORT_BYTES_PER_READ)
        except OSError:
            return []
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-4096:]
        found = []
        for raw in lines:
            report = parse_line(raw[:4096].decode(errors="replace"))
            if report is not None:
                found.append(report)
        return found

    def out_of_memory(self) -> bool:
        """Whether this attempt ran under a memory limit and its log ends saying an allocation
        failed (read after it exited: the last :data:`OUT_OF_MEMORY_TAIL_BYTES` it printed)."""
        if self.memory_limit is None:
            return False
        try:
            with self.log_path.open("rb") as log:
                end = log.seek(0, os.SEEK_END)
                log.seek(max(self._start_offset, end - OUT_OF_MEMORY_TAIL_BYTES))
                tail = log.read(OUT_OF_MEMORY_TAIL_BYTES)
        except OSError:
            return False
        return any(sign in tail for sign in OUT_OF_MEMORY_SIGNS)


def append_log(path: Path, line: str) -> None:
    """Add a ``--- kaip:`` line to a run's log (the job's own output is never rewritten)."""
    _private(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        log.write(f"--- kaip: {line}\n".encode())


def _private(directory: Path) -> None:
    """A job's log directory, 0700: logs may hold what the job printed about its data."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def kill_recorded(pid: int, ticks: int | None, cmdline: str | None = None) -> bool:
    """SIGKILL the process group of an attempt a dead runner left behind, if it is still ours.

    Only while ``pid`` is still the process recorded (same start time; a record from before start
    times were kept: same command line), so a reused pid is left alone.
    """
    if not is_recorded(pid, ticks, cmdline):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return True


def _cpus(cpu: float | None) -> list[int] | None:
    if cpu is None or not hasattr(os, "sched_getaffinity"):
        return None
    available = sorted(os.sched_getaffinity(0))
    want = max(1, min(len(available), math.ceil(cpu)))
    return available[:want]


@dataclass(frozen=True)
class _Limits:
    in_child: Callable[[], None] | None
    """What the child applies to itself before exec (None: nothing)."""
    applied: list[str]
    """What that is, for the log."""
    memory_bytes: int | None
    """The RLIMIT_DATA it sets (None: none)."""


def _limits(cpus: list[int] | None, memory_bytes: int | None) -> _Limits:
    """What the OS allows, decided here (the CPUs are a subset of this process's own, which the
    child inherits; a data limit at or below the inherited hard limit may always be set)."""
    applied = []
    affinity: set[int] | None = None
    data: int | None = None
    if cpus is not None:
        affinity = set(cpus)
        applied.append(f"cpus {','.join(map(str, cpus))}")
    if memory_bytes is not None:
        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        if hard == resource.RLIM_INFINITY or memory_bytes <= hard:
            data = memory_bytes
            applied.append(f"RLIMIT_DATA {memory_bytes}")
    if affinity is None and data is None:
        return _Limits(None, applied, None)
    return _Limits(functools.partial(_in_child, affinity, data), applied, data)


def _in_child(affinity: set[int] | None, data: int | None) -> None:
    """Run in the forked child before exec: two system calls, no import, no lock taken (what
    keeps a ``preexec_fn`` safe beside the parent's threads); a refusal is not fatal."""
    if affinity is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, affinity)
    if data is not None:
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_DATA, (data, data))
