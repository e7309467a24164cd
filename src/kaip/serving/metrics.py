"""Prometheus metrics of one served model, in a registry of their own.

The per-request instruments are plain Python counters updated on the event loop (one list
increment per observation, no locks: every update and every scrape runs on the loop thread) and
turned into Prometheus families only when ``/metrics`` is scraped. prometheus_client's own
metric classes cost several function calls and a lock per update, which on the hot path added up
to a measurable share of a request. Names come from :mod:`kaip.telemetry`. Never raises into a
request.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kaip import telemetry as names
from kaip.telemetry import prometheus_name

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# The OpenTelemetry GenAI semantic conventions' explicit bucket boundaries (seconds), one list
# per histogram: a p95 is interpolated within one bucket (kaip.policy.genai), so a gate is as
# fine as these. Request duration doubles from 10 ms; time to first token is 20-40 ms wide up to
# 100 ms and 150-250 ms wide to 1 s (a 200 ms first token reads as at most 250 ms, not the 312
# ms of doubling buckets); time per output token 15-100 ms wide to 0.5 s.
GENAI_DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92
)  # fmt: skip
GENAI_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
)  # fmt: skip
GENAI_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)


class LoopHistogram:
    """A histogram for one label set, updated from one thread (the event loop)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # buckets are "less or equal"
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


class LoopGauge:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1

    def set(self, value: float) -> None:
        self.value = value


class ServerMetrics(Collector):
    def __init__(self, model: str, revision: str) -> None:
        self.model = model
        self.revision = revision
        self.queue_time = LoopHistogram(LATENCY_BUCKETS)
        self.predict_time = LoopHistogram(LATENCY_BUCKETS)
        self.batch_rows = LoopHistogram(BATCH_BUCKETS)
        self.inflight = LoopGauge()
        self.ready = LoopGauge()
        self.queue_depth: Callable[[], float] = lambda: 0
        self.engine: Callable[[], Mapping[str, float]] | None = None
        """The engine's own counts (see :meth:`collect`), when the runtime has an engine."""
        self._requests: dict[tuple[str, int], int] = {}
        self._durations: dict[str, LoopHistogram] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        # process_cpu_seconds_total, process_resident_memory_bytes, ...: what a cluster without
        # metrics-server can give an HPA's CPU target (charts/kaip/extras), and what people
        # expect of any Prometheus target.
        ProcessCollector(registry=self.registry)
        # model and revision, as on every kaip series: the operator's TTFT/TPOT gates select a
        # revision's pods by them (kaip.kube.operator.metrics).
        genai_labels = [
            "model", "revision", "gen_ai_operation_name", "gen_ai_request_model", "error_type"
        ]  # fmt: skip
        self.genai_duration = Histogram(
            prometheus_name(names.GENAI_REQUEST_DURATION, "seconds"),
            "GenAI server request duration, seconds.",
            genai_labels,
            buckets=GENAI_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.genai_ttft = Histogram(
            prometheus_name(names.GENAI_TIME_TO_FIRST_TOKEN, "seconds"),
            "Time to the first output token, seconds.",
            genai_labels,
            buckets=GENAI_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.genai_tpot = Histogram(
            prometheus_name(names.GENAI_TIME_PER_OUTPUT_TOKEN, "seconds"),
            "Time per output token after the first, seconds.",
            genai_labels,
            buckets=GENAI_TPOT_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, protocol: str, status: int, seconds: float) -> None:
        key = (protocol, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        histogram = self._durations.get(protocol)
        if histogram is None:
            histogram = self._durations[protocol] = LoopHistogram(LATENCY_BUCKETS)
        histogram.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # -- prometheus_client Collector -------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        base = ["model", "revision"]
        ids = [self.model, self.revision]
        requests = CounterMetricFamily(
            names.REQUESTS_TOTAL.removesuffix("_total"),
            "Requests answered, by protocol and HTTP status.",
            labels=[*base, "protocol", "status"],
        )
        for (protocol, status), count in sorted(self._requests.items()):
            requests.add_metric([*ids, protocol, str(status)], count)
        yield requests
        duration = HistogramMetricFamily(
            names.REQUEST_DURATION,
            "Time from request to response, seconds.",
            labels=[*base, "protocol"],
        )
        for protocol, histogram in sorted(self._durations.items()):
            duration.add_metric([*ids, protocol], histogram.buckets(), histogram.sum)
        yield duration
        for name, doc, histogram in (
            (names.QUEUE_DURATION, "Time a request waited for its batch, seconds.",
             self.queue_time),
            (names.PREDICT_DURATION, "Duration of one predict call on a batch, seconds.",
             self.predict_time),
            (names.BATCH_SIZE, "Rows per predict call.", self.batch_rows),
        ):  # fmt: skip
            family = HistogramMetricFamily(name, doc, labels=base)
            family.add_metric(ids, histogram.buckets(), histogram.sum)
            yield family
        for name, doc, value in (
            (names.INFLIGHT, "Requests being served.", self.inflight.value),
            (names.QUEUE_DEPTH, "Requests waiting for a batch.", float(self.queue_depth())),
            (names.MODEL_READY, "1 once the model is loaded.", self.ready.value),
        ):
            gauge = GaugeMetricFamily(name, doc, labels=base)
            gauge.add_metric(ids, value)
            yield gauge
        if self.engine is not None:
            yield from self._engine_families(base, ids, self.engine())

    @staticmethod
    def _engine_families(
        base: list[str], ids: list[str], stats: Mapping[str, float]
    ) -> Iterator[Metric]:
        tokens = CounterMetricFamily(
            names.ENGINE_TOKENS.removesuffix("_total"),
            "Tokens the engine handled: prompt, prompt_cached (reused from its KV cache, not "
            "evaluated again) and generated.",
            labels=[*base, "kind"],
        )
        # only what the engine reports: an engine served by relay may report none of it
        for kind in ("prompt", "prompt_cached", "generated"):
            if f"{kind}_tokens" in stats:
                tokens.add_metric([*ids, kind], stats[f"{kind}_tokens"])
        yield tokens
        if "busy" in stats:
            busy = GaugeMetricFamily(
                names.ENGINE_BUSY, "Generations holding the engine.", labels=base
            )
            busy.add_metric(ids, stats["busy"])
            yield busy
        if "kv_cache_usage" in stats:
            usage = GaugeMetricFamily(
                names.KV_CACHE_USAGE,
                "Tokens the engine's KV cache holds over its context's size (0 to 1).",
                labels=base,
            )
            usage.add_metric(ids, stats["kv_cache_usage"])
            yield usage


class GenAIMetrics:
    """The GenAI server histograms, on /metrics and as OpenTelemetry instruments.

    The OpenTelemetry side uses the API only: it records nothing until an entrypoint installs a
    meter provider (see :func:`kaip.telemetry.otel.configure`).
    """

    def __init__(self, server: ServerMetrics) -> None:
        from opentelemetry import metrics as otel_metrics

        self._server = server
        meter = otel_metrics.get_meter(names.INSTRUMENTATION_SCOPE)
        self._otel_duration = meter.create_histogram(
            names.GENAI_REQUEST_DURATION,
            unit="s",
            description="GenAI server request duration",
            explicit_bucket_boundaries_advisory=GENAI_DURATION_BUCKETS,
        )
        self._otel_ttft = meter.create_histogram(
            names.GENAI_TIME_TO_FIRST_TOKEN,
            unit="s",
            description="Time to first token",
            explicit_bucket_boundaries_advisory=GENAI_TTFT_BUCKETS,
        )
        self._otel_tpot = meter.create_histogram(
            names.GENAI_TIME_PER_OUTPUT_TOKEN,
            unit="s",
            description="Time per output token",
            explicit_bucket_boundaries_advisory=GENAI_TPOT_BUCKETS,
        )

    def record(
        self,
        operation: str,
        model: str,
        duration: float,
        *,
        ttft: float | None = None,
        tokens: int = 0,
        error_type: str = "",
    ) -> None:
        try:
            server = self._server
            labels = (server.model, server.revision, operation, model, error_type)
            attrs = {names.ATTR_GENAI_OPERATION: operation, names.ATTR_GENAI_MODEL: model}
            if error_type:
                attrs[names.ATTR_ERROR_TYPE] = error_type
            self._server.genai_duration.labels(*labels).observe(duration)
            self._otel_duration.record(duration, attrs)
            if ttft is not None:
                self._server.genai_ttft.labels(*labels).observe(ttft)
                self._otel_ttft.record(ttft, attrs)
                if tokens > 1:
                    per_token = (duration - ttft) / (tokens - 1)
                    self._server.genai_tpot.labels(*labels).observe(per_token)
                    self._otel_tpot.record(per_token, attrs)
        except Exception:  # instrumentation never breaks a request
            pass
