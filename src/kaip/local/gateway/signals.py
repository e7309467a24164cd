"""The gateway's own signals: Prometheus metrics on ``GET /metrics`` and one span per request.

Owns what the gateway counts about proxied requests (per resource, revision and owner: requests
by status class, a latency histogram, retries, timeouts), what it reads live at scrape time
(in-flight and held requests, replicas by phase) and the OpenTelemetry spans of a request: a
SERVER span for the client's request and one CLIENT span per attempt on a replica, whose
``traceparent`` is what that replica sees, so a retried request shows both attempts in one trace.
Never does I/O itself (the exporter is the SDK's, behind :mod:`kaip.telemetry.spans`' sink) and
never chooses a replica.

The rule that keeps the hot path cheap: a request only adds to plain ints in a per-(resource,
revision) record on the event loop's thread, with no object of its own (the gateway keeps its
arrival time and the forwarder the revision tried in locals: one :meth:`GatewaySignals.count` when
it ends; the forwarder keeps each replica's busy time where it counts the replica's requests in
flight); prometheus_client turns the records into text when ``/metrics`` is scraped
(:class:`GatewayCollector`), and spans exist only when a span recorder is given
(``OTEL_EXPORTER_OTLP_ENDPOINT`` set) and the trace is sampled: an unsampled request only gets the
``traceparent`` its replicas see, cut from a pool of random hex digits (no ids as ints, no
formatting), or none at all for replicas that start no trace (trace.py); a sampled one gets an
:class:`Observation` that records plain tuples (:mod:`kaip.telemetry.spans`). Worked
example: a client POSTs to ``digits`` (owner ``team-a``), replica ``d-1`` of revision ``3``
refuses the connection, ``d-2`` answers 200 in 12 ms. Then
``kaip_gateway_requests_total{resource="digits",revision="3",owner="team-a",status_class="2xx"}``
is 1, ``kaip_gateway_retries_total`` 1, the histogram's ``le="0.025"``
bucket counts it, and the trace holds ``POST`` (server) with two ``POST`` client spans under it,
the second with ``http.request.resend_count=1``; ``d-2``'s own spans hang under the second.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kaip import telemetry as names
from kaip.accounting import Figures
from kaip.protocol.upstream import Outcome
from kaip.telemetry.spans import (
    CLIENT,
    SERVER,
    AttributeValue,
    FinishedSpan,
    SpanRecorder,
    Start,
    new_span_id,
    traceparent,
)

_NO_ANSWER = 5  # where a status of 0 (cut short, no answer) counts in a record's classes

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
"""The OpenTelemetry HTTP semantic conventions' advice for ``http.server.request.duration``."""

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_OK = Outcome.OK  # an enum member read off its class costs
# ~0.1 µs on Python 3.11 (a descriptor), a module global a tenth of that
_FIRST_BOUND_S = LATENCY_BUCKETS_S[0]  # most answers fall in the first bucket: no bisect then
_FAILED_ATTEMPT = {
    Outcome.FAILED_BEFORE_RESPONSE: "connection_failed",
    Outcome.FAILED_DURING_RESPONSE: "response_incomplete",
    Outcome.TIMED_OUT: "timeout",
}

ReplicaPhases = Callable[[], Iterable[tuple[str, str, str, str]]]
"""``(resource, revision, owner, phase)`` of every replica now (the controller's view)."""


@dataclass(frozen=True, slots=True)
class LiveLoad:
    """What a route has in flight now, read at scrape time."""

    kind: str
    resource: str
    owner: str
    in_flight: int
    held: int


class _Busy:
    """One replica's busy time as the gateway sees it: the union of its attempts in flight (the
    forwarder's ``outstanding`` count of the replica is the number in flight: it starts the
    clock when that count leaves 0 and stops it when it comes back to 0)."""

    __slots__ = ("busy_s", "requests", "since")

    def __init__(self) -> None:
        self.since = 0.0
        self.busy_s = 0.0
        self.requests = 0  # attempts it answered


@dataclass(frozen=True, slots=True)
class ReplicaBusy:
    """What the gateway measured of one replica since it first sent it a request."""

    busy_seconds: float
    requests: int


def _class_index(status: int) -> int:
    """Where ``status`` counts in a :class:`_Record`'s classes (5: none, e.g. status 0);
    :meth:`GatewaySignals.count` has it inline."""
    return status // 100 - 1 if 100 <= status < 600 else _NO_ANSWER


class _Record:
    """Counts of one (kind, resource, revision, owner), added to on the event loop only."""

    __slots__ = (
        "buckets",
        "by_class",
        "mirror_dropped",
        "mirrored",
        "retries",
        "sum_s",
        "timeouts",
    )

    def __init__(self) -> None:
        self.by_class = [0, 0, 0, 0, 0, 0]  # 1xx..5xx, then "no answer" (status 0)
        self.mirrored = [0, 0, 0, 0, 0, 0]  # copies the revision answered, as by_class
        self.mirror_dropped = 0
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)  # the last is +Inf only
        self.sum_s = 0.0
        self.retries = 0
        self.timeouts = 0


Key = tuple[str, str, str, str]  # kind, resource, revision, owner


class GatewaySignals:
    """The gateway's metrics records, its Prometheus registry, and its tracer (or None)."""

    def __init__(
        self,
        tracer: SpanRecorder | None = None,
        *,
        live_load: Callable[[], Iterable[LiveLoad]] | None = None,
        replica_phases: ReplicaPhases | None = None,
    ) -> None:
        self.tracer = tracer
        """Where spans go; None: no spans (the ``traceparent`` is passed on as is)."""
        self.live_load = live_load
        self.replica_phases = replica_phases
        self._records: dict[Key, _Record] = {}
        self._busy: dict[str, _Busy] = {}
        self.in_flight: Mapping[str, int] = {}
        """Attempts in flight per replica: the forwarder's ``outstanding`` (the gateway sets it)."""
        self.request_cost: Callable[[str], tuple[float, float] | None] | None = None
        """replica -> (USD, joules) per request, its usage-basis average so far: the
        ``kaip.cost.usd`` and ``kaip.energy.joules`` of a sampled server span (kaip up sets it)."""
        self.accounting: Callable[[], Iterable[tuple[Key, Figures]]] | None = None
        """``((kind, resource, revision, owner), figures)`` of requests so far (kaip up sets it:
        the cost, energy and carbon counters of ``/metrics``)."""
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(self))

    def record(self, key: Key) -> _Record:
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _Record()
        return record

    def count(self, key: Key, status: int, seconds: float) -> None:
        """A request to ``key``'s revision (the one that answered, or was tried last) is over:
        ``status`` is what the client got (0: cut short or none), ``seconds`` its time from
        arrival. Once per request, with no per-request object: the gateway keeps the arrival
        time and the forwarder the revision in locals."""
        record = self._records.get(key) or self.record(key)
        record.by_class[status // 100 - 1 if 100 <= status < 600 else _NO_ANSWER] += 1
        record.buckets[
            0 if seconds <= _FIRST_BOUND_S else bisect_left(LATENCY_BUCKETS_S, seconds)
        ] += 1
        record.sum_s += seconds

    def busy(self, replica: str) -> _Busy:
        """``replica``'s busy time, which the forwarder keeps (see :class:`_Busy`)."""
        busy = self._busy.get(replica)
        if busy is None:
            busy = self._busy[replica] = _Busy()
        return busy

    def mirrored(self, key: Key, status: int) -> None:
        """A mirrored copy sent to ``key``'s revision ended with ``status`` (0: no answer)."""
        self.record(key).mirrored[_class_index(status)] += 1

    def mirror_dropped(self, key: Key) -> None:
        """A copy for ``key``'s revision was not sent: too many were on their way."""
        self.record(key).mirror_dropped += 1

    def records(self) -> list[tuple[Key, _Record]]:
        return list(self._records.items())

    def replica_busy(self) -> dict[str, ReplicaBusy]:
        """Busy seconds (an attempt in flight, ongoing ones counted to now) and answered
        requests of every replica the gateway has sent requests to."""
        now = time.perf_counter()
        in_flight = self.in_flight
        return {
            replica: ReplicaBusy(
                b.busy_s + (now - b.since if in_flight.get(replica) else 0.0), b.requests
            )
            for replica, b in self._busy.items()
        }

    def scrape(self) -> bytes:
        """The Prometheus text exposition of everything above."""
        return generate_latest(self.registry)

    def trace(
        self,
        resource: str,
        owner: str,
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        revision: str = "",
    ) -> tuple[Observation | None, bytes, bool]:
        """When tracing (:attr:`tracer` set), the request's trace: ``(observation, b"",
        continued)`` when it is sampled (its spans, recorded by the :class:`Observation`);
        ``(None, traceparent, continued)`` when not: the ``traceparent`` (flags 00) the replica
        gets, all an unsampled request needs (see :meth:`SpanRecorder.open`); ``revision``: the
        one it is pinned to, if known yet."""
        assert self.tracer is not None
        trace, head, continued = self.tracer.open(headers)
        if trace is None:
            return None, head, continued
        observation = Observation(self, trace, resource, owner, method, target, revision)
        observation.continues_trace = continued
        return observation, b"", continued


class Observation:
    """One proxied request whose trace is sampled: its server span and one client span per
    attempt. Its counts are :meth:`GatewaySignals.count`'s and the forwarder's, as for any
    request: this records spans only."""

    __slots__ = (
        "_attempt",
        "_method",
        "_next_span",
        "_replica",
        "continues_trace",
        "owner",
        "resource",
        "revision",
        "signals",
        "target",
        "trace",
    )

    def __init__(
        self,
        signals: GatewaySignals,
        trace: Start,
        resource: str,
        owner: str,
        method: bytes,
        target: bytes,
        revision: str = "",
    ) -> None:
        self.signals = signals
        self.trace = trace
        """The server span's ids (recorded at :meth:`finish`)."""
        self.resource = resource
        self.owner = owner
        self._method = method
        self.continues_trace = False
        """The request is in the client's trace (its one ``traceparent`` was valid), so the
        client's ``tracestate`` goes on with it; False: the trace restarted here."""
        self.target = target
        self.revision = revision
        """The revision that answered (or was tried last); set by the gateway."""
        self._attempt: tuple[int, int, dict[str, AttributeValue]] | None = None
        self._replica = ""  # the replica tried last
        self._next_span = 0  # the next attempt's span id, already in the request head (0: none)

    def head_traceparent(self) -> bytes:
        """The ``traceparent`` to build the request head with: the first attempt's, its span id
        minted now so that :meth:`attempt` need not change the head."""
        self._next_span = span_id = new_span_id()
        return traceparent(self.trace.trace_id, span_id, True)

    def relayed_traceparent(self) -> bytes:
        """The ``traceparent`` of a request relayed in one piece with no attempt spans (a
        WebSocket's handshake): the server span as the replica's parent, so the App's spans
        hang under it."""
        trace = self.trace
        return traceparent(trace.trace_id, trace.span_id, True)

    def attempt(self, replica: str, host: str, port: int, sent: int) -> bytes | None:
        """An attempt on a replica begins, after ``sent`` attempts of this request (the
        forwarder's count: a retry's ``http.request.resend_count``); returns the
        ``traceparent`` it must carry, or None when the head already carries it (the one
        :meth:`head_traceparent` gave)."""
        self._replica = replica
        span_id, self._next_span = self._next_span, 0
        mine = None
        if not span_id:
            span_id = new_span_id()
            mine = traceparent(self.trace.trace_id, span_id, True)
        attributes: dict[str, AttributeValue] = {
            "server.address": host,
            "server.port": port,
            names.ATTR_REPLICA: replica,
        }
        if sent:
            attributes["http.request.resend_count"] = sent
        self._attempt = (span_id, time.time_ns(), attributes)
        return mine

    def attempt_done(self, outcome: Outcome, status: int) -> None:
        """The attempt :meth:`attempt` began ended with ``outcome`` (``status``: 0, none)."""
        attempt, self._attempt = self._attempt, None
        if attempt is None:
            return
        attributes = attempt[2]
        if outcome is _OK or (outcome is Outcome.FAILED_DURING_RESPONSE and status):
            attributes["http.response.status_code"] = status
        failed = outcome is not _OK or status >= 500
        if failed:
            attributes[names.ATTR_ERROR_TYPE] = _FAILED_ATTEMPT.get(outcome) or str(status)
        self._span(CLIENT, attempt[0], attempt[1], attributes, failed)

    def _span(
        self,
        kind: int,
        span_id: int,
        start_ns: int,
        attributes: dict[str, AttributeValue],
        error: bool,
    ) -> None:
        """Record a CLIENT span under the server span, or (kind SERVER) the server span."""
        assert self.signals.tracer is not None
        trace = self.trace
        server = kind == SERVER
        self.signals.tracer.sink(
            FinishedSpan(
                self._method.decode("latin-1"),
                kind,
                trace.trace_id,
                span_id,
                trace.parent_id if server else trace.span_id,
                trace.remote_parent if server else False,
                start_ns,
                time.time_ns(),
                attributes,
                error,
            )
        )

    def finish(self, status: int) -> None:
        """The request is over: ``status`` is what the client got (0: cut short or none).
        Records the spans (an attempt still open: the client went away mid-attempt)."""
        if self._attempt is not None:  # cancelled mid-attempt (the client went away)
            span_id, start_ns, attempt_attributes = self._attempt
            self._attempt = None
            self._span(CLIENT, span_id, start_ns, attempt_attributes, False)
        trace = self.trace
        attributes: dict[str, AttributeValue] = {  # OpenTelemetry HTTP server conventions
            "http.request.method": self._method.decode("latin-1"),
            "url.path": self.target.partition(b"?")[0].decode("latin-1"),
            names.ATTR_RESOURCE: self.resource,
            names.ATTR_OWNER: self.owner,
        }
        if self.revision:
            attributes[names.ATTR_REVISION] = self.revision
        if status:
            attributes["http.response.status_code"] = status
        cost = self.signals.request_cost
        figures = cost(self._replica) if cost is not None and self._replica else None
        if figures is not None:
            attributes[names.ATTR_COST_USD], attributes[names.ATTR_ENERGY_JOULES] = figures
        failed = status >= 500 or not status
        if failed:
            attributes[names.ATTR_ERROR_TYPE] = str(status) if status else "response_incomplete"
        self._span(SERVER, trace.span_id, trace.start_ns, attributes, failed)


class GatewayCollector(Collector):
    """Turns :class:`GatewaySignals`' records and live reads into metric families per scrape."""

    def __init__(self, signals: GatewaySignals) -> None:
        self._signals = signals

    def collect(self) -> Iterator[Metric]:
        labels = ["kind", "resource", "revision", "owner"]
        requests = CounterMetricFamily(
            names.GATEWAY_REQUESTS,
            "Requests the gateway proxied, by the status class the client got "
            "('none': cut short or no answer)",
            labels=[*labels, "status_class"],
        )
        duration = HistogramMetricFamily(
            names.GATEWAY_DURATION,
            "Time from the request's arrival to the end of its answer or failure",
            labels=labels,
        )
        retries = CounterMetricFamily(
            names.GATEWAY_RETRIES, "Attempts sent again to another replica", labels=labels
        )
        timeouts = CounterMetricFamily(
            names.GATEWAY_TIMEOUTS,
            "Attempts on which a replica sent no response head within the response timeout",
            labels=labels,
        )
        mirrored = CounterMetricFamily(
            names.GATEWAY_MIRRORED,
            "Copies of requests mirrored to this revision (rollout.traffic.mirror), by the "
            "status class of its discarded answer ('none': no answer)",
            labels=[*labels, "status_class"],
        )
        dropped = CounterMetricFamily(
            names.GATEWAY_MIRROR_DROPPED,
            "Copies not mirrored to this revision because too many were on their way",
            labels=labels,
        )
        for key, record in self._signals.records():
            values = list(key)
            for i, count in enumerate(record.by_class):
                if count:
                    requests.add_metric([*values, _CLASSES[i] if i < 5 else "none"], count)
            for i, count in enumerate(record.mirrored):
                if count:
                    mirrored.add_metric([*values, _CLASSES[i] if i < 5 else "none"], count)
            if record.mirror_dropped:
                dropped.add_metric(values, record.mirror_dropped)
            cumulative, buckets = 0, []
            for bound, count in zip(LATENCY_BUCKETS_S, record.buckets, strict=False):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            cumulative += record.buckets[-1]
            buckets.append(("+Inf", cumulative))
            if cumulative:
                duration.add_metric(values, buckets, record.sum_s)
            retries.add_metric(values, record.retries)
            timeouts.add_metric(values, record.timeouts)
        yield from (requests, duration, retries, timeouts, mirrored, dropped)
        yield from self._live()
        yield from self._accounting()

    def _accounting(self) -> Iterator[Metric]:
        if self._signals.accounting is None:
            return
        labels = ["kind", "resource", "revision", "owner"]
        cost = CounterMetricFamily(
            names.COST_USD,
            "Cost attributed to requests (usage basis: idle apart), USD (docs/observability.md)",
            labels=labels,
        )
        energy = CounterMetricFamily(
            names.ENERGY_JOULES,
            "Energy attributed to requests, joules (estimated unless measured)",
            labels=labels,
        )
        carbon = CounterMetricFamily(
            names.CO2E_GRAMS, "Carbon attributed to requests, grams CO2e", labels=labels
        )
        for key, figures in self._signals.accounting():
            values = list(key)
            cost.add_metric(values, figures.cost_usd)
            energy.add_metric(values, figures.energy_j)
            carbon.add_metric(values, figures.co2e_g)
        yield from (cost, energy, carbon)

    def _live(self) -> Iterator[Metric]:
        route_labels = ["kind", "resource", "owner"]
        in_flight = GaugeMetricFamily(
            names.GATEWAY_INFLIGHT, "Requests in the gateway now", labels=route_labels
        )
        held = GaugeMetricFamily(
            names.GATEWAY_HELD,
            "Requests waiting for a ready replica now (scale from zero, starting)",
            labels=route_labels,
        )
        if self._signals.live_load is not None:
            for load in self._signals.live_load():
                values = [load.kind, load.resource, load.owner]
                in_flight.add_metric(values, load.in_flight)
                held.add_metric(values, load.held)
        replicas = GaugeMetricFamily(
            names.GATEWAY_REPLICAS,
            "Replicas by phase (starting, ready, unhealthy, backoff, crash-loop, draining)",
            labels=["resource", "revision", "owner", "phase"],
        )
        if self._signals.replica_phases is not None:
            counts: dict[tuple[str, str, str, str], int] = {}
            for replica in self._signals.replica_phases():
                counts[replica] = counts.get(replica, 0) + 1
            for key, count in sorted(counts.items()):
                replicas.add_metric(list(key), count)
        yield from (in_flight, held, replicas)
