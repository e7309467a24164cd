"""W3C Trace Context for proxied requests: pass a valid ``traceparent`` on, mint none.

When the gateway does not trace (no span recorder: ``OTEL_EXPORTER_OTLP_ENDPOINT`` unset, or
``observe=False``) it takes no part in the trace: a client's valid ``traceparent`` reaches the
replica as it came, and a request without one (or with a malformed one) reaches it without one, so
the replica's own sampler starts the trace exactly as it would for a request sent to it directly.
Minting one here would be wrong either way: marked sampled (``-01``) it would claim a span the
gateway never records (W3C Trace Context: the flag says "the caller may have recorded trace data")
and make a parent-based replica trace every request; marked unsampled (``-00``) it would make a
parent-based replica (OpenTelemetry's ``ParentBased`` default: ``remote_parent_not_sampled`` =
always off) trace none. When the gateway traces, its span recorder decides instead (see signals): a
trace it starts and does not sample reaches an App's replica as ``-00``, and a Model's replica under
``kaip up`` (``models_start_no_traces``: it runs with ``KAIP_TRACE_ROOTS=off`` and starts no trace)
with no ``traceparent``. The head sent to a replica carries ``traceparent`` as its last header
(:func:`kaip.local.gateway.http1.request_head`), which is what lets :func:`with_traceparent` swap it
without parsing the head again.

One rule either way (W3C Trace Context, section 4): the client's trace goes on only when it sent
exactly one ``traceparent`` and that one is valid; otherwise the trace restarts (a replica gets
the gateway's own ``traceparent``, or none) and the client's ``tracestate`` is not passed on
either, since it describes the trace that was dropped ("a tracestate header received without an
accompanying traceparent header is invalid and MUST be discarded"): ``request_head`` drops it
unless told the trace goes on.
Never does I/O and never depends on an OpenTelemetry SDK.
"""

from __future__ import annotations

from collections.abc import Iterable

from kaip.telemetry.spans import new_span_id, parse_traceparent, sole_traceparent

_LINE = len(b"traceparent: ")


def is_valid_traceparent(value: bytes) -> bool:
    """True for a well-formed ``traceparent`` with a nonzero trace and span id (version != ff)."""
    return parse_traceparent(value) is not None


def passed_on(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """What a replica gets when the gateway makes no span: the client's ``traceparent`` when
    it sent exactly one and it is valid, else nothing (``b""``: the head carries no
    ``traceparent``). The span recorder reads the same one (``sole_traceparent``)."""
    given = sole_traceparent(headers)
    if given and is_valid_traceparent(given):
        return given
    return b""


def with_traceparent(head: bytes, old: bytes, new: bytes) -> bytes:
    """``head`` (and any body after it) with its last header's value ``old`` replaced by
    ``new`` (``b""``: that header dropped); ``head`` must come from ``request_head``, which
    writes ``traceparent`` last."""
    end = head.index(b"\r\n\r\n")
    if not new:
        return head[: end - len(old) - _LINE] + head[end + 2 :]
    return head[: end - len(old)] + new + head[end:]


def resent(head: bytes) -> bytes:
    """An unsampled ``traceparent`` (``head``, as the gateway made it) with a fresh parent id: a
    retry's, so that its replica's spans are told apart from the first attempt's."""
    return head[:36] + b"%016x" % new_span_id() + head[52:]
