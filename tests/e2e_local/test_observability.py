"""``kaip up``'s signals end to end: one trace from the gateway through the replica's server,
batch and predict spans to a real OTLP receiver, and the gateway's ``GET /metrics`` scraped."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from local_platform import INFER_BODY, LocalPlatform, model_spec
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parents[1] / "contract"))  # the shared OTLP receiver
from otlp_receiver import serve_otlp

pytestmark = pytest.mark.slow


def test_one_trace_runs_gateway_replica_batch_predict_and_metrics_are_scraped(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    with serve_otlp() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")  # export within 0.2 s
        platform.up(platform.write_spec(model_spec()))
        answer = httpx.post(
            f"{platform.url}/v2/models/echo/infer",
            json=INFER_BODY,
            headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
            timeout=60,
            trust_env=False,
        )
        assert answer.status_code == 200, answer.text
        spans = receiver.wait_for(trace_id, 5)
        scraped = httpx.get(f"{platform.url}/metrics", timeout=30, trust_env=False)

    by_name: dict[str, list[object]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    [server] = [s for s in by_name["POST"] if s.kind == s.SPAN_KIND_SERVER]  # type: ignore[attr-defined]
    [attempt] = [s for s in by_name["POST"] if s.kind == s.SPAN_KIND_CLIENT]  # type: ignore[attr-defined]
    [infer] = by_name["kaip.infer"]
    [batch] = by_name["kaip.batch"]
    [predict] = by_name["kaip.predict"]
    assert server.parent_span_id.hex() == "b7ad6b7169203331"  # type: ignore[attr-defined]
    assert attempt.parent_span_id == server.span_id  # type: ignore[attr-defined]
    assert infer.parent_span_id == attempt.span_id  # type: ignore[attr-defined]
    assert batch.parent_span_id == infer.span_id  # type: ignore[attr-defined]
    assert predict.parent_span_id == batch.span_id  # type: ignore[attr-defined]

    assert scraped.status_code == 200
    families = list(text_string_to_metric_families(scraped.text))

    def values(name: str, **labels: str) -> list[float]:
        return [
            sample.value
            for family in families
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]

    assert values(
        "kaip_gateway_requests_total", resource="echo", owner="e2e", status_class="2xx"
    ) == [1.0]
    assert values("kaip_replicas", resource="echo", owner="e2e", phase="ready") == [1.0]
