"""Measuring one attack on a real server process, as issue 11 asks of every bound.

While a test runs its attack, :func:`measured` keeps a liveness prober running in a process of
its own (a fresh connection per probe, warmed up first) and watches the server's resident memory
in ``/proc/PID/status`` (its peak is reset when the attack starts). :meth:`Measurement.check`
then asserts the issue's thresholds: liveness p99 under 100 ms and RSS growth under 64 MiB.
Each test asserts the third itself: its attack got a 4xx, or was closed, within 1 s.

The machine is shared (2 cores, often a load of 10 or more): the server and the prober run at the
highest CPU priority (nice -20, where the test may raise it) while measured. Latency cannot be
judged on an overloaded machine, though: when the 1-minute load average is over
:data:`JUDGED_LOAD_PER_CPU` per CPU as the attack starts, the p99 and "within 1 s" thresholds
are reported as a warning instead of asserted (memory is always asserted, and so is every
functional outcome: the 4xx, the close). A quiet machine (CI) judges them all.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PROBER = Path(__file__).with_name("prober.py")
P99_LIMIT_MS = 100.0
RSS_LIMIT_MIB = 64.0
REFUSED_WITHIN_S = 1.0
MIN_PROBES = 100
JUDGED_LOAD_PER_CPU = 2.0


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` line of ``/proc/PID/status`` (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


PRIORITY = -20  # nice value while measured: the most a process can get without real-time


def prioritize(pid: int) -> None:
    """Run every thread of ``pid`` at :data:`PRIORITY` (nice is per thread on Linux)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, int(task.name), PRIORITY)


def _raise_priority() -> None:
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, PRIORITY)


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


@dataclass
class Measurement:
    pid: int
    probes_ms: list[float] = field(default_factory=list)
    rss_before_kib: int = 0
    rss_peak_kib: int = 0
    load: float = 0.0  # 1-minute load average when the attack started
    slow: list[str] = field(default_factory=list)  # latency verdicts a loaded machine withheld

    @property
    def judged(self) -> bool:
        """Whether the machine was quiet enough for latency to say something about the server."""
        return self.load <= JUDGED_LOAD_PER_CPU * (os.cpu_count() or 1)

    def _latency(self, ok: bool, verdict: str) -> None:
        if ok:
            return
        if self.judged:
            raise AssertionError(verdict)
        self.slow.append(verdict)
        warnings.warn(
            f"not judged, load average {self.load:.1f} on {os.cpu_count()} CPUs: {verdict}",
            stacklevel=3,
        )

    def assert_quick(self, seconds: list[float], limit: float = REFUSED_WITHIN_S) -> None:
        """Every attack was refused (or closed) within ``limit`` seconds."""
        self._latency(max(seconds, default=0.0) < limit, f"over {limit:g} s: {max(seconds):.2f} s")

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.probes_ms)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else math.inf

    @property
    def rss_growth_mib(self) -> float:
        return (self.rss_peak_kib - self.rss_before_kib) / 1024

    def summary(self) -> str:
        return (
            f"{len(self.probes_ms)} liveness probes, p99 {self.p99_ms:.1f} ms, max "
            f"{max(self.probes_ms, default=math.inf):.1f} ms; RSS {self.rss_before_kib // 1024} "
            f"-> peak {self.rss_peak_kib // 1024} MiB (+{self.rss_growth_mib:.1f} MiB)"
        )

    def check(self) -> None:
        assert self.rss_growth_mib < RSS_LIMIT_MIB, f"memory grew: {self.summary()}"
        enough = len(self.probes_ms) >= MIN_PROBES
        self._latency(enough, f"too few probes to judge: {self.summary()}")
        self._latency(self.p99_ms < P99_LIMIT_MS, f"liveness stalled: {self.summary()}")


@contextmanager
def measured(pid: int, port: int, path: str = "/v2/health/live") -> Iterator[Measurement]:
    """Probe ``path`` on ``port`` and watch process ``pid`` while the ``with`` body attacks."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # beside other workers' tests nothing is quiet
        raise AssertionError(
            "measured() judges latency: mark the test @pytest.mark.quiet_machine (make test runs "
            "those alone, before the others), or run it without -n"
        )
    measurement = Measurement(pid)
    prober = subprocess.Popen(
        [sys.executable, str(PROBER), str(port), path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_raise_priority,
    )
    assert prober.stdin is not None and prober.stdout is not None
    prioritize(pid)
    try:
        assert prober.stdout.readline().strip() == "warm", "the prober never warmed up"
        measurement.load = os.getloadavg()[0]
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS from here on
        measurement.rss_before_kib = status_kib(pid, "VmRSS")
        yield measurement
        measurement.rss_peak_kib = status_kib(pid, "VmHWM")
        prober.stdin.close()
        measurement.probes_ms = json.loads(prober.stdout.readline())
    finally:
        if prober.poll() is None:
            prober.kill()
        prober.wait(10)


def repeat_for(seconds: float, attack: Callable[[], None]) -> int:
    """Run ``attack`` again and again for at least ``seconds`` (enough probes to judge)."""
    deadline = time.monotonic() + seconds
    count = 0
    while True:
        attack()
        count += 1
        if time.monotonic() >= deadline:
            return count


def read_answer(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes (or ``timeout`` passes)."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received


def seconds_to_close(sock: socket.socket, timeout: float = 30.0) -> float:
    """Seconds until the server closes ``sock`` (after answering or not); fails after
    ``timeout``."""
    started = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open {timeout:g} s") from None
    except ConnectionResetError:
        pass
    return time.monotonic() - started
