"""What ``kaip up``'s autoscaler reads of a replica's ``/metrics``: its KV-cache gauge."""

from __future__ import annotations

from kaip.local.controller.replica_metrics import kv_cache_usage
from kaip.telemetry import KV_CACHE_USAGE

EXPOSITION = f"""\
# HELP kaip_inflight_requests Requests being served.
# TYPE kaip_inflight_requests gauge
kaip_inflight_requests{{model="m",revision="r"}} 3.0
# HELP {KV_CACHE_USAGE} Share of the engine's context the KV cache holds.
# TYPE {KV_CACHE_USAGE} gauge
{KV_CACHE_USAGE}{{model="m",revision="r"}} 0.25
{KV_CACHE_USAGE}{{model="m",revision="s"}} 0.75
"""


def test_the_gauge_is_read_and_its_label_sets_averaged() -> None:
    assert kv_cache_usage(EXPOSITION) == 0.5


def test_a_replica_without_the_gauge_or_with_no_exposition_says_nothing() -> None:
    assert kv_cache_usage("# TYPE other gauge\nother 1.0\n") is None
    assert kv_cache_usage("not { prometheus") is None
    assert kv_cache_usage(f"{KV_CACHE_USAGE} NaN\n") is None
