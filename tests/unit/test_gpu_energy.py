"""The NVML GPU energy reader: selected only where NVML loads and the GPU answers (not on this
GPU-less machine, where kaip's figures stay estimated), mJ read as J, and its rise shared among
kaip up's GPU replicas by the busy time each added."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kaip.accounting import Coefficients
from kaip.local.controller.costs import CostBook, ProcessUsage, ReplicaProcess
from kaip.local.controller.gpu_energy import NvmlEnergyMeter, gpu_energy_meter, load_pynvml
from kaip.local.gateway.signals import ReplicaBusy

HAS_GPU = Path("/dev/nvidiactl").exists()


class NvmlDown(Exception):
    pass


class FakeNvml:
    """Stands in for pynvml (kaip's boundary, :class:`kaip.local.controller.gpu_energy.Nvml`)."""

    NVMLError = NvmlDown

    def __init__(self, millijoules: list[int], fails_at: str = "") -> None:
        self.millijoules, self.fails_at = millijoules, fails_at

    def nvmlInit(self) -> None:
        if self.fails_at == "init":
            raise NvmlDown("Driver Not Loaded")

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        if index > 0:
            raise NvmlDown("Invalid Argument")
        return "gpu0"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        if self.fails_at == "energy" or not self.millijoules:
            raise NvmlDown("Not Supported")
        return self.millijoules.pop(0)


def test_nvml_is_selected_only_on_a_gpu_and_without_one_gpu_energy_stays_estimated() -> None:
    pytest.importorskip("pynvml", reason="optional extra kaip[gpu] is not installed")
    assert load_pynvml() is not None
    meter = gpu_energy_meter()  # the real pynvml
    if HAS_GPU:  # a GPU machine: the counter is selected and counts up
        assert meter is not None
        first, second = meter.total_joules(), meter.total_joules()
        assert first is not None and second is not None and 0 < first <= second
        return
    assert meter is None  # the shared machine: no driver, no GPU
    live = [ReplicaProcess("model", "m", "1", "t", "m-1", 11, 1.0, gpus=1.0)]
    book = CostBook(Coefficients(gpu=(46.0, 407.0)), replicas=lambda: live,
                    busy=lambda: {"m-1": ReplicaBusy(20.0, 50)},
                    usage={11: ProcessUsage(100.0, 10.0, 0.5)}.get, gpu=meter)  # fmt: skip
    [attribution], _ = book.attributions()
    assert attribution.window.gpu_joules is None
    assert attribution.requests.method == "estimated"
    # CCF's A100 row: 46 W floor for the time busy plus 361 W for the busy share.
    assert attribution.requests.energy_j > 361.0 * 20.0


def test_nvml_is_selected_only_when_it_loads_and_the_device_answers() -> None:
    assert gpu_energy_meter(load=lambda: None) is None  # package missing
    assert gpu_energy_meter(load=lambda: FakeNvml([1], fails_at="init")) is None
    assert gpu_energy_meter(index=1, load=lambda: FakeNvml([1])) is None
    assert gpu_energy_meter(load=lambda: FakeNvml([1], fails_at="energy")) is None  # pre-Volta
    meter = gpu_energy_meter(load=lambda: FakeNvml([5_000, 7_500]))
    assert isinstance(meter, NvmlEnergyMeter)
    assert meter.total_joules() == 7.5  # millijoules since the driver loaded, as joules
    assert meter.total_joules() is None  # NVML stopped answering: no figure, not a crash


class Meter:
    def __init__(self) -> None:
        self.joules = 1000.0

    def total_joules(self) -> float | None:
        return self.joules


def test_the_counters_rise_is_shared_among_gpu_replicas_by_busy_time_added() -> None:
    live = [
        ReplicaProcess("model", "m", "1", "t", "m-1", 11, 1.0, gpus=1.0),
        ReplicaProcess("model", "m", "2", "t", "m-2", 12, 1.0, gpus=1.0),
        ReplicaProcess("model", "c", "1", "t", "c-1", 13, 1.0),  # a CPU replica: none of it
    ]
    busy = {"m-1": ReplicaBusy(0.0, 0), "m-2": ReplicaBusy(0.0, 0), "c-1": ReplicaBusy(5.0, 9)}
    usage = {pid: ProcessUsage(100.0, 10.0, 0.5) for pid in (11, 12, 13)}
    meter = Meter()
    book = CostBook(Coefficients(), replicas=lambda: live, busy=lambda: busy, usage=usage.get,
                    gpu=meter)  # fmt: skip
    book.counters()  # the first reading: nothing before it is anyone's
    meter.joules += 300.0
    busy["m-1"], busy["m-2"] = ReplicaBusy(3.0, 30), ReplicaBusy(1.0, 10)
    windows = {a.window.replica: a.window for a in book.attributions()[0]}
    assert windows["m-1"].gpu_joules == pytest.approx(225.0)
    assert windows["m-2"].gpu_joules == pytest.approx(75.0)
    assert windows["c-1"].gpu_joules is None
    meter.joules += 100.0  # idle: shared evenly
    windows = {a.window.replica: a.window for a in book.attributions()[0]}
    assert windows["m-1"].gpu_joules == pytest.approx(275.0)
    assert windows["m-2"].gpu_joules == pytest.approx(125.0)
