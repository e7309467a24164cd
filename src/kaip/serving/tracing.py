"""Spans of one inference request, with the caller's W3C ``traceparent`` as parent.

``kaip.infer`` is the server span; ``kaip.queue`` (enqueue to batch start) and ``kaip.batch``
(the batch's predict, as this request saw it) are its children; one ``kaip.predict`` span per
batch hangs under the first request's batch span and links the others. Spans are records given
to a :class:`~kaip.telemetry.spans.SpanRecorder` (built and exported off the request path by
the SDK's batch processor); a request whose trace is not sampled records nothing. When tracing
is off nothing here runs on the hot path. Never raises into a request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from kaip import telemetry as names
from kaip.serving.batcher import Pending
from kaip.telemetry.spans import (
    INTERNAL,
    SERVER,
    AttributeValue,
    FinishedSpan,
    SpanRecorder,
    Start,
    new_span_id,
    sole_traceparent,
)


class Request:
    """A sampled request's server span, begun: its ids and what its end records."""

    __slots__ = ("name", "route", "start")

    def __init__(self, start: Start, name: str, route: str) -> None:
        self.start = start
        self.name = name
        self.route = route


def _epoch_ns(perf: float, now_perf: float, now_ns: int) -> int:
    return now_ns - int((now_perf - perf) * 1e9)


class Tracing:
    def __init__(self, spans: SpanRecorder, model: str, revision: str) -> None:
        self.spans = spans
        self.roots = spans.roots
        """Whether a request without a ``traceparent`` may start a trace here (False: it is not
        traced, so a route that reads the header itself need not call :meth:`begin`)."""
        self.attributes: dict[str, AttributeValue] = {
            names.ATTR_MODEL: model,
            names.ATTR_REVISION: revision,
        }

    def start(
        self, headers: Iterable[tuple[bytes, bytes]], name: str, route: str
    ) -> Request | None:
        """Begin the server span of a request from its ASGI headers; None: not sampled."""
        return self.begin(sole_traceparent(headers), name, route)

    def begin(self, traceparent: bytes, name: str, route: str) -> Request | None:
        """:meth:`start` given the request's one ``traceparent`` (``b""``: none, or more than
        one), for a route that reads it in its own pass over the headers."""
        try:
            start = self.spans.sampled(traceparent)
        except Exception:
            return None
        return Request(start, name, route) if start is not None else None

    def end(self, request: Request | None, status: int) -> None:
        if request is None:
            return
        try:
            attributes = {
                **self.attributes,
                "http.route": request.route,
                "http.response.status_code": status,
            }
            self.spans.end(request.start, request.name, SERVER, attributes, status >= 500)
        except Exception:
            pass

    def batch_done(self, batch: list[Pending], started: float, finished: float) -> None:
        for p in batch:  # a plain loop: any() over a generator costs ~3x per batch
            if p.trace is not None:
                break
        else:
            return  # no member sampled (nearly every batch under load): nothing to build
        now_perf, now_ns = time.perf_counter(), time.time_ns()
        start_ns = _epoch_ns(started, now_perf, now_ns)
        end_ns = _epoch_ns(finished, now_perf, now_ns)
        rows = sum(p.rows for p in batch)
        batch_attrs: dict[str, AttributeValue] = {
            **self.attributes,
            names.ATTR_BATCH_ROWS: rows,
            names.ATTR_BATCH_REQUESTS: len(batch),
        }
        sink = self.spans.sink
        batch_spans: list[tuple[int, int]] = []
        for p in batch:
            request = p.trace
            if not isinstance(request, Request):
                continue
            trace_id, parent = request.start.trace_id, request.start.span_id
            queued_ns = _epoch_ns(p.enqueued, now_perf, now_ns)
            sink(
                _internal(names.SPAN_QUEUE, trace_id, parent, queued_ns, start_ns, self.attributes)
            )
            span = _internal(names.SPAN_BATCH, trace_id, parent, start_ns, end_ns, batch_attrs)
            sink(span)
            batch_spans.append((trace_id, span.span_id))
        if batch_spans:
            trace_id, parent = batch_spans[0]
            links = tuple(batch_spans[1:])
            sink(
                _internal(
                    names.SPAN_PREDICT, trace_id, parent, start_ns, end_ns, batch_attrs, links
                )
            )


def _internal(
    name: str,
    trace_id: int,
    parent_id: int,
    start_ns: int,
    end_ns: int,
    attributes: dict[str, AttributeValue],
    links: tuple[tuple[int, int], ...] = (),
) -> FinishedSpan:
    """A span of this process (a new id) under ``parent_id``, neither remote nor failed."""
    return FinishedSpan(
        name, INTERNAL, trace_id, new_span_id(), parent_id, False, start_ns, end_ns, attributes,
        False, links,
    )  # fmt: skip
