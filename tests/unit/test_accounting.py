"""The attribution kernel: the package docstring's worked example, shares of batches, that
requests plus idle add up to the replica on both bases, roll-ups, bands and overrides."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaip.accounting import (
    Coefficients,
    CpuPower,
    ReplicaWindow,
    Step,
    attribute,
    cpu_power,
    micro_architecture,
    roll_up,
    shares,
)
from kaip.accounting.coefficients import CPU_POWER, UNKNOWN_CPU


def window(**changes: object) -> ReplicaWindow:
    values: dict[str, object] = {
        "resource": "digits",
        "revision": "3",
        "owner": "team-a",
        "replica": "digits-3-1",
        "seconds": 3600.0,
        "cpu_seconds": 720.0,
        "busy_seconds": 900.0,
        "requests": 10_000,
        "memory_gb": 0.5,
    }
    values.update(changes)
    return ReplicaWindow(**values)  # type: ignore[arg-type]


def test_the_worked_example_of_the_package_docstring() -> None:
    split = attribute(window(), Coefficients())
    assert split.requests.cost_usd == pytest.approx(0.008432, abs=1e-6)
    assert split.requests.per_1k_requests_usd() == pytest.approx(0.000843, abs=1e-6)
    assert split.idle.cost_usd == pytest.approx(0.025297, abs=1e-6)
    assert split.requests.energy_j == pytest.approx(2829.6)
    assert split.idle.energy_j == pytest.approx(2527.2)
    assert split.requests.joules_per_request() == pytest.approx(0.28296)
    assert split.requests.co2e_g == pytest.approx(2829.6 / 3.6e6 * 436)
    assert split.requests.method == "estimated"
    assert split.requests.energy_j_low < split.requests.energy_j < split.requests.energy_j_high


def test_batch_shares_follow_work_and_add_up_to_busy_time() -> None:
    steps = [Step(0.010, {"a": 1, "b": 3}), Step(0.004, {"b": 1}), Step(0.0, {"c": 1})]
    got = shares(steps)
    assert got == pytest.approx({"a": 0.0025, "b": 0.0075 + 0.004})
    assert sum(got.values()) == pytest.approx(0.014)


@given(
    seconds=st.floats(1, 1e5),
    cpu_frac=st.floats(0, 4),
    busy_frac=st.floats(0, 1),
    memory=st.floats(0, 64),
    gpu_j=st.one_of(st.none(), st.floats(0, 1e7)),
    basis=st.sampled_from(["usage", "allocation"]),
)
def test_requests_plus_idle_add_up_to_the_replica(
    seconds: float,
    cpu_frac: float,
    busy_frac: float,
    memory: float,
    gpu_j: float | None,
    basis: str,
) -> None:
    w = window(
        seconds=seconds,
        cpu_seconds=seconds * cpu_frac,
        busy_seconds=seconds * busy_frac,
        memory_gb=memory,
        gpus=1.0 if gpu_j is not None else 0.0,
        gpu_joules=gpu_j,
    )
    whole = attribute(w, Coefficients(), "allocation" if basis == "allocation" else "usage")
    total = whole.requests + whole.idle
    alone = attribute(
        window(
            seconds=seconds,
            cpu_seconds=seconds * cpu_frac,
            busy_seconds=0.0,
            memory_gb=memory,
            gpus=w.gpus,
            gpu_joules=gpu_j,
        ),
        Coefficients(),
    ).idle  # no busy time: all of it is idle, the replica's whole figures
    for name in ("cpu_seconds", "cost_usd", "energy_j", "co2e_g", "energy_j_high"):
        assert getattr(total, name) == pytest.approx(getattr(alone, name), rel=1e-9, abs=1e-9)
    if basis == "allocation" and busy_frac > 0:
        assert whole.idle.cost_usd == 0.0


def test_twice_the_work_costs_twice_on_the_usage_basis_and_the_same_allocated() -> None:
    once = attribute(window(cpu_seconds=600.0, busy_seconds=600.0), Coefficients())
    twice = attribute(window(cpu_seconds=1200.0, busy_seconds=1200.0), Coefficients())
    ratio = twice.requests.per_1k_requests_usd() / once.requests.per_1k_requests_usd()  # type: ignore[operator]
    assert ratio == pytest.approx(2.0)
    assert twice.requests.energy_j / once.requests.energy_j > 1.5
    allocated = [attribute(w.window, Coefficients(), "allocation") for w in (once, twice)]
    assert allocated[0].requests.cost_usd == pytest.approx(allocated[1].requests.cost_usd)


def test_roll_up_by_revision_and_owner() -> None:
    windows = [
        window(replica="d-1"),
        window(replica="d-2"),
        window(revision="4", replica="d-3", requests=5000),
        window(resource="other", owner="team-b", replica="o-1", requests=1),
    ]
    splits = [attribute(w, Coefficients()) for w in windows]
    by_revision = roll_up(splits, "revision")
    assert [r.key for r in by_revision] == [("digits", "3"), ("digits", "4"), ("other", "3")]
    assert by_revision[0].requests.requests == 20_000
    assert by_revision[0].requests.cost_usd == pytest.approx(2 * splits[0].requests.cost_usd)
    by_owner = roll_up(splits, "owner")
    assert [(r.key, r.requests.requests) for r in by_owner] == [
        (("team-a",), 25_000),
        (("team-b",), 1),
    ]


def test_cpu_models_pick_ccf_coefficients_and_unknown_ones_the_average() -> None:
    assert micro_architecture("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz") == "Cascade Lake"
    assert micro_architecture("Intel(R) Xeon(R) Gold 6154 CPU @ 3.00GHz") == "Skylake"
    assert micro_architecture("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz") == "Broadwell"
    assert micro_architecture("AMD EPYC 7R13 Processor") is None  # no digit-coded generation
    assert micro_architecture("AMD EPYC 7763 64-Core Processor") == "AMD EPYC 3rd Gen"
    assert cpu_power("AMD EPYC 7742 64-Core Processor").max_w == CPU_POWER["AMD EPYC 2nd Gen"][1]
    assert cpu_power("Apple M2") == UNKNOWN_CPU


def test_configured_cpu_power_has_no_band_and_gpu_joules_measured() -> None:
    mine = Coefficients(cpu=CpuPower(1.0, 2.0, "configured: KAIP_COST_CPU_WATTS"))
    split = attribute(window(), mine)
    assert split.requests.energy_j_low == split.requests.energy_j == split.requests.energy_j_high
    only = window(vcpus=0.0, cpu_seconds=0.0, memory_gb=0.0, gpus=1.0, gpu_joules=5000.0)
    gpu_only = attribute(only, mine)
    assert gpu_only.requests.method == "measured"
    assert gpu_only.requests.energy_j == pytest.approx(5000.0)
