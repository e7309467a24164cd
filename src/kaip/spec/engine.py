"""``spec.serve.engine`` of a Model: an inference engine's own OpenAI server as the model server.

With an engine, the replica (``python -m kaip.serving``, a pod's kaip container) starts the
engine's OpenAI server on loopback and relays ``/v1/*`` to it (:mod:`kaip.serving.engines`):
vLLM or SGLang on GPUs, llama.cpp's server (``llama-server``) on CPUs. kaip adds health, metrics
(the engine's translated onto kaip's names) and the GenAI histograms its gates and cost
attribution read; the engine does everything else. Pure: the model and its checks, no I/O.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field, model_validator

from kaip.spec.base import FieldProblem, SpecModel, ValueProblem

EngineName = Literal["vllm", "sglang", "llama-server"]
MAX_ENGINE_ARGS = 64
MAX_ENGINE_ARG_CHARS = 1024
MODEL_SERVER_POD_PORT = 8000
ENGINE_FORMATS: Final[dict[str, tuple[str, ...]]] = {
    "vllm": ("transformers", "gguf"),
    "sglang": ("transformers",),
    "llama-server": ("gguf",),
}
"""The artifact formats each engine loads: a Hugging Face model directory, or a GGUF file."""
RESERVED_FLAGS: Final = (
    "--host", "--port", "--model", "--model-path", "--served-model-name", "--model_alias",
    "--model-alias", "--alias", "-a", "-m",
)  # fmt: skip
"""Flags kaip sets itself (the loopback address, the port, the artifact, the served name)."""
RESERVED_FLAG_PATTERN: Final = "^(" + "|".join(RESERVED_FLAGS) + ")(=|$)"
"""An argument that is one of :data:`RESERVED_FLAGS`, alone or as ``FLAG=VALUE`` (the flags hold
no character special to a pattern, so this reads alike in Python, RE2 and ECMA-262)."""
RESERVED_FLAG_MESSAGE: Final = (
    "is set by kaip (the engine listens on loopback and serves the artifact under the Model's "
    "served names)"
)
RESERVED_FLAG_HINT: Final = (
    "leave it out; use serve.names for the served names and serve.engine.port for the port"
)
PROTOCOLS_HINT: Final = "set protocols: [openai] (OIP v2 inference needs kaip's built-in runtimes)"
FORMAT_HINT: Final = "point artifact at what the engine loads, or pick another engine"


def _check_arg(value: str) -> str:
    if not 0 < len(value) <= MAX_ENGINE_ARG_CHARS:
        raise ValueProblem(f"each argument is 1 to {MAX_ENGINE_ARG_CHARS} characters")
    if "\x00" in value or "\n" in value:
        raise ValueProblem("an argument may not hold a NUL or a line break")
    flag = value.split("=", 1)[0]
    if flag in RESERVED_FLAGS:
        raise ValueProblem(f"{flag} {RESERVED_FLAG_MESSAGE}", RESERVED_FLAG_HINT)
    return value


EngineArg = Annotated[
    str, AfterValidator(_check_arg), Field(min_length=1, max_length=MAX_ENGINE_ARG_CHARS)
]


class Engine(SpecModel):
    """The engine whose OpenAI server serves the Model; kaip's replica relays to it."""

    name: EngineName = Field(
        description="vllm (GPUs), sglang (GPUs) or llama-server (llama.cpp's OpenAI server; "
        "CPUs, GGUF files)"
    )
    args: list[EngineArg] = Field(
        default_factory=list,
        max_length=MAX_ENGINE_ARGS,
        description="extra command-line arguments for the engine's server, passed as written "
        "(e.g. [--max-model-len, '4096'] for vllm); kaip sets the host, port, model and served "
        "name itself",
    )
    port: int | None = Field(
        None,
        ge=1024,
        le=65535,
        description="the engine's port on loopback (default: a free one locally, 8001 in a pod); "
        "only kaip's replica talks to it",
    )
    image: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="the engine's container image on Kubernetes (default: the pinned image "
        "docs/engines.md lists per engine)",
    )
    startup_seconds: float = Field(
        900.0,
        gt=0,
        le=7200,
        description="how long the engine may take to report healthy (loading weights, "
        "compiling); past it the replica fails with the engine's last log lines",
    )

    @model_validator(mode="after")
    def _args_bounded(self) -> Engine:
        if self.port == MODEL_SERVER_POD_PORT:
            raise FieldProblem(
                "port",
                f"port {MODEL_SERVER_POD_PORT} is kaip's model server's own in a pod",
                "leave port out (8001 in a pod), or pick another",
            )
        total = sum(len(a) for a in self.args)
        if total > 8192:
            raise FieldProblem(
                "args", f"the arguments hold {total} characters", "keep them under 8192 in all"
            )
        return self


def engine_format_problem(engine: Engine, artifact_format: str) -> str | None:
    """Why ``engine`` cannot load an artifact of ``artifact_format``, or None when it can."""
    formats = ENGINE_FORMATS[engine.name]
    if artifact_format in formats:
        return None
    allowed = " or ".join(repr(f) for f in formats)
    return f"engine {engine.name!r} loads format {allowed}, not {artifact_format!r}"


__all__ = [
    "ENGINE_FORMATS",
    "FORMAT_HINT",
    "PROTOCOLS_HINT",
    "RESERVED_FLAGS",
    "RESERVED_FLAG_HINT",
    "RESERVED_FLAG_MESSAGE",
    "RESERVED_FLAG_PATTERN",
    "Engine",
    "EngineName",
    "engine_format_problem",
]
