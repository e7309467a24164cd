"""W3C Trace Context for proxied requests: keep a valid ``traceparent``, mint one when absent.

The gateway is the edge of a local request, so when a client sends no (or a malformed)
``traceparent`` it starts the trace here and every replica sees the same trace id (when the
gateway traces, its span recorder decides instead: see signals). Never does I/O and never
depends on an OpenTelemetry SDK.
"""

from __future__ import annotations

from kaip.telemetry.spans import new_span_id, new_trace_id, parse_traceparent, traceparent


def is_valid_traceparent(value: bytes) -> bool:
    """True for a well-formed ``traceparent`` with a nonzero trace and span id (version != ff)."""
    return parse_traceparent(value) is not None


def new_traceparent() -> bytes:
    """A fresh sampled ``traceparent`` (version 00) with random nonzero trace and span ids."""
    return traceparent(new_trace_id(), new_span_id(), True)
