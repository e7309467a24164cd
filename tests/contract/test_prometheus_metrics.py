import socket

import pytest
from prometheus_double import serve_prometheus

from kaip.errors import MetricsError
from kaip.kube.operator.metrics import MetricsSource, PrometheusMetrics, RevisionMetrics, queries


def test_promql_selects_one_revision_of_one_model_in_one_namespace() -> None:
    promql = queries("ml", "digits", "abc123", 60)
    every = '{namespace="ml",model="digits",revision="abc123"}'
    assert promql["requests"] == f"sum(increase(kaip_requests_total{every}[60s]))"
    assert 'status=~"5.."' in promql["errors"]
    assert promql["p99"].startswith("histogram_quantile(0.99, sum by (le) (rate(")
    assert "kaip_request_duration_seconds_bucket" in promql["p99"]
    assert promql["busy"] == f"sum(increase(kaip_predict_duration_seconds_sum{every}[60s]))"


def test_numbers_come_back_per_revision_with_p99_in_milliseconds() -> None:
    with serve_prometheus() as prometheus:
        prometheus.numbers["new"] = RevisionMetrics(200, 10, 123.0, busy_seconds=4.5)
        source: MetricsSource = PrometheusMetrics(prometheus.url)
        new = source.revision_metrics("ml", "digits", "new", 60)
        unknown = source.revision_metrics("ml", "digits", "old", 60)
    assert new == RevisionMetrics(200.0, 10.0, pytest.approx(123.0), busy_seconds=4.5)
    assert new.error_rate == 0.05
    assert unknown == RevisionMetrics(0.0, 0.0, None)
    assert len(prometheus.queries) == 8


def test_genai_p95s_select_the_revisions_genai_histograms() -> None:
    promql = queries("ml", "chat", "abc123", 30)
    every = '{namespace="ml",model="chat",revision="abc123"}'
    assert promql["ttft_p95"] == (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(gen_ai_server_time_to_first_token_seconds_bucket{every}[30s])))"
    )
    assert promql["tpot_p95"] == (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(gen_ai_server_time_per_output_token_seconds_bucket{every}[30s])))"
    )


def test_genai_p95s_are_asked_only_for_a_genai_gate_and_come_back_in_ms() -> None:
    with serve_prometheus() as prometheus:
        prometheus.numbers["new"] = RevisionMetrics(
            50, 0, 80.0, ttft_p95_ms=624.0, tpot_p95_ms=31.2
        )
        source = PrometheusMetrics(prometheus.url)
        plain = source.revision_metrics("ml", "chat", "new", 30)
        asked = len(prometheus.queries)
        judged = source.revision_metrics("ml", "chat", "new", 30, genai=True)
    assert (plain.ttft_p95_ms, plain.tpot_p95_ms) == (None, None)
    assert not any("gen_ai" in q for q in prometheus.queries[:asked])
    assert judged.ttft_p95_ms == pytest.approx(624.0)
    assert judged.tpot_p95_ms == pytest.approx(31.2)
    assert judged.to_status()["p95TimeToFirstTokenMs"] == pytest.approx(624.0)


def test_errors_never_exceed_requests() -> None:
    """Prometheus extrapolates each increase() alone: a revision failing every request had
    "114 errors of 104 requests" on the real-node tier, "error rate 109.6%" in its status."""
    with serve_prometheus() as prometheus:
        prometheus.numbers["bad"] = RevisionMetrics(104.0, 114.0, None)
        bad = PrometheusMetrics(prometheus.url).revision_metrics("ml", "digits", "bad", 60)
    assert bad == RevisionMetrics(104.0, 104.0, None)
    assert bad.error_rate == 1.0


def test_a_failing_prometheus_is_one_clear_error() -> None:
    with serve_prometheus() as prometheus:
        prometheus.fail_with = 503
        with pytest.raises(MetricsError, match=r"refused .* \(503\): boom"):
            PrometheusMetrics(prometheus.url).revision_metrics("ml", "m", "r", 60)


def test_an_unreachable_prometheus_is_one_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = PrometheusMetrics(f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(MetricsError, match="cannot reach Prometheus"):
        source.revision_metrics("ml", "m", "r", 60)
