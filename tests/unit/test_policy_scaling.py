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


KV = Scaling(min_replicas=1, max_replicas=8, target_concurrency=8, target_kv_cache_usage=0.5)


def kv_load(in_flight: int, usage: float | None) -> LoadObservation:
    return LoadObservation(in_flight, 0, 0.0, kv_cache_usage=usage)


def test_kv_cache_use_above_its_target_adds_replicas_as_the_hpa_computes_them() -> None:
    # 2 requests need 1 replica by concurrency; 2 replicas at 90% against 50% need ceil(3.6)
    d = autoscale(KV, current=2, load=kv_load(2, 0.9), now=0.0)
    assert d.desired == 4
    assert d.reason == "KV cache 90% over 2 replica(s) / target 50%"
    # bounded by maxReplicas as any need
    d = autoscale(KV, current=6, load=kv_load(2, 1.0), now=0.0)
    assert d.desired == 8 and "bounded to [1, 8]" in d.reason


def test_the_larger_need_wins_and_kv_cache_within_tolerance_keeps_the_count() -> None:
    # concurrency asks more (40/8 = 5) than the KV cache (ceil(2 * 0.6 / 0.5) = 3)
    assert autoscale(KV, current=2, load=kv_load(40, 0.6), now=0.0).desired == 5
    # 0.54 / 0.5 = 1.08: within 10 % of the target, the count stays (no flapping)
    d = autoscale(KV, current=3, load=kv_load(1, 0.54), now=0.0)
    assert d.desired == 3 and d.reason.startswith("KV cache 54% over 3")
    # 0.56 / 0.5 = 1.12: outside it
    assert autoscale(KV, current=3, load=kv_load(1, 0.56), now=0.0).desired == 4


def test_kv_cache_use_counts_only_while_requests_are_in_flight() -> None:
    """An idle llama.cpp replica's gauge still reads its last conversation (kept as cache)."""
    d = autoscale(KV, current=1, load=kv_load(0, 0.95), now=1.0)
    assert d.desired == 1 and d.reason == "keeping one replica warm"
    zero = Scaling(min_replicas=0, max_replicas=4, target_kv_cache_usage=0.5,
                   scale_to_zero_after_seconds=60)  # fmt: skip
    d = autoscale(zero, current=1, load=kv_load(0, 0.95), now=100.0)
    assert d.desired == 0, "scale to zero goes by requests alone"


def test_without_a_target_or_a_reading_kv_cache_use_is_ignored() -> None:
    plain = Scaling(min_replicas=1, max_replicas=8, target_concurrency=8)
    assert autoscale(plain, current=2, load=kv_load(2, 1.0), now=0.0).desired == 1
    assert autoscale(KV, current=2, load=kv_load(2, None), now=0.0).desired == 1
    # from zero there is no replica to read: held requests start one, as ever
    held = LoadObservation(0, 3, 0.0, kv_cache_usage=None)
    assert autoscale(KV, current=0, load=held, now=0.0).desired == 1
