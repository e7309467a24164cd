"""Spans made cheaply on a request's hot path: W3C trace context, the sampling decision, and
finished spans as plain records handed to a sink.

Owns what kaip's servers (the local gateway, the model server) need to trace a request without
the OpenTelemetry SDK's per-span machinery: reading a ``traceparent``, deciding whether a trace
is sampled (the SDK's samplers' rules), minting span ids, writing the ``traceparent`` passed on,
and one :class:`FinishedSpan` per ended span given to a sink. Never imports the SDK and never
does I/O: :func:`kaip.telemetry.otel.configure` makes the sink, which turns each record into the
SDK's ``ReadableSpan`` and gives it to the SDK's batch span processor, whose thread exports it.

Why not ``tracer.start_span``: the SDK validates every attribute, runs its sampler on a
``Context``, builds a locked ``Span`` and calls its processors at start and end; on the shared
2-core machine that measured ~70 µs per span, and a gateway request has two (bench/README.md).
Here an unsampled request costs a regex match and two random numbers; a sampled span, one
record and one ``ReadableSpan``.

The rule (the SDK's samplers by name, ``OTEL_TRACES_SAMPLER``): a request with a valid
``traceparent`` follows its caller's sampled flag (``parentbased_*``); a request that starts a
trace is sampled when the low 64 bits of its trace id fall below ``ratio * 2**64`` (the SDK's
``TraceIdRatioBased``). kaip's default (no ``OTEL_TRACES_SAMPLER``) is parent based and keeps
every trace it starts up to :data:`DEFAULT_PER_SECOND` a second (a token bucket): each trace
whole while traffic is light, and a bounded cost under load, since exporting a span costs far
more than recording it. Worked example (the default): at 1,000 requests a second without a
``traceparent``, the gateway keeps about 10 traces a second; for each of the others it records
nothing and an App's replica gets ``00-<trace>-<span>-00``, so it records none either; a Model's
replica under ``kaip up`` gets no ``traceparent``: it starts no trace of its own
(:attr:`Sampling.roots` off, ``KAIP_TRACE_ROOTS=off``), so it has nothing to read for the requests
the gateway did not sample. A client sending ``00-<trace>-<span>-01`` is always traced, end to
end.
"""

from __future__ import annotations

import os
import random
import re
import time
from binascii import hexlify
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

DEFAULT_PER_SECOND = 10.0
"""kaip's default sampler keeps every trace it starts, up to this many per second and process
(a burst of as many at once); unset ``OTEL_TRACES_SAMPLER`` only (docs/observability.md: why)."""
DEFAULT_RATIO = 1.0
"""``OTEL_TRACES_SAMPLER_ARG``'s default for the ratio samplers, as in the SDK."""

_TRACEPARENT = re.compile(
    rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$", re.DOTALL
)
"""Version, trace id, parent id, flags, and what a later version adds after a dash (W3C Trace
Context, "Versioning of traceparent": a version above 00 is read by its first four fields)."""
_UNSAMPLED_00 = re.compile(rb"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f][02468ace]")
"""A valid ``traceparent`` of version 00 with the sampled flag off, whole (``fullmatch``): what a
tracing gateway sends a replica for nearly every request. One match without groups decides it,
at about half the cost of :data:`_TRACEPARENT`'s match, its groups and their checks."""
_ZERO_TRACE, _ZERO_SPAN = b"0" * 32, b"0" * 16
_SAMPLED_LAST = frozenset(b"13579bdf")  # a flags byte's last hex digit with bit 0 (sampled) set
_unsampled_00 = _UNSAMPLED_00.fullmatch
_tuple_new = tuple.__new__  # builds a NamedTuple at ~1/3 the cost of its own __new__
_ID_LIMIT = (1 << 64) - 1
_random = random.Random()  # seeded from os.urandom; ids need uniqueness, not secrecy

# OpenTelemetry's SpanKind values, as the sink maps them back.
INTERNAL, SERVER, CLIENT = 0, 1, 2

AttributeValue = str | bool | int | float


class Parent(NamedTuple):
    """What a valid ``traceparent`` says: the caller's trace, its span, and whether sampled."""

    trace_id: int
    span_id: int
    sampled: bool


def parse_traceparent(value: bytes) -> Parent | None:
    """The parent a ``traceparent`` names; None when malformed, all-zero or version ``ff``.
    A version above ``00`` is read by its first four fields, whatever follows them after a dash
    (W3C Trace Context: a vendor "SHOULD try to parse it"); version ``00`` has nothing after
    its flags."""
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_hex, span_hex, flags, later = match.groups()
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if version == b"ff" or not trace_id or not span_id or (later is not None and version == b"00"):
        return None
    return _tuple_new(Parent, (trace_id, span_id, flags[-1] in _SAMPLED_LAST))


def sole_traceparent(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The value of a request's one ``traceparent`` header (any case, stripped); ``b""`` when
    it has none or more than one. W3C Trace Context holds more than one invalid (its test suite:
    "two traceparent headers ... expects a newly generated trace_id"), so the trace restarts
    rather than follow either: every reader of a caller's ``traceparent`` (the span recorder,
    the gateway's pass-through) goes through here, so they cannot disagree on which one."""
    found: bytes | None = None
    for name, value in headers:
        if len(name) == 11 and name.lower() == b"traceparent":
            if found is not None:
                return b""
            found = value
    return b"" if found is None else found.strip()


def traceparent(trace_id: int, span_id: int, sampled: bool) -> bytes:
    """The ``traceparent`` (version 00) that makes ``span_id`` the parent downstream."""
    return b"00-%032x-%016x-%s" % (trace_id, span_id, b"01" if sampled else b"00")


def new_span_id() -> int:
    return _random.getrandbits(64) or 1


def new_trace_id() -> int:
    return _random.getrandbits(128) or 1


class _Unsampled:
    """``traceparent`` values of version 00 with the sampled flag off, each with a fresh random
    trace id and parent id, cut from a buffer of random hex digits filled in bulk: what the
    gateway passes on for each of the requests it does not trace (nearly all under load), for
    a slice of bytes instead of two random ints and a formatting each (bench/README.md,
    session 12). The ids are random (``os.urandom``), as W3C Trace Context asks of them; a
    buffer with 16 zero digits in a row anywhere is drawn again, so no id is all zeros."""

    __slots__ = ("_at", "_buffer", "_count")

    SIZE = 55  # len("00-<32 hex>-<16 hex>-00")
    _STRIDE = 56  # a pad byte before each, so the ids' digits fall on 8- and 4-byte boundaries
    _TEMPLATE = b" 00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-00"

    def __init__(self, count: int = 1024) -> None:
        self._count = count
        self._buffer = b""
        self._at = 0  # the next one's first byte; at the end: fill again

    def take(self) -> bytes:
        at = self._at
        if at >= len(self._buffer):
            self._buffer = self._fill()
            at = 1
        self._at = at + self._STRIDE
        return self._buffer[at : at + self.SIZE]

    def _fill(self) -> bytes:
        """``count`` of them, one per 56 bytes: the trace ids' 32 digits copied in four 8-byte
        columns and the parent ids' 16 in four 4-byte ones (eight strided copies in all)."""
        n = self._count
        digits = hexlify(os.urandom(24 * n))  # 48 per traceparent: trace id, then parent id
        while b"0" * 16 in digits:
            digits = hexlify(os.urandom(24 * n))
        buffer = bytearray(self._TEMPLATE * n)
        quads, words = memoryview(digits).cast("Q"), memoryview(digits).cast("I")
        traces = memoryview(buffer)[4 : 4 + 8 * (7 * n - 1)].cast("Q")  # a trace id at 4
        parents = memoryview(buffer)[1 : 1 + 4 * (14 * n - 1)].cast("I")  # a parent id at 37
        for k in range(4):
            traces[k::7] = quads[k::6]
            parents[9 + k :: 14] = words[8 + k :: 12]
        return bytes(buffer)

    def drop(self) -> None:
        """Forget what is left, so the next one is drawn afresh (a forked child's ids are not
        its parent's)."""
        self._buffer, self._at = b"", 0


_unsampled = _Unsampled()


def _after_fork_in_child() -> None:
    _unsampled.drop()
    _random.seed()  # from os.urandom, as at import: span ids unlike the parent's


os.register_at_fork(after_in_child=_after_fork_in_child)


def unsampled_traceparent(trace_hex: bytes = b"") -> bytes:
    """A fresh ``traceparent`` with the sampled flag off (version 00): a new random trace, or
    the trace of ``trace_hex`` (its 32 lower-case hex digits) under a new random parent id."""
    fresh = _unsampled.take()
    return fresh[:3] + trace_hex + fresh[35:] if trace_hex else fresh


class FinishedSpan(NamedTuple):
    """One ended span, as recorded on the hot path (times in ns since the epoch)."""

    name: str
    kind: int  # INTERNAL, SERVER or CLIENT
    trace_id: int
    span_id: int
    parent_id: int  # 0: a root span
    remote_parent: bool  # the parent is the caller's span (from its traceparent)
    start_ns: int
    end_ns: int
    attributes: Mapping[str, AttributeValue]
    error: bool  # status ERROR (``error.type`` is among the attributes)
    links: tuple[tuple[int, int], ...] = ()  # (trace id, span id) of linked spans


SpanSink = Callable[[FinishedSpan], None]


@dataclass(frozen=True, slots=True)
class Sampling:
    """Which traces are recorded: ``ratio`` of the traces started here, at most ``per_second``
    of them (None: no cap); a caller's sampled flag wins when ``parent_based`` (the SDK's
    ``parentbased_*`` samplers)."""

    ratio: float = DEFAULT_RATIO
    parent_based: bool = True
    per_second: float | None = None
    roots: bool = True
    """False: this process starts no trace of its own; a request without a (valid)
    ``traceparent`` is not traced here (``KAIP_TRACE_ROOTS=off``: a model server behind
    ``kaip up``'s tracing gateway, which decides for every request it sends)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"a sampling ratio is between 0 and 1, not {self.ratio}")
        if self.per_second is not None and not self.per_second > 0:
            raise ValueError(f"a cap on traces per second is above 0, not {self.per_second}")


TRACE_ROOTS_ENV = "KAIP_TRACE_ROOTS"
"""``off``: the process starts no trace of its own (:attr:`Sampling.roots`); ``kaip up`` sets it
on the Model replicas behind its tracing gateway, which passes a ``traceparent`` on for every
trace that goes on and for no other (kaip.local.gateway.trace)."""

DEFAULT_SAMPLING = Sampling(1.0, parent_based=True, per_second=DEFAULT_PER_SECOND)
"""kaip's default: parent based; of the traces started here, every one up to 10 per second."""


class Start(NamedTuple):
    """A span begun: its trace, its own id, its parent (0: none), and whether it is recorded."""

    trace_id: int
    span_id: int
    parent_id: int
    remote_parent: bool
    sampled: bool
    start_ns: int


class SpanRecorder:
    """The sampling decision and the sink of one process's spans."""

    __slots__ = (
        "_bound",
        "_clock",
        "_last",
        "_parent_based",
        "_per_second",
        "_refill_at",
        "_roots",
        "_tokens",
        "_whole",
        "sink",
    )

    def __init__(
        self,
        sink: SpanSink,
        sampling: Sampling = DEFAULT_SAMPLING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self._bound = round(sampling.ratio * (_ID_LIMIT + 1))  # TraceIdRatioBased.get_bound
        self._whole = self._bound > _ID_LIMIT
        """Ratio 1: every trace id is under the bound, so a trace started here is decided
        without one (its ids need not exist as ints unless it is sampled)."""
        self._parent_based = sampling.parent_based
        self._roots = sampling.roots
        self._per_second = sampling.per_second
        self._clock = clock
        self._tokens = sampling.per_second or 0.0  # a token bucket, full at the start
        self._last = clock()
        self._refill_at = self._last  # no token before this time (the bucket is empty)

    @property
    def roots(self) -> bool:
        """Whether this process starts traces of its own (:attr:`Sampling.roots`)."""
        return self._roots

    def _keep(self, trace_id: int) -> bool:
        """The decision for a trace started here: its id under the ratio, and a token left."""
        return trace_id & _ID_LIMIT < self._bound and self._token()

    def _token(self) -> bool:
        """A token taken from the bucket (always, with no cap on traces per second). While the
        bucket is empty (nearly every request under load), one clock read and one comparison
        with when it next holds a whole token: the tokens grow linearly until then, so the
        bucket's state is brought up to date only when one may be taken."""
        rate = self._per_second
        if rate is None:
            return True
        now = self._clock()
        if now < self._refill_at:
            return False
        tokens = min(rate, self._tokens + (now - self._last) * rate)
        self._last = now
        if tokens >= 1.0:
            tokens -= 1.0
            kept = True
        else:
            kept = False
        self._tokens = tokens
        # A bucket that holds less than one token at most (rate < 1) never gives one.
        self._refill_at = now + (1.0 - tokens) / rate if rate >= 1.0 else float("inf")
        return kept

    def start(self, parent: Parent | None) -> Start:
        """Begin a server span under ``parent`` (the caller's, or None: a new trace). A span
        not sampled gets no id and no time (nothing will record it)."""
        if parent is None:
            trace_id = new_trace_id()
            if self._roots and self._keep(trace_id):
                return _tuple_new(Start, (trace_id, new_span_id(), 0, False, True, time.time_ns()))
            return _tuple_new(Start, (trace_id, 0, 0, False, False, 0))
        trace_id = parent.trace_id
        if parent.sampled if self._parent_based else self._keep(trace_id):
            span_id = new_span_id()
            return _tuple_new(
                Start, (trace_id, span_id, parent.span_id, True, True, time.time_ns())
            )
        return _tuple_new(Start, (trace_id, 0, parent.span_id, True, False, 0))

    def open(
        self, headers: Iterable[tuple[bytes, bytes]], mint: bool = True
    ) -> tuple[Start | None, bytes, bool]:
        """:meth:`start_from` for a server that passes the trace context on (the gateway):
        ``(start, b"", continued)`` when the span is sampled; when not, ``(None, traceparent,
        continued)`` with the ``traceparent`` (flags 00) the next hop must get, in the same trace
        as the caller's or a new one, under a fresh random parent id, made without ints or
        formatting (:func:`unsampled_traceparent`). ``continued``: the caller's trace goes on
        (its one ``traceparent`` was valid), so its ``tracestate`` goes on too. ``mint=False``:
        a trace started here and not sampled gets no ``traceparent`` (``b""``), for a next hop
        that starts no trace of its own (:attr:`Sampling.roots` off there); a caller's trace
        always goes on (W3C Trace Context: a received ``traceparent`` MUST be sent on)."""
        value = sole_traceparent(headers)
        parent = parse_traceparent(value) if value else None
        if parent is not None:
            if parent.sampled if self._parent_based else self._keep(parent.trace_id):
                start = (parent.trace_id, new_span_id(), parent.span_id, True, True, time.time_ns())
                return _tuple_new(Start, start), b"", True
            return None, unsampled_traceparent(value[3:35]), True
        if not self._roots:
            return None, _unsampled.take() if mint else b"", False
        if self._whole:  # decided by the bucket alone: ids only for a sampled trace
            if self._clock() >= self._refill_at and self._token():  # (before: an empty bucket)
                return self._root(new_trace_id()), b"", False
            return None, _unsampled.take() if mint else b"", False
        trace_id = new_trace_id()
        if self._keep(trace_id):
            return self._root(trace_id), b"", False
        return None, traceparent(trace_id, new_span_id(), False) if mint else b"", False

    @staticmethod
    def _root(trace_id: int) -> Start:
        """The sampled span that starts trace ``trace_id`` here (its sampling decided)."""
        return _tuple_new(Start, (trace_id, new_span_id(), 0, False, True, time.time_ns()))

    def start_from(self, headers: Iterable[tuple[bytes, bytes]]) -> Start:
        """:meth:`start` under the ``traceparent`` among ASGI/HTTP ``headers`` (any case; a
        new trace when there is none, more than one, or a malformed one)."""
        value = sole_traceparent(headers)
        return self.start(parse_traceparent(value) if value else None)

    def sampled_from(self, headers: Iterable[tuple[bytes, bytes]]) -> Start | None:
        """:meth:`start_from` for a server that passes no trace context on (the model server):
        None when the span is not sampled (:meth:`sampled`)."""
        return self.sampled(sole_traceparent(headers))

    def sampled(self, value: bytes) -> Start | None:
        """:meth:`sampled_from` given the request's one ``traceparent`` (``b""``: none, or more
        than one; :func:`sole_traceparent`). A caller's valid unsampled ``traceparent`` of
        version 00 under a parent-based sampler (nearly every request behind a tracing gateway)
        is decided by one match, without building its ids; any other by its fields (surrounding
        whitespace ignored)."""
        if self._parent_based and _unsampled_00(value) is not None:
            return None
        value = value.strip()
        if not value:
            if not self._roots:
                return None
            if self._whole:  # decided by the bucket alone: ids only for a sampled trace
                return self._root(new_trace_id()) if self._token() else None
            start = self.start(None)
            return start if start.sampled else None
        if self._parent_based and (match := _TRACEPARENT.match(value)):
            version, trace_hex, span_hex, flags, later = match.groups()
            if (
                flags[-1] not in _SAMPLED_LAST
                and version != b"ff"
                and trace_hex != _ZERO_TRACE
                and span_hex != _ZERO_SPAN
                and (later is None or version != b"00")
            ):
                return None
        start = self.start(parse_traceparent(value))
        return start if start.sampled else None

    def end(
        self,
        start: Start,
        name: str,
        kind: int,
        attributes: Mapping[str, AttributeValue],
        error: bool = False,
    ) -> None:
        """Record the span ``start`` began, ending now (only when its trace is sampled)."""
        if start.sampled:
            self.sink(
                FinishedSpan(
                    name,
                    kind,
                    start.trace_id,
                    start.span_id,
                    start.parent_id,
                    start.remote_parent,
                    start.start_ns,
                    time.time_ns(),
                    attributes,
                    error,
                )
            )
