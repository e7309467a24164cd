"""A real OpenTelemetry Collector on 127.0.0.1: the otlp receiver (HTTP) in, the file exporter out.

The binary is the minimal distribution tools/otelcol/build.sh builds from the Go module proxy
(component ``otelcol`` of tools/setup.sh). :func:`otel_collector` starts it with its own
configuration in a test's directory, waits until its receiver answers, and stops it when the
block ends. :meth:`Collector.spans` reads what the file exporter wrote (OTLP/JSON, one export a
line: ids in hex, span kinds as numbers) into :class:`Span` records.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import yaml
from prometheus_process import serving

BUILD = Path(__file__).parents[2] / "tools" / "otelcol" / "build.sh"
SERVER: Final = 2  # OTLP's SpanKind numbers
CLIENT: Final = 3


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    service: str
    attributes: dict[str, Any] = field(default_factory=dict)
    error: bool = False


def _value(value: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])  # OTLP/JSON writes 64-bit integers as strings
    return value


def _attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {item["key"]: _value(item.get("value", {})) for item in items or []}


@dataclass
class Collector:
    url: str
    output: Path
    log: Path

    def spans(self) -> list[Span]:
        """Every span the file exporter has written so far."""
        if not self.output.exists():
            return []
        out: list[Span] = []
        text = self.output.read_text(encoding="utf-8")
        # The exporter may be writing its next line right now (a final check of 2026-11-30 read
        # one cut at 4,096 bytes): only lines it has ended count.
        for line in text[: text.rfind("\n") + 1].splitlines():
            if not line.strip():
                continue
            for resource_spans in json.loads(line).get("resourceSpans", []):
                resource = _attributes(resource_spans.get("resource", {}).get("attributes"))
                for scope_spans in resource_spans.get("scopeSpans", []):
                    for s in scope_spans.get("spans", []):
                        out.append(
                            Span(
                                s["traceId"], s["spanId"], s.get("parentSpanId", ""), s["name"],
                                int(s.get("kind", 0)), str(resource.get("service.name", "")),
                                _attributes(s.get("attributes")),
                                s.get("status", {}).get("code") in (2, "STATUS_CODE_ERROR"),
                            )
                        )  # fmt: skip
        return out

    def wait_for(self, trace_id: str, count: int, timeout_s: float = 60.0) -> list[Span]:
        """The spans of ``trace_id`` once at least ``count`` were written; fail after
        ``timeout_s`` naming how many were."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = [s for s in self.spans() if s.trace_id == trace_id]
            if len(spans) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(spans) >= count, f"{len(spans)} of {count} spans of trace {trace_id} written"
        return spans


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def otel_collector(workdir: Path) -> Iterator[Collector]:
    """The Collector receiving OTLP/HTTP on a free loopback port; yields it (``url`` is what
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes)."""
    found = subprocess.run([str(BUILD), "--check"], capture_output=True, text=True)
    binary = Path(found.stdout.strip())
    if found.returncode != 0:
        raise AssertionError(f"{binary} is missing: run tools/setup.sh otelcol")
    work = workdir / "otelcol"
    work.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{_free_port()}"
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": address}}}},
        "exporters": {"file": {"path": str(work / "traces.jsonl"), "flush_interval": "100ms"}},
        # No service::telemetry: this build's own telemetry is warnings to stderr, and nothing
        # listens but the receiver (the stock :8888 metrics would clash between parallel tests).
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    collector = Collector(f"http://{address}", work / "traces.jsonl", work / "otelcol.log")
    with collector.log.open("wb") as log:
        process = subprocess.Popen(
            [str(binary), f"--config={work / 'config.yaml'}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def ready() -> bool:
        answer = httpx.post(f"{collector.url}/v1/traces", json={}, timeout=5, trust_env=False)
        return answer.status_code == 200

    with serving(process, ready, collector.log, f"the Collector at {collector.url}", 60):
        yield collector
