"""kaip up's cost book: the OS's numbers for a real process, overrides from the environment,
and totals that never go down when a replica goes away."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer

from kaip.accounting import Coefficients
from kaip.cli.cost import duration_seconds
from kaip.errors import ConfigError
from kaip.local.controller.costs import (
    SNAPSHOT_EVERY_S,
    CostBook,
    ProcessUsage,
    ReplicaProcess,
    coefficients_from,
    read_usage,
)
from kaip.local.gateway.signals import ReplicaBusy


def test_read_usage_of_a_real_process_that_burns_cpu() -> None:
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    child = subprocess.Popen([sys.executable, "-c", burn + "\nimport sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        usage = None
        for _ in range(600):  # until it burned its 0.3 s (bounded: 60 s)
            usage = read_usage(child.pid)
            if usage is not None and usage.cpu_seconds >= 0.3:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert usage is not None and usage.cpu_seconds >= 0.3
        assert usage.seconds >= usage.cpu_seconds * 0.5 and 0 < usage.memory_gb < 4
    finally:
        child.kill()
        child.wait()
    assert read_usage(child.pid) is None  # gone


def test_overrides_come_from_kaip_cost_variables_and_bad_ones_are_named() -> None:
    c = coefficients_from(
        {"KAIP_COST_CPU_CORE_HOUR_USD": "0.05", "KAIP_COST_GRID_G_PER_KWH": "51.1",
         "KAIP_COST_CPU_MIN_WATTS": "1", "KAIP_COST_CPU_MAX_WATTS": "3"},
        "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz",
    )  # fmt: skip
    assert c.prices.cpu_core_hour == 0.05 and c.grid_g_per_kwh == 51.1
    assert (c.cpu.min_w, c.cpu.max_w) == (1.0, 3.0) and c.cpu.source.startswith("configured")
    default = coefficients_from({}, "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz")
    assert "Cascade Lake" in default.cpu.source and default.prices == Coefficients().prices
    with pytest.raises(ConfigError, match="KAIP_COST_PUE='high'"):
        coefficients_from({"KAIP_COST_PUE": "high"}, "")
    with pytest.raises(ConfigError, match="set both"):
        coefficients_from({"KAIP_COST_CPU_MIN_WATTS": "1"}, "")


def test_a_replica_that_goes_away_keeps_its_share_of_the_totals() -> None:
    live = [ReplicaProcess("model", "m", "1", "t", "m-1", os.getpid(), 1.0)]
    usage = {os.getpid(): ProcessUsage(100.0, 10.0, 0.5)}
    book = CostBook(
        Coefficients(),
        replicas=lambda: list(live),
        busy=lambda: {"m-1": ReplicaBusy(20.0, 50)},
        usage=usage.get,
    )
    [(key, before)] = book.counters()
    assert key == ("model", "m", "1", "t") and before.requests == 50 and before.cost_usd > 0
    live.clear()
    [(_, after)] = book.counters()
    assert after == before


def test_the_cost_gate_gets_each_revisions_requests_and_cost_of_one_resource() -> None:
    live = [
        ReplicaProcess("model", "m", "1", "t", "m-1", 11, 1.0),
        ReplicaProcess("model", "m", "1", "t", "m-2", 12, 1.0),
        ReplicaProcess("model", "m", "2", "t", "m-3", 13, 1.0),
        ReplicaProcess("app", "m", "1", "t", "a-1", 14, 1.0),  # an App of the same name
    ]
    usage = {pid: ProcessUsage(100.0, 10.0, 0.5) for pid in (11, 12, 13, 14)}
    busy = {
        "m-1": ReplicaBusy(10.0, 50), "m-2": ReplicaBusy(10.0, 50),
        "m-3": ReplicaBusy(40.0, 100), "a-1": ReplicaBusy(90.0, 10),
    }  # fmt: skip
    book = CostBook(Coefficients(), replicas=lambda: live, busy=lambda: busy, usage=usage.get)
    evidence = book.per_revision("model", "m")
    assert set(evidence) == {"1", "2"}
    assert (evidence["1"].requests, evidence["2"].requests) == (100, 100)
    # Revision 2 kept its replica busy twice as long per request: twice the cost per 1,000.
    one, two = evidence["1"].per_1k_usd(), evidence["2"].per_1k_usd()
    assert one is not None and two is not None and two == pytest.approx(2 * one)


def test_the_cost_gate_counts_from_a_mark_stables_busier_past_and_gone_replicas_left_out() -> None:
    live = [
        ReplicaProcess("model", "m", "1", "t", "gone", 10, 1.0),
        ReplicaProcess("model", "m", "1", "t", "m-1", 11, 1.0),
    ]
    usage = {10: ProcessUsage(50.0, 5.0, 0.5), 11: ProcessUsage(100.0, 10.0, 0.5)}
    # stable's past: 1,000 requests in 10 busy seconds (batched, a busy hour) ...
    busy = {"gone": ReplicaBusy(1.0, 100), "m-1": ReplicaBusy(10.0, 1000)}
    book = CostBook(Coefficients(), replicas=lambda: list(live), busy=lambda: busy, usage=usage.get)
    book.per_revision("model", "m")
    live.pop(0)  # "gone" leaves before the canary's first step ...
    live.append(ReplicaProcess("model", "m", "2", "t", "m-2", 12, 1.0))
    usage[12] = ProcessUsage(8.0, 3.0, 0.5)  # ... and the canary is ready, its start-up done
    busy["m-2"] = ReplicaBusy(0.0, 0)
    mark = book.mark("model", "m")
    assert set(mark) == {"gone", "m-1", "m-2"}
    # ... since then each revision answered 40 requests one at a time, 50 ms busy each.
    usage[11], usage[12] = ProcessUsage(110.0, 12.0, 0.5), ProcessUsage(18.0, 5.0, 0.5)
    busy["m-1"], busy["m-2"] = ReplicaBusy(12.0, 1040), ReplicaBusy(2.0, 40)
    since = book.per_revision("model", "m", since=mark)
    assert (since["1"].requests, since["2"].requests) == (40, 40)
    one, two = since["1"].per_1k_usd(), since["2"].per_1k_usd()
    assert one is not None and two is not None and two == pytest.approx(one)
    whole = book.per_revision("model", "m")  # whole lives: the canary looks ~5x dearer
    old, new = whole["1"].per_1k_usd(), whole["2"].per_1k_usd()
    assert old is not None and new is not None and new > 4 * old
    replicas = book.per_revision("app", "m", since=book.mark("app", "m"))
    assert replicas == {}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_since_covers_only_the_last_seconds_from_the_minute_readings() -> None:
    clock = Clock()
    live = [ReplicaProcess("model", "m", "1", "t", "m-1", 11, 1.0)]
    usage = {11: ProcessUsage(10.0, 1.0, 0.5)}
    busy = {"m-1": ReplicaBusy(2.0, 10)}
    book = CostBook(
        Coefficients(), replicas=lambda: live, busy=lambda: busy, usage=usage.get, clock=clock
    )
    book.snapshot()  # kaip up's first reading, at its start
    for minute in range(1, 4):  # three more minutes, 100 requests and 60 CPU s each
        clock.now += SNAPSHOT_EVERY_S
        usage[11] = ProcessUsage(10.0 + 60 * minute, 1.0 + 60 * minute, 0.5)
        busy["m-1"] = ReplicaBusy(2.0 + 30 * minute, 10 + 100 * minute)
        book.snapshot()
    clock.now += 5.0
    [everything], covered = book.attributions()
    assert everything.requests.requests == 310 and covered == pytest.approx(185.0)
    [last], covered = book.attributions(since_s=60.0)  # the reading at or before 60 s ago
    assert covered == pytest.approx(65.0)
    assert last.requests.requests == 100  # nothing moved in the last 5 s
    assert last.window.cpu_seconds == pytest.approx(60.0)
    [young], covered = book.attributions(since_s=3600.0)  # older than kaip up: all of it
    assert young.requests.requests == 310 and covered == pytest.approx(185.0)


def test_since_leaves_out_replicas_gone_before_and_counts_new_ones_whole() -> None:
    clock = Clock()
    live = [ReplicaProcess("model", "m", "1", "t", "old", 11, 1.0)]
    usage = {11: ProcessUsage(10.0, 1.0, 0.5), 12: ProcessUsage(5.0, 2.0, 0.5)}
    busy = {"old": ReplicaBusy(2.0, 10), "new": ReplicaBusy(3.0, 7)}
    book = CostBook(
        Coefficients(), replicas=lambda: list(live), busy=lambda: busy, usage=usage.get,
        clock=clock,
    )  # fmt: skip
    book.snapshot()
    clock.now += 10.0
    live.clear()  # "old" goes away ...
    book.counters()
    clock.now += SNAPSHOT_EVERY_S
    live.append(ReplicaProcess("model", "m", "2", "t", "new", 12, 1.0))  # ... "new" comes
    book.snapshot()
    clock.now += 30.0
    [new], _ = book.attributions(since_s=20.0)  # after "old" went: only "new", all of it
    assert (new.window.replica, new.requests.requests) == ("new", 0)  # no request since then
    both, _ = book.attributions(since_s=95.0)  # before "old" went: both
    assert {a.window.replica: a.requests.requests for a in both} == {"old": 0, "new": 7}


def test_a_duration_is_read_as_seconds_and_a_bad_one_is_refused() -> None:
    assert duration_seconds("1h30m") == 5400.0 and duration_seconds("90s") == 90.0
    assert duration_seconds("1d") == 86400.0 and duration_seconds(" 15M ") == 900.0
    for bad in ("", "1x", "h", "1h 30m", "0s", "-1h"):
        with pytest.raises(typer.BadParameter, match="give a duration"):
            duration_seconds(bad)


def test_a_requests_cost_and_energy_are_its_replicas_averages_so_far() -> None:
    live = [ReplicaProcess("model", "m", "1", "t", "m-1", 11, 1.0)]
    usage = {11: ProcessUsage(100.0, 10.0, 0.5)}
    busy = {"m-1": ReplicaBusy(20.0, 50)}
    book = CostBook(Coefficients(), replicas=lambda: live, busy=lambda: busy, usage=usage.get)
    per_request = book.per_request("m-1")
    [(_, total)] = book.counters()
    assert per_request == pytest.approx((total.cost_usd / 50, total.energy_j / 50))
    assert book.per_request("m-2") is None  # not running
    busy["m-1"] = ReplicaBusy(0.0, 0)
    assert book.per_request("m-1") is None  # no request answered yet
