"""A stand-in for the Prometheus HTTP API that serves chosen numbers per revision.

A real HTTP server on 127.0.0.1 answering ``GET /api/v1/query`` as Prometheus does, so the
production client (:class:`kaip.kube.operator.metrics.PrometheusMetrics`) is what tests drive.
It reads the revision and the kind of query (request count, error count, p99, busy seconds, the
GenAI p95s) from the PromQL.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from kaip.kube.operator.metrics import RevisionMetrics

_REVISION = re.compile(r'revision="([^"]+)"')


class PrometheusDouble:
    def __init__(self) -> None:
        self.numbers: dict[str, RevisionMetrics] = {}
        self.queries: list[str] = []
        self.fail_with: int | None = None
        self.url = ""

    def answer(self, promql: str) -> tuple[int, dict[str, object]]:
        self.queries.append(promql)
        if self.fail_with is not None:
            return self.fail_with, {"status": "error", "errorType": "internal", "error": "boom"}
        match = _REVISION.search(promql)
        numbers = self.numbers.get(match.group(1)) if match else None
        if numbers is None:
            value: float | None = None
        elif "gen_ai_server_time_to_first_token_seconds_bucket" in promql:
            value = None if numbers.ttft_p95_ms is None else numbers.ttft_p95_ms / 1000
        elif "gen_ai_server_time_per_output_token_seconds_bucket" in promql:
            value = None if numbers.tpot_p95_ms is None else numbers.tpot_p95_ms / 1000
        elif promql.startswith("histogram_quantile"):
            value = None if numbers.p99_latency_ms is None else numbers.p99_latency_ms / 1000
        elif "kaip_predict_duration_seconds_sum" in promql:
            value = numbers.busy_seconds
        elif "status=~" in promql:
            value = numbers.errors
        else:
            value = numbers.requests
        result = [] if value is None else [{"metric": {}, "value": [1700000000.0, str(value)]}]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


@contextmanager
def serve_prometheus() -> Iterator[PrometheusDouble]:
    double = PrometheusDouble()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path != "/api/v1/query":
                self.send_error(404)
                return
            code, body = double.answer(parse_qs(url.query).get("query", [""])[0])
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    double.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield double
    finally:
        server.shutdown()
        server.server_close()
