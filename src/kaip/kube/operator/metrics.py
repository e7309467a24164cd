"""Where the canary gates get their evidence: per-revision request, error, latency and busy time.

:class:`MetricsSource` is the boundary. :class:`PrometheusMetrics` answers it from the Prometheus
HTTP API (``GET /api/v1/query``) with PromQL over the model server's own metrics; the Prometheus
server is expected to scrape the pods with a ``namespace`` label, as the Prometheus Operator's
PodMonitor and ServiceMonitor do. :class:`StaticMetrics` serves chosen numbers (tests, dry runs).
The busy time (the wall time of the runtime's batches, ``kaip_predict_duration_seconds_sum``) is
what the cost gate prices (:func:`kaip.kube.operator.canary.cost_evidence`). For the GenAI gates
the p95 time to first token and per output token come from the replicas' GenAI histograms
(``gen_ai_server_time_to_first_token_seconds`` and ``..._time_per_output_token_seconds``), asked
only when a gate needs them.

Never decides anything: :mod:`kaip.policy` judges the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import httpx

from kaip.errors import MetricsError
from kaip.telemetry import (
    GENAI_TIME_PER_OUTPUT_TOKEN,
    GENAI_TIME_TO_FIRST_TOKEN,
    PREDICT_DURATION,
    REQUEST_DURATION,
    REQUESTS_TOTAL,
    prometheus_name,
)

ERROR_MATCHER: Final = 'status=~"5.."'
"""The model server labels each request with its HTTP status; errors are the 5xx answers."""


@dataclass(frozen=True)
class RevisionMetrics:
    """What one revision served over the window: request and error counts, p99 latency, and
    the busy seconds of its runtimes (the wall time of their batches, summed over its pods; None
    when the source has no such figure)."""

    requests: float
    errors: float
    p99_latency_ms: float | None
    busy_seconds: float | None = None
    ttft_p95_ms: float | None = None
    """p95 time to first token over the window (None: none observed, or not asked)."""
    tpot_p95_ms: float | None = None
    """p95 time per output token after the first, likewise."""

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests > 0 else 0.0

    def to_status(self) -> dict[str, Any]:
        evidence: dict[str, Any] = {
            "requests": round(self.requests),
            "errors": round(self.errors),
            "errorRate": round(self.error_rate, 6),
        }
        if self.p99_latency_ms is not None:
            evidence["p99LatencyMs"] = round(self.p99_latency_ms, 3)
        if self.busy_seconds is not None:
            evidence["busySeconds"] = round(self.busy_seconds, 3)
        if self.ttft_p95_ms is not None:
            evidence["p95TimeToFirstTokenMs"] = round(self.ttft_p95_ms, 3)
        if self.tpot_p95_ms is not None:
            evidence["p95TimePerOutputTokenMs"] = round(self.tpot_p95_ms, 3)
        return evidence


class MetricsSource(Protocol):
    """Per-revision evidence for the rollout gates."""

    def revision_metrics(
        self, namespace: str, name: str, revision: str, window_seconds: float, genai: bool = False
    ) -> RevisionMetrics:
        """What revision ``revision`` of Model ``name`` served over the last ``window_seconds``;
        with ``genai``, its p95 time to first token and per output token too.

        Raises :class:`~kaip.errors.MetricsError` when the source cannot answer.
        """
        ...


def _selector(namespace: str, name: str, revision: str, *extra: str) -> str:
    labels = [f'namespace="{namespace}"', f'model="{name}"', f'revision="{revision}"', *extra]
    return "{" + ",".join(labels) + "}"


TTFT_SECONDS: Final = prometheus_name(GENAI_TIME_TO_FIRST_TOKEN, "seconds")
TPOT_SECONDS: Final = prometheus_name(GENAI_TIME_PER_OUTPUT_TOKEN, "seconds")


def queries(namespace: str, name: str, revision: str, window_seconds: float) -> dict[str, str]:
    """The PromQL for one revision: ``requests``, ``errors``, ``p99`` (seconds), ``busy``
    (seconds of batch wall time), and the GenAI ``ttft_p95`` and ``tpot_p95`` (seconds: every
    operation and outcome of the revision's pods, summed by bucket as ``kaip up`` does)."""
    window = f"[{max(1, round(window_seconds))}s]"
    every = _selector(namespace, name, revision)
    errors = _selector(namespace, name, revision, ERROR_MATCHER)
    return {
        "requests": f"sum(increase({REQUESTS_TOTAL}{every}{window}))",
        "errors": f"sum(increase({REQUESTS_TOTAL}{errors}{window}))",
        "p99": (
            "histogram_quantile(0.99, sum by (le) "
            f"(rate({REQUEST_DURATION}_bucket{every}{window})))"
        ),
        "busy": f"sum(increase({PREDICT_DURATION}_sum{every}{window}))",
        "ttft_p95": (
            f"histogram_quantile(0.95, sum by (le) (rate({TTFT_SECONDS}_bucket{every}{window})))"
        ),
        "tpot_p95": (
            f"histogram_quantile(0.95, sum by (le) (rate({TPOT_SECONDS}_bucket{every}{window})))"
        ),
    }


class PrometheusMetrics:
    """A :class:`MetricsSource` backed by the Prometheus HTTP API at ``url``."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def revision_metrics(
        self, namespace: str, name: str, revision: str, window_seconds: float, genai: bool = False
    ) -> RevisionMetrics:
        promql = queries(namespace, name, revision, window_seconds)
        requests = self._scalar(promql["requests"])
        errors = self._scalar(promql["errors"])
        p99 = self._scalar(promql["p99"])
        busy = self._scalar(promql["busy"])
        ttft = self._scalar(promql["ttft_p95"]) if genai else None
        tpot = self._scalar(promql["tpot_p95"]) if genai else None
        # Each increase() extrapolates its own series to the window's edges, and the 5xx series
        # of a failing revision starts later than its total: errors can come back above requests
        # (a real Prometheus said 114 of 104 for a revision failing every request).
        return RevisionMetrics(
            requests=requests or 0.0,
            errors=min(errors or 0.0, requests or 0.0),
            p99_latency_ms=None if p99 is None else p99 * 1000.0,
            busy_seconds=busy,
            ttft_p95_ms=None if ttft is None else ttft * 1000.0,
            tpot_p95_ms=None if tpot is None else tpot * 1000.0,
        )

    def _scalar(self, promql: str) -> float | None:
        """The single value of an instant query; None when there is no sample or it is NaN."""
        return _value(self.query(promql))

    def query(self, promql: str, at: float | None = None) -> Mapping[str, Any]:
        """The ``data`` of an instant query (at ``at``, Unix seconds; None: now);
        :class:`~kaip.errors.MetricsError` when Prometheus cannot answer."""
        params: dict[str, str] = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            response = self._client.get("/api/v1/query", params=params)
        except httpx.HTTPError as exc:
            raise MetricsError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200 or not isinstance(answer, Mapping):
            detail = answer.get("error") if isinstance(answer, Mapping) else response.text[:200]
            raise MetricsError(
                f"Prometheus at {self.url} refused {promql!r} ({response.status_code}): {detail}"
            )
        if answer.get("status") != "success":
            raise MetricsError(f"Prometheus at {self.url} failed {promql!r}: {answer.get('error')}")
        data = answer.get("data")
        return data if isinstance(data, Mapping) else {}


def _value(data: Mapping[str, Any]) -> float | None:
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        sample = result
    elif isinstance(result, list) and result:
        sample = result[0].get("value") or []
    else:
        return None
    try:
        value = float(sample[1])
    except (IndexError, TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


class StaticMetrics:
    """A :class:`MetricsSource` that serves chosen numbers per revision (tests, dry runs)."""

    def __init__(self, numbers: Mapping[str, RevisionMetrics] | None = None) -> None:
        self.numbers: dict[str, RevisionMetrics] = dict(numbers or {})
        self.asked: list[tuple[str, str, str]] = []

    def revision_metrics(
        self, namespace: str, name: str, revision: str, window_seconds: float, genai: bool = False
    ) -> RevisionMetrics:
        self.asked.append((namespace, name, revision))
        return self.numbers.get(revision, RevisionMetrics(0.0, 0.0, None))
