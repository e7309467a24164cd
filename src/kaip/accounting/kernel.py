"""The attribution kernel: a replica's measured usage over a window, shared among its requests.

Pure arithmetic on values (see the package docstring for the rule and a worked example); never
reads the OS, a clock or the network, and never knows where its inputs came from.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from kaip.accounting.coefficients import HIGH_CPU, LOW_CPU, Coefficients, CpuPower

Basis = Literal["usage", "allocation"]
Method = Literal["measured", "estimated"]
J_PER_KWH = 3.6e6


class GpuEnergyMeter(Protocol):
    """A GPU's cumulative energy counter (NVML ``nvmlDeviceGetTotalEnergyConsumption``)."""

    def total_joules(self) -> float | None:
        """Joules since the driver loaded; None where the GPU has no counter."""
        ...


@dataclass(frozen=True)
class Step:
    """One batch (or engine step) of a replica: its wall time and each member's work weight."""

    seconds: float
    weights: Mapping[Hashable, float]  # request -> rows, pixels or tokens (1 when unweighted)


def shares(steps: Iterable[Step]) -> dict[Hashable, float]:
    """Busy seconds of each request: ``a_i = sum over steps k of seconds_k x w_ik / sum_j w_jk``.

    The shares of a step add up to its wall time, so their total is the replica's busy time.
    """
    out: dict[Hashable, float] = {}
    for step in steps:
        total = sum(step.weights.values())
        if total <= 0 or step.seconds <= 0:
            continue
        for request, weight in step.weights.items():
            out[request] = out.get(request, 0.0) + step.seconds * weight / total
    return out


@dataclass(frozen=True)
class ReplicaWindow:
    """What one replica did and used over ``seconds`` of wall time.

    ``cpu_seconds`` and ``memory_gb`` come from the OS (measured); ``busy_seconds`` is the sum of
    its requests' shares (:func:`shares`, or the time it had a request in flight);
    ``vcpus`` and ``gpus`` are what it reserves (the allocation basis prices
    ``max(reserved, used)``). ``gpu_joules`` is measured GPU energy over the window, if any.
    """

    resource: str
    revision: str
    owner: str
    replica: str
    seconds: float
    cpu_seconds: float
    busy_seconds: float
    requests: int
    memory_gb: float
    vcpus: float = 1.0
    gpus: float = 0.0
    gpu_joules: float | None = None


def window_since(now: ReplicaWindow, then: ReplicaWindow | None) -> ReplicaWindow:
    """What one replica did between two readings of its cumulative window (``then`` earlier;
    None: it started after the window began, so all of ``now``). Memory is the later reading's.

    >>> a = ReplicaWindow("m", "1", "t", "m-1", 60.0, 6.0, 30.0, 100, 0.5)
    >>> b = ReplicaWindow("m", "1", "t", "m-1", 100.0, 10.0, 50.0, 180, 0.6)
    >>> w = window_since(b, a)
    >>> w.seconds, w.cpu_seconds, w.busy_seconds, w.requests, w.memory_gb
    (40.0, 4.0, 20.0, 80, 0.6)
    """
    if then is None:
        return now
    gpu = None
    if now.gpu_joules is not None and then.gpu_joules is not None:
        gpu = max(now.gpu_joules - then.gpu_joules, 0.0)
    return replace(
        now,
        seconds=max(now.seconds - then.seconds, 0.0),
        cpu_seconds=max(now.cpu_seconds - then.cpu_seconds, 0.0),
        busy_seconds=max(now.busy_seconds - then.busy_seconds, 0.0),
        requests=max(now.requests - then.requests, 0),
        gpu_joules=gpu,
    )


@dataclass(frozen=True)
class Figures:
    """Cost, energy and carbon of some requests (or of idle time), with method and band.

    ``energy_j``/``co2e_g`` are central estimates; ``*_low``/``*_high`` bound them (the CPU
    power of the most and least efficient micro-architecture in the table). ``method`` is
    ``measured`` only when every joule came from a counter.
    """

    requests: int = 0
    cpu_seconds: float = 0.0
    busy_seconds: float = 0.0
    cost_usd: float = 0.0
    energy_j: float = 0.0
    energy_j_low: float = 0.0
    energy_j_high: float = 0.0
    co2e_g: float = 0.0
    co2e_g_low: float = 0.0
    co2e_g_high: float = 0.0
    method: Method = "measured"

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.requests + other.requests,
            self.cpu_seconds + other.cpu_seconds,
            self.busy_seconds + other.busy_seconds,
            self.cost_usd + other.cost_usd,
            self.energy_j + other.energy_j,
            self.energy_j_low + other.energy_j_low,
            self.energy_j_high + other.energy_j_high,
            self.co2e_g + other.co2e_g,
            self.co2e_g_low + other.co2e_g_low,
            self.co2e_g_high + other.co2e_g_high,
            "estimated" if "estimated" in (self.method, other.method) else "measured",
        )

    def scaled(self, fraction: float, requests: int) -> Figures:
        return Figures(
            requests,
            self.cpu_seconds * fraction,
            self.busy_seconds * fraction,
            self.cost_usd * fraction,
            self.energy_j * fraction,
            self.energy_j_low * fraction,
            self.energy_j_high * fraction,
            self.co2e_g * fraction,
            self.co2e_g_low * fraction,
            self.co2e_g_high * fraction,
            self.method,
        )

    def per_1k_requests_usd(self) -> float | None:
        return self.cost_usd * 1000.0 / self.requests if self.requests else None

    def joules_per_request(self) -> float | None:
        return self.energy_j / self.requests if self.requests else None


@dataclass(frozen=True)
class Attribution:
    """One replica window split: what its requests carry, and idle (zero on allocation)."""

    window: ReplicaWindow
    requests: Figures
    idle: Figures


def replica_cost_usd(w: ReplicaWindow, c: Coefficients) -> float:
    """Allocation cost of the window: ``hours x (cpu price x max(vCPUs, cores used) + ...)``."""
    hours = w.seconds / 3600.0
    cores_used = w.cpu_seconds / w.seconds if w.seconds > 0 else 0.0
    p = c.prices
    return hours * (
        p.cpu_core_hour * max(w.vcpus, cores_used)
        + p.ram_gb_hour * w.memory_gb
        + p.gpu_hour * w.gpus
    )


def _energy(w: ReplicaWindow, cpu: CpuPower, c: Coefficients) -> tuple[float, float]:
    """(static J, active J) at the wall: static is time-proportional (idle CPU floor, memory,
    GPU floor); active is what CPU seconds (and GPU work) add above it. CCF's linear model
    integrates to ``vCPUs x MinW x W + (MaxW - MinW) x CPU seconds``."""
    static = w.vcpus * cpu.min_w * w.seconds + w.memory_gb * c.memory_w_per_gb * w.seconds
    active = (cpu.max_w - cpu.min_w) * w.cpu_seconds
    if w.gpu_joules is not None:
        active += w.gpu_joules
    elif w.gpus and c.gpu is not None:
        low, high = c.gpu
        busy = w.busy_seconds / w.seconds if w.seconds > 0 else 0.0
        static += w.gpus * low * w.seconds
        active += w.gpus * (high - low) * busy * w.seconds
    return static * c.pue, active * c.pue


def attribute(w: ReplicaWindow, c: Coefficients, basis: Basis = "usage") -> Attribution:
    """Split one replica window between its requests and idle time (package docstring)."""
    busy = min(max(w.busy_seconds, 0.0), w.seconds)
    idle_share = (w.seconds - busy) / w.seconds if w.seconds > 0 and busy > 0 else 1.0
    if basis == "allocation" and busy > 0:
        idle_share = 0.0
    cost = replica_cost_usd(w, c)
    energies = [_energy(w, cpu, c) for cpu in (c.cpu, LOW_CPU, HIGH_CPU)]
    if c.cpu.source.startswith("configured"):
        energies[1] = energies[2] = energies[0]
    g_per_j = c.grid_g_per_kwh / J_PER_KWH
    counted = w.gpu_joules is not None and not (w.vcpus or w.cpu_seconds or w.memory_gb)
    method: Method = "measured" if counted else "estimated"

    def part(static_share: float, active_share: float, cpu_share: float, n: int) -> Figures:
        joules = [s * static_share + a * active_share for s, a in energies]
        return Figures(
            requests=n,
            cpu_seconds=w.cpu_seconds * cpu_share,
            busy_seconds=busy if n else 0.0,
            cost_usd=cost * static_share,
            energy_j=joules[0],
            energy_j_low=min(joules),
            energy_j_high=max(joules),
            co2e_g=joules[0] * g_per_j,
            co2e_g_low=min(joules) * g_per_j,
            co2e_g_high=max(joules) * g_per_j,
            method=method,
        )

    # Active energy (CPU seconds above the idle floor) follows the requests on both bases.
    active_share = 1.0 if busy > 0 else 0.0
    requests = part(1.0 - idle_share, active_share, 1.0 - idle_share, w.requests)
    idle = part(idle_share, 1.0 - active_share, idle_share, 0)
    return Attribution(w, requests, idle)


@dataclass(frozen=True)
class Row:
    """One line of a roll-up: the requests' figures and the idle beside them."""

    key: tuple[str, ...]
    requests: Figures
    idle: Figures

    @property
    def total(self) -> Figures:
        return self.requests + self.idle


By = Literal["resource", "revision", "owner", "replica"]
_KEYS: dict[By, tuple[str, ...]] = {
    "resource": ("resource",),
    "revision": ("resource", "revision"),
    "owner": ("owner",),
    "replica": ("resource", "revision", "replica"),
}


def roll_up(attributions: Sequence[Attribution], by: By) -> list[Row]:
    """Sum attributions by resource, revision (of a resource), owner or replica; sorted."""
    rows: dict[tuple[str, ...], tuple[Figures, Figures]] = {}
    for a in attributions:
        key = tuple(getattr(a.window, field) for field in _KEYS[by])
        requests, idle = rows.get(key, (Figures(), Figures()))
        rows[key] = (requests + a.requests, idle + a.idle)
    return [Row(key, r, i) for key, (r, i) in sorted(rows.items())]


def key_names(by: By) -> tuple[str, ...]:
    return _KEYS[by]


def figures_json(f: Figures) -> dict[str, object]:
    """One :class:`Figures` as JSON: totals, per-request ratios, the band and the method."""
    return {
        "requests": f.requests,
        "cpu_seconds": f.cpu_seconds,
        "busy_seconds": f.busy_seconds,
        "cost_usd": f.cost_usd,
        "cost_per_1k_requests_usd": f.per_1k_requests_usd(),
        "energy_joules": f.energy_j,
        "energy_joules_band": [f.energy_j_low, f.energy_j_high],
        "joules_per_request": f.joules_per_request(),
        "co2e_grams": f.co2e_g,
        "co2e_grams_band": [f.co2e_g_low, f.co2e_g_high],
        "method": f.method,
    }


def report(
    attributions: Sequence[Attribution], by: By, basis: Basis, c: Coefficients
) -> dict[str, object]:
    """The roll-up of ``attributions`` by ``by`` as JSON (``kaip cost -o json``, the portal)."""
    rows = roll_up(attributions, by)
    total_requests = sum((r.requests for r in rows), Figures())
    total_idle = sum((r.idle for r in rows), Figures())
    return {
        "by": by,
        "basis": basis,
        "rows": [
            {
                **dict(zip(key_names(by), row.key, strict=True)),
                **figures_json(row.requests),
                "idle": figures_json(row.idle),
            }
            for row in rows
        ],
        "total": {**figures_json(total_requests), "idle": figures_json(total_idle)},
        "coefficients": {
            "prices_usd_per_hour": {
                "cpu_core": c.prices.cpu_core_hour,
                "ram_gb": c.prices.ram_gb_hour,
                "gpu": c.prices.gpu_hour,
                "source": c.prices.source,
            },
            "cpu_watts_per_vcpu": {"min": c.cpu.min_w, "max": c.cpu.max_w, "source": c.cpu.source},
            "memory_watts_per_gb": c.memory_w_per_gb,
            "pue": c.pue,
            "grid_g_per_kwh": c.grid_g_per_kwh,
            "grid_source": c.grid_source,
        },
    }
