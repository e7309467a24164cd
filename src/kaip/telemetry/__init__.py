"""Names of kaip's signals (metrics, spans, attributes) and the OpenTelemetry SDK set-up.

The names live here so that the server, the gateway, dashboards and tests agree on one spelling.
This package never reads the environment and never configures the SDK on import:
:func:`kaip.telemetry.otel.configure` is called by entrypoints only.
"""

from typing import Final

# Prometheus metrics of the model server (labels in the comments).
REQUESTS_TOTAL: Final = "kaip_requests_total"  # model, revision, protocol, status
REQUEST_DURATION: Final = "kaip_request_duration_seconds"  # model, revision, protocol
QUEUE_DURATION: Final = "kaip_queue_duration_seconds"  # model, revision
BATCH_SIZE: Final = "kaip_batch_size_rows"  # model, revision
PREDICT_DURATION: Final = "kaip_predict_duration_seconds"  # model, revision
INFLIGHT: Final = "kaip_inflight_requests"  # model, revision
QUEUE_DEPTH: Final = "kaip_queue_depth_requests"  # model, revision
MODEL_READY: Final = "kaip_model_ready"  # model, revision
# An inference engine's own counts (llama.cpp): tokens by kind (prompt, prompt_cached: found in
# the KV cache and not evaluated again, generated) and generations holding the engine.
ENGINE_TOKENS: Final = "kaip_engine_tokens_total"  # model, revision, kind
ENGINE_BUSY: Final = "kaip_engine_busy"  # model, revision
# Tokens held in the engine's context (its KV cache) over the context's size, 0..1: what the
# Inference Extension's endpoint picker reads as KV-cache utilization (as vLLM's
# vllm:kv_cache_usage_perc) and what a Model's autoscaler can target (scaling.targetKvCacheUsage).
KV_CACHE_USAGE: Final = "kaip_kv_cache_usage_ratio"  # model, revision

# Prometheus metrics of the local gateway (kaip.local.gateway.signals).
GATEWAY_REQUESTS: Final = (
    "kaip_gateway_requests_total"  # kind, resource, revision, owner, status_class
)
GATEWAY_DURATION: Final = "kaip_gateway_request_duration_seconds"  # kind, resource, revision, owner
GATEWAY_RETRIES: Final = "kaip_gateway_retries_total"  # kind, resource, revision, owner
GATEWAY_TIMEOUTS: Final = "kaip_gateway_timeouts_total"  # kind, resource, revision, owner
GATEWAY_INFLIGHT: Final = "kaip_gateway_inflight_requests"  # kind, resource, owner
GATEWAY_HELD: Final = "kaip_gateway_held_requests"  # kind, resource, owner
GATEWAY_MIRRORED: Final = "kaip_gateway_mirrored_requests_total"  # + status_class
GATEWAY_MIRROR_DROPPED: Final = (
    "kaip_gateway_mirror_dropped_total"  # kind, resource, revision, owner
)
GATEWAY_REPLICAS: Final = "kaip_replicas"  # resource, revision, owner, phase
COST_USD: Final = "kaip_cost_usd_total"  # kind, resource, revision, owner
ENERGY_JOULES: Final = "kaip_energy_joules_total"  # kind, resource, revision, owner
CO2E_GRAMS: Final = "kaip_co2e_grams_total"  # kind, resource, revision, owner

# GenAI semantic conventions (server side), recorded as OpenTelemetry histograms and exposed
# under their Prometheus spelling on /metrics. Unit: seconds.
GENAI_REQUEST_DURATION: Final = "gen_ai.server.request.duration"
GENAI_TIME_TO_FIRST_TOKEN: Final = "gen_ai.server.time_to_first_token"
GENAI_TIME_PER_OUTPUT_TOKEN: Final = "gen_ai.server.time_per_output_token"
ATTR_GENAI_OPERATION: Final = "gen_ai.operation.name"
ATTR_GENAI_MODEL: Final = "gen_ai.request.model"
ATTR_ERROR_TYPE: Final = "error.type"


def prometheus_name(otel_name: str, unit: str = "") -> str:
    """The name OpenTelemetry's Prometheus exporters give ``otel_name`` (dots to underscores)."""
    name = otel_name.replace(".", "_")
    return f"{name}_{unit}" if unit and not name.endswith(unit) else name


# Span names of one inference request: the server span, then queue -> batch -> predict.
SPAN_INFER: Final = "kaip.infer"
SPAN_QUEUE: Final = "kaip.queue"
SPAN_BATCH: Final = "kaip.batch"
SPAN_PREDICT: Final = "kaip.predict"
SPAN_GENERATE: Final = "kaip.generate"
ATTR_MODEL: Final = "kaip.model"
ATTR_REVISION: Final = "kaip.revision"
ATTR_BATCH_ROWS: Final = "kaip.batch.rows"
ATTR_BATCH_REQUESTS: Final = "kaip.batch.requests"
ATTR_RESOURCE: Final = "kaip.resource"  # the gateway's spans: the Model or App routed to
ATTR_RESOURCE_KIND: Final = "kaip.resource.kind"  # model | app
ATTR_OWNER: Final = "kaip.owner"
ATTR_REPLICA: Final = "kaip.replica"
# The gateway's server span: the answering replica's cost and energy per request so far.
ATTR_COST_USD: Final = "kaip.cost.usd"
ATTR_ENERGY_JOULES: Final = "kaip.energy.joules"

INSTRUMENTATION_SCOPE: Final = "kaip"

__all__ = [
    "ATTR_BATCH_REQUESTS",
    "ATTR_BATCH_ROWS",
    "ATTR_COST_USD",
    "ATTR_ENERGY_JOULES",
    "ATTR_ERROR_TYPE",
    "ATTR_GENAI_MODEL",
    "ATTR_GENAI_OPERATION",
    "ATTR_MODEL",
    "ATTR_OWNER",
    "ATTR_REPLICA",
    "ATTR_RESOURCE",
    "ATTR_RESOURCE_KIND",
    "ATTR_REVISION",
    "BATCH_SIZE",
    "CO2E_GRAMS",
    "COST_USD",
    "ENERGY_JOULES",
    "ENGINE_BUSY",
    "ENGINE_TOKENS",
    "GATEWAY_DURATION",
    "GATEWAY_HELD",
    "GATEWAY_INFLIGHT",
    "GATEWAY_MIRRORED",
    "GATEWAY_MIRROR_DROPPED",
    "GATEWAY_REPLICAS",
    "GATEWAY_REQUESTS",
    "GATEWAY_RETRIES",
    "GATEWAY_TIMEOUTS",
    "GENAI_REQUEST_DURATION",
    "GENAI_TIME_PER_OUTPUT_TOKEN",
    "GENAI_TIME_TO_FIRST_TOKEN",
    "INFLIGHT",
    "INSTRUMENTATION_SCOPE",
    "KV_CACHE_USAGE",
    "MODEL_READY",
    "PREDICT_DURATION",
    "QUEUE_DEPTH",
    "QUEUE_DURATION",
    "REQUESTS_TOTAL",
    "REQUEST_DURATION",
    "SPAN_BATCH",
    "SPAN_GENERATE",
    "SPAN_INFER",
    "SPAN_PREDICT",
    "SPAN_QUEUE",
    "prometheus_name",
]
