"""OpenTelemetry SDK set-up for entrypoints: OTLP over HTTP for traces and metrics.

Library code only uses ``opentelemetry-api``; this module is the one place that installs SDK
providers, and only an entrypoint calls it (after reading the environment itself). The SDK and
the exporter come with the ``otlp`` extra; without them tracing stays a no-op.
"""

from __future__ import annotations

from collections.abc import Callable

from kaip.errors import ConfigError


def configure(service_name: str, attributes: dict[str, str] | None = None) -> Callable[[], None]:
    """Install tracer and meter providers that export by OTLP/HTTP; return their shutdown.

    The exporters read the standard ``OTEL_EXPORTER_OTLP_*`` variables themselves;
    ``service_name`` and ``attributes`` are defaults that ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` override.
    """
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:  # pragma: no cover - the dev install has the extra
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is missing ({exc.name}): "
            "pip install 'kaip[otlp]'"
        ) from exc

    # Our names are defaults: OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win when set.
    defaults = Resource.create({"service.name": service_name, **(attributes or {})})
    resource = defaults.merge(OTELResourceDetector().detect())
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]
    )
    metrics.set_meter_provider(meter_provider)

    def shutdown() -> None:
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return shutdown
