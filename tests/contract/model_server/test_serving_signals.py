"""Signals of a running server: /metrics through prometheus_client's parser, and a W3C trace
exported over OTLP/HTTP to a receiver inside the test."""

from __future__ import annotations

import time

import httpx
from otlp_receiver import OtlpReceiver
from prometheus_client.parser import text_string_to_metric_families

from model_server.harness import RunningServer

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
