"""What ``kaip up``'s replicas cost, drew and emitted: the OS's numbers fed to kaip.accounting.

Owns reading each replica process's CPU seconds, resident memory and age from ``/proc`` (Linux;
elsewhere nothing is reported), pairing them with the gateway's busy time and request count per
replica, and keeping the last figures of replicas that have gone, so totals and the gateway's
``kaip_*_total`` counters never go down; and a reading of every live replica once a minute for a
day, so a report can cover only the last N seconds (``kaip cost --since``: each replica's window
now minus its reading at or before then). Also resolves each replica's prices by its owner and
this node's type (:mod:`kaip.accounting.prices`, from ``KAIP_COST_PRICES_FILE``) and shares the
GPU energy counter's rise (:mod:`.gpu_energy`, when NVML loaded) among the GPU replicas. Never
computes a price or a watt itself (that is :mod:`kaip.accounting`) and never changes a replica.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from kaip.accounting import (
    Attribution,
    Basis,
    Coefficients,
    CpuPower,
    Figures,
    GpuEnergyMeter,
    PriceBook,
    PriceConfigError,
    Prices,
    ReplicaWindow,
    attribute,
    cpu_power,
    window_since,
)
from kaip.accounting.prices import MAX_CONFIG_BYTES, PRICES_FILE_ENV
from kaip.errors import ConfigError
from kaip.local.gateway.signals import Key, ReplicaBusy
from kaip.policy.cost import CostEvidence

PROC = Path("/proc")
MAX_RETIRED = 10_000  # replicas that have gone, kept for the totals (oldest dropped first)
SNAPSHOT_EVERY_S = 60.0
"""How often kaip up keeps a reading of every live replica's window, for ``kaip cost --since``."""
MAX_SNAPSHOTS = 24 * 60
"""Readings kept (24 h at one a minute): ``--since`` reaches back at most that far."""


@dataclass(frozen=True)
class ReplicaProcess:
    """One running replica, as the controller knows it."""

    kind: str
    resource: str
    revision: str
    owner: str
    replica: str
    pid: int
    vcpus: float
    gpus: float = 0.0


@dataclass(frozen=True)
class ProcessUsage:
    seconds: float  # since the process started
    cpu_seconds: float  # user + system, its waited-for children included
    memory_gb: float  # resident


def read_usage(pid: int, proc: Path = PROC) -> ProcessUsage | None:
    """The OS's account of process ``pid``; None when it is gone or unreadable."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        statm = (proc / str(pid) / "statm").read_text()
        uptime = float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = sum(int(f) for f in fields[11:15]) / tick  # utime, stime, cutime, cstime
    started = int(fields[19]) / tick
    rss = int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return ProcessUsage(max(uptime - started, 1e-3), cpu, rss / 2**30)


def cpu_model(proc: Path = PROC) -> str:
    """``model name`` of the first CPU in ``/proc/cpuinfo`` ("" when unknown)."""
    try:
        for line in (proc / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def coefficients_from(environ: Mapping[str, str], model: str) -> Coefficients:
    """The defaults (kaip.accounting.coefficients), overridden by ``KAIP_COST_*`` variables."""

    def number(name: str) -> float | None:
        text = environ.get(name)
        if text is None or not text.strip():
            return None
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name}={text!r}: expected a number, e.g. {name}=0.05") from None
        if not value >= 0:
            raise ConfigError(f"{name}={text!r}: must be 0 or more")
        return value

    defaults = Coefficients()
    prices = Prices(
        cpu_core_hour=_or(number("KAIP_COST_CPU_CORE_HOUR_USD"), defaults.prices.cpu_core_hour),
        ram_gb_hour=_or(number("KAIP_COST_RAM_GB_HOUR_USD"), defaults.prices.ram_gb_hour),
        gpu_hour=_or(number("KAIP_COST_GPU_HOUR_USD"), defaults.prices.gpu_hour),
    )
    cpu = cpu_power(model)
    low, high = number("KAIP_COST_CPU_MIN_WATTS"), number("KAIP_COST_CPU_MAX_WATTS")
    if low is not None or high is not None:
        if low is None or high is None or high < low:
            raise ConfigError(
                "KAIP_COST_CPU_MIN_WATTS and KAIP_COST_CPU_MAX_WATTS: set both, min <= max "
                "(watts per vCPU at idle and at 100 %)"
            )
        cpu = CpuPower(low, high, "configured: KAIP_COST_CPU_MIN_WATTS/MAX_WATTS")
    grid = number("KAIP_COST_GRID_G_PER_KWH")
    return Coefficients(
        prices=prices,
        cpu=cpu,
        pue=_or(number("KAIP_COST_PUE"), defaults.pue),
        grid_g_per_kwh=_or(grid, defaults.grid_g_per_kwh),
        grid_source="configured: KAIP_COST_GRID_G_PER_KWH"
        if grid is not None
        else defaults.grid_source,
    )


def price_book_from(environ: Mapping[str, str], base: Prices) -> PriceBook:
    """The prices per owner and node type of the file ``KAIP_COST_PRICES_FILE`` names
    (:mod:`kaip.accounting.prices`) over ``base``; unset: ``base`` for every replica."""
    name = environ.get(PRICES_FILE_ENV, "").strip()
    if not name:
        return PriceBook(base)
    try:
        with open(name, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        return PriceBook.from_yaml(data, base, name)
    except OSError as exc:
        raise ConfigError(f"{PRICES_FILE_ENV}={name}: cannot read it ({exc.strerror}); "
                          "point it at a YAML price file or unset it") from None  # fmt: skip
    except PriceConfigError as exc:
        raise ConfigError(f"{PRICES_FILE_ENV}={name}: {exc}") from None


def _window(
    replica_id: str,
    replica: ReplicaProcess,
    usage: ProcessUsage,
    seen: ReplicaBusy,
    gpu_joules: float | None = None,
) -> ReplicaWindow:
    """One replica's window since it started: the OS's usage and the gateway's busy time."""
    return ReplicaWindow(
        resource=replica.resource,
        revision=replica.revision,
        owner=replica.owner,
        replica=replica_id,
        seconds=usage.seconds,
        cpu_seconds=usage.cpu_seconds,
        busy_seconds=seen.busy_seconds,
        requests=seen.requests,
        memory_gb=usage.memory_gb,
        vcpus=replica.vcpus,
        gpus=replica.gpus,
        gpu_joules=gpu_joules,
    )


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


class CostBook:
    """Attributions of the live replicas plus the last ones of replicas that have gone."""

    def __init__(
        self,
        coefficients: Coefficients,
        replicas: Callable[[], Iterable[ReplicaProcess]],
        busy: Callable[[], Mapping[str, ReplicaBusy]],
        usage: Callable[[int], ProcessUsage | None] = read_usage,
        clock: Callable[[], float] = time.monotonic,
        prices: PriceBook | None = None,
        node_type: str | None = None,
        gpu: GpuEnergyMeter | None = None,
    ) -> None:
        self.coefficients = coefficients
        self.prices = PriceBook(coefficients.prices) if prices is None else prices
        """Prices per owner and node type; every replica here runs on one node, ``node_type``."""
        self.node_type = node_type
        self._by_owner: dict[str, Coefficients] = {}
        self._gpu = gpu
        """NVML's counter when it loaded (:mod:`.gpu_energy`): GPU replicas' joules measured."""
        self._gpu_last: tuple[float, dict[str, float]] | None = None  # reading, busy seconds
        self._gpu_joules: dict[str, float] = {}
        self._replicas = replicas
        self._busy = busy
        self._usage = usage
        self._clock = clock
        self._live: dict[str, tuple[ReplicaProcess, ProcessUsage, ReplicaBusy]] = {}
        self._retired: dict[str, tuple[ReplicaProcess, ProcessUsage, ReplicaBusy]] = {}
        self._gone_at: dict[str, float] = {}  # replica -> when it was first seen gone
        self.started = clock()
        self._snapshots: deque[tuple[float, dict[str, ReplicaWindow]]] = deque(maxlen=MAX_SNAPSHOTS)

    def coefficients_of(self, owner: str) -> Coefficients:
        """:attr:`coefficients` with the prices of ``owner``'s replicas on this node."""
        known = self._by_owner.get(owner)
        if known is None:
            prices = self.prices.resolve(owner, self.node_type)
            known = replace(self.coefficients, prices=prices)
            if len(self._by_owner) < MAX_RETIRED:
                self._by_owner[owner] = known
        return known

    def _attribute(self, window: ReplicaWindow, basis: Basis = "usage") -> Attribution:
        return attribute(window, self.coefficients_of(window.owner), basis)

    def snapshot(self) -> None:
        """Keep a reading of every live replica's window (at most one per
        :data:`SNAPSHOT_EVERY_S`; ``kaip up`` calls this on a timer)."""
        now = self._clock()
        if self._snapshots and now - self._snapshots[-1][0] < SNAPSHOT_EVERY_S:
            return
        windows = {w.replica: w for _, w in self._windows() if w.replica in self._live}
        self._snapshots.append((now, windows))

    def since(self, seconds: float) -> tuple[list[tuple[ReplicaProcess, ReplicaWindow]], float]:
        """Every replica's window over the last ``seconds`` (replicas gone before then left
        out), and the seconds it really covers: less when kaip up or its readings are younger;
        a minute's resolution (:data:`SNAPSHOT_EVERY_S`)."""
        now = self._clock()
        start = now - seconds
        windows = self._windows()
        index = bisect_right([t for t, _ in self._snapshots], start) - 1
        if index < 0:
            if len(self._snapshots) < MAX_SNAPSHOTS:  # nothing dropped: kaip up is younger
                return windows, now - self.started
            index = 0  # the oldest reading kept (a day ago)
        covered = now - self._snapshots[index][0]
        at, then = self._snapshots[index]
        out = []
        for replica, window in windows:
            gone = self._gone_at.get(window.replica)
            if gone is not None and gone <= at:
                continue  # gone before the window began
            out.append((replica, window_since(window, then.get(window.replica))))
        return out, covered

    def _windows(self) -> list[tuple[ReplicaProcess, ReplicaWindow]]:
        busy = self._busy()
        now: dict[str, tuple[ReplicaProcess, ProcessUsage, ReplicaBusy]] = {}
        for replica in self._replicas():
            usage = self._usage(replica.pid)
            if usage is not None:
                seen = busy.get(replica.replica, ReplicaBusy(0.0, 0))
                now[replica.replica] = (replica, usage, seen)
        for gone in self._live.keys() - now.keys():
            self._retired[gone] = self._live[gone]
            self._gone_at[gone] = self._clock()
            while len(self._retired) > MAX_RETIRED:
                oldest = next(iter(self._retired))
                self._gone_at.pop(oldest, None)
                self._gpu_joules.pop(oldest, None)
                del self._retired[oldest]
        self._live = now
        self._read_gpu(now)
        out = []
        for replica_id, (replica, usage, seen) in [*self._retired.items(), *now.items()]:
            gpu = self._gpu_joules.get(replica_id) if replica.gpus else None
            out.append((replica, _window(replica_id, replica, usage, seen, gpu)))
        return out

    def _read_gpu(
        self, live: Mapping[str, tuple[ReplicaProcess, ProcessUsage, ReplicaBusy]]
    ) -> None:
        """Share the GPU energy counter's rise since the last reading among the live GPU replicas
        by the busy seconds each added (evenly when none was busy): all replicas of ``kaip up``
        share the one device NVML reads."""
        if self._gpu is None:
            return
        total = self._gpu.total_joules()
        if total is None:
            return
        busy = {r: seen.busy_seconds for r, (p, _, seen) in live.items() if p.gpus}
        if self._gpu_last is not None and busy:
            then, busy_then = self._gpu_last
            rise = max(total - then, 0.0)
            added = {r: max(b - busy_then.get(r, 0.0), 0.0) for r, b in busy.items()}
            weight = sum(added.values())
            for replica_id, more in added.items():
                share = more / weight if weight > 0 else 1.0 / len(added)
                self._gpu_joules[replica_id] = self._gpu_joules.get(replica_id, 0.0) + rise * share
        for replica_id in busy:
            self._gpu_joules.setdefault(replica_id, 0.0)
        self._gpu_last = (total, busy)

    def attributions(
        self, basis: Basis = "usage", since_s: float | None = None
    ) -> tuple[list[Attribution], float]:
        """Every replica's attribution, over the last ``since_s`` seconds or (None) since it
        started; and the seconds covered (since kaip up started, for None)."""
        if since_s is None:
            windows, covered = self._windows(), self._clock() - self.started
        else:
            windows, covered = self.since(since_s)
        return [self._attribute(w, basis) for _, w in windows], covered

    def per_request(self, replica_id: str) -> tuple[float, float] | None:
        """(USD, joules) per request of one live replica so far (usage basis); None when it has
        answered none or is not running. Reads only that replica's process."""
        for replica in self._replicas():
            if replica.replica != replica_id:
                continue
            usage = self._usage(replica.pid)
            seen = self._busy().get(replica_id)
            if usage is None or seen is None or not seen.requests:
                return None
            gpu = self._gpu_joules.get(replica_id) if replica.gpus else None
            window = _window(replica_id, replica, usage, seen, gpu)
            figures = self._attribute(window).requests
            return figures.cost_usd / seen.requests, figures.energy_j / seen.requests
        return None

    def mark(self, kind: str, resource: str) -> dict[str, ReplicaWindow]:
        """Each replica's window of one resource so far, gone ones included: what
        :meth:`per_revision` leaves out when given it as ``since``."""
        return {
            window.replica: window
            for replica, window in self._windows()
            if replica.kind == kind and replica.resource == resource
        }

    def per_revision(
        self, kind: str, resource: str, since: Mapping[str, ReplicaWindow] | None = None
    ) -> dict[str, CostEvidence]:
        """Requests and their cost (usage basis) of each revision of one resource, since a
        :meth:`mark` (None: since each replica started): the evidence of a rollout's cost gate.
        A replica started after the mark counts whole; one gone before it, not at all."""
        out: dict[str, CostEvidence] = {}
        for replica, window in self._windows():
            if replica.kind != kind or replica.resource != resource:
                continue
            if since is not None:
                window = window_since(window, since.get(window.replica))
            figures = self._attribute(window).requests
            seen = out.get(replica.revision, CostEvidence())
            out[replica.revision] = CostEvidence(
                seen.requests + figures.requests, seen.cost_usd + figures.cost_usd
            )
        return out

    def counters(self) -> list[tuple[Key, Figures]]:
        """What requests carry so far, per (kind, resource, revision, owner): /metrics."""
        sums: dict[Key, Figures] = {}
        for replica, window in self._windows():
            key = (replica.kind, replica.resource, replica.revision, replica.owner)
            sums[key] = sums.get(key, Figures()) + self._attribute(window).requests
        return sorted(sums.items())
