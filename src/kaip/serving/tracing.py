"""Spans of one inference request, with the caller's W3C ``traceparent`` as parent.

``kaip.infer`` is the server span; ``kaip.queue`` (enqueue to batch start) and ``kaip.batch``
(the batch's predict, as this request saw it) are its children; one ``kaip.predict`` span per
batch hangs under the first request's batch span and links the others. Uses the OpenTelemetry
API only; when tracing is off nothing here runs on the hot path. Never raises into a request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from kaip import telemetry as names
from kaip.serving.batcher import Pending

_PROPAGATOR = TraceContextTextMapPropagator()


def _epoch_ns(perf: float, now_perf: float, now_ns: int) -> int:
    return now_ns - int((now_perf - perf) * 1e9)


class Tracing:
    def __init__(self, model: str, revision: str) -> None:
        self.tracer = trace.get_tracer(names.INSTRUMENTATION_SCOPE)
        self.attributes: dict[str, AttributeValue] = {
            names.ATTR_MODEL: model,
            names.ATTR_REVISION: revision,
        }

    def start(self, headers: Iterable[tuple[bytes, bytes]], name: str, route: str) -> Any:
        """Start the server span of a request from its ASGI headers; returns the span or None."""
        try:
            carrier = {
                k.decode("latin-1"): v.decode("latin-1")
                for k, v in headers
                if k in (b"traceparent", b"tracestate")
            }
            context = _PROPAGATOR.extract(carrier) if carrier else None
            return self.tracer.start_span(
                name,
                context=context,
                kind=trace.SpanKind.SERVER,
                attributes={**self.attributes, "http.route": route},
            )
        except Exception:
            return None

    def end(self, span: Any, status: int) -> None:
        if span is None:
            return
        try:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(trace.Status(trace.StatusCode.ERROR))
            span.end()
        except Exception:
            pass

    def batch_done(self, batch: list[Pending], started: float, finished: float) -> None:
        now_perf, now_ns = time.perf_counter(), time.time_ns()
        start_ns = _epoch_ns(started, now_perf, now_ns)
        end_ns = _epoch_ns(finished, now_perf, now_ns)
        rows = sum(p.rows for p in batch)
        batch_attrs: dict[str, AttributeValue] = {
            **self.attributes,
            names.ATTR_BATCH_ROWS: rows,
            names.ATTR_BATCH_REQUESTS: len(batch),
        }
        batch_spans = []
        for p in batch:
            if p.trace is None:
                continue
            parent = trace.set_span_in_context(p.trace)
            queue = self.tracer.start_span(
                names.SPAN_QUEUE,
                context=parent,
                start_time=_epoch_ns(p.enqueued, now_perf, now_ns),
                attributes=self.attributes,
            )
            queue.end(end_time=start_ns)
            span = self.tracer.start_span(
                names.SPAN_BATCH, context=parent, start_time=start_ns, attributes=batch_attrs
            )
            batch_spans.append(span)
        if batch_spans:
            links = [trace.Link(s.get_span_context()) for s in batch_spans[1:]]
            predict = self.tracer.start_span(
                names.SPAN_PREDICT,
                context=trace.set_span_in_context(batch_spans[0]),
                start_time=start_ns,
                attributes=batch_attrs,
                links=links,
            )
            predict.end(end_time=end_ns)
        for span in batch_spans:
            span.end(end_time=end_ns)
