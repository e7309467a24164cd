"""What a cluster's Model replicas cost, drew and emitted, from Prometheus (``kaip cost
--prometheus``).

Owns the PromQL that reads each replica's window from the pods' own metrics and the pairing of
those series into :class:`kaip.accounting.ReplicaWindow` values, one per scraped replica: its
requests (``kaip_requests_total``), busy seconds (the wall time of its batches,
``kaip_predict_duration_seconds_sum``), CPU seconds (``process_cpu_seconds_total``), resident
memory (``process_resident_memory_bytes``) and how long of the window it ran
(``process_start_time_seconds`` and when it was last scraped); its model and revision come from
``kaip_model_ready``'s labels, its owner from an ``owner`` target label (the chart's PodMonitor
copies the pod's ``kaip.dev/owner`` label there) and the CPUs it reserves from
kube-state-metrics' ``kube_pod_container_resource_requests`` when Prometheus has it (else one per
replica, said in the answer). The arithmetic is :mod:`kaip.accounting`'s, the same kernel as
``kaip up``'s, so the table and JSON are the same. Never writes anything; never decides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kaip.accounting import ReplicaWindow
from kaip.errors import MetricsError
from kaip.telemetry import MODEL_READY, PREDICT_DURATION, REQUESTS_TOTAL

Query = Callable[[str, float], Mapping[str, Any]]
"""(PromQL, evaluation time in Unix seconds) -> the instant query's ``data``."""
KEY: Final = ("job", "instance")
"""What tells two scraped replicas apart."""
IDENTITY: Final = ("namespace", "pod", "model", "revision", "owner")
MAX_SERIES: Final = 10_000
"""Replicas read in one report (a bigger answer is refused, not truncated)."""
MAX_WINDOW_S: Final = 31 * 86400.0
ASSUMED_VCPUS: Final = 1.0
"""CPUs a replica reserves when kube-state-metrics is not scraped."""


def _keyed(data: Mapping[str, Any], labels: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    result = data.get("result")
    if data.get("resultType") != "vector" or not isinstance(result, list):
        return {}
    if len(result) > MAX_SERIES:
        raise MetricsError(f"Prometheus answered {len(result)} series, more than {MAX_SERIES}")
    out: dict[tuple[str, ...], Any] = {}
    for sample in result:
        metric = sample.get("metric") or {}
        try:
            value = float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if math.isnan(value) or math.isinf(value):
            continue
        key = tuple(str(metric.get(k, "")) for k in KEY)
        out[key] = (value, {k: str(metric.get(k, "")) for k in labels}) if labels else value
    return out


@dataclass(frozen=True)
class ClusterWindows:
    """Every scraped replica's window over ``seconds`` ending at ``at``, and what was assumed."""

    windows: list[ReplicaWindow]
    seconds: float
    at: float
    reserved_cpus_known: bool


def queries(window_s: float, namespace: str | None) -> dict[str, str]:
    """The PromQL for a report over the last ``window_s`` seconds (one namespace or all)."""
    w = f"[{max(1, round(window_s))}s"
    step = f"{max(1, math.ceil(window_s / 500))}s"  # last-seen resolution, <= 500 points a series
    only = f'namespace="{namespace}"' if namespace else ""
    sel = f"{{{only}}}" if only else ""
    by = f"by ({', '.join(KEY)})"
    ident = ", ".join((*KEY, *IDENTITY))
    cpu_requests = ", ".join(m for m in ('resource="cpu"', only) if m)
    return {
        "identity": f"max by ({ident}) (last_over_time({MODEL_READY}{sel}{w}]))",
        "requests": f"sum {by} (increase({REQUESTS_TOTAL}{sel}{w}]))",
        "busy": f"sum {by} (increase({PREDICT_DURATION}_sum{sel}{w}]))",
        "cpu": f"sum {by} (increase(process_cpu_seconds_total{sel}{w}]))",
        "memory": f"max {by} (last_over_time(process_resident_memory_bytes{sel}{w}]))",
        "start": f"max {by} (last_over_time(process_start_time_seconds{sel}{w}]))",
        "seen": f"max {by} (max_over_time(timestamp(process_start_time_seconds{sel}){w}:{step}]))",
        "reserved": (
            f"sum by (namespace, pod) (kube_pod_container_resource_requests{{{cpu_requests}}})"
        ),
    }


def cluster_windows(
    query: Query, window_s: float, at: float, namespace: str | None = None
) -> ClusterWindows:
    """Each Model replica Prometheus scraped in the ``window_s`` seconds before ``at``."""
    if not 0 < window_s <= MAX_WINDOW_S:
        raise MetricsError(f"a window of {window_s:g} s: give 1 s to {MAX_WINDOW_S / 86400:g} days")
    promql = queries(window_s, namespace)
    identity = _keyed(query(promql["identity"], at), IDENTITY)
    numbers = {name: _keyed(query(promql[name], at)) for name in
               ("requests", "busy", "cpu", "memory", "start", "seen")}  # fmt: skip
    reserved: dict[tuple[str, str], float] = {}
    for sample in query(promql["reserved"], at).get("result") or []:
        m = sample.get("metric") or {}
        try:
            reserved[(str(m.get("namespace", "")), str(m.get("pod", "")))] = float(
                sample["value"][1]
            )
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    windows = []
    begin = at - window_s
    for key, (_, labels) in sorted(identity.items()):
        start = numbers["start"].get(key)
        seen = numbers["seen"].get(key, at)
        ran = min(seen, at) - (begin if start is None else max(start, begin))
        if ran <= 0:
            continue
        windows.append(
            ReplicaWindow(
                resource=labels["model"],
                revision=labels["revision"],
                owner=labels["owner"],
                replica=labels["pod"] or key[1],
                seconds=ran,
                cpu_seconds=numbers["cpu"].get(key, 0.0),
                busy_seconds=min(numbers["busy"].get(key, 0.0), ran),
                requests=round(numbers["requests"].get(key, 0.0)),
                memory_gb=numbers["memory"].get(key, 0.0) / 2**30,
                vcpus=reserved.get((labels["namespace"], labels["pod"]), ASSUMED_VCPUS),
            )
        )
    return ClusterWindows(windows, window_s, at, bool(reserved))
