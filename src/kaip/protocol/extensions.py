"""Which Triton and KServe protocol extensions kaip speaks, and the answer for those it does not.

One table, :data:`EXTENSIONS`, is the truth for three readers: the model server and the gateway
list the supported ones in ``GET /v2`` (server metadata) and answer the routes of the others
with HTTP 501 and a message saying what to use instead (never a bare 404), and
``docs/protocols.md`` shows the same table (a unit test keeps the two in step). Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Extension:
    """One protocol extension: its name in server metadata, who speaks it, and its routes."""

    name: str
    protocol: str
    supported: bool
    routes: tuple[str, ...]
    """Path prefixes (``{m}`` stands for a model name) of its own endpoints, if it has any."""
    note: str
    """How kaip provides it, or what to use instead (the 501 message for its routes)."""


EXTENSIONS: tuple[Extension, ...] = (
    Extension(
        "binary_tensor_data",
        "Triton",
        True,
        (),
        "tensors as raw bytes after the JSON header (Inference-Header-Content-Length), both ways",
    ),
    Extension(
        "statistics",
        "Triton",
        True,
        ("/v2/models/stats", "/v2/models/{m}/stats"),
        "per model version since the replica started; the gateway sums a revision's replicas",
    ),
    Extension(
        "parameters",
        "Triton",
        False,
        (),
        "request parameters steer kaip (binary_data_output) or are refused (below); others are "
        "accepted but not passed to the model, so kaip does not list this extension",
    ),
    Extension(
        "model_repository",
        "Triton, KServe",
        False,
        ("/v2/repository",),
        "models are loaded from the spec, not by API: change it and run `kaip deploy` (or "
        "`kubectl apply` on a cluster)",
    ),
    Extension(
        "model_configuration",
        "Triton",
        False,
        ("/v2/models/{m}/config",),
        "read the model's inputs, outputs and versions from its metadata, GET /v2/models/{name}",
    ),
    Extension(
        "system_shared_memory",
        "Triton",
        False,
        ("/v2/systemsharedmemory",),
        "kaip serves over the network only: send tensors in the request body (binary_tensor_data)",
    ),
    Extension(
        "cuda_shared_memory",
        "Triton",
        False,
        ("/v2/cudasharedmemory",),
        "kaip serves over the network only: send tensors in the request body (binary_tensor_data)",
    ),
    Extension(
        "trace",
        "Triton",
        False,
        ("/v2/trace", "/v2/models/{m}/trace"),
        "kaip traces with OpenTelemetry: set OTEL_EXPORTER_OTLP_ENDPOINT (W3C traceparent is "
        "propagated)",
    ),
    Extension(
        "logging",
        "Triton",
        False,
        ("/v2/logging",),
        "logs are the process's stderr: `kaip logs NAME` locally, `kubectl logs` on a cluster",
    ),
    Extension(
        "generate",
        "Triton, KServe",
        False,
        ("/v2/models/{m}/generate", "/v2/models/{m}/generate_stream"),
        "generate text with the OpenAI API: serve.protocols [openai], POST /v1/completions or "
        "/v1/chat/completions",
    ),
    Extension(
        "sequence",
        "Triton",
        False,
        (),
        "kaip's models are stateless: an infer request with sequence_id, sequence_start or "
        "sequence_end gets a 400",
    ),
    Extension(
        "classification",
        "Triton",
        False,
        (),
        "return class labels from the model itself: a requested output with a classification "
        "parameter gets a 400",
    ),
    Extension(
        "schedule_policy",
        "Triton",
        False,
        (),
        "batching is set by serve.batching in the spec; an infer request with a priority or "
        "timeout parameter gets a 400",
    ),
    Extension(
        "v1_protocol",
        "KServe",
        False,
        ("/v1/models/{m}:predict", "/v1/models/{m}:explain"),
        "use the Open Inference Protocol (POST /v2/models/{name}/infer); /v1 is the OpenAI API",
    ),
)

SUPPORTED: tuple[str, ...] = tuple(e.name for e in EXTENSIONS if e.supported)
_BY_PREFIX = tuple(
    (route, e) for e in EXTENSIONS if not e.supported for route in e.routes if "{m}" not in route
)
_MODEL_ACTIONS = {
    route.partition("{m}/")[2]: e
    for e in EXTENSIONS
    if not e.supported
    for route in e.routes
    if route.startswith("/v2/models/{m}/")
}
REFUSED_PARAMETERS: dict[str, str] = {
    "sequence_id": "sequence",
    "sequence_start": "sequence",
    "sequence_end": "sequence",
    "priority": "schedule_policy",
    "timeout": "schedule_policy",
}
"""Request parameters of Triton's extensions that kaip does not implement, by extension."""


def _message(extension: Extension, what: str) -> str:
    return (
        f"{what} is part of the {extension.name} extension ({extension.protocol}), which kaip "
        f"does not implement: {extension.note}"
    )


def unsupported_route(path: str) -> str | None:
    """The 501 message for a server-wide route of an unsupported extension (None: not one)."""
    for prefix, extension in _BY_PREFIX:
        if path == prefix or path.startswith(prefix + "/"):
            return _message(extension, path)
    return None


def unsupported_model_action(action: str, path: str) -> str | None:
    """The 501 message for ``/v2/models/{m}/{action}`` of an unsupported extension."""
    head = action.partition("/")[0]
    extension = _MODEL_ACTIONS.get(action) or _MODEL_ACTIONS.get(head)
    return None if extension is None else _message(extension, path)


def kserve_v1_message(path: str) -> str | None:
    """The 501 message for a KServe V1 protocol path (``/v1/models/{m}:predict``)."""
    if path.startswith("/v1/models/") and path.rsplit(":", 1)[-1] in ("predict", "explain"):
        extension = next(e for e in EXTENSIONS if e.name == "v1_protocol")
        return _message(extension, path)
    return None


def refused_parameter(parameters: dict[str, object]) -> str | None:
    """The 400 message for a request parameter of an unsupported extension (None: none)."""
    for key, extension_name in REFUSED_PARAMETERS.items():
        value = parameters.get(key)
        if value in (None, 0, False, ""):
            continue  # the protocol's "not set"
        extension = next(e for e in EXTENSIONS if e.name == extension_name)
        return _message(extension, f"request parameter {key!r}")
    return None
