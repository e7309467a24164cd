"""Building blocks shared by every kind: the strict base model, metadata, names, quantities.

Everything here is pure: no I/O, no environment, no imports of user code.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

API_VERSION: Final = "kaip.dev/v1alpha1"
GROUP = "kaip.dev"
VERSION = "v1alpha1"


class ValueProblem(ValueError):
    """A value is wrong: ``message`` says what, ``hint`` (optional) how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class FieldProblem(ValueProblem):
    """A cross-field check failed on ``field`` (its spec name, e.g. ``minReplicas``).

    Raised inside model validators so that the loader can point at the field itself rather than
    at the mapping that holds it. ``field`` may be a path below the model, e.g.
    ``("volumes", 1, "mountPath")``.
    """

    def __init__(self, field: str | tuple[str | int, ...], message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.path: tuple[str | int, ...] = (field,) if isinstance(field, str) else field
        self.field = str(self.path[0])


class SpecModel(BaseModel):
    """Base of every spec model: frozen, strict about unknown keys and types, camelCase in YAML.

    Strict types (``port: "8080"`` is an error, not 8080) because the apiserver judges the same
    document by the CRD's schema, which does not coerce either.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        alias_generator=to_camel,
        populate_by_name=True,
        validate_default=True,
    )


_RFC1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_PATTERN = _RFC1123_LABEL.pattern


def _check_name(value: str) -> str:
    if len(value) > 63:
        raise ValueProblem(f"must be at most 63 characters (got {len(value)})")
    if not _RFC1123_LABEL.fullmatch(value):
        raise ValueProblem(
            f"{value!r} is not an RFC 1123 label",
            "use lower-case letters, digits and '-', starting and ending with a letter or digit",
        )
    return value


Name = Annotated[
    str,
    AfterValidator(_check_name),
    Field(json_schema_extra={"pattern": _RFC1123_LABEL.pattern, "maxLength": 63}),
]

_QUANTITY = re.compile(
    r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
QUANTITY_PATTERN = _QUANTITY.pattern
_QUANTITY_EXAMPLES = "examples: 500m, 2, 1.5, 512Mi, 4Gi"


def _whole_number_to_str(value: Any) -> Any:
    """``cpu: 2`` means ``"2"``; ``cpu: 0.5`` is refused, as a CRD's int-or-string refuses it."""
    if isinstance(value, bool):
        return value  # let the str check reject it
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ValueProblem(
            f"must be a quantity string or a whole number, not {value!r}",
            f"write '{value * 1000:g}m' or quote it: '{value!r}'",
        )
    return value


def _check_quantity(value: str) -> str:
    if not _QUANTITY.fullmatch(value):
        raise ValueProblem(f"{value!r} is not a Kubernetes quantity", _QUANTITY_EXAMPLES)
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_whole_number_to_str),
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": QUANTITY_PATTERN},
                {"type": "integer", "minimum": 0},
            ],
            "description": f"a Kubernetes quantity ({_QUANTITY_EXAMPLES})",
        }
    ),
]


def parse_quantity(value: str) -> float:
    """The numeric value of a Kubernetes quantity (``500m`` -> 0.5, ``1Gi`` -> 1073741824)."""
    match = _QUANTITY.fullmatch(value)
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    number = float(match.group(1))
    suffix = match.group(3) or ""
    binary = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
    decimal = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9,
               "T": 1e12, "P": 1e15, "E": 1e18}  # fmt: skip
    if suffix in binary:
        return number * binary[suffix]
    if suffix in decimal:
        return number * decimal[suffix]
    return number * 10.0 ** int(suffix[1:])


_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_KEY = re.compile(rf"^({_DNS_SUBDOMAIN}/)?{_QUALIFIED_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_QUALIFIED_NAME})?$")
KEY_PATTERN = _KEY.pattern
_KEY_HINT = (
    "a name of at most 63 letters, digits, '-', '_' or '.', optionally prefixed 'example.com/'"
)


def _check_key(key: str, what: str) -> None:
    prefix, _, name = key.rpartition("/")
    if not _KEY.fullmatch(key) or len(prefix) > 253 or len(name) > 63:
        raise ValueProblem(f"{what} key {key!r} is not a Kubernetes qualified name", _KEY_HINT)


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        _check_key(key, "label")
        if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            raise ValueProblem(
                f"label {key!r} has an invalid value {value!r}",
                "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter "
                "or digit; put free text in annotations",
            )
    return labels


def _check_annotations(annotations: dict[str, str]) -> dict[str, str]:
    for key in annotations:
        _check_key(key, "annotation")
    return annotations


_KEY_SCHEMA = {"propertyNames": {"pattern": _KEY.pattern, "maxLength": 253 + 1 + 63}}
Labels = Annotated[
    dict[str, str],
    AfterValidator(_check_labels),
    Field(
        json_schema_extra={
            **_KEY_SCHEMA,
            "additionalProperties": {
                "type": "string",
                "maxLength": 63,
                "pattern": _LABEL_VALUE.pattern,
            },
        }
    ),
]
Annotations = Annotated[
    dict[str, str], AfterValidator(_check_annotations), Field(json_schema_extra=_KEY_SCHEMA)
]


class ObjectMeta(SpecModel):
    """The part of Kubernetes ObjectMeta a spec may set."""

    name: Name
    namespace: Name | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)


Owner = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        description="The team that is paged and billed for this resource.",
    ),
]


class Resources(SpecModel):
    """Compute resources of one replica (requests equal limits)."""

    cpu: Quantity = "1"
    memory: Quantity = "1Gi"
    gpu: int = Field(0, ge=0, le=16, description="whole GPUs (nvidia.com/gpu)")
    gpu_model: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description="GPU product to select nodes by, e.g. NVIDIA-H100-80GB-HBM3",
    )

    @model_validator(mode="after")
    def _gpu_model_needs_gpu(self) -> Resources:
        if self.gpu_model is not None and not self.gpu:
            raise FieldProblem("gpuModel", "gpuModel is set but gpu is 0", "set gpu: 1 or more")
        return self


class Scaling(SpecModel):
    """Replica bounds and the concurrency each replica should carry."""

    min_replicas: int = Field(1, ge=0, le=1000, description="0 allows scale to zero")
    max_replicas: int = Field(3, ge=1, le=1000)
    target_concurrency: float = Field(8.0, gt=0, description="in-flight requests per replica")
    scale_to_zero_after_seconds: float = Field(300.0, gt=0)
    target_kv_cache_usage: float | None = Field(
        None,
        gt=0,
        le=1,
        description=(
            "Models: also scale on the engine's KV-cache use per replica (tokens in its "
            "context over the context's size, kaip_kv_cache_usage_ratio; llama.cpp reports "
            "it), e.g. 0.8; kaip up counts it while requests are in flight"
        ),
    )

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Scaling:
        if self.min_replicas > self.max_replicas:
            raise FieldProblem(
                "minReplicas",
                f"minReplicas ({self.min_replicas}) is greater than maxReplicas "
                f"({self.max_replicas})",
                "raise maxReplicas or lower minReplicas",
            )
        return self


class SLO(SpecModel):
    """The service level objectives the model is held to."""

    p99_latency_ms: float | None = Field(None, gt=0)
    availability: float | None = Field(None, gt=0, le=1, description="e.g. 0.999")
