"""The inference engines a Model may be served by (``serve.engine``), as processes: each
engine's command line, health path, metrics path, container image and metric map.

An engine differs from another only in what :class:`EngineProfile` holds. The replica runs the
command as its child (:mod:`kaip.serving.relay`), a pod runs it in the engine's own container
(:mod:`kaip.render.kube.serving`), and :func:`kaip.serving.engines.translate` reads the engine's
metrics through the map. Pure: data and argv lists, no I/O.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

LOOPBACK: Final = "127.0.0.1"
POD_ENGINE_PORT: Final = 8001
"""The engine's port in a pod (kaip's model server has 8000)."""


class EngineProfile(Protocol):
    """What sets one engine apart from another (read-only)."""

    @property
    def name(self) -> str: ...

    @property
    def health_path(self) -> str:
        """GET here answers 200 once the engine serves."""
        ...

    @property
    def metrics_path(self) -> str | None:
        """Its Prometheus text, or None when it has none."""
        ...

    @property
    def image(self) -> str:
        """The pinned container image on Kubernetes (``serve.engine.image`` overrides it)."""
        ...

    @property
    def samples(self) -> Mapping[str, str]:
        """Engine sample name -> snapshot key (:class:`kaip.serving.engines.EngineSnapshot`)."""
        ...

    @property
    def histograms(self) -> Mapping[str, str]:
        """Engine histogram name -> kaip's name for it (``kaip_engine_*``)."""
        ...

    def command(
        self, model: str, served_name: str, port: int, args: Sequence[str], *, pod: bool
    ) -> list[str]:
        """The argv that serves ``model`` (a local path) as ``served_name`` on loopback ``port``;
        ``pod``: in the engine's own container image rather than kaip's Python environment."""
        ...


@dataclass(frozen=True)
class _Profile:
    """An engine's data; each engine's class adds only its :meth:`command`."""

    name: str
    health_path: str
    metrics_path: str | None
    image: str
    samples: Mapping[str, str]
    histograms: Mapping[str, str] = field(default_factory=dict)


class VLLM(_Profile):
    """vLLM's OpenAI server (``vllm serve``)."""

    def command(
        self, model: str, served_name: str, port: int, args: Sequence[str], *, pod: bool
    ) -> list[str]:
        return [
            "vllm", "serve", model, "--host", LOOPBACK, "--port", str(port),
            "--served-model-name", served_name, *args,
        ]  # fmt: skip


class SGLang(_Profile):
    """SGLang's server (``python -m sglang.launch_server``), its metrics on."""

    def command(
        self, model: str, served_name: str, port: int, args: Sequence[str], *, pod: bool
    ) -> list[str]:
        python = "python3" if pod else sys.executable
        return [
            python, "-m", "sglang.launch_server", "--model-path", model, "--host", LOOPBACK,
            "--port", str(port), "--served-model-name", served_name, "--enable-metrics", *args,
        ]  # fmt: skip


class LlamaServer(_Profile):
    """llama.cpp's OpenAI server. Locally: llama-cpp-python's (``python -m llama_cpp.server``,
    ``kaip[llm-server]``), which has no /metrics; in a pod: llama.cpp's own ``llama-server``
    from its image, with ``--metrics`` (the ``llamacpp:`` names). Both answer ``/v1/models``
    once the model is loaded."""

    def command(
        self, model: str, served_name: str, port: int, args: Sequence[str], *, pod: bool
    ) -> list[str]:
        if pod:
            return [
                "/app/llama-server", "--model", model, "--host", LOOPBACK, "--port", str(port),
                "--alias", served_name, "--metrics", *args,
            ]  # fmt: skip
        # --interrupt_requests False: llama_cpp.server serves one generation at a time and by
        # default breaks off a running stream as soon as another request waits; behind kaip's
        # gateway every request must end as generated (args may still say otherwise)
        return [
            sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", LOOPBACK,
            "--port", str(port), "--model_alias", served_name, "--interrupt_requests", "False",
            *args,
        ]  # fmt: skip


# Metric names: vLLM's docs/design/metrics.md (v1), SGLang's and llama.cpp's server sources.
PROFILES: Final[Mapping[str, EngineProfile]] = {
    "vllm": VLLM(
        name="vllm",
        health_path="/health",
        metrics_path="/metrics",
        image="docker.io/vllm/vllm-openai:v0.33.0",
        samples={
            "vllm:num_requests_running": "busy",
            "vllm:num_requests_waiting": "waiting",
            "vllm:kv_cache_usage_perc": "kv_cache_usage",
            "vllm:gpu_cache_usage_perc": "kv_cache_usage",  # before v0.10
            "vllm:prompt_tokens_total": "prompt_tokens",
            "vllm:generation_tokens_total": "generated_tokens",
            "vllm:prefix_cache_hits_total": "prompt_cached_tokens",
        },
        histograms={
            "vllm:time_to_first_token_seconds": "kaip_engine_time_to_first_token_seconds",
            "vllm:inter_token_latency_seconds": "kaip_engine_time_per_output_token_seconds",
            "vllm:time_per_output_token_seconds": "kaip_engine_time_per_output_token_seconds",
            "vllm:e2e_request_latency_seconds": "kaip_engine_request_duration_seconds",
            "vllm:request_queue_time_seconds": "kaip_engine_queue_duration_seconds",
        },
    ),
    "sglang": SGLang(
        name="sglang",
        health_path="/health",
        metrics_path="/metrics",
        image="docker.io/lmsysorg/sglang:v0.5.23",
        samples={
            "sglang:num_running_reqs": "busy",
            "sglang:num_queue_reqs": "waiting",
            "sglang:token_usage": "kv_cache_usage",
            "sglang:prompt_tokens_total": "prompt_tokens",
            "sglang:generation_tokens_total": "generated_tokens",
            "sglang:cached_tokens_total": "prompt_cached_tokens",
        },
        histograms={
            "sglang:time_to_first_token_seconds": "kaip_engine_time_to_first_token_seconds",
            "sglang:inter_token_latency_seconds": "kaip_engine_time_per_output_token_seconds",
            "sglang:e2e_request_latency_seconds": "kaip_engine_request_duration_seconds",
            "sglang:queue_time_seconds": "kaip_engine_queue_duration_seconds",
        },
    ),
    "llama-server": LlamaServer(
        name="llama-server",
        health_path="/v1/models",
        metrics_path="/metrics",
        image="ghcr.io/ggml-org/llama.cpp:server-b6123",
        samples={
            "llamacpp:requests_processing": "busy",
            "llamacpp:requests_deferred": "waiting",
            "llamacpp:kv_cache_usage_ratio": "kv_cache_usage",
            "llamacpp:prompt_tokens_total": "prompt_tokens",
            "llamacpp:tokens_predicted_total": "generated_tokens",
        },
    ),
}


def profile(name: str) -> EngineProfile:
    """The profile of ``serve.engine.name`` (the spec allows only these names)."""
    return PROFILES[name]


__all__ = ["LOOPBACK", "POD_ENGINE_PORT", "PROFILES", "EngineProfile", "profile"]
