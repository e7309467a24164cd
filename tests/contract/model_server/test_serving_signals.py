"""Signals of a running server: /metrics through prometheus_client's parser, and a W3C trace
exported over OTLP/HTTP to a receiver inside the test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from otlp_receiver import OtlpReceiver, serve_otlp
from prometheus_client.parser import text_string_to_metric_families

from model_server.harness import RunningServer, start_server

ROW = [0.0] * 64
BODY = {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": ROW}]}


def families(server: RunningServer) -> dict[str, object]:
    text = httpx.get(f"{server.url}/metrics").text
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_count_requests_by_model_revision_protocol_and_status(
    digits_server: RunningServer,
) -> None:
    url = f"{digits_server.url}/v2/models/digits/infer"
    assert httpx.post(url, json=BODY).status_code == 200
    assert httpx.post(url, content=b"{").status_code == 400
    found = families(digits_server)
    requests = found["kaip_requests"]
    statuses = {
        s.labels["status"]: s.value
        for s in requests.samples  # type: ignore[attr-defined]
        if s.name == "kaip_requests_total"
        and s.labels["model"] == "digits"
        and s.labels["revision"] == "1"
        and s.labels["protocol"] == "oip-v2"
    }
    assert statuses["200"] >= 1 and statuses["400"] >= 1
    for name in ("kaip_request_duration_seconds", "kaip_queue_duration_seconds",
                 "kaip_batch_size_rows", "kaip_predict_duration_seconds"):  # fmt: skip
        assert found[name].type == "histogram", name  # type: ignore[attr-defined]
    inflight = found["kaip_inflight_requests"]
    assert inflight.samples[0].value == 0  # type: ignore[attr-defined]
    assert found["kaip_model_ready"].samples[0].value == 1  # type: ignore[attr-defined]


def test_a_request_trace_reaches_the_otlp_receiver(
    digits_server: RunningServer, otlp_receiver: OtlpReceiver
) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    url = f"{digits_server.url}/v2/models/digits/infer"
    assert httpx.post(url, json=BODY, headers=headers).status_code == 200
    wanted = {"kaip.infer", "kaip.queue", "kaip.batch", "kaip.predict"}
    deadline = time.monotonic() + 10
    with otlp_receiver.condition:
        while True:
            spans = [s for s in otlp_receiver.spans if s.trace_id.hex() == trace_id]
            if wanted <= {s.name for s in spans} or time.monotonic() > deadline:
                break
            otlp_receiver.condition.wait(0.2)
    by_name = {s.name: s for s in spans}
    assert wanted <= set(by_name), sorted(by_name)
    server_span = by_name["kaip.infer"]
    assert server_span.parent_span_id.hex() == parent_id
    assert by_name["kaip.queue"].parent_span_id == server_span.span_id
    assert by_name["kaip.batch"].parent_span_id == server_span.span_id
    assert by_name["kaip.predict"].parent_span_id == by_name["kaip.batch"].span_id


def tracing_every_trace(receiver: OtlpReceiver) -> dict[str, str]:
    """A replica's environment: tracing every trace it starts (``parentbased_always_on``),
    exported to ``receiver`` within 50 ms."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }


@pytest.fixture(scope="module")
def traced_replica(
    quickstart_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, OtlpReceiver]]:
    """A digits replica tracing every trace it starts (``parentbased_always_on``), so whether a
    request's trace is followed or restarted shows in its spans, and a receiver of its own."""
    with serve_otlp() as receiver:
        server = start_server(
            quickstart_dir, "digits", tmp_path_factory.mktemp("traced-replica"),
            env=tracing_every_trace(receiver),
        )  # fmt: skip
        yield server, receiver
        server.stop()


def test_the_replica_follows_one_valid_traceparent_and_restarts_on_two_or_a_malformed_one(
    traced_replica: tuple[RunningServer, OtlpReceiver],
) -> None:
    """W3C Trace Context at the model server's infer route (which reads the ``traceparent`` in
    its own pass over the headers): a valid unsampled one, of version 00 or above, records
    nothing; a sampled one of a higher version is followed; two of them, or a malformed one,
    are none, so the replica starts a trace of its own (its sampler keeps every one here)."""
    server, receiver = traced_replica
    url = f"{server.url}/v2/models/digits/infer"
    parent = "00f067aa0ba902b7"
    trace = {name: f"{n:032x}" for n, name in enumerate(
        ("unsampled", "later_unsampled", "later", "first", "second", "upper", "last"), 0xA1
    )}  # fmt: skip
    sent = [
        [("traceparent", f"00-{trace['unsampled']}-{parent}-00")],
        [("traceparent", f"cc-{trace['later_unsampled']}-{parent}-00-what-comes")],
        [("traceparent", f"01-{trace['later']}-{parent}-01")],
        [("traceparent", f"00-{trace['first']}-{parent}-01"),
         ("traceparent", f"00-{trace['second']}-{parent}-01")],
        [("traceparent", f"00-{trace['upper'].upper()}-{parent}-01")],
        [("traceparent", f"00-{trace['last']}-{parent}-01")],
    ]  # fmt: skip
    for headers in sent:
        assert httpx.post(url, json=BODY, headers=headers).status_code == 200
    receiver.wait_for(trace["last"], 4)  # exported in order: every earlier span is in too
    with receiver.condition:
        infer = [s for s in receiver.spans if s.name == "kaip.infer"]
    by_trace = {s.trace_id.hex(): s for s in infer}
    for name in ("unsampled", "later_unsampled", "first", "second", "upper"):
        assert trace[name] not in by_trace, name
    for name in ("later", "last"):
        assert by_trace[trace[name]].parent_span_id.hex() == parent, name
    roots = [s for s in infer if not s.parent_span_id]
    assert len(roots) == 2, roots  # the two headers' request and the malformed one's
    assert len(infer) == 4


def test_a_replica_that_starts_no_trace_records_only_what_a_caller_sampled(
    quickstart_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``KAIP_TRACE_ROOTS=off`` (what kaip up gives the Model replicas behind its tracing
    gateway): even under ``parentbased_always_on``, a request without a ``traceparent``, with
    two or with a malformed one records nothing; a caller's sampled one is followed."""
    with serve_otlp() as receiver:
        env = {**tracing_every_trace(receiver), "KAIP_TRACE_ROOTS": "off"}
        server = start_server(
            quickstart_dir, "digits", tmp_path_factory.mktemp("rootless"), env=env
        )
        try:
            url = f"{server.url}/v2/models/digits/infer"
            parent, last = "00f067aa0ba902b7", "4bf92f3577b34da6a3ce929d0e0e4736"
            sent: list[list[tuple[str, str]]] = [
                [],
                [("traceparent", f"00-{'a1' * 16}-{parent}-01"),
                 ("traceparent", f"00-{'a2' * 16}-{parent}-01")],
                [("traceparent", f"00-{'A3' * 16}-{parent}-01")],
                [("traceparent", f"00-{'a4' * 16}-{parent}-00")],
                [("traceparent", f"00-{last}-{parent}-01")],
            ]  # fmt: skip
            for headers in sent:
                assert httpx.post(url, json=BODY, headers=headers).status_code == 200
            spans = receiver.wait_for(last, 4)  # exported in order: every earlier span is in too
            with receiver.condition:
                everything = list(receiver.spans)
        finally:
            server.stop()
    assert {s.trace_id.hex() for s in everything} == {last}, everything
    assert {s.name for s in spans} == {"kaip.infer", "kaip.queue", "kaip.batch", "kaip.predict"}
