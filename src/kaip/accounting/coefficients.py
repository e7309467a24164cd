"""The defaults the attribution kernel prices and powers with, each with its source.

Owns the shipped tables: OpenCost's default on-prem prices, Cloud Carbon Footprint's (CCF)
per-vCPU power coefficients by CPU micro-architecture and its memory and GPU coefficients, CCF's
PUE by provider, and grid carbon intensities by region; and the pick of a micro-architecture
from a CPU model name. Every default can be overridden (:class:`Coefficients` is a plain value;
``kaip cost`` reads overrides from the environment). Never does I/O: the caller reads the CPU
model (``/proc/cpuinfo``) and passes it in.

Sources (read in the primary source, see ../../../docs/observability.md):

* Prices: OpenCost ``configs/default.json`` ("based on GCP us-central1"), per hour: CPU
  $0.031611/core, RAM $0.004237/GB, GPU $0.95.
* CPU power: CCF methodology, ``Average W = MinW + util x (MaxW - MinW)`` per vCPU, with the
  min/max watts per micro-architecture of CCF's app constants (SPECpower-derived). Unknown
  micro-architecture: CCF's AWS average, 0.74 / 3.5 W.
* Memory: CCF, 0.392 W/GB (the mean of Crucial's 0.375 and Micron's 0.4083).
* GPU: CCF appendix III (Teads ratios applied to TechPowerUp TDP), min/max W per GPU.
* PUE: CCF, AWS 1.135, GCP 1.1, Azure 1.185; on-prem or a laptop: 1.0 unless configured.
* Grid intensity (gCO2e/kWh): Ember's world average 436 (2022) by default; CCF's factors for a few
  cloud regions (EPA eGRID2020, EEA, carbonfootprint.com).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

OPENCOST_DEFAULT_JSON = "OpenCost configs/default.json (GCP us-central1 based)"
CCF = "Cloud Carbon Footprint methodology (cloudcarbonfootprint.org/docs/methodology)"


@dataclass(frozen=True)
class Prices:
    """Hourly prices in USD. Default: OpenCost's ``configs/default.json``."""

    cpu_core_hour: float = 0.031611
    ram_gb_hour: float = 0.004237
    gpu_hour: float = 0.95
    source: str = OPENCOST_DEFAULT_JSON


@dataclass(frozen=True)
class CpuPower:
    """Watts per vCPU at idle (``min_w``) and at 100 % (``max_w``), and where they come from."""

    min_w: float
    max_w: float
    source: str

    def watts(self, utilization: float) -> float:
        """CCF's linear model per vCPU; ``utilization`` is clamped to [0, 1]."""
        u = min(1.0, max(0.0, utilization))
        return self.min_w + u * (self.max_w - self.min_w)


CPU_POWER: dict[str, tuple[float, float]] = {
    # micro-architecture: (min W, max W) per vCPU, CCF app constants.
    "Cascade Lake": (0.64, 3.97),
    "Skylake": (0.65, 4.26),
    "Broadwell": (0.71, 3.69),
    "Haswell": (1.00, 4.74),
    "Coffee Lake": (1.14, 5.42),
    "Sandy Bridge": (2.17, 8.58),
    "Ivy Bridge": (3.04, 8.25),
    "AMD EPYC 1st Gen": (0.82, 2.55),
    "AMD EPYC 2nd Gen": (0.47, 1.69),
    "AMD EPYC 3rd Gen": (0.45, 2.02),
}
UNKNOWN_CPU = CpuPower(0.74, 3.5, f"{CCF}: AWS average (micro-architecture unknown)")
LOW_CPU = CpuPower(*CPU_POWER["AMD EPYC 3rd Gen"], f"{CCF}: AMD EPYC 3rd Gen (the band's low end)")
HIGH_CPU = CpuPower(*CPU_POWER["Sandy Bridge"], f"{CCF}: Sandy Bridge (the band's high end)")

GPU_POWER: dict[str, tuple[float, float]] = {
    # GPU: (min W, max W), CCF appendix III.
    "T4": (8.0, 71.0),
    "A10G": (18.0, 153.0),
    "V100": (35.0, 306.0),
    "A100": (46.0, 407.0),
    "P4": (9.0, 76.5),
    "P100": (36.0, 306.0),
    "P40": (30.0, 255.0),
    "K80": (35.0, 306.0),
    "M60": (35.0, 306.0),
}
MEMORY_W_PER_GB = 0.392  # CCF
PUE: dict[str, float] = {"aws": 1.135, "gcp": 1.1, "azure": 1.185, "local": 1.0}  # CCF; local: 1
GRID_G_PER_KWH: dict[str, float] = {
    # region: gCO2e/kWh. "world": Ember, 2022; the rest CCF's cloud factors (t/kWh x 1e6).
    "world": 436.0,
    "us-east-1": 379.0,
    "us-west-2": 322.0,
    "eu-central-1": 311.0,
    "eu-west-1": 279.0,
    "eu-west-3": 51.1,
    "eu-north-1": 8.8,
    "ap-south-1": 708.0,
}

# (pattern on the CPU model name, micro-architecture). Intel Xeon Scalable: the model number's
# second digit is the generation (1 Skylake, 2 Cascade Lake); E5/E7 v4 Broadwell, v3 Haswell,
# v2 Ivy Bridge, none Sandy Bridge; EPYC: the last digit of 7xxN is the generation.
_ARCH_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"xeon.*(platinum|gold|silver|bronze)\s*\d1\d\d", re.I), "Skylake"),
    (re.compile(r"xeon.*(platinum|gold|silver|bronze)\s*\d2\d\d", re.I), "Cascade Lake"),
    (re.compile(r"xeon.*e[357]-\d{4}\w*\s+v4", re.I), "Broadwell"),
    (re.compile(r"xeon.*e[357]-\d{4}\w*\s+v3", re.I), "Haswell"),
    (re.compile(r"xeon.*e[357]-\d{4}\w*\s+v2", re.I), "Ivy Bridge"),
    (re.compile(r"xeon.*e[357]-\d{4}\w*(\s+0)?\s*(@|$)", re.I), "Sandy Bridge"),
    (re.compile(r"xeon.*e-2[12]\d\d", re.I), "Coffee Lake"),
    (re.compile(r"epyc\s+7\d\d1", re.I), "AMD EPYC 1st Gen"),
    (re.compile(r"epyc\s+7\d\d2", re.I), "AMD EPYC 2nd Gen"),
    (re.compile(r"epyc\s+7\d\d3", re.I), "AMD EPYC 3rd Gen"),
)


def micro_architecture(cpu_model: str) -> str | None:
    """The CCF micro-architecture of a CPU model name (``/proc/cpuinfo``'s "model name")."""
    for pattern, arch in _ARCH_PATTERNS:
        if pattern.search(cpu_model):
            return arch
    return None


def cpu_power(cpu_model: str) -> CpuPower:
    """CCF's coefficients for ``cpu_model``; CCF's AWS average when it is not recognised."""
    arch = micro_architecture(cpu_model)
    if arch is None:
        return UNKNOWN_CPU
    low, high = CPU_POWER[arch]
    return CpuPower(low, high, f"{CCF}: {arch}")


@dataclass(frozen=True)
class Coefficients:
    """Everything the kernel multiplies by; each field overridable."""

    prices: Prices = field(default_factory=Prices)
    cpu: CpuPower = UNKNOWN_CPU
    memory_w_per_gb: float = MEMORY_W_PER_GB
    gpu: tuple[float, float] | None = None  # (min W, max W) when no energy counter is read
    pue: float = PUE["local"]
    grid_g_per_kwh: float = GRID_G_PER_KWH["world"]
    grid_source: str = "Ember world average 2022 (436 gCO2e/kWh)"
