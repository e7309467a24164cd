"""OpenTelemetry SDK set-up for entrypoints: OTLP over HTTP for traces and metrics.

Library code only uses ``opentelemetry-api`` and :mod:`kaip.telemetry.spans`; this module is the
one place that installs SDK providers and turns kaip's span records into the SDK's spans, and
only an entrypoint calls it (after reading the environment itself). The SDK and the exporter
come with the ``otlp`` extra; without them tracing stays off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from kaip.errors import ConfigError
from kaip.telemetry import INSTRUMENTATION_SCOPE
from kaip.telemetry.spans import (
    DEFAULT_RATIO,
    DEFAULT_SAMPLING,
    TRACE_ROOTS_ENV,
    FinishedSpan,
    Sampling,
    SpanRecorder,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter

SAMPLERS: Mapping[str, tuple[bool, float | None]] = {
    # OTEL_TRACES_SAMPLER: (parent based, fixed ratio or None: OTEL_TRACES_SAMPLER_ARG's)
    "always_on": (False, 1.0),
    "always_off": (False, 0.0),
    "traceidratio": (False, None),
    "parentbased_always_on": (True, 1.0),
    "parentbased_always_off": (True, 0.0),
    "parentbased_traceidratio": (True, None),
}


def sampling_from(environ: Mapping[str, str]) -> Sampling:
    """The sampler ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` name (the SDK's names);
    unset: kaip's default, :data:`~kaip.telemetry.spans.DEFAULT_SAMPLING`; with
    ``KAIP_TRACE_ROOTS=off``, the same without traces started here."""
    roots = environ.get(TRACE_ROOTS_ENV, "").strip().lower()
    if roots not in ("", "on", "off"):
        raise ConfigError(
            f"{TRACE_ROOTS_ENV}={roots[:40]!r} is not a setting kaip knows: 'off' (start no trace "
            "here, follow the caller's traceparent only) or 'on' (the default)"
        )
    sampling = _sampler(environ)
    return replace(sampling, roots=False) if roots == "off" else sampling


def _sampler(environ: Mapping[str, str]) -> Sampling:
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not name:
        return DEFAULT_SAMPLING
    if name not in SAMPLERS:
        raise ConfigError(
            f"OTEL_TRACES_SAMPLER={name!r} is not a sampler kaip knows; use one of "
            + ", ".join(SAMPLERS)
        )
    parent_based, ratio = SAMPLERS[name]
    if ratio is None:
        arg = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        try:
            ratio = float(arg) if arg else DEFAULT_RATIO
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(
                f"OTEL_TRACES_SAMPLER_ARG={arg!r} is not a sampling ratio: give a number "
                "from 0 to 1 (0.25 samples a quarter of the traces started here)"
            )
    return Sampling(ratio, parent_based)


def span_sink(processor: SpanProcessor, resource: Resource) -> Callable[[FinishedSpan], None]:
    """A sink that gives each recorded span to ``processor`` (whose thread exports it) as the
    SDK's ``ReadableSpan`` of ``resource``, built without the SDK's per-span checks."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

    scope = InstrumentationScope(INSTRUMENTATION_SCOPE)
    kinds = {kind.value: kind for kind in SpanKind}
    unset, error = Status(StatusCode.UNSET), Status(StatusCode.ERROR)
    sampled = TraceFlags(TraceFlags.SAMPLED)

    def sink(span: FinishedSpan) -> None:
        trace_id = span.trace_id
        parent = None
        if span.parent_id:
            parent = SpanContext(trace_id, span.parent_id, span.remote_parent, sampled)
        links = [Link(SpanContext(t, s, False, sampled)) for t, s in span.links]
        processor.on_end(
            ReadableSpan(
                span.name,
                SpanContext(trace_id, span.span_id, False, sampled),
                parent,
                resource,
                span.attributes,
                links=links,
                kind=kinds[span.kind],
                status=error if span.error else unset,
                start_time=span.start_ns,
                end_time=span.end_ns,
                instrumentation_scope=scope,
            )
        )

    return sink


def recorder(
    exporter: SpanExporter,
    sampling: Sampling = DEFAULT_SAMPLING,
    resource: Resource | None = None,
) -> tuple[SpanRecorder, SpanProcessor]:
    """A :class:`SpanRecorder` whose spans ``exporter`` exports from the SDK's batch span
    processor (``OTEL_BSP_*`` apply); the processor's ``force_flush``/``shutdown`` are the
    caller's to call."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    processor = BatchSpanProcessor(exporter)
    sink = span_sink(processor, resource if resource is not None else Resource.create({}))
    return SpanRecorder(sink, sampling), processor


@dataclass(frozen=True, slots=True)
class Telemetry:
    """What :func:`configure` installed: the span recorder, and how to flush and stop it all."""

    spans: SpanRecorder
    shutdown: Callable[[], None]


def configure(
    service_name: str,
    attributes: dict[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Telemetry:
    """Make the span recorder and install a meter provider, both exporting by OTLP/HTTP.

    The exporters read the standard ``OTEL_EXPORTER_OTLP_*`` variables themselves, the batch
    processor ``OTEL_BSP_*``, the sampler ``OTEL_TRACES_SAMPLER[_ARG]`` (from ``environ``,
    default ``os.environ``); ``service_name`` and ``attributes`` are defaults that
    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` override.
    """
    import os

    sampling = sampling_from(os.environ if environ is None else environ)
    try:
        from opentelemetry import metrics
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    except ImportError as exc:  # pragma: no cover - the dev install has the extra
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is missing ({exc.name}): "
            "pip install 'kaip[otlp]'"
        ) from exc

    # Our names are defaults: OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win when set.
    defaults = Resource.create({"service.name": service_name, **(attributes or {})})
    resource = defaults.merge(OTELResourceDetector().detect())
    spans, processor = recorder(OTLPSpanExporter(), sampling, resource)
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]
    )
    metrics.set_meter_provider(meter_provider)

    def shutdown() -> None:
        processor.shutdown()
        meter_provider.shutdown()

    return Telemetry(spans, shutdown)
