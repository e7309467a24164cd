from __future__ import annotations

import random

from kaip.local.gateway.http1 import request_head
from kaip.local.gateway.stats import MAX_SAMPLES, RevisionStats, StatsRecorder, percentile
from kaip.local.gateway.trace import is_valid_traceparent, passed_on, with_traceparent


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == 99.0
    assert percentile(values, 50) == 50.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 99) is None


def test_take_snapshots_and_resets_per_revision() -> None:
    recorder = StatsRecorder(random.Random(0))
    for i in range(10):
        recorder.record("a", float(i), error=i == 9)
    recorder.record("b", 5.0, error=False)
    taken = recorder.take()
    assert taken["a"].requests == 10 and taken["a"].errors == 1
    assert taken["a"].error_rate() == 0.1
    assert taken["a"].p99_ms() == 9.0
    assert taken["b"] == RevisionStats(1, 0, (5.0,))
    assert recorder.take() == {}
    assert RevisionStats(0, 0, ()).error_rate() == 0.0
    assert RevisionStats(0, 0, ()).p99_ms() is None


def test_latency_samples_stay_bounded_but_counts_stay_exact() -> None:
    recorder = StatsRecorder(random.Random(0))
    for i in range(MAX_SAMPLES * 2):
        recorder.record("a", float(i), error=False)
    taken = recorder.take()["a"]
    assert taken.requests == MAX_SAMPLES * 2
    assert len(taken.latencies_ms) == MAX_SAMPLES
    assert max(taken.latencies_ms) >= MAX_SAMPLES  # later requests are sampled in too


def test_traceparent_validation() -> None:
    assert is_valid_traceparent(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert not is_valid_traceparent(b"00-00000000000000000000000000000000-b7ad6b7169203331-01")
    assert not is_valid_traceparent(b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01")
    assert not is_valid_traceparent(b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert not is_valid_traceparent(b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01")
    assert not is_valid_traceparent(b"garbage")


def test_without_tracing_the_client_s_traceparent_is_passed_on_and_none_is_made() -> None:
    given = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    assert passed_on([(b"Traceparent", b" " + given)]) == given
    # Two are invalid (W3C), even if one is well formed: neither goes on.
    assert passed_on([(b"traceparent", b"garbage"), (b"traceparent", given)]) == b""
    assert passed_on([(b"traceparent", given), (b"traceparent", given)]) == b""
    assert passed_on([(b"traceparent", b"garbage")]) == b""
    assert passed_on([(b"accept", b"*/*")]) == b""
    bare = request_head(b"POST", b"/x", [(b"host", b"h")], 2, b"") + b"{}"
    assert b"traceparent" not in bare and bare.endswith(b"content-length: 2\r\n\r\n{}")
    traced = request_head(b"POST", b"/x", [(b"host", b"h")], 2, given) + b"{}"
    assert traced.endswith(b"traceparent: " + given + b"\r\n\r\n{}")
    assert with_traceparent(traced, given, b"") == bare  # e.g. a mirrored copy of it
    mine = b"00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    assert with_traceparent(traced, given, mine) == traced.replace(given, mine)


def test_the_client_s_tracestate_goes_on_only_with_its_trace() -> None:
    headers = [(b"host", b"h"), (b"TraceState", b"congo=t61rcWkgMzE")]
    kept = request_head(b"GET", b"/x", headers, 0, b"", tracestate=True)
    assert b"TraceState: congo=t61rcWkgMzE\r\n" in kept
    assert b"congo" not in request_head(b"GET", b"/x", headers, 0, b"")  # restarted: dropped
