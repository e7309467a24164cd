"""The loop-local instruments render as standard Prometheus families."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from kaip.serving.metrics import LoopHistogram, ServerMetrics


def test_buckets_are_cumulative_and_inclusive() -> None:
    histogram = LoopHistogram((1, 2))
    for value in (0.5, 1, 1.5, 2, 3):
        histogram.observe(value)
    assert histogram.buckets() == [("1.0", 2), ("2.0", 4), ("+Inf", 5)]
    assert histogram.sum == 8.0


def test_exposition_parses_with_labels_and_counts() -> None:
    metrics = ServerMetrics("digits", "r1")
    metrics.observe_request("oip-v2", 200, 0.001)
    metrics.observe_request("oip-v2", 200, 0.002)
    metrics.observe_request("openai", 404, 0.003)
    metrics.inflight.inc()
    metrics.queue_depth = lambda: 3
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    totals = {
        (s.labels["protocol"], s.labels["status"]): s.value
        for s in families["kaip_requests"].samples
    }
    assert totals == {("oip-v2", "200"): 2, ("openai", "404"): 1}
    counts = {
        s.labels["protocol"]: s.value
        for s in families["kaip_request_duration_seconds"].samples
        if s.name.endswith("_count")
    }
    assert counts == {"oip-v2": 2, "openai": 1}
    assert families["kaip_inflight_requests"].samples[0].value == 1
    assert families["kaip_queue_depth_requests"].samples[0].value == 3
    assert families["kaip_inflight_requests"].samples[0].labels == {
        "model": "digits",
        "revision": "r1",
    }


def test_the_server_process_is_measured_too() -> None:
    families = {
        f.name: f
        for f in text_string_to_metric_families(ServerMetrics("m", "r").exposition().decode())
    }
    assert families["process_cpu_seconds"].samples[0].value > 0
    assert families["process_resident_memory_bytes"].samples[0].value > 2**20
