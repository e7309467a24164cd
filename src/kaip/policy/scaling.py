"""The autoscaling decision: how many replicas a resource should run now (pure).

The controller samples the gateway's load for a resource at every tick and asks
:func:`autoscale` for the desired replica count. The decision is a pure function of the spec's
:class:`~kaip.spec.Scaling`, the sample, the time and the previous :class:`ScaleMemory`; it never
reads a clock or does I/O, so tests drive it with a fake clock.

How it decides, in order:

1. **Raw need.** ``ceil((in_flight + held) / targetConcurrency)``: every request in flight or
   held by the gateway counts towards the concurrency the replicas must carry. With
   ``targetKvCacheUsage`` and requests in flight, also the KV-cache need, as the Kubernetes HPA
   computes it for a Pods metric: ``ceil(current * usage / target)``, ``usage`` the replicas'
   ``kaip_kv_cache_usage_ratio`` averaged, left at ``current`` when ``usage / target`` is within
   :data:`KV_TOLERANCE` of 1 (the HPA's tolerance, against flapping); the larger need wins.
   Only while requests are in flight: between requests a llama.cpp replica's gauge still reads
   its last conversation's share of the context (kept as cache for the next prompt's prefix),
   which no request uses, so an idle resource is never scaled up by it.
2. **Scale from zero.** A held request with no replica always asks for at least one replica,
   at once: the gateway is holding a user's request.
3. **Scale to zero.** With ``minReplicas: 0``, the need drops to zero only after the resource
   has been idle (nothing in flight, nothing held, no request) for ``scaleToZeroAfterSeconds``;
   until then it keeps at least one replica.
4. **Bounds.** The need is clamped to ``[minReplicas, maxReplicas]``.
5. **Stabilisation.** Scaling up is immediate. Scaling down takes the *highest* recommendation
   of the last ``stabilization_seconds`` (as the Kubernetes HPA does for scale-down), so a
   dip in load for one tick does not stop a replica that the next tick needs again.

Worked example (``targetConcurrency: 8``, ``minReplicas: 0``, ``maxReplicas: 3``,
``scaleToZeroAfterSeconds: 60``, stabilisation 30 s)::

    t=0    in_flight=0  held=3  current=0  -> raw 1 (held requests) -> 1 replica at once
    t=5    in_flight=20 held=0  current=1  -> ceil(20/8)=3            -> 3 (up: immediate)
    t=10   in_flight=5  held=0  current=3  -> ceil(5/8)=1, but 3 was recommended at t=5,
                                              inside the 30 s window  -> stays 3
    t=40   in_flight=5  held=0  current=3  -> window now holds 1s only -> 1
    t=100  in_flight=0  last request t=38  -> idle 62 s >= 60         -> 0

With ``targetKvCacheUsage: 0.5`` too: ``in_flight=4 current=2 usage=0.9`` needs
``ceil(4/8)=1`` by concurrency but ``ceil(2 * 0.9 / 0.5)=4`` by KV cache -> 3 (``maxReplicas``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kaip.spec import Scaling

DEFAULT_STABILIZATION_SECONDS = 30.0
KV_TOLERANCE = 0.1


@dataclass(frozen=True)
class LoadObservation:
    """One sample of a resource's load, as the gateway saw it.

    ``last_activity_at`` is the time of the last request, or when the resource started serving
    if it has had none (so a fresh resource is not idle since the epoch). Times are seconds on
    the caller's monotonic clock.
    """

    in_flight: int
    held: int
    last_activity_at: float
    kv_cache_usage: float | None = None
    """The replicas' KV-cache use averaged (0 to 1), None when none reported it."""


@dataclass(frozen=True)
class ScaleMemory:
    """What the decision remembers between ticks: recent (time, recommendation) pairs."""

    recommendations: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class ScaleDecision:
    desired: int
    reason: str
    memory: ScaleMemory


def autoscale(
    scaling: Scaling,
    *,
    current: int,
    load: LoadObservation,
    now: float,
    memory: ScaleMemory = ScaleMemory(),
    stabilization_seconds: float = DEFAULT_STABILIZATION_SECONDS,
) -> ScaleDecision:
    """The replica count to run now, why, and the memory to pass to the next call.

    >>> from kaip.spec import Scaling
    >>> s = Scaling(min_replicas=0, max_replicas=3, target_concurrency=8,
    ...             scale_to_zero_after_seconds=60)
    >>> d = autoscale(s, current=0, load=LoadObservation(0, 3, 0.0), now=0.0)
    >>> d.desired, d.reason
    (1, 'scale from zero: 3 request(s) held')
    >>> d = autoscale(s, current=1, load=LoadObservation(20, 0, 5.0), now=5.0, memory=d.memory)
    >>> d.desired
    3
    >>> d = autoscale(s, current=3, load=LoadObservation(5, 0, 10.0), now=10.0, memory=d.memory)
    >>> d.desired, d.reason
    (3, 'holding 3 for stabilisation (needs 1 now)')
    >>> d = autoscale(s, current=3, load=LoadObservation(5, 0, 38.0), now=40.0, memory=d.memory)
    >>> d.desired
    1
    >>> d = autoscale(s, current=1, load=LoadObservation(0, 0, 38.0), now=100.0, memory=d.memory)
    >>> d.desired, d.reason
    (0, 'idle for 62s >= 60s')
    >>> s = Scaling(max_replicas=3, target_kv_cache_usage=0.5)
    >>> d = autoscale(s, current=2, load=LoadObservation(4, 0, 0.0, kv_cache_usage=0.9), now=0.0)
    >>> d.desired, d.reason
    (3, 'KV cache 90% over 2 replica(s) / target 50% (bounded to [1, 3])')
    """
    demand = load.in_flight + load.held
    raw = math.ceil(demand / scaling.target_concurrency) if demand else 0
    reason = f"{demand} concurrent request(s) / target {scaling.target_concurrency:g}"
    kv_need = _kv_cache_need(scaling, current, load) if demand else None
    if kv_need is not None and kv_need > raw:
        raw = kv_need
        reason = (
            f"KV cache {load.kv_cache_usage:.0%} over {current} replica(s) / target "
            f"{scaling.target_kv_cache_usage:.0%}"
        )
    to_zero = False
    if current == 0 and load.held > 0:
        raw = max(raw, 1)
        reason = f"scale from zero: {load.held} request(s) held"
    elif raw == 0:
        idle_for = now - load.last_activity_at
        if scaling.min_replicas == 0 and idle_for >= scaling.scale_to_zero_after_seconds:
            reason = f"idle for {idle_for:.0f}s >= {scaling.scale_to_zero_after_seconds:g}s"
            to_zero = True
        else:
            raw = 1 if current > 0 or scaling.min_replicas > 0 else 0
            reason = "idle" if raw == 0 else "keeping one replica warm"
    bounded = min(max(raw, scaling.min_replicas), scaling.max_replicas)
    if bounded != raw:
        reason += f" (bounded to [{scaling.min_replicas}, {scaling.max_replicas}])"

    window_start = now - stabilization_seconds
    kept = tuple((t, n) for t, n in memory.recommendations if t > window_start)
    memory = ScaleMemory((*kept, (now, bounded)))
    if bounded >= current:
        return ScaleDecision(bounded, reason, memory)
    highest = max(n for _, n in memory.recommendations)
    if highest > bounded and not to_zero:
        desired = min(highest, current)
        return ScaleDecision(
            desired, f"holding {desired} for stabilisation (needs {bounded} now)", memory
        )
    return ScaleDecision(bounded, reason, memory)


def _kv_cache_need(scaling: Scaling, current: int, load: LoadObservation) -> int | None:
    """The replicas the KV cache asks for (module docstring, 1.), None when it says nothing."""
    target, usage = scaling.target_kv_cache_usage, load.kv_cache_usage
    if target is None or usage is None or current == 0:
        return None
    ratio = usage / target
    if abs(ratio - 1) <= KV_TOLERANCE:
        return current
    return math.ceil(current * ratio)
