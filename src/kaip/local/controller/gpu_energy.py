"""The GPU's own energy counter, read through NVML: kaip.accounting's ``GpuEnergyMeter``.

Owns loading NVML (``pynvml``, from the ``nvidia-ml-py`` package: ``pip install 'kaip[gpu]'``)
and reading ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded; Volta
and newer) as joules. :func:`gpu_energy_meter` selects the meter only when NVML loads, the device
exists and it answers that call; anywhere else (no package, no driver, no GPU, an older GPU) it
gives None and kaip's GPU figures stay CCF's estimate (``method: estimated``). Never estimates,
never caches a reading, never changes a device.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from kaip.accounting import GpuEnergyMeter

log = logging.getLogger(__name__)


class Nvml(Protocol):
    """The part of ``pynvml`` kaip calls (the boundary a test can stand in for)."""

    NVMLError: type[Exception]

    def nvmlInit(self) -> None: ...

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int: ...


def load_pynvml() -> Nvml | None:
    """``pynvml`` when the package is installed, else None."""
    try:
        module: Any = importlib.import_module("pynvml")
    except ImportError:
        return None
    nvml: Nvml = module
    return nvml


class NvmlEnergyMeter:
    """GPU ``index``'s cumulative energy in joules (a :class:`~kaip.accounting.GpuEnergyMeter`)."""

    def __init__(self, nvml: Nvml, handle: Any, index: int) -> None:
        self._nvml, self._handle, self.index = nvml, handle, index

    def total_joules(self) -> float | None:
        """Joules since the driver loaded; None when NVML stops answering."""
        try:
            return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)) / 1000.0
        except self._nvml.NVMLError as exc:
            log.warning("NVML energy counter of GPU %d unreadable: %s", self.index, exc)
            return None


def gpu_energy_meter(
    index: int = 0, load: Callable[[], Nvml | None] = load_pynvml
) -> GpuEnergyMeter | None:
    """NVML's energy counter of GPU ``index`` when NVML loads and the device answers; None (and
    kaip's GPU energy stays estimated) otherwise, with the reason logged at debug level."""
    nvml = load()
    if nvml is None:
        log.debug("no GPU energy counter: pynvml is not installed (pip install 'kaip[gpu]')")
        return None
    try:
        nvml.nvmlInit()
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # Volta and newer only
    except nvml.NVMLError as exc:
        log.debug("no GPU energy counter: NVML says %s", exc)
        return None
    return NvmlEnergyMeter(nvml, handle, index)
