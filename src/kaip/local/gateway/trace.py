"""W3C Trace Context for proxied requests: keep a valid ``traceparent``, mint one when absent.

The gateway is the edge of a local request, so when a client sends no (or a malformed)
``traceparent`` it starts the trace here and every replica sees the same trace id (when the
gateway traces, its span recorder decides instead: see signals). The head sent to a replica
carries ``traceparent`` as its last header (:func:`kaip.local.gateway.http1.request_head`),
which is what lets :func:`with_traceparent` swap it without parsing the head again. Never does
I/O and never depends on an OpenTelemetry SDK.
"""

from __future__ import annotations

from collections.abc import Iterable

from kaip.telemetry.spans import new_span_id, new_trace_id, parse_traceparent, traceparent


def is_valid_traceparent(value: bytes) -> bool:
    """True for a well-formed ``traceparent`` with a nonzero trace and span id (version != ff)."""
    return parse_traceparent(value) is not None


def new_traceparent() -> bytes:
    """A fresh sampled ``traceparent`` (version 00) with random nonzero trace and span ids."""
    return traceparent(new_trace_id(), new_span_id(), True)


def passed_on(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """What a replica gets when the gateway makes no span: the client's ``traceparent`` (its
    last one) when valid, else a fresh one."""
    given = b""
    for name, value in headers:
        if name.lower() == b"traceparent":
            given = value.strip()
    if given and is_valid_traceparent(given):
        return given
    return new_traceparent()


def with_traceparent(head: bytes, old: bytes, new: bytes) -> bytes:
    """``head`` (and any body after it) with its last header's value ``old`` replaced by
    ``new``; ``head`` must come from ``request_head``, which writes ``traceparent`` last."""
    end = head.index(b"\r\n\r\n")
    return head[: end - len(old)] + new + head[end:]
