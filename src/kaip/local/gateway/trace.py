"""W3C Trace Context for proxied requests: keep a valid ``traceparent``, mint one when absent.

The gateway is the edge of a local request, so when a client sends no (or a malformed)
``traceparent`` it starts the trace here and every replica sees the same trace id. Never does
I/O and never depends on an OpenTelemetry SDK.
"""

from __future__ import annotations

import random
import re

_TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_random = random.Random()  # seeded from os.urandom; ids need uniqueness, not secrecy


def is_valid_traceparent(value: bytes) -> bool:
    """True for a well-formed ``traceparent`` with a nonzero trace and span id (version != ff)."""
    value = value.strip()
    if not _TRACEPARENT.match(value):
        return False
    version, trace_id, span_id, _ = value.split(b"-")
    return version != b"ff" and trace_id != _ZERO_TRACE and span_id != _ZERO_SPAN


def new_traceparent() -> bytes:
    """A fresh sampled ``traceparent`` (version 00) with random nonzero trace and span ids."""
    trace_id = _random.getrandbits(128) or 1
    span_id = _random.getrandbits(64) or 1
    return b"00-%032x-%016x-01" % (trace_id, span_id)
