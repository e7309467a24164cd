"""kaip.policy.autoscale, driven by a fake clock through load scenarios."""

from __future__ import annotations

import doctest
from dataclasses import dataclass

import kaip.policy.rollouts
import kaip.policy.scaling
from kaip.policy import LoadObservation, ScaleMemory, autoscale
from kaip.spec import Scaling


@dataclass
class FakeClock:
    now: float = 0.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def test_docstring_examples_hold() -> None:
    for module in (kaip.policy.scaling, kaip.policy.rollouts):
        result = doctest.testmod(module)
        assert result.attempted > 0
        assert result.failed == 0


def test_scale_up_is_immediate_and_bounded_by_max() -> None:
    s = Scaling(min_replicas=1, max_replicas=4, target_concurrency=2)
    d = autoscale(s, current=1, load=LoadObservation(50, 0, 0.0), now=0.0)
    assert d.desired == 4
    assert "bounded" in d.reason


def test_min_replicas_is_kept_without_load() -> None:
    s = Scaling(min_replicas=2, max_replicas=4, target_concurrency=2)
    d = autoscale(s, current=2, load=LoadObservation(0, 0, 0.0), now=1000.0)
    assert d.desired == 2


def test_scale_down_waits_for_the_stabilisation_window_against_flapping() -> None:
    s = Scaling(min_replicas=1, max_replicas=5, target_concurrency=1)
    clock = FakeClock()
    memory = ScaleMemory()
    current = 1
    seen = []
    # Load alternates between 4 and 1 every tick: without stabilisation this flaps 4,1,4,1.
    for tick in range(20):
        in_flight = 4 if tick % 2 == 0 else 1
        d = autoscale(
            s,
            current=current,
            load=LoadObservation(in_flight, 0, clock.now),
            now=clock.now,
            memory=memory,
            stabilization_seconds=10,
        )
        memory, current = d.memory, d.desired
        seen.append(current)
        clock.advance(1)
    assert seen[0] == 4
    assert set(seen) == {4}
    # Once the load stays low for longer than the window, it comes down.
    for _ in range(12):
        d = autoscale(
            s,
            current=current,
            load=LoadObservation(1, 0, clock.now),
            now=clock.now,
            memory=memory,
            stabilization_seconds=10,
        )
        memory, current = d.memory, d.desired
        clock.advance(1)
    assert current == 1


def test_scale_to_zero_only_after_idle_period_and_only_with_min_zero() -> None:
    s = Scaling(
        min_replicas=0, max_replicas=2, target_concurrency=4, scale_to_zero_after_seconds=30
    )
    clock = FakeClock(100.0)
    last_request = 100.0
    memory = ScaleMemory()
    current = 1
    while clock.now < 129.0:
        d = autoscale(
            s,
            current=current,
            load=LoadObservation(0, 0, last_request),
            now=clock.now,
            memory=memory,
        )
        memory, current = d.memory, d.desired
        assert current == 1, d.reason
        clock.advance(1)
    clock.advance(1)
    d = autoscale(
        s, current=current, load=LoadObservation(0, 0, last_request), now=clock.now, memory=memory
    )
    assert d.desired == 0
    assert "idle" in d.reason
    kept = Scaling(min_replicas=1, max_replicas=2, scale_to_zero_after_seconds=30)
    assert autoscale(kept, current=1, load=LoadObservation(0, 0, 0.0), now=1e6).desired == 1


def test_held_request_scales_from_zero_at_once() -> None:
    s = Scaling(
        min_replicas=0, max_replicas=2, target_concurrency=4, scale_to_zero_after_seconds=30
    )
    stays = autoscale(s, current=0, load=LoadObservation(0, 0, 0.0), now=1000.0)
    assert stays.desired == 0
    d = autoscale(s, current=0, load=LoadObservation(0, 1, 0.0), now=1000.0)
    assert d.desired == 1
    assert "scale from zero" in d.reason
