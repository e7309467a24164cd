"""A real OTLP/HTTP trace endpoint on loopback for tests: it decodes what the OpenTelemetry SDK
exports with opentelemetry-proto and lets a test wait for the spans of one trace."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class OtlpReceiver:
    """A real OTLP/HTTP endpoint that decodes the spans it is sent with opentelemetry-proto."""

    url: str
    spans: list[Any] = field(default_factory=list)
    condition: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, trace_id: str, count: int, timeout_s: float = 30.0) -> list[Any]:
        """The spans of ``trace_id`` (hex) once at least ``count`` arrived; fail after
        ``timeout_s`` naming how many did."""
        deadline = time.monotonic() + timeout_s
        with self.condition:
            while True:
                spans = [s for s in self.spans if s.trace_id.hex() == trace_id]
                if len(spans) >= count or time.monotonic() > deadline:
                    break
                self.condition.wait(0.2)
        assert len(spans) >= count, f"{len(spans)} of {count} spans of trace {trace_id} arrived"
        return spans


@contextmanager
def serve_otlp() -> Iterator[OtlpReceiver]:
    """An :class:`OtlpReceiver` on a free loopback port, served by a thread until the end."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    receiver: OtlpReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/v1/traces":
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver.condition:
                    for resource_spans in request.resource_spans:
                        for scope_spans in resource_spans.scope_spans:
                            receiver.spans.extend(scope_spans.spans)
                    receiver.condition.notify_all()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = OtlpReceiver(f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        httpd.shutdown()
