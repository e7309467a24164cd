"""Prometheus metrics of one served model, in a registry of their own.

Children are bound to their labels once, so the hot path pays a lock and an add per update, not
a label lookup. Metric names come from :mod:`kaip.telemetry`. Updates never raise into a request.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kaip import telemetry as names
from kaip.telemetry import prometheus_name

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
GENAI_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92
)  # fmt: skip


class ServerMetrics:
    def __init__(self, model: str, revision: str) -> None:
        self.model = model
        self.revision = revision
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter(
            names.REQUESTS_TOTAL.removesuffix("_total"),
            "Requests answered, by protocol and HTTP status.",
            ["model", "revision", "protocol", "status"],
            registry=r,
        )
        self._duration = Histogram(
            names.REQUEST_DURATION,
            "Time from request to response, seconds.",
            ["model", "revision", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        labels = (model, revision)
        self.queue_time = Histogram(
            names.QUEUE_DURATION,
            "Time a request waited for its batch, seconds.",
            ["model", "revision"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        ).labels(*labels)
        self.predict_time = Histogram(
            names.PREDICT_DURATION,
            "Duration of one predict call on a batch, seconds.",
            ["model", "revision"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        ).labels(*labels)
        self.batch_rows = Histogram(
            names.BATCH_SIZE,
            "Rows per predict call.",
            ["model", "revision"],
            buckets=BATCH_BUCKETS,
            registry=r,
        ).labels(*labels)
        self.inflight = Gauge(
            names.INFLIGHT, "Requests being served.", ["model", "revision"], registry=r
        ).labels(*labels)
        self.queue_depth = Gauge(
            names.QUEUE_DEPTH, "Requests waiting for a batch.", ["model", "revision"], registry=r
        ).labels(*labels)
        self.ready = Gauge(
            names.MODEL_READY, "1 once the model is loaded.", ["model", "revision"], registry=r
        ).labels(*labels)
        genai_labels = ["gen_ai_operation_name", "gen_ai_request_model", "error_type"]
        self.genai_duration = Histogram(
            prometheus_name(names.GENAI_REQUEST_DURATION, "seconds"),
            "GenAI server request duration, seconds.",
            genai_labels,
            buckets=GENAI_BUCKETS,
            registry=r,
        )
        self.genai_ttft = Histogram(
            prometheus_name(names.GENAI_TIME_TO_FIRST_TOKEN, "seconds"),
            "Time to the first output token, seconds.",
            genai_labels,
            buckets=GENAI_BUCKETS,
            registry=r,
        )
        self.genai_tpot = Histogram(
            prometheus_name(names.GENAI_TIME_PER_OUTPUT_TOKEN, "seconds"),
            "Time per output token after the first, seconds.",
            genai_labels,
            buckets=GENAI_BUCKETS,
            registry=r,
        )
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._duration_children: dict[str, Histogram] = {}

    def observe_request(self, protocol: str, status: int, seconds: float) -> None:
        key = (protocol, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._requests.labels(self.model, self.revision, protocol, str(status))
            self._request_children[key] = counter
        counter.inc()
        histogram = self._duration_children.get(protocol)
        if histogram is None:
            histogram = self._duration.labels(self.model, self.revision, protocol)
            self._duration_children[protocol] = histogram
        histogram.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


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
            names.GENAI_REQUEST_DURATION, unit="s", description="GenAI server request duration"
        )
        self._otel_ttft = meter.create_histogram(
            names.GENAI_TIME_TO_FIRST_TOKEN, unit="s", description="Time to first token"
        )
        self._otel_tpot = meter.create_histogram(
            names.GENAI_TIME_PER_OUTPUT_TOKEN, unit="s", description="Time per output token"
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
            labels = (operation, model, error_type)
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
